"""The GraphQL documents the Shopify client sends, loaded from `operations/*.graphql`.

Each `operations/<Name>.graphql` file holds exactly one operation named `<Name>`; fragments shared
between operations live in `operations/_fragments.graphql`. A document sent to Shopify must contain
every fragment it spreads and no other (GraphQL rejects unused fragments), so `operation(name)`
appends the fragments the operation uses, transitively, found by walking the parsed syntax tree.
Documents are parsed and assembled once and cached.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, Literal

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    SelectionNode,
    SelectionSetNode,
    Visitor,
    parse,
    print_ast,
    visit,
)

FRAGMENTS_FILE = "_fragments.graphql"
# Pagination arguments and fields a bulk query must not carry (Shopify pages it by itself).
_PAGING_ARGUMENTS = frozenset({"first", "after", "last", "before"})
_DIRECTORY = "operations"


class _SpreadCollector(Visitor):
    """Collects the names of the fragments spread directly inside one definition."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_args: object) -> None:
        if node.name.value not in self.names:
            self.names.append(node.name.value)


def _spread_names(node: OperationDefinitionNode | FragmentDefinitionNode) -> list[str]:
    collector = _SpreadCollector()
    visit(node, collector)
    return collector.names


def _read(filename: str) -> str:
    return (resources.files(__package__) / _DIRECTORY / filename).read_text(encoding="utf-8")


def _operation_names() -> list[str]:
    folder = resources.files(__package__) / _DIRECTORY
    return sorted(
        entry.name.removesuffix(".graphql")
        for entry in folder.iterdir()
        if entry.name.endswith(".graphql") and not entry.name.startswith("_")
    )


@cache
def _fragments() -> dict[str, FragmentDefinitionNode]:
    document = parse(_read(FRAGMENTS_FILE))
    fragments: dict[str, FragmentDefinitionNode] = {}
    for definition in document.definitions:
        if not isinstance(definition, FragmentDefinitionNode):
            raise ValueError(f"{FRAGMENTS_FILE} may only hold fragments")
        fragments[definition.name.value] = definition
    return fragments


@cache
def _definition(name: str) -> OperationDefinitionNode:
    try:
        source = _read(f"{name}.graphql")
    except FileNotFoundError:
        raise KeyError(f"unknown Shopify operation {name!r}") from None
    document = parse(source)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or len(document.definitions) != 1 or operations[0].name is None:
        raise ValueError(f"{name}.graphql must hold exactly one named operation and nothing else")
    if operations[0].name.value != name:
        raise ValueError(f"{name}.graphql defines {operations[0].name.value!r}; the file name must match")
    return operations[0]


def _fragments_used(root: OperationDefinitionNode) -> list[FragmentDefinitionNode]:
    """The fragments `root` spreads, directly or through other fragments, in order of first use."""
    fragments = _fragments()
    used: list[str] = []
    pending = _spread_names(root)
    while pending:
        name = pending.pop(0)
        if name in used:
            continue
        if name not in fragments:
            raise ValueError(f"operation {root.name.value if root.name else '?'} spreads unknown fragment {name!r}")
        used.append(name)
        pending.extend(_spread_names(fragments[name]))
    return [fragments[name] for name in used]


@cache
def operation(name: str) -> str:
    """The complete document for operation `name`: the operation followed by the fragments it uses."""
    root = _definition(name)
    return print_ast(DocumentNode(definitions=(root, *_fragments_used(root))))


def operation_kind(name: str) -> Literal["query", "mutation"]:
    """Whether operation `name` is a query or a mutation (the client's retry policy depends on it)."""
    kind = _definition(name).operation
    if kind is OperationType.QUERY:
        return "query"
    if kind is OperationType.MUTATION:
        return "mutation"
    raise ValueError(f"operation {name!r} is a {kind.value}; only queries and mutations are supported")


def all_operations() -> dict[str, str]:
    """Every operation in `operations/`, by name, as complete documents."""
    return {name: operation(name) for name in _operation_names()}


def _inline_fragments(selection_set: SelectionSetNode) -> SelectionSetNode:
    """`selection_set` with every fragment spread replaced by the fragment's body as an inline
    fragment (`... on Type { … }`), recursively, so the bulk query is one self-contained document."""
    fragments = _fragments()
    selections = []
    for selection in selection_set.selections:
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments[selection.name.value]
            selection = InlineFragmentNode(
                type_condition=fragment.type_condition, selection_set=fragment.selection_set, directives=()
            )
        inner = getattr(selection, "selection_set", None)
        if inner is not None:
            selection = selection.__class__(
                **{**{k: getattr(selection, k) for k in selection.keys}, "selection_set": _inline_fragments(inner)}
            )
        selections.append(selection)
    return SelectionSetNode(selections=tuple(selections))


def _as_bulk_connections(selection_set: SelectionSetNode) -> SelectionSetNode:
    """Connections written for paging (`field(first:, after:) { pageInfo … nodes { … } }`) in the
    form bulk queries demand: no paging arguments, no pageInfo, `edges { node { … } }`."""
    selections: list[SelectionNode] = []
    for selection in selection_set.selections:
        inner = getattr(selection, "selection_set", None)
        if inner is not None:
            inner = _as_bulk_connections(inner)
            if isinstance(selection, FieldNode):
                names: dict[str, Any] = {getattr(s, "name", NameNode(value="")).value: s for s in inner.selections}
                if "nodes" in names and "pageInfo" in names:
                    node = FieldNode(
                        name=NameNode(value="node"),
                        arguments=(),
                        directives=(),
                        selection_set=names["nodes"].selection_set,
                    )
                    edges = FieldNode(
                        name=NameNode(value="edges"),
                        arguments=(),
                        directives=(),
                        selection_set=SelectionSetNode(selections=(node,)),
                    )
                    selection = FieldNode(
                        alias=selection.alias,
                        name=selection.name,
                        directives=selection.directives,
                        arguments=tuple(a for a in selection.arguments or () if a.name.value not in _PAGING_ARGUMENTS),
                        selection_set=SelectionSetNode(selections=(edges,)),
                    )
                    selections.append(selection)
                    continue
            selection = selection.__class__(
                **{**{k: getattr(selection, k) for k in selection.keys}, "selection_set": inner}
            )
        selections.append(selection)
    return SelectionSetNode(selections=tuple(selections))


@cache
def bulk_products_query() -> str:
    """The inner query of `BulkProductsRun`: every product with every media, derived from the
    paged `ProductsPage` (same `ProductFields`/`MediaFields` selection, fragments inlined, its
    connections in bulk form), so a JSONL line parses with the same `parse_product`/`parse_media`."""
    root = _definition("ProductsPage")
    (products,) = root.selection_set.selections
    assert isinstance(products, FieldNode) and products.selection_set is not None
    # ProductsPage filters and sorts `products` through variables; a bulk query has none and reads
    # the whole catalog (the order of its lines is Shopify's anyway).
    bulk = FieldNode(
        name=products.name, arguments=(), directives=(), selection_set=_inline_fragments(products.selection_set)
    )
    query = OperationDefinitionNode(
        operation=OperationType.QUERY,
        variable_definitions=(),
        directives=(),
        selection_set=_as_bulk_connections(SelectionSetNode(selections=(bulk,))),
    )
    return print_ast(DocumentNode(definitions=(query,)))
