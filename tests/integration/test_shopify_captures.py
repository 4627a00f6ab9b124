"""The Shopify sandbox answers like Shopify: every real capture in ../shared is replayed against it.

For each capture file in `../shared/reference/shopify/captures/` (requests sent to, and answers
received from, a live dev store), a scenario below seeds equivalent state in the sandbox through its
admin API, replays the captured requests — the captured query document where the capture holds
one, else a document rebuilt from the captured answer (same fields, aliases and inline fragments;
argument types from the real schema) — with the captured variables (ids mapped to the seeded ones),
and compares the SHAPE of each answer with the captured one (`shape_differences`): the same fields,
recursively (lists by their elements' shapes), the same `userErrors`/`mediaUserErrors` codes and
`field` paths, the same media `status`/`fileStatus` at each step (so the same UPLOADED ->
PROCESSING -> READY transitions), the same `extensions.cost` keys. Ids, timestamps, URLs, cursors
and cost numbers are never compared.

Everything the sandbox deliberately answers differently is listed in ONE place,
`DELIBERATE_DIFFERENCES`, and nowhere else. `pytest -s` prints "captures matched: N / M".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from graphql import (
    REMOVE,
    DocumentNode,
    FieldNode,
    GraphQLSchema,
    Visitor,
    get_named_type,
    is_composite_type,
    parse,
    print_ast,
    visit,
)

from conftest import FakeClock
from retouch.plugin.shopify.sandbox import ShopifySandbox

CAPTURES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "shopify" / "captures"
REAL_SCHEMA = CAPTURES.parent / "admin-2026-07.graphql"
TOKEN = "shpat_captures_TESTSECRET_5d1e"
T0 = 1_795_000_000.0
P = 2.0  # processing seconds: UPLOADED for [0, 1), PROCESSING for [1, 2), READY after

# ---------------------------------------------------------------------------------------------
# The ONE place where the sandbox is allowed to differ from a capture.
#
# Key: a capture's path relative to captures/ (the whole capture is skipped with the reason), or
# "<capture>::<step>[.<where>]" where <step> is the dotted path of a request/answer pair inside the
# capture and <where> a dotted path into that step's answer ("data.…", "errors", "extensions.…") or
# its "variables.…": that part is left out of the request and of both answers. The last component
# may select list elements: "[2:]" drops elements from index 2 on, "[ExternalVideo]" drops the
# elements whose __typename is ExternalVideo. A bare "<capture>::<step>" skips the step; a <step>
# of "*" stands for every step of the capture.
# ---------------------------------------------------------------------------------------------
_NOT_IMPLEMENTED = "not implemented by the sandbox (retouch does not use it)"
_BULK_DATA_ONLY = (
    "the capture recorded only the data of this read; the sandbox's answer carries extensions.cost as usual"
)
_NON_IMAGE = "the sandbox emulates image media only (no videos, 3D models or generic files)"

DELIBERATE_DIFFERENCES: dict[str, str] = {
    # --- whole captures
    "2025-01/products/productCreateMedia-dual-userErrors.json": "productCreateMedia is deprecated and not implemented; the same invalid-source error through "
    "productUpdate(media:) is replayed from product-top-level-media-parity.json",
    "2025-01/products/product-metafields.json": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED
    + "; single metafield(namespace:, key:) "
    "reads are replayed from the metafields-set-*.json captures",
    "2025-01/products/products-common-search-filters.json": "search on status/vendor/product_type is "
    + _NOT_IMPLEMENTED
    + " (the fields themselves are served, for "
    "[[rules]])",
    "2026-04/media/media-file-interface-fields.json": "fileCreate and the top-level files connection are "
    + _NOT_IMPLEMENTED,
    # --- setup steps done through the sandbox's admin API instead of mutations it does not implement
    "2025-01/media/media-file-mutation-first-lifecycle.json::setup.productCreate": "productCreate is "
    + _NOT_IMPLEMENTED,
    "2025-01/media/media-file-mutation-first-lifecycle.json::setup.productCreateMedia": "productCreateMedia is deprecated and not implemented (the sandbox seeds the media)",
    "2025-01/media/media-file-mutation-first-lifecycle.json::acknowledge": "fileAcknowledgeUpdateFailed is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-cas-success-parity.json::preconditionRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-cas-success-parity.json::downstreamRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-stale-digest-parity.json::preconditionRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-stale-digest-parity.json::downstreamRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-over-limit-parity.json::preconditionRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-over-limit-parity.json::downstreamRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/metafields-set-parity.json::downstreamRead.data.product.metafields": "the Product.metafields connection is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-create-media-parity.json::mutation": "productCreateMedia is deprecated and not implemented: the sandbox adds the same media through "
    "productUpdate(media:), and the reads after it are compared",
    "2025-01/products/product-create-media-parity.json::*.data.product.images": "Product.images is deprecated (use media) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-create-media-parity.json::*.data.product.featuredImage": "Product.featuredImage is deprecated (use featuredMedia) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-create-media-parity.json::*.data.product.featuredMedia": "Product.featuredMedia is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-reorder-media-parity.json::*.data.product.images": "Product.images is deprecated (use media) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-update-media-parity.json::setup.createMedia": "productCreateMedia is deprecated and not implemented (the sandbox seeds the media)",
    "2025-01/products/product-update-media-parity.json::mutation": "productUpdateMedia is deprecated and not implemented: the sandbox changes the alt through fileUpdate, "
    "and the read after it is compared",
    "2025-01/products/product-update-media-parity.json::*.data.product.images": "Product.images is deprecated (use media) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-update-media-parity.json::*.data.product.featuredImage": "Product.featuredImage is deprecated (use featuredMedia) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-update-media-parity.json::*.data.product.featuredMedia": "Product.featuredMedia is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-delete-media-parity.json::mutation": "productDeleteMedia is deprecated and not implemented: the sandbox deletes through fileDelete, "
    "and the read after it is compared",
    "2025-01/products/product-delete-media-parity.json::downstreamRead.data.product.images": "Product.images is deprecated (use media) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-delete-media-parity.json::downstreamRead.data.product.featuredImage": "Product.featuredImage is deprecated (use featuredMedia) and "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-delete-media-parity.json::downstreamRead.data.product.featuredMedia": "Product.featuredMedia is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-invalid-search-query-syntax.json::captures.productCreate": "productCreate is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-invalid-search-query-syntax.json::captures.cleanupDelete": "productDelete is "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-nested-connections.json::setup": "productCreate, variants and collections are "
    + _NOT_IMPLEMENTED,
    "2025-01/products/product-nested-connections.json::reads.variantSorts": "product variants are " + _NOT_IMPLEMENTED,
    "2025-01/products/product-nested-connections.json::reads.collectionSorts": "collections are " + _NOT_IMPLEMENTED,
    "2025-01/products/product-nested-connections.json::reads.variantMedia": "product variants are " + _NOT_IMPLEMENTED,
    "2025-01/products/product-reorder-media-parity.json::setup.productCreate": "productCreate is " + _NOT_IMPLEMENTED,
    "2025-01/products/product-reorder-media-parity.json::setup.productCreateMedia": "productCreateMedia is deprecated and not implemented (the sandbox seeds the media)",
    "2025-01/products/product-top-level-media-parity.json::validCreate": "productCreate is " + _NOT_IMPLEMENTED,
    "2025-01/products/product-top-level-media-parity.json::invalidCreate": "productCreate is " + _NOT_IMPLEMENTED,
    "2025-01/products/product-top-level-media-parity.json::validUpdate.variables.media": _NON_IMAGE
    + " (EXTERNAL_VIDEO)",
    "2025-01/products/product-top-level-media-parity.json::validUpdate.data.productUpdate.product.media.nodes[ExternalVideo]": _NON_IMAGE,
    "2025-01/products/product-top-level-media-parity.json::readAfterValidUpdate.data.product.media.nodes[ExternalVideo]": _NON_IMAGE,
    "2025-01/products/product-top-level-media-parity.json::invalidUpdate.data.productUpdate.product.media.nodes[ExternalVideo]": _NON_IMAGE,
    "2025-01/products/product-top-level-media-parity.json::readAfterInvalidUpdate.data.product.media.nodes[ExternalVideo]": _NON_IMAGE,
    "2026-04/media/files-upload-live-capture.json::create": "fileCreate is " + _NOT_IMPLEMENTED,
    "2026-04/media/files-upload-live-capture.json::readAfterCreate": "the top-level files connection is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/files-upload-live-capture.json::readAfterCreatePageTwo": "the top-level files connection is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/files-upload-live-capture.json::fileUpdateConflictingSources": "FileUpdateInput.previewImageSource (previews of non-image files) is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-delete-typed-gid-roundtrip.json::create": "fileCreate is " + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-validation-branches.json::setup.imageCreate": "fileCreate is " + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-validation-branches.json::setup.nonReadyCreate": "fileCreate is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-validation-branches.json::setup.videoCreate": _NON_IMAGE,
    "2026-04/media/media-file-update-validation-branches.json::setup.readyVideoRead": _NON_IMAGE,
    "2026-04/media/media-file-update-validation-branches.json::branches.videoOriginalSource": _NON_IMAGE,
    "2026-04/media/media-file-update-validation-branches.json::branches.videoFilename": _NON_IMAGE,
    "2026-04/media/media-file-update-validation-branches.json::branches.sourceAndVersion": "FileUpdateInput.revertToVersionId (file versions) is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-validation-branches.json::branches.missingReferences.variables.files.referencesToAdd": "FileUpdateInput.referencesToAdd is "
    + _NOT_IMPLEMENTED
    + " (referencesToRemove is)",
    "2026-04/media/media-file-update-filename-extension-aggregation.json::setup.imageCreate": "fileCreate is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-filename-extension-aggregation.json::setup.externalVideoCreate": _NON_IMAGE,
    "2026-04/media/media-file-update-filename-extension-aggregation.json::setup.reads": "reads of the fileCreate setup (files connection)",
    "2026-04/media/media-file-update-filename-extension-aggregation.json::cases.multiExternalVideoFilename": _NON_IMAGE,
    "2026-04/media/media-file-update-source-semantics.json::setup.imageCreate": "fileCreate is " + _NOT_IMPLEMENTED,
    "2026-04/media/media-file-update-source-semantics.json::setup.genericCreate": _NON_IMAGE,
    "2026-04/media/media-file-update-source-semantics.json::setup.readyGenericRead": _NON_IMAGE,
    "2026-04/media/media-file-update-source-semantics.json::updates.genericOriginalSource": _NON_IMAGE,
    "2026-04/media/media-file-update-source-semantics.json::reads": "the top-level files connection is "
    + _NOT_IMPLEMENTED,
    "2026-04/media/media-staged-uploads-create-user-errors-shape.json::cases.videoMissingFileSizeUserError": _NON_IMAGE
    + " (staged upload resource VIDEO)",
    "2026-04/media/staged-upload-targets-parity.json::schema": "introspection of the real schema, not a sandbox answer",
    "2026-04/bulk-operations/bulk-operation-run-query-validators.json::validations.connectionWithinList": "the sandbox's schema has no orders/fulfillments, so it cannot tell that `fulfillments` is a list: "
    "the query is refused for naming a field the sandbox lacks (same code and field, other words)",
    "2026-04/bulk-operations/bulk-operation-run-query-group-objects.json::upstreamCalls": "the same productsCount reads as runs.*.productCount (replayed there), recorded again as a list",
    **{
        f"2026-04/bulk-operations/bulk-operation-run-query-concurrency-limit.json::upstreamCalls.{i}.extensions": _BULK_DATA_ONLY
        for i in range(5)
    },
    "2026-04/media/staged-upload-targets-parity.json::stagedUploadsCreate.variables.input[2:]": _NON_IMAGE
    + " (staged upload resources VIDEO and MODEL_3D)",
    "2026-04/media/staged-upload-targets-parity.json::stagedUploadsCreate.data.stagedUploadsCreate.stagedTargets[2:]": _NON_IMAGE
    + " (staged upload resources VIDEO and MODEL_3D)",
}

# Answer fields whose VALUES are compared, not just their presence: enum states and error codes.
EXACT_VALUE_KEYS = frozenset({"status", "fileStatus", "mediaContentType", "__typename", "code"})
ERROR_LIST_KEYS = frozenset({"userErrors", "mediaUserErrors"})


# ============================================================================== shape comparison


def shape_differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where `actual` does not have the shape of `expected` (empty list: same shape).

    Dicts must have the same keys (recursively); lists the same length, and every element of
    `actual` the shape of the merged elements of `expected`; scalars match any scalar (ids,
    timestamps, URLs, cursors, numbers are not compared) except under EXACT_VALUE_KEYS; the
    `userErrors`/`mediaUserErrors` lists must hold the same codes and `field` paths in order.
    `null` matches only `null` or a scalar."""
    here = path or "<root>"
    if isinstance(expected, dict) and isinstance(actual, dict):
        diffs = [f"{_join(path, k)}: missing" for k in expected if k not in actual]
        diffs += [f"{_join(path, k)}: unexpected field" for k in actual if k not in expected]
        for key in expected.keys() & actual.keys():
            sub = _join(path, key)
            if key in ERROR_LIST_KEYS and isinstance(expected[key], list) and isinstance(actual[key], list):
                diffs += _error_differences(expected[key], actual[key], sub)
            elif key in EXACT_VALUE_KEYS and not isinstance(expected[key], (dict, list)):
                if expected[key] != actual[key]:
                    diffs.append(f"{sub}: expected {expected[key]!r}, got {actual[key]!r}")
            else:
                diffs += shape_differences(expected[key], actual[key], sub)
        return diffs
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{here}: expected {len(expected)} items, got {len(actual)}"]
        diffs = []
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            diffs += shape_differences(want, got, f"{path}[{index}]")
        return diffs
    if _is_scalar(expected) and _is_scalar(actual):
        return []
    return [f"{here}: expected {_kind(expected)}, got {_kind(actual)}"]


def _error_differences(expected: list[Any], actual: list[Any], path: str) -> list[str]:
    def summary(errors: list[Any]) -> list[tuple[Any, Any, tuple[str, ...]]]:
        return [(e.get("code"), e.get("field"), tuple(sorted(e))) for e in errors if isinstance(e, dict)]

    want, got = summary(expected), summary(actual)
    if want == got:
        return []
    return [f"{path}: expected errors (code, field, keys) {want}, got {got}"]


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list))


def _kind(value: Any) -> str:
    return (
        "an object"
        if isinstance(value, dict)
        else "a list"
        if isinstance(value, list)
        else "null"
        if value is None
        else "a scalar"
    )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class TestShapeDifferences:
    BASE: ClassVar[dict[str, Any]] = {
        "data": {
            "fileUpdate": {
                "files": [{"id": "1", "alt": "a", "fileStatus": "READY"}],
                "userErrors": [{"field": ["files"], "message": "m", "code": "NON_READY_STATE"}],
            }
        },
        "extensions": {
            "cost": {
                "requestedQueryCost": 10,
                "actualQueryCost": 10,
                "throttleStatus": {"maximumAvailable": 2000, "currentlyAvailable": 1990, "restoreRate": 100},
            }
        },
    }

    def copy(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.BASE))

    def test_same_shape_ignores_ids_messages_urls_and_numbers(self) -> None:
        other = self.copy()
        other["data"]["fileUpdate"]["files"][0].update(id="2", alt="b")
        other["data"]["fileUpdate"]["userErrors"][0]["message"] = "other words"
        other["extensions"]["cost"]["requestedQueryCost"] = 99
        assert shape_differences(self.BASE, other) == []

    def test_missing_field(self) -> None:
        other = self.copy()
        del other["data"]["fileUpdate"]["files"][0]["alt"]
        assert shape_differences(self.BASE, other) == ["data.fileUpdate.files[0].alt: missing"]

    def test_extra_field(self) -> None:
        other = self.copy()
        other["extensions"]["cost"]["throttleStatus"]["bonus"] = 1
        assert shape_differences(self.BASE, other) == ["extensions.cost.throttleStatus.bonus: unexpected field"]

    def test_different_error_code(self) -> None:
        other = self.copy()
        other["data"]["fileUpdate"]["userErrors"][0]["code"] = "INVALID"
        (diff,) = shape_differences(self.BASE, other)
        assert diff.startswith("data.fileUpdate.userErrors: expected errors") and "INVALID" in diff

    def test_different_error_field_path(self) -> None:
        other = self.copy()
        other["data"]["fileUpdate"]["userErrors"][0]["field"] = ["files", "0"]
        (diff,) = shape_differences(self.BASE, other)
        assert diff.startswith("data.fileUpdate.userErrors: expected errors") and "'0'" in diff

    def test_missing_or_extra_error(self) -> None:
        other = self.copy()
        other["data"]["fileUpdate"]["userErrors"] = []
        assert len(shape_differences(self.BASE, other)) == 1

    def test_different_status_and_list_length_and_null(self) -> None:
        other = self.copy()
        other["data"]["fileUpdate"]["files"][0]["fileStatus"] = "PROCESSING"
        assert shape_differences(self.BASE, other) == [
            "data.fileUpdate.files[0].fileStatus: expected 'READY', got 'PROCESSING'"
        ]
        other = self.copy()
        other["data"]["fileUpdate"]["files"].append(other["data"]["fileUpdate"]["files"][0])
        assert shape_differences(self.BASE, other) == ["data.fileUpdate.files: expected 1 items, got 2"]
        other = self.copy()
        other["data"]["fileUpdate"]["files"] = None
        assert shape_differences(self.BASE, other) == ["data.fileUpdate.files: expected a list, got null"]
        assert shape_differences({"image": None}, {"image": {"url": "u"}}) == ["image: expected null, got an object"]


# ============================================================================== ignore paths


def _split(path: str) -> list[tuple[str, str | None]]:
    """ "a.b[2:]" -> [("a", None), ("b", "2:")]."""
    parts = []
    for part in path.split("."):
        match = re.fullmatch(r"([^\[]+)(?:\[([^\]]+)\])?", part)
        assert match, path
        parts.append((match[1], match[2]))
    return parts


def prune(value: Any, path: str) -> Any:
    """A copy of `value` without what `path` designates (see DELIBERATE_DIFFERENCES)."""
    return _prune(json.loads(json.dumps(value)), _split(path)) if path else value


def _prune(value: Any, parts: list[tuple[str, str | None]]) -> Any:
    if isinstance(value, list):
        return [_prune(v, parts) for v in value]
    if not isinstance(value, dict) or parts[0][0] not in value:
        return value
    (key, selector), rest = parts[0], parts[1:]
    if not rest and selector is None:
        del value[key]
    elif not rest:
        items = value[key]
        if isinstance(items, list):
            if selector.endswith(":"):
                value[key] = items[: int(selector[:-1])]
            else:
                value[key] = [i for i in items if not (isinstance(i, dict) and i.get("__typename") == selector)]
    else:
        value[key] = _prune(value[key], rest)
    return value


def prune_document(document: DocumentNode, path: str) -> DocumentNode:
    """`document` without the field at response path `path` (list selectors do not apply)."""
    keys = [key for key, selector in _split(path) if selector is None] if "[" not in path else []
    if not keys:
        return document

    class Strip(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.stack: list[str] = []

        def enter_field(self, node: FieldNode, *_: Any) -> Any:
            self.stack.append((node.alias or node.name).value)
            if self.stack == keys:
                self.stack.pop()
                return REMOVE
            return None

        def leave_field(self, *_: Any) -> None:
            self.stack.pop()

    return visit(document, Strip())


# ============================================================================== documents rebuilt from answers


@dataclass
class _Selection:
    fields: dict[str, tuple[str, list[Any]]] = field(default_factory=dict)  # response key -> (field text, values)
    fragments: dict[str, _Selection] = field(default_factory=dict)


def build_document(
    schema: GraphQLSchema,
    data: dict[str, Any],
    roots: dict[str, str],
    variables: dict[str, Any],
    name: str,
    aliases: dict[str, str] | None = None,
) -> str:
    """A query document whose answer has the shape of `data`: `roots` gives each top-level response
    key's field with its arguments ("product(id: $id)"), `aliases` the field behind an aliased key
    ("primarySpec" -> 'metafield(namespace: "custom", key: "material")'); connections nested below
    the root get `first: 10`; fields a type lacks go in an inline fragment on the concrete type
    (`__typename` of the captured value, else the first possible type that has the field)."""
    aliases = aliases or {}
    mutation = schema.mutation_type
    root_type = mutation if all(r.split("(")[0] in mutation.fields for r in roots.values()) else schema.query_type
    lines: list[str] = []
    declared: dict[str, str] = {}
    for key, call in roots.items():
        field_name = call.split("(")[0]
        field_def = root_type.fields[field_name]
        call = _declare(call, field_def, declared, variables)
        body = _render(schema, get_named_type(field_def.type), [data.get(key)], aliases, "  ", declared, variables)
        lines.append(f"  {key + ': ' if key != field_name else ''}{call}{body}")
    params = ", ".join(f"${v}: {t}" for v, t in declared.items())
    kind = "mutation" if root_type is mutation else "query"
    return f"{kind} {name}{f'({params})' if params else ''} {{\n" + "\n".join(lines) + "\n}\n"


def _declare(call: str, field_def: Any, declared: dict[str, str], variables: dict[str, Any]) -> str:
    """`call` without optional "arg: $var" whose variable is not given; the others declared."""
    for arg, var in re.findall(r"(\w+):\s*\$(\w+)", call):
        kind = str(field_def.args[arg].type)
        if var in variables or kind.endswith("!"):
            declared[var] = kind
        else:
            call = re.sub(rf",?\s*{arg}:\s*\${var}", "", call).replace("(, ", "(").replace("()", "")
    return call


def _render(
    schema: GraphQLSchema,
    gtype: Any,
    values: list[Any],
    aliases: dict[str, str],
    indent: str,
    declared: dict[str, str],
    variables: dict[str, Any],
) -> str:
    if not is_composite_type(gtype):
        return ""
    flat: list[dict[str, Any]] = []
    stack = list(values)
    while stack:
        value = stack.pop(0)
        if isinstance(value, list):
            stack[:0] = value
        elif isinstance(value, dict):
            flat.append(value)
    selection = _Selection()
    for value in flat:
        for key, child in value.items():
            call = aliases.get(key, key)
            field_name = call.split("(")[0]
            owner = gtype
            if key == "__typename" or field_name in getattr(gtype, "fields", {}):  # on the type or interface
                bucket = selection
            else:
                concrete = value.get("__typename")
                candidates = [t for t in schema.get_possible_types(gtype) if field_name in t.fields]
                owner = (
                    schema.get_type(concrete)
                    if concrete
                    else (
                        next((t for t in candidates if t.name == "MediaImage"), candidates[0] if candidates else None)
                    )
                )
                if owner is None or field_name not in getattr(owner, "fields", {}):
                    owner = gtype  # unknown field: let validation report it
                    bucket = selection
                else:
                    bucket = selection.fragments.setdefault(owner.name, _Selection())
            if key not in bucket.fields:
                fdef = getattr(owner, "fields", {}).get(field_name)
                if fdef is not None:
                    call = _declare(call, fdef, declared, variables)
                text = call if key == field_name else f"{key}: {call}"
                if (
                    fdef is not None
                    and "(" not in call
                    and "first" in fdef.args
                    and get_named_type(fdef.type).name.endswith("Connection")
                ):
                    text += "(first: 10)"
                bucket.fields[key] = (text, [])
            bucket.fields[key][1].append(child)
    return _render_selection(schema, gtype, selection, aliases, indent, declared, variables)


def _render_selection(
    schema: GraphQLSchema,
    gtype: Any,
    selection: _Selection,
    aliases: dict[str, str],
    indent: str,
    declared: dict[str, str],
    variables: dict[str, Any],
) -> str:
    inner = indent + "  "
    lines = []
    for key, (text, children) in selection.fields.items():
        field_name = aliases.get(key, key).split("(")[0]
        fdef = getattr(gtype, "fields", {}).get(field_name)
        sub = ""
        if fdef is not None and is_composite_type(get_named_type(fdef.type)):
            sub = _render(schema, get_named_type(fdef.type), children, aliases, inner, declared, variables)
        lines.append(f"{inner}{text}{sub}")
    for type_name, fragment in selection.fragments.items():
        body = _render_selection(schema, schema.get_type(type_name), fragment, aliases, inner, declared, variables)
        lines.append(f"{inner}... on {type_name}{body}")
    if not lines:
        return " { __typename }"
    return " {\n" + "\n".join(lines) + "\n" + indent + "}"


# ============================================================================== replaying a capture


def body_of(step: dict[str, Any]) -> dict[str, Any]:
    """The GraphQL answer inside a captured step, whatever wrapper the capture used."""
    value: Any = step
    for key in ("response", "result", "payload", "body"):
        if isinstance(value, dict) and key in value and isinstance(value[key], dict):
            value = value[key]
    return value


def at(capture: dict[str, Any], label: str) -> Any:
    value: Any = capture
    for part in label.split("."):
        if isinstance(value, list):  # by index, or by the element's "name"
            value = value[int(part)] if part.isdigit() else next(v for v in value if v.get("name") == part)
        else:
            value = value[part]
    return value


def _gid_number(value: str) -> str | None:
    match = re.fullmatch(r"gid://shopify/\w+/(\d+)", value)
    return match[1] if match else None


@dataclass
class StepResult:
    label: str
    differences: list[str]
    statuses: tuple[list[str], list[str]]


class Replay:
    """One capture replayed against a fresh sandbox on a fake clock."""

    def __init__(
        self, name: str, capture: dict[str, Any], sandbox: ShopifySandbox, clock: FakeClock, schema: GraphQLSchema
    ) -> None:
        self.name = name
        self.capture = capture
        self.sandbox = sandbox
        self.clock = clock
        self.schema = schema
        self.ids: dict[str, str] = {}  # captured numeric id -> seeded numeric id
        self.sources: dict[str, str] = {}  # captured source URL -> a URL the sandbox can fetch
        self.results: list[StepResult] = []
        self.ignored = {k.split("::", 1)[1]: v for k, v in DELIBERATE_DIFFERENCES.items() if k.startswith(name + "::")}
        self.used: set[str] = set()

    # ---- seeding

    def product(
        self,
        captured_gid: str | None,
        title: str = "Captured product",
        tags: list[str] | None = None,
        images: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        product = self.sandbox.add_product(title, tags or [], images or [])
        if captured_gid:
            self.map(captured_gid, product["id"])
        return product

    def map(self, captured: str, seeded: str) -> None:
        self.ids[_gid_number(captured) or captured] = _gid_number(seeded) or seeded

    def source_url(self, captured_url: str, extension: str = "png") -> str:
        """A URL serving an image of the given format that the sandbox fetches from itself."""
        if captured_url not in self.sources:
            holder = self.sandbox.add_product(
                f"Image source {len(self.sources)}", [], [{"filename": f"source-{len(self.sources)}.{extension}"}]
            )
            self.sources[captured_url] = holder["media"][0]["url"]
        return self.sources[captured_url]

    def mapped(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.mapped(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mapped(v) for v in value]
        if isinstance(value, str):
            if value in self.sources:
                return self.sources[value]
            number = _gid_number(value)
            if number and number in self.ids:
                return value[: -len(number)] + self.ids[number]
        return value

    # ---- replaying

    def skipped(self, label: str) -> bool:
        if label in self.ignored:
            self.used.add(label)
            return True
        return False

    def post(self, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            f"{self.sandbox.shop_url}{self.sandbox.graphql_path}",
            json={"query": document, "variables": variables},
            headers={"X-Shopify-Access-Token": TOKEN},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def step(
        self,
        label: str,
        *,
        roots: dict[str, str] | None = None,
        aliases: dict[str, str] | None = None,
        document: str | None = None,
        variables: dict[str, Any] | None = None,
        expected: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Replay the step at `label` (its captured document, else one rebuilt from `roots`) and
        compare the answer's shape with the captured one; the sandbox's answer (None if skipped)."""
        if self.skipped(label):
            return None
        step = at(self.capture, label)
        expected = expected if expected is not None else body_of(step)
        if variables is None:
            variables = (
                step.get("variables")
                or (step.get("request") or {}).get("variables")
                or self.capture.get(label + "Variables")
                or {}
            )
        document = document or step.get("query") or (step.get("request") or {}).get("document")
        ignored = sorted(p[len(label) + 1 :] for p in self.ignored if p.startswith(label + "."))
        self.used.update(f"{label}.{p}" for p in ignored)
        for pattern in self.ignored:  # "*.<where>": that part of every step
            if pattern.startswith("*.") and _present(expected, pattern[2:]):
                ignored.append(pattern[2:])
                self.used.add(pattern)
        for path in ignored:
            if path.startswith("variables."):
                variables = prune(variables, path[len("variables.") :])
            else:
                expected = prune(expected, path)
        if document is None:
            assert roots, f"{label}: no captured document and no roots to rebuild one"
            document = build_document(
                self.schema,
                expected.get("data") or {},
                roots,
                variables,
                "Replay" + re.sub(r"\W", "", label.title()),
                aliases,
            )
        parsed = parse(document)
        for path in ignored:
            if path.startswith("data."):
                parsed = prune_document(parsed, path[len("data.") :])
        actual = self.post(print_ast(parsed), self.mapped(variables))
        for path in ignored:
            if not path.startswith("variables."):
                actual = prune(actual, path)
        differences = shape_differences(expected, actual)
        if "errors" in actual and "errors" not in expected:
            differences.append(f"errors: {json.dumps(actual['errors'])[:600]}")
        self.results.append(StepResult(label, differences, (_statuses(expected), _statuses(actual))))
        return actual

    def report(self) -> list[str]:
        unused = sorted(set(self.ignored) - self.used)
        problems = [f"DELIBERATE_DIFFERENCES entry never applied: {self.name}::{u}" for u in unused]
        for result in self.results:
            problems += [f"{result.label}: {d}" for d in result.differences]
        # The media lifecycle across the steps (e.g. UPLOADED -> PROCESSING -> READY), step by step.
        wanted = [(r.label, r.statuses[0]) for r in self.results if r.statuses[0]]
        shown = [(r.label, r.statuses[1]) for r in self.results if r.statuses[0]]
        if wanted != shown:
            problems.append(f"status transitions: expected {wanted}, got {shown}")
        return problems


def _present(value: Any, path: str) -> bool:
    for key, _ in _split(path):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def _statuses(value: Any) -> list[str]:
    """Every media status/fileStatus in an answer, in document order (the lifecycle it shows)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("status", "fileStatus") and isinstance(child, str):
                found.append(f"{key}={child}")
            else:
                found += _statuses(child)
    elif isinstance(value, list):
        for child in value:
            found += _statuses(child)
    return found


# ============================================================================== scenarios, one per capture

Scenario = Callable[[Replay], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(function: Scenario) -> Scenario:
        SCENARIOS[name] = function
        return function

    return register


METAFIELD_ALIASES = {
    "primarySpec": 'metafield(namespace: "custom", key: "material")',
    "origin": 'metafield(namespace: "details", key: "origin")',
    "season": 'metafield(namespace: "details", key: "season")',
}


def _metafields_seed(r: Replay, product_gid: str, season: bool) -> dict[str, Any]:
    """The product of the metafields captures with custom.material=Canvas and details.origin=VN."""
    product = r.product(product_gid)
    seeded = r.post(
        "mutation Seed($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { userErrors { code } } }",
        {
            "m": [
                {
                    "ownerId": product["id"],
                    "namespace": "custom",
                    "key": "material",
                    "type": "single_line_text_field",
                    "value": "Canvas",
                },
                {
                    "ownerId": product["id"],
                    "namespace": "details",
                    "key": "origin",
                    "type": "single_line_text_field",
                    "value": "VN",
                },
            ]
            + (
                [
                    {
                        "ownerId": product["id"],
                        "namespace": "details",
                        "key": "season",
                        "type": "single_line_text_field",
                        "value": "Summer",
                    }
                ]
                if season
                else []
            )
        },
    )
    assert seeded["data"]["metafieldsSet"]["userErrors"] == []
    return product


def _material_digest(r: Replay, legacy_id: str) -> str:
    return r.sandbox.product(legacy_id)["metafields"]["custom.material"]["compare_digest"]


def _metafields_scenario(r: Replay, *, seed: bool) -> None:
    """Seed custom.material=Canvas (+ details.origin, details.season) as the capture's store had
    them; a compareDigest sent by the capture is mapped to the sandbox's digest of the same state:
    the current one when the capture sent the current digest, else the Canvas one, after which the
    value is changed to the captured current value so that the digest is stale for the same reason."""
    product_gid = r.capture["downstreamReadVariables"]["id"]
    before = r.capture.get("preconditionRead", {}).get("data", {}).get("product", {})
    if not seed:
        r.product(product_gid)
    else:
        product = _metafields_seed(r, product_gid, season=before.get("season") is not None)
        canvas_digest = _material_digest(r, product["legacy_id"])
        current = before.get("primarySpec") or {}
        sent = {m.get("compareDigest") for m in r.capture["mutation"]["variables"]["metafields"]} - {None}
        for digest in sent:
            if digest != current.get("compareDigest"):  # stale: the digest of an older value
                r.ids[digest] = canvas_digest
        if current.get("value") not in (None, "Canvas"):
            changed = r.post(
                "mutation Change($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) { userErrors { code } } }",
                {
                    "m": [
                        {
                            "ownerId": product["id"],
                            "namespace": "custom",
                            "key": "material",
                            "type": "single_line_text_field",
                            "value": current["value"],
                        }
                    ]
                },
            )
            assert changed["data"]["metafieldsSet"]["userErrors"] == []
        for digest in sent:
            if digest == current.get("compareDigest"):  # fresh: the digest of the current value
                r.ids[digest] = _material_digest(r, product["legacy_id"])
    if before:
        r.step(
            "preconditionRead",
            roots={"product": "product(id: $id)"},
            aliases=METAFIELD_ALIASES,
            variables=r.capture["downstreamReadVariables"],
        )
    variables = json.loads(json.dumps(r.capture["mutation"]["variables"]))
    for item in variables["metafields"]:
        if item.get("compareDigest") in r.ids:
            item["compareDigest"] = r.ids[item["compareDigest"]]
    r.step("mutation", roots={"metafieldsSet": "metafieldsSet(metafields: $metafields)"}, variables=variables)
    r.step(
        "downstreamRead",
        roots={"product": "product(id: $id)"},
        aliases=METAFIELD_ALIASES,
        variables=r.capture["downstreamReadVariables"],
    )


@scenario("2025-01/products/metafields-set-parity.json")
def _metafields_set(r: Replay) -> None:
    _metafields_scenario(r, seed=False)


@scenario("2025-01/products/metafields-set-cas-success-parity.json")
def _metafields_cas(r: Replay) -> None:
    _metafields_scenario(r, seed=True)


@scenario("2025-01/products/metafields-set-stale-digest-parity.json")
def _metafields_stale(r: Replay) -> None:
    # The captured digest belongs to an older value than the store holds.
    _metafields_scenario(r, seed=True)


@scenario("2025-01/products/metafields-set-over-limit-parity.json")
def _metafields_over_limit(r: Replay) -> None:
    _metafields_scenario(r, seed=True)


MEDIA_ROOTS = {"product": "product(id: $id)"}


@scenario("2025-01/media/media-file-mutation-first-lifecycle.json")
def _mutation_first_lifecycle(r: Replay) -> None:
    setup = r.capture["setup"]
    product_gid = setup["productCreate"]["response"]["data"]["productCreate"]["product"]["id"]
    media = setup["productCreateMedia"]["response"]["data"]["productCreateMedia"]["media"][0]
    product = r.product(product_gid, images=[{"filename": "png.png", "alt": media["alt"], "processing": True}])
    r.map(media["id"], product["media"][0]["id"])
    r.step("setup.productCreate")
    r.step("setup.productCreateMedia")
    r.clock.advance(P)
    r.step("setup.readyPoll", roots={"node": "node(id: $id)"})
    r.step("acknowledge")
    r.step("delete", roots={"fileDelete": "fileDelete(fileIds: $fileIds)"})
    r.step("downstreamRead", roots=MEDIA_ROOTS)


@scenario("2025-01/products/product-create-media-parity.json")
def _create_media(r: Replay) -> None:
    variables = r.capture["mutation"]["variables"]
    product = r.product(variables["productId"])
    r.step("mutation")
    source = r.source_url(variables["media"][0]["originalSource"])
    added = r.post(
        "mutation Add($p: ProductUpdateInput, $m: [CreateMediaInput!]) { productUpdate(product: $p, media: $m)"
        " { userErrors { field } } }",
        {"p": {"id": product["id"]}, "m": [{**variables["media"][0], "originalSource": source}]},
    )
    assert added["data"]["productUpdate"]["userErrors"] == []
    read = {"id": variables["productId"]}
    r.clock.advance(P * 0.75)  # the capture read it PROCESSING
    r.step("downstreamRead", roots=MEDIA_ROOTS, variables=read)
    r.clock.advance(P)
    r.step("readyRead", roots=MEDIA_ROOTS, variables=read)


@scenario("2025-01/products/product-update-media-parity.json")
def _update_media(r: Replay) -> None:
    variables = r.capture["mutation"]["variables"]
    product = r.product(variables["productId"], images=[{"filename": "png.png", "alt": "Front view"}])
    r.map(variables["media"][0]["id"], product["media"][0]["id"])
    read = {"id": variables["productId"]}
    r.step("setup.createMedia")
    r.step("setup.readyRead", roots=MEDIA_ROOTS, variables=read)
    r.step("mutation")
    changed = r.post(
        "mutation Alt($f: [FileUpdateInput!]!) { fileUpdate(files: $f) { userErrors { code } } }",
        {"f": [{"id": product["media"][0]["id"], "alt": variables["media"][0]["alt"]}]},
    )
    assert changed["data"]["fileUpdate"]["userErrors"] == []
    # By the time of the capture's read, another capture had added a second image to the product.
    later = r.capture["downstreamRead"]["data"]["product"]["media"]["nodes"][1:]
    for index, node in enumerate(later):
        r.map(node["id"], r.sandbox.add_image(product["legacy_id"], f"later-{index}.png", node["alt"])["id"])
    r.step("downstreamRead", roots=MEDIA_ROOTS, variables=read)


@scenario("2025-01/products/product-delete-media-parity.json")
def _delete_media(r: Replay) -> None:
    variables = r.capture["mutation"]["variables"]
    kept = r.capture["downstreamRead"]["data"]["product"]["media"]["nodes"][0]
    product = r.product(
        variables["productId"],
        images=[{"filename": "front.png", "alt": "Front view"}, {"filename": "png.png", "alt": kept["alt"]}],
    )
    r.map(variables["mediaIds"][0], product["media"][0]["id"])
    r.map(kept["id"], product["media"][1]["id"])
    r.step("mutation")
    deleted = r.post(
        "mutation Del($ids: [ID!]!) { fileDelete(fileIds: $ids) { userErrors { code } } }",
        {"ids": [product["media"][0]["id"]]},
    )
    assert deleted["data"]["fileDelete"]["userErrors"] == []
    r.step("downstreamRead", roots=MEDIA_ROOTS, variables={"id": variables["productId"]})


@scenario("2025-01/products/product-invalid-search-query-syntax.json")
def _invalid_search(r: Replay) -> None:
    run = r.capture["run"]
    created = r.capture["captures"]["productCreate"]
    product_gid = body_of(created)["data"]["productCreate"]["product"]["id"]
    r.product(product_gid, title=run["productTitle"], tags=[run["productTag"]])
    for label in r.capture["captures"]:
        r.step(f"captures.{label}")


@scenario("2025-01/products/product-nested-connections.json")
def _nested_connections(r: Replay) -> None:
    reads = r.capture["reads"]
    product_gid = reads["productMediaFirst"]["variables"]["productId"]
    edges = body_of(reads["productMediaFirst"])["data"]["product"]["media"]["edges"]
    r.product(
        product_gid, images=[{"filename": f"nested-{i}.png", "alt": e["node"]["alt"]} for i, e in enumerate(edges)]
    )
    for label in ("setup", "reads.variantSorts", "reads.collectionSorts", "reads.variantMedia"):
        r.step(label)
    roots = {"product": "product(id: $productId)"}
    first = r.step("reads.productMediaFirst", roots=roots)
    assert first is not None
    # The page after the first edge, with the sandbox's own cursor for it.
    cursor = first["data"]["product"]["media"]["edges"][0]["cursor"]
    r.step(
        "reads.productMediaAfter",
        roots=roots,
        aliases={"media": f"media(first: {len(edges)}, after: $after)"},
        variables={**reads["productMediaAfter"]["variables"], "after": cursor},
    )


@scenario("2025-01/products/product-reorder-media-parity.json")
def _reorder(r: Replay) -> None:
    setup = r.capture["setup"]
    product_gid = body_of(setup["productCreate"])["data"]["productCreate"]["product"]["id"]
    nodes = body_of(setup["readyRead"])["data"]["product"]["media"]["nodes"]
    product = r.product(
        product_gid, images=[{"filename": f"reorder-{i}.png", "alt": n.get("alt") or ""} for i, n in enumerate(nodes)]
    )
    for node, seeded in zip(nodes, product["media"], strict=True):
        r.map(node["id"], seeded["id"])
    r.step("setup.productCreate")
    r.step("setup.productCreateMedia")
    read = {"id": product_gid}
    r.step("setup.readyRead", roots=MEDIA_ROOTS, variables=read)
    for move in ("singleMove", "orderedMoves"):
        r.step(f"{move}.mutation", roots={"productReorderMedia": "productReorderMedia(id: $id, moves: $moves)"})
        r.clock.advance(P)
        r.step(f"{move}.downstreamRead", roots=MEDIA_ROOTS, variables=read)


@scenario("2025-01/products/product-top-level-media-parity.json")
def _top_level_media(r: Replay) -> None:
    created = body_of(r.capture["validCreate"])["data"]["productCreate"]["product"]
    image = created["media"]["nodes"][0]
    product = r.product(
        created["id"], title=created["title"], images=[{"filename": "png.png", "alt": image["alt"], "processing": True}]
    )
    r.map(image["id"], product["media"][0]["id"])
    r.step("validCreate")
    r.clock.advance(P * 0.75)  # the capture read the image PROCESSING
    update = {"productUpdate": "productUpdate(product: $product, media: $media)"}
    r.step("readAfterValidCreate", roots=MEDIA_ROOTS)
    r.step("validUpdate", roots=update)
    r.step("readAfterValidUpdate", roots=MEDIA_ROOTS)
    r.step("invalidUpdate", roots=update)
    r.step("readAfterInvalidUpdate", roots=MEDIA_ROOTS)
    r.step("invalidCreate")


def _seed_files(r: Replay, captured: list[tuple[str, str, bool]]) -> None:
    """One product holding an image per (captured gid, file name, still processing)."""
    product = r.product(
        None, images=[{"filename": name, "alt": "seed", "processing": processing} for _, name, processing in captured]
    )
    for (gid_, _, _), seeded in zip(captured, product["media"], strict=True):
        r.map(gid_, seeded["id"])


@scenario("2026-04/media/media-file-delete-typed-gid-roundtrip.json")
def _typed_delete(r: Replay) -> None:
    ids = body_of(r.capture["create"])["data"]["fileCreate"]["files"]
    _seed_files(r, [(f["id"], f"typed-{i}.png", False) for i, f in enumerate(ids)])
    r.step("create")
    delete = {"fileDelete": "fileDelete(fileIds: $fileIds)"}
    r.step("deleteActual", roots=delete)
    r.step("deleteWrongType", roots=delete)


FILE_UPDATE = {"fileUpdate": "fileUpdate(files: $files)"}


@scenario("2026-04/media/media-file-update-validation-branches.json")
def _file_update_branches(r: Replay) -> None:
    setup = r.capture["setup"]
    image = body_of(setup["imageCreate"])["data"]["fileCreate"]["files"][0]
    pending = body_of(setup["nonReadyCreate"])["data"]["fileCreate"]["files"][0]
    _seed_files(r, [(image["id"], setup["imageCreate"]["variables"]["files"][0]["filename"], False)])
    for label in ("setup.imageCreate", "setup.videoCreate", "setup.readyVideoRead"):
        r.step(label)
    r.step("setup.readyImageRead", roots={"node": "node(id: $id)"}, variables={"id": image["id"]})
    _seed_files(r, [(pending["id"], setup["nonReadyCreate"]["variables"]["files"][0]["filename"], True)])
    r.step("setup.nonReadyCreate")
    for label in r.capture["branches"]:
        r.step(f"branches.{label}", roots=FILE_UPDATE)


@scenario("2026-04/media/media-file-update-filename-extension-aggregation.json")
def _filename_aggregation(r: Replay) -> None:
    setup = r.capture["setup"]
    created = body_of(setup["imageCreate"])["data"]["fileCreate"]["files"]
    names = [f["filename"] for f in setup["imageCreate"]["variables"]["files"]]
    _seed_files(r, [(f["id"], name, False) for f, name in zip(created, names, strict=True)])
    for label in ("setup.imageCreate", "setup.externalVideoCreate", "setup.reads"):
        r.step(label)
    for label in r.capture["cases"]:
        r.step(f"cases.{label}", roots=FILE_UPDATE)


@scenario("2026-04/media/media-file-update-source-semantics.json")
def _source_semantics(r: Replay) -> None:
    setup = r.capture["setup"]
    image = body_of(setup["imageCreate"])["data"]["fileCreate"]["files"][0]
    _seed_files(r, [(image["id"], setup["imageCreate"]["variables"]["files"][0]["filename"], False)])
    for label in (
        "setup.imageCreate",
        "setup.genericCreate",
        "setup.readyGenericRead",
        "updates.genericOriginalSource",
        "reads",
    ):
        r.step(label)
    r.step("setup.readyImageRead", roots={"node": "node(id: $id)"}, variables={"id": image["id"]})
    update = r.capture["updates"]["imageOriginalSource"]["variables"]["files"][0]
    r.source_url(update["originalSource"], "jpg")
    r.step("updates.imageOriginalSource", roots=FILE_UPDATE)


@scenario("2026-04/media/files-upload-live-capture.json")
def _files_upload(r: Replay) -> None:
    for label in ("create", "readAfterCreate", "readAfterCreatePageTwo", "fileUpdateConflictingSources"):
        r.step(label)
    r.step("stagedUploadsCreate", roots={"stagedUploadsCreate": "stagedUploadsCreate(input: $input)"})


@scenario("2026-04/media/media-staged-uploads-create-default-http-method.json")
def _staged_default_method(r: Replay) -> None:
    for case in r.capture["cases"]:
        r.step(f"cases.{case['name']}")


@scenario("2026-04/media/media-staged-uploads-create-user-errors-shape.json")
def _staged_user_errors(r: Replay) -> None:
    for case in r.capture["cases"]:
        r.step(f"cases.{case['name']}")


@scenario("2026-04/media/staged-upload-targets-parity.json")
def _staged_targets(r: Replay) -> None:
    r.step("schema")
    r.step("stagedUploadsCreate", roots={"stagedUploadsCreate": "stagedUploadsCreate(input: $input)"})


@scenario("2026-04/bulk-operations/bulk-operation-run-query-user-error-codes.json")
def _bulk_user_error_codes(r: Replay) -> None:
    for label in r.capture["validations"]:
        r.step(f"validations.{label}")


@scenario("2026-04/bulk-operations/bulk-operation-run-query-validators.json")
def _bulk_validators(r: Replay) -> None:
    for label in r.capture["validations"]:
        r.step(f"validations.{label}")


def _bulk_run(r: Replay, label: str) -> dict[str, Any] | None:
    """Replay a bulkOperationRunQuery step; the captured operation id now names the sandbox's."""
    answer = r.step(label)
    captured = body_of(at(r.capture, label))["data"]["bulkOperationRunQuery"]["bulkOperation"]
    created = (answer or {}).get("data", {}).get("bulkOperationRunQuery", {}).get("bulkOperation")
    if captured and created:
        r.map(captured["id"], created["id"])
    return created


@scenario("2026-04/bulk-operations/bulk-operation-run-query-concurrency-limit.json")
def _bulk_concurrency(r: Replay) -> None:
    for index in range(len(r.capture["successfulRuns"])):
        _bulk_run(r, f"successfulRuns.{index}")
    _bulk_run(r, "sixthRun")
    for index in range(len(r.capture["upstreamCalls"])):  # reads of the five, still CREATED
        r.step(f"upstreamCalls.{index}")
    for index in range(len(r.capture["cancelAttempts"])):
        r.step(f"cancelAttempts.{index}")


@scenario("2026-04/bulk-operations/bulk-operation-run-query-group-objects.json")
def _bulk_group_objects(r: Replay) -> None:
    runs = r.capture["runs"]
    count = len(next(iter(runs.values()))["result"]["records"])
    for index in range(count):  # the dev store's catalog, as many products (their titles do not matter)
        r.sandbox.add_product(f"Bulk product {index}")
    for name, run in runs.items():
        created = _bulk_run(r, f"runs.{name}.run")
        r.step(f"runs.{name}.statusPolls.0")
        r.clock.advance(60)  # the sandbox takes well under a minute for this catalog
        polled = r.step(f"runs.{name}.statusPolls.1")
        r.step(f"runs.{name}.productCount")
        assert created is not None and polled is not None
        download = httpx.get(polled["data"]["bulkOperation"]["url"], timeout=30)
        records = [json.loads(line) for line in download.text.splitlines()]
        differences = shape_differences(run["result"]["records"], records)
        if download.headers["content-type"] != run["result"]["contentType"]:
            differences.append(f"content type {download.headers['content-type']}")
        r.results.append(StepResult(f"runs.{name}.result", differences, ([], [])))
    r.step("upstreamCalls")


# ============================================================================== the tests


def _capture_names() -> list[str]:
    if not CAPTURES.is_dir():
        return []
    return sorted(str(p.relative_to(CAPTURES)) for p in CAPTURES.rglob("*.json"))


CAPTURE_NAMES = _capture_names()
MATCHED: dict[str, int] = {}  # capture -> number of answers compared (0: not matched)


@pytest.fixture(scope="module")
def real_schema() -> GraphQLSchema:
    from graphql import build_schema

    if not REAL_SCHEMA.exists():
        pytest.skip(f"the real Admin schema is absent ({REAL_SCHEMA}): ../shared is not there")
    return build_schema(REAL_SCHEMA.read_text(encoding="utf-8"), assume_valid=True)


@pytest.fixture
def replay_sandbox() -> Iterator[tuple[ShopifySandbox, FakeClock]]:
    clock = FakeClock(T0)
    sandbox = ShopifySandbox(access_token=TOKEN, processing_seconds=P, clock=clock)
    server = sandbox.start()
    yield sandbox, clock
    server.stop()


@pytest.mark.skipif(not CAPTURE_NAMES, reason=f"no captures: {CAPTURES} is absent (../shared is not there)")
@pytest.mark.parametrize("name", CAPTURE_NAMES or ["<none>"])
def test_capture(name: str, real_schema: GraphQLSchema, replay_sandbox: tuple[ShopifySandbox, FakeClock]) -> None:
    if name in DELIBERATE_DIFFERENCES:
        MATCHED[name] = 0
        pytest.skip(f"deliberate difference: {DELIBERATE_DIFFERENCES[name]}")
    assert name in SCENARIOS, f"capture {name} has no scenario and no DELIBERATE_DIFFERENCES entry"
    sandbox, clock = replay_sandbox
    capture = json.loads((CAPTURES / name).read_text(encoding="utf-8"))
    replay = Replay(name, capture, sandbox, clock, real_schema)
    MATCHED[name] = 0
    SCENARIOS[name](replay)
    problems = replay.report()
    assert replay.results, "no step was replayed"
    assert not problems, "\n".join(problems)
    MATCHED[name] = len(replay.results)


def test_every_deliberate_difference_names_a_capture() -> None:
    if not CAPTURE_NAMES:
        pytest.skip(f"no captures: {CAPTURES} is absent")
    for key in DELIBERATE_DIFFERENCES:
        assert key.split("::")[0] in CAPTURE_NAMES, key


def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Printed last (pytest -s shows it): how many captures the sandbox answers like Shopify."""
    if not CAPTURE_NAMES:
        pytest.skip(f"no captures: {CAPTURES} is absent")
    matched = sorted(n for n, ok in MATCHED.items() if ok)
    with capsys.disabled():
        print(f"\ncaptures matched: {len(matched)} / {len(CAPTURE_NAMES)}")
        for name in CAPTURE_NAMES:
            state = (
                f"matched ({MATCHED[name]} answers compared)"
                if MATCHED.get(name)
                else f"skipped: {DELIBERATE_DIFFERENCES[name]}"
                if name in DELIBERATE_DIFFERENCES
                else "not matched"
            )
            print(f"  {name}: {state}")
