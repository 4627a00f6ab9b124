"""The GraphQL documents the Shopify client sends: complete, minimal, valid for the real schema."""

from __future__ import annotations

import pytest
from graphql import FragmentDefinitionNode, FragmentSpreadNode, Visitor, parse, validate, visit

from retouch.plugin.shopify.client import IDEMPOTENT_MUTATIONS
from retouch.plugin.shopify.operations import all_operations, operation, operation_kind
from shopify_testkit import SCHEMA_PATH, real_schema


def _spreads(document) -> set[str]:
    names: set[str] = set()

    class Collect(Visitor):
        def enter_fragment_spread(self, node: FragmentSpreadNode, *_):
            names.add(node.name.value)

    visit(document, Collect())
    return names


def test_every_operation_validates_against_the_real_schema():
    schema = real_schema()
    if schema is None:
        pytest.skip(f"real Admin schema not found at {SCHEMA_PATH} (../shared is absent)")
    operations = all_operations()
    assert len(operations) >= 12
    for name, document in operations.items():
        errors = validate(schema, parse(document))
        assert not errors, f"{name}: {[e.message for e in errors]}"


def test_documents_define_exactly_the_fragments_they_spread():
    for name, document in all_operations().items():
        parsed = parse(document)
        defined = [d.name.value for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)]
        assert len(defined) == len(set(defined)), f"{name} defines a fragment twice"
        assert set(defined) == _spreads(parsed), name


def test_fragments_are_appended_transitively():
    # ProductsPage spreads only ProductFields; MediaFields comes in through ProductFields.
    products_page = parse(operation("ProductsPage"))
    defined = [d.name.value for d in products_page.definitions if isinstance(d, FragmentDefinitionNode)]
    assert defined == ["ProductFields", "MediaFields"]
    media = parse(operation("Media"))
    assert [d.name.value for d in media.definitions if isinstance(d, FragmentDefinitionNode)] == ["MediaFields"]
    assert "fragment" not in operation("Shop")


def test_each_document_holds_its_named_operation_first():
    for name, document in all_operations().items():
        first = parse(document).definitions[0]
        assert first.name.value == name


def test_unknown_operation_is_a_key_error():
    with pytest.raises(KeyError):
        operation("NoSuchOperation")


def test_retry_policy_covers_every_mutation():
    # Every mutation is either declared idempotent or is the one we must never repeat blindly.
    mutations = {name for name in all_operations() if operation_kind(name) == "mutation"}
    assert IDEMPOTENT_MUTATIONS <= mutations
    # (WebhookSubscriptionCreate: a lost answer is settled by the next start's list, not a retry;
    # BulkProductsRun: a second run is a second operation, holding one of the app's five slots.)
    assert mutations - IDEMPOTENT_MUTATIONS == {"ProductAddMedia", "WebhookSubscriptionCreate", "BulkProductsRun"}
    assert operation_kind("ProductsPage") == "query"


def test_bulk_products_query_is_valid_and_reads_what_paged_discovery_reads():
    from retouch.plugin.shopify.operations import bulk_products_query

    document = parse(bulk_products_query())
    text = bulk_products_query()
    # Bulk queries refuse `nodes`, pagination arguments and variables (captured userErrors INVALID).
    assert (
        "nodes" not in text and "pageInfo" not in text and "first" not in text and "$" not in text.replace("$app", "")
    )
    assert "fragment" not in text and "edges" in text
    paged = operation("ProductsPage")
    # Every leaf field the paged documents select is selected by the bulk query too.
    leaf = lambda doc: {
        line.strip()
        for line in doc.splitlines()
        if line.strip() and not line.strip().endswith(("{", "}")) and not line.strip().startswith("...")
    }
    assert leaf(paged) - {"hasNextPage", "endCursor"} <= leaf(text)
    schema = real_schema()
    if schema is None:
        pytest.skip(f"real Admin schema not found at {SCHEMA_PATH} (../shared is absent)")
    assert not validate(schema, document)
