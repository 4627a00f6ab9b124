"""Query cost and the leaky bucket — an approximation of Shopify's calculated query cost.

Rules (shopify.dev "API rate limits", simplified; the numbers in the captures come close):
- a scalar or enum field costs 0; `__typename` costs 0;
- an object (or interface) field costs 1 plus its selection; a plain list of objects counts once;
- a connection (`…Connection` type) costs 2 + size × (cost of one node), where size is `first`
  or `last`; `edges`/`pageInfo` themselves are free, a node costs 1 plus its selection;
- a mutation field costs 10 plus the selection of its payload (the payload object is free); the
  bulk operation mutations cost a flat 10 (captured); a bulk operation's own run costs nothing;
- `userErrors`/`mediaUserErrors` are free;
- a count (`productsCount`, type `Count`) costs a flat 10 (captured: requested and actual 10).
The requested cost is computed before execution from the document and variables; the actual cost
counts only what was returned (null objects and short pages cost less) and never exceeds it.

Also checked before execution, as Shopify does: every connection needs `first` or `last`, at most
250; a query may cost at most 1000. `analyze` is pure; `ActualCost` is graphql-core middleware;
`LeakyBucket` takes a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLResolveInfo,
    GraphQLSchema,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    get_named_type,
    is_leaf_type,
    is_list_type,
    is_non_null_type,
)
from graphql.utilities import get_operation_ast, value_from_ast_untyped

MAX_QUERY_COST = 1000
MAX_PAGE_SIZE = 250
MUTATION_COST = 10
CONNECTION_COST = 2
FREE_FIELDS = frozenset({"userErrors", "mediaUserErrors"})
# Payloads whose mutation costs a flat 10 whatever it selects (bulk-operation-run-query-*.json and
# the bulkOperationCancel answers there: requested and actual 10 with `bulkOperation { ... }`).
FLAT_PAYLOADS = frozenset({"BulkOperationRunQueryPayload", "BulkOperationCancelPayload"})
# Shopify counts (bulk-operation-run-query-group-objects.json's productsCount reads: 10 each).
COUNT_TYPE, COUNT_COST = "Count", 10


@dataclass
class Analysis:
    requested: int
    problems: list[GraphQLError] = field(default_factory=list)


def _is_connection(type_name: str) -> bool:
    return type_name.endswith("Connection")


def selected_fields(
    schema: GraphQLSchema,
    fragments: Mapping[str, FragmentDefinitionNode],
    parent: Any,
    selection_set: SelectionSetNode | None,
    seen: frozenset[str] = frozenset(),
) -> Iterator[tuple[FieldNode, Any]]:
    """(field node, parent type) pairs of a selection set, through fragments (`parent` may be None
    where the type is unknown; a fragment's type condition names the parent of its fields)."""
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection, parent
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            subtype = schema.get_type(condition.name.value) if condition else parent
            yield from selected_fields(schema, fragments, subtype or parent, selection.selection_set, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in seen:
                continue
            subtype = schema.get_type(fragment.type_condition.name.value) or parent
            yield from selected_fields(schema, fragments, subtype, fragment.selection_set, seen | {name})


class _Analyzer:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]) -> None:
        self.schema = schema
        self.variables = dict(variables)
        self.fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self.problems: list[GraphQLError] = []

    def fields(self, parent: Any, selection_set: SelectionSetNode | None) -> Iterator[tuple[FieldNode, Any]]:
        return selected_fields(self.schema, self.fragments, parent, selection_set)

    def selection_cost(self, parent: Any, selection_set: SelectionSetNode | None, path: list[str]) -> int:
        return sum(self.field_cost(p, node, path) for node, p in self.fields(parent, selection_set))

    def argument(self, node: FieldNode, name: str) -> Any:
        for arg in node.arguments or ():
            if arg.name.value == name:
                value = value_from_ast_untyped(arg.value, self.variables)
                return None if value is Undefined else value  # a declared variable left out is null
        return None

    def page_size(self, node: FieldNode, path: list[str]) -> int:
        first, last = self.argument(node, "first"), self.argument(node, "last")
        if first is None and last is None:
            self.problem("you must provide one of first or last", node, path)
            return 0
        size = 0
        for name, value in (("first", first), ("last", last)):
            if value is None:
                continue
            if not isinstance(value, int) or value < 0:
                self.problem(f"{name} must be a non-negative integer", node, path)
            elif value > MAX_PAGE_SIZE:
                # No capture of this answer; wording is the sandbox's own.
                self.problem(
                    f"The connection cannot be queried for more than {MAX_PAGE_SIZE} records ({name}: {value}).",
                    node,
                    path,
                )
            else:
                size = max(size, value)
        return size

    def problem(self, message: str, node: FieldNode, path: list[str]) -> None:
        self.problems.append(GraphQLError(message, nodes=[node], path=list(path)))

    @staticmethod
    def type_of(parent: Any, node: FieldNode) -> Any:
        """The named type of field `node` on `parent`, None if unknown (validation reports it)."""
        definition = getattr(parent, "fields", {}).get(node.name.value)
        return get_named_type(definition.type) if definition is not None else None

    def field_cost(self, parent: Any, node: FieldNode, path: list[str]) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields or name in FREE_FIELDS:
            return 0
        named = get_named_type(fields[name].type)
        if is_leaf_type(named):
            return 0
        if named.name == COUNT_TYPE:
            return COUNT_COST
        here = [*path, node.alias.value if node.alias else name]
        if _is_connection(named.name):
            size = self.page_size(node, here)
            node_cost = 0  # the dearest of `nodes { … }` and `edges { node { … } }`
            for child, connection in self.fields(named, node.selection_set):
                child_type = self.type_of(connection, child)
                child_path = [*here, child.name.value]
                if child.name.value == "nodes" and child_type is not None:
                    node_cost = max(node_cost, 1 + self.selection_cost(child_type, child.selection_set, child_path))
                elif child.name.value == "edges" and child_type is not None:
                    for edge_child, edge in self.fields(child_type, child.selection_set):
                        node_type = self.type_of(edge, edge_child)
                        if edge_child.name.value == "node" and node_type is not None:
                            node_cost = max(
                                node_cost, 1 + self.selection_cost(node_type, edge_child.selection_set, child_path)
                            )
            return CONNECTION_COST + size * node_cost
        return 1 + self.selection_cost(named, node.selection_set, here)


def analyze(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any] | None
) -> Analysis:
    """Requested cost of the operation, and the problems that stop it before execution."""
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return Analysis(requested=0)
    analyzer = _Analyzer(schema, document, variables or {})
    if operation.operation is OperationType.MUTATION:
        root = schema.mutation_type
        total = 0
        for node, parent in analyzer.fields(root, operation.selection_set):
            if node.name.value.startswith("__"):
                continue
            payload = analyzer.type_of(parent, node)
            here = [node.alias.value if node.alias else node.name.value]
            flat = payload is None or payload.name in FLAT_PAYLOADS
            total += MUTATION_COST + (0 if flat else analyzer.selection_cost(payload, node.selection_set, here))
    else:
        total = analyzer.selection_cost(schema.query_type, operation.selection_set, [])
    return Analysis(requested=total, problems=analyzer.problems)


class ActualCost:
    """graphql-core middleware that adds up the cost of what the resolvers actually returned."""

    def __init__(self) -> None:
        self.total = 0

    def resolve(self, next_: Callable[..., Any], root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        result = next_(root, info, **args)
        if result is not None:
            self.total += self.charge(info, result)
        return result

    @staticmethod
    def charge(info: GraphQLResolveInfo, result: Any) -> int:
        return_type = info.return_type
        named = get_named_type(return_type)
        if is_leaf_type(named) or info.field_name in FREE_FIELDS or info.parent_type.name in FLAT_PAYLOADS:
            return 0
        if info.parent_type is info.schema.mutation_type:
            return MUTATION_COST
        if named.name == COUNT_TYPE:
            return COUNT_COST
        if _is_connection(named.name):
            return CONNECTION_COST
        if named.name.endswith("Edge") or named.name == "PageInfo":
            return 0
        parent = info.parent_type.name
        nullable = return_type.of_type if is_non_null_type(return_type) else return_type
        if is_list_type(nullable):
            items = [item for item in result if item is not None]
            if _is_connection(parent) and info.field_name == "nodes":
                return len(items)
            return 1 if items else 0
        return 1


class LeakyBucket:
    """Shopify's cost bucket: holds up to `size` points, refills at `restore_rate` per second."""

    def __init__(self, size: float, restore_rate: float, clock: Callable[[], float]) -> None:
        self.size = float(size)
        self.restore_rate = float(restore_rate)
        self._clock = clock
        self._available = self.size
        self._at = clock()

    def available(self) -> float:
        now = self._clock()
        self._available = min(self.size, self._available + max(0.0, now - self._at) * self.restore_rate)
        self._at = now
        return self._available

    def take(self, points: float) -> bool:
        """Take `points` if the bucket holds them (nothing taken otherwise)."""
        if points > self.available():
            return False
        self._available -= points
        return True

    def give_back(self, points: float) -> None:
        self._available = min(self.size, self.available() + points)

    def drain(self) -> None:
        self.available()
        self._available = 0.0

    def status(self) -> dict[str, float | int]:
        return {
            "maximumAvailable": _number(self.size),
            "currentlyAvailable": int(self.available()),
            "restoreRate": _number(self.restore_rate),
        }


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value
