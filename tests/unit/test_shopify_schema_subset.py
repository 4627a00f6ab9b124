"""The sandbox's schema is a faithful subset of Shopify's real Admin 2026-07 schema, and every
operation the client sends validates against both."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    build_schema,
    parse,
    print_ast,
    validate,
)

from retouch.plugin.shopify.operations import all_operations
from retouch.plugin.shopify.sandbox.graphql_api import sandbox_schema

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REAL_SCHEMA = SHARED / "reference" / "shopify" / "admin-2026-07.graphql"
OPERATIONS_DIR = Path(__file__).resolve().parents[2] / "plugin" / "shopify" / "operations"
SUBSET_FILE = Path(__file__).resolve().parents[2] / "plugin" / "shopify" / "sandbox" / "schema.graphql"


@cache
def real() -> GraphQLSchema:
    if not REAL_SCHEMA.exists():
        pytest.skip(f"real Shopify schema not found at {REAL_SCHEMA} (../shared is absent)")
    return build_schema(REAL_SCHEMA.read_text(encoding="utf-8"), assume_valid=True)


def subset() -> GraphQLSchema:
    return build_schema(SUBSET_FILE.read_text(encoding="utf-8"))


def _user_types(schema: GraphQLSchema):
    return {name: t for name, t in schema.type_map.items() if not name.startswith("__")}


def _default(arg) -> str | None:
    default = getattr(arg, "default", None)
    if not default:
        return None
    return print_ast(default.literal) if default.literal is not None else repr(default.value)


def _kind(t) -> str:
    for cls in (
        GraphQLObjectType,
        GraphQLInterfaceType,
        GraphQLInputObjectType,
        GraphQLEnumType,
        GraphQLScalarType,
        GraphQLUnionType,
    ):
        if isinstance(t, cls):
            return cls.__name__
    return type(t).__name__


def test_every_type_field_argument_and_enum_value_exists_in_the_real_schema_identically() -> None:
    real_types, mine = _user_types(real()), _user_types(subset())
    problems: list[str] = []
    for name, t in mine.items():
        theirs = real_types.get(name)
        if theirs is None:
            problems.append(f"type {name} is not in the real schema")
            continue
        if _kind(t) != _kind(theirs):
            problems.append(f"{name} is a {_kind(t)}, real: {_kind(theirs)}")
            continue
        if isinstance(t, GraphQLEnumType):
            problems += [f"enum value {name}.{v} not real" for v in t.values if v not in theirs.values]
        if isinstance(t, (GraphQLObjectType, GraphQLInterfaceType)):
            real_interfaces = {i.name for i in theirs.interfaces}
            problems += [
                f"{name} implements {i.name}, the real type does not"
                for i in t.interfaces
                if i.name not in real_interfaces
            ]
        if isinstance(t, (GraphQLObjectType, GraphQLInterfaceType, GraphQLInputObjectType)):
            for field_name, field in t.fields.items():
                real_field = theirs.fields.get(field_name)
                if real_field is None:
                    problems.append(f"field {name}.{field_name} not real")
                    continue
                if str(field.type) != str(real_field.type):
                    problems.append(f"{name}.{field_name}: {field.type} != real {real_field.type}")
                if isinstance(t, GraphQLInputObjectType):
                    if _default(field) != _default(real_field):
                        problems.append(f"{name}.{field_name} default {_default(field)} != real {_default(real_field)}")
                    continue
                for arg_name, arg in field.args.items():
                    real_arg = real_field.args.get(arg_name)
                    if real_arg is None:
                        problems.append(f"argument {name}.{field_name}({arg_name}) not real")
                    elif str(arg.type) != str(real_arg.type):
                        problems.append(f"{name}.{field_name}({arg_name}): {arg.type} != real {real_arg.type}")
                    elif _default(arg) != _default(real_arg):
                        problems.append(
                            f"{name}.{field_name}({arg_name}) default {_default(arg)} != real {_default(real_arg)}"
                        )
                # A required argument left out of the subset would change what clients may send.
                problems += [
                    f"{name}.{field_name} omits required argument {a}"
                    for a, real_arg in real_field.args.items()
                    if a not in field.args and str(real_arg.type).endswith("!") and _default(real_arg) is None
                ]
    assert not problems, "\n".join(problems)


def test_roots_are_named_as_in_the_real_schema() -> None:
    assert subset().query_type.name == real().query_type.name == "QueryRoot"
    assert subset().mutation_type.name == real().mutation_type.name == "Mutation"


def test_the_sandbox_executes_exactly_this_file() -> None:
    # The schema the sandbox runs is built from the same SDL (with resolvers attached).
    executed = {n for n in sandbox_schema().type_map if not n.startswith("__")}
    assert executed == set(_user_types(subset()))


def test_every_client_operation_validates_against_both_schemas() -> None:
    documents = all_operations()
    files = {p.stem for p in OPERATIONS_DIR.glob("*.graphql") if not p.name.startswith("_")}
    assert set(documents) == files and files, "every operation file is covered"
    for name, document in documents.items():
        for label, schema in (("real", real()), ("subset", subset())):
            errors = validate(schema, parse(document))
            assert not errors, f"{name} against the {label} schema: {[e.message for e in errors]}"


def test_subset_check_would_catch_an_invented_field() -> None:
    # The comparison above is not vacuous: a field that is not real is reported.
    sdl = SUBSET_FILE.read_text(encoding="utf-8")
    doctored = sdl.replace("  mimeType: String\n", "  mimeType: String\n  sparkle: Int\n", 1)
    theirs = real().type_map["MediaImage"].fields
    mine = build_schema(doctored).type_map["MediaImage"].fields
    assert [f for f in mine if f not in theirs] == ["sparkle"]
