"""The query inside `bulkOperationRunQuery`: Shopify's bulk validators, and the plan to run it.

`check(query, schema, describe)` answers the userErrors Shopify gives for a query it will not run
(field ["query"], code INVALID), in Shopify's words, from the captures
2026-04/bulk-operations/bulk-operation-run-query-validators.json and -user-error-codes.json:
- a syntax error: "Invalid bulk query: syntax error, unexpected end of file";
- a mutation (or subscription): "Invalid operation type. Only `query` operations are supported." alone;
- then every structural rule that fails, in this order: a top-level `node` field; no connection;
  more than 5 connections; connections nested deeper than 2; a connection selected through `nodes`
  instead of `edges { node }`; a connection's parent `node` without an unaliased `id`; a
  connection inside a list field;
- then the query must be valid for the sandbox's schema ("Invalid bulk query: <message>").

The structural rules are checked before the schema, and are read from the document where the
sandbox's schema does not know a field (orders, collections, variants, ...): a field that selects
`edges` or `nodes` is a connection. That is how the captured answers about connections of types
the sandbox does not have come out the same; only "a connection within a list field" needs the
schema to know the list (a difference listed in tests/integration/test_shopify_captures.py).

`plan(query, schema)` describes a valid query for `bulk_export`: its one root connection and,
below each connection's `node`, the nested connections whose nodes become lines of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    is_list_type,
    is_non_null_type,
    parse,
    validate,
)
from graphql.error import GraphQLSyntaxError

from .cost import selected_fields

MAX_CONNECTIONS = 5
MAX_DEPTH = 2
INVALID = "INVALID"


@dataclass(frozen=True)
class Connection:
    """A connection field of the bulk query and what its `edges { node }` select."""

    key: str  # response key (alias or name)
    field: FieldNode
    node_type: Any  # the node's GraphQL type, None where the sandbox's schema does not know it
    nodes: tuple[FieldNode, ...]  # the `node` fields under `edges`
    via_nodes: bool  # selected through `nodes` (which bulk queries do not allow)
    within_list: bool  # below a list field
    node_selects_id: bool  # the node selects `id` without an alias
    children: tuple[Connection, ...] = ()

    def walk(self, depth: int = 1) -> Iterator[tuple[Connection, int]]:
        yield self, depth
        for child in self.children:
            yield from child.walk(depth + 1)


@dataclass(frozen=True)
class Plan:
    document: DocumentNode
    root: Connection
    fragments: tuple[FragmentDefinitionNode, ...]


class _Reader:
    """Finds the connections of a document, with the schema's types where it knows them."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        self.schema = schema
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}

    def fields(self, parent: Any, node: FieldNode | OperationDefinitionNode) -> Iterator[tuple[FieldNode, Any]]:
        return selected_fields(self.schema, self.fragments, parent, node.selection_set)

    @staticmethod
    def type_of(parent: Any, node: FieldNode) -> Any:
        definition = getattr(parent, "fields", {}).get(node.name.value) if parent is not None else None
        return definition.type if definition is not None else None

    def connections(
        self, parent: Any, node: FieldNode | OperationDefinitionNode, within_list: bool = False
    ) -> list[Connection]:
        found: list[Connection] = []
        for child, owner in self.fields(parent, node):
            if child.selection_set is None:
                continue
            gtype = self.type_of(owner, child)
            named = get_named_type(gtype) if gtype is not None else None
            selected = {f.name.value for f, _ in self.fields(named, child)}
            if named.name.endswith("Connection") if named is not None else bool(selected & {"edges", "nodes"}):
                found.append(self.connection(child, named, within_list))
            else:
                unwrapped = gtype.of_type if gtype is not None and is_non_null_type(gtype) else gtype
                found += self.connections(
                    named, child, within_list or (unwrapped is not None and is_list_type(unwrapped))
                )
        return found

    def connection(self, node: FieldNode, named: Any, within_list: bool) -> Connection:
        edges = [(f, owner) for f, owner in self.fields(named, node) if f.name.value == "edges"]
        edge_type = get_named_type(self.type_of(named, edges[0][0])) if edges and named is not None else None
        nodes = [f for edge, _ in edges for f, _ in self.fields(edge_type, edge) if f.name.value == "node"]
        node_type = get_named_type(self.type_of(edge_type, nodes[0])) if nodes and edge_type is not None else None
        children = [c for n in nodes for c in self.connections(node_type, n)]
        selects_id = any(f.name.value == "id" and f.alias is None for n in nodes for f, _ in self.fields(node_type, n))
        via_nodes = any(f.name.value == "nodes" for f, _ in self.fields(named, node))
        return Connection(
            key=(node.alias or node.name).value,
            field=node,
            node_type=node_type,
            nodes=tuple(nodes),
            via_nodes=via_nodes,
            within_list=within_list,
            node_selects_id=selects_id,
            children=tuple(children),
        )


def _query_error(message: str, code: str = INVALID) -> dict[str, Any]:
    return {"field": ["query"], "message": message, "code": code}


def _syntax_message(error: GraphQLSyntaxError) -> str:
    """graphql-core's "Syntax Error: Unexpected <EOF>." in the words of Shopify's Ruby parser."""
    text = error.message.removeprefix("Syntax Error: ").rstrip(".")
    text = text.replace("<EOF>", "end of file")
    return f"Invalid bulk query: syntax error, {text[:1].lower()}{text[1:]}"


@lru_cache(maxsize=64)
def _parse(query: str) -> DocumentNode:
    return parse(query)


def _operation(document: DocumentNode) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return operations[0] if len(operations) == 1 else None


def check(
    query: str, schema: GraphQLSchema, describe: Callable[[GraphQLError, DocumentNode], dict[str, Any]]
) -> list[dict[str, Any]]:
    """The userErrors for `query` (empty: Shopify would run it). `describe` words a schema
    validation error as the GraphQL endpoint does."""
    try:
        document = _parse(query)
    except GraphQLSyntaxError as error:
        return [_query_error(_syntax_message(error))]
    operation = _operation(document)
    if operation is None:  # no capture: several operations, or none, in one bulk query
        return [_query_error("Invalid bulk query: the document must hold exactly one operation")]
    if operation.operation is not OperationType.QUERY:
        return [_query_error("Invalid operation type. Only `query` operations are supported.")]
    reader = _Reader(schema, document)
    roots = reader.connections(schema.query_type, operation)
    every = [(c, depth) for root in roots for c, depth in root.walk()]
    errors = []
    if any(f.name.value == "node" for f, _ in reader.fields(schema.query_type, operation)):
        errors.append(_query_error("Bulk queries cannot contain a top level `node` field."))
    if not every:
        errors.append(_query_error("Bulk queries must contain at least one connection."))
    if len(every) > MAX_CONNECTIONS:
        errors.append(_query_error(f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."))
    if any(depth > MAX_DEPTH for _, depth in every):
        errors.append(
            _query_error(f"Bulk queries cannot contain connections with a nesting depth greater than {MAX_DEPTH}.")
        )
    via_nodes = [c.key for c, _ in every if c.via_nodes or not c.nodes]
    if via_nodes:
        errors.append(
            _query_error(
                "All connection fields in a bulk query must select their contents using 'edges' > 'node', e.g: "
                f"'{via_nodes[0]} {{ edges {{ node {{'. Selecting via 'nodes' is not supported. "
                f"Invalid connection fields: {', '.join(repr(k) for k in via_nodes)}."
            )
        )
    without_id = [c.key for c, _ in every if c.children and not c.node_selects_id]
    if without_id:
        errors.append(
            _query_error(
                "The parent 'node' field for a nested connection must select the 'id' field without an alias and "
                f"must be of 'ID' return type. Connection fields without 'id': {', '.join(without_id)}."
            )
        )
    if any(c.within_list for c, _ in every):
        errors.append(
            _query_error("Queries that contain a connection field within a list field are not currently supported.")
        )
    if errors:
        return errors
    problems = validate(schema, document)
    if problems:
        return [_query_error(f"Invalid bulk query: {describe(p, document)['message']}") for p in problems]
    if len(roots) > 1:  # no capture: the sandbox runs one root connection per bulk query
        return [_query_error("Invalid bulk query: the sandbox runs one top-level connection per bulk query")]
    return []


def plan(query: str, schema: GraphQLSchema) -> Plan:
    """The plan of a query `check` accepted."""
    document = _parse(query)
    operation = _operation(document)
    assert operation is not None
    (root,) = _Reader(schema, document).connections(schema.query_type, operation)
    fragments = tuple(d for d in document.definitions if isinstance(d, FragmentDefinitionNode))
    return Plan(document=document, root=root, fragments=fragments)
