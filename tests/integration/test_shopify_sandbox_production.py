"""The Shopify sandbox's `production` profile answers where the real Shopify is less kind, as
recorded (../shared/reference/shopify/NOTES.md, "Where the sandbox must not be kinder than
Shopify"): partial fileUpdate, ALT_VALUE_LIMIT_EXCEEDED over 512, a silent reorder of a media that
is gone, a lagging search index, webhook address rules, `$app:` namespaces stored resolved. Each
test also shows the default profile's answer, so the difference is explicit."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.plugin.shopify.sandbox.profiles import profile_named
from test_shopify_sandbox import clock, data, make_sandbox, media_ids  # noqa: F401  (fixtures)

PROFILES = ["default", "production"]


def _alts(sandbox: ShopifySandbox, legacy_id) -> list[str]:
    return [m["alt"] for m in sandbox.product(legacy_id)["media"]]


@pytest.mark.parametrize("profile", PROFILES)
def test_file_update_applies_the_valid_rows_and_names_each_bad_one(make_sandbox, profile) -> None:  # noqa: F811
    sandbox = make_sandbox(profile=profile)
    (product,) = sandbox.seed(products=1, images_per_product=3, seed=41)
    first, second, third = (m["id"] for m in product["media"])
    sandbox.delete_media(third.rsplit("/", 1)[-1])
    files = [{"id": first, "alt": "front"}, {"id": second, "alt": "x" * 513}, {"id": third, "alt": "gone"}]
    answer = data(sandbox, "FileUpdate", {"files": files})["fileUpdate"]
    errors = [(e["field"], e["code"]) for e in answer["userErrors"]]
    if profile == "production":
        assert [f["id"] for f in answer["files"]] == [first]
        assert errors == [(["files", "1", "alt"], "ALT_VALUE_LIMIT_EXCEEDED"), (["files"], "FILE_DOES_NOT_EXIST")]
        assert json.dumps([third]) in answer["userErrors"][1]["message"]  # the missing id, as captured
        assert _alts(sandbox, product["legacy_id"])[0] == "front"
    else:  # all or nothing: the missing file refuses the call
        assert answer["files"] == [] and errors == [(["files"], "FILE_DOES_NOT_EXIST")]
        assert _alts(sandbox, product["legacy_id"])[0] != "front"
    at_limit = data(sandbox, "FileUpdate", {"files": [{"id": second, "alt": "y" * 512}]})["fileUpdate"]
    assert at_limit["userErrors"] == [] and _alts(sandbox, product["legacy_id"])[1] == "y" * 512


@pytest.mark.parametrize("profile", PROFILES)
def test_reordering_a_media_that_is_gone(make_sandbox, clock, profile) -> None:  # noqa: F811
    sandbox = make_sandbox(profile=profile)
    (product,) = sandbox.seed(products=1, images_per_product=3, seed=42)
    ids = [m["id"] for m in product["media"]]
    sandbox.delete_media(ids[2].rsplit("/", 1)[-1])
    answer = data(sandbox, "ProductReorderMedia", {"id": product["id"], "moves": [{"id": ids[2], "newPosition": "0"}]})[
        "productReorderMedia"
    ]
    if profile == "production":  # a job and no error; the move does nothing
        assert answer["mediaUserErrors"] == [] and answer["job"]["id"]
        clock.advance(10)
        assert media_ids(sandbox, product["id"]) == ids[:2]
    else:
        assert answer["job"] is None and [e["code"] for e in answer["mediaUserErrors"]] == ["MEDIA_DOES_NOT_EXIST"]


def test_a_search_misses_a_product_changed_less_than_the_lag_ago(make_sandbox, clock) -> None:  # noqa: F811
    sandbox = make_sandbox(profile="production", search_lag_seconds=5)
    product = sandbox.add_product("Lagging Lantern")

    def found(query: str | None) -> list[str]:
        page = data(sandbox, "ProductsPage", {"first": 10, "query": query, "mediaFirst": 5})["products"]
        return [n["id"] for n in page["nodes"]]

    def counted(query: str) -> int:
        return data(sandbox, "ProductsCount", {"query": query})["productsCount"]["count"]

    assert found("title:Lagging*") == [] and counted("title:Lagging*") == 0
    assert found(None) == [product["id"]]  # no search: the catalog itself has it
    clock.advance(5)
    assert found("title:Lagging*") == [product["id"]] and counted("title:Lagging*") == 1
    sandbox.update_product(product["legacy_id"], title="Lagging Lamp")  # a change lags again
    assert found("title:Lagging*") == []
    assert profile_named("production").search_lag_seconds > 0 and profile_named("default").search_lag_seconds == 0


WEBHOOK_URIS = [
    ("http://127.0.0.1:8099/webhooks/shopify", "refused"),
    ("https://10.0.0.8/webhooks/shopify", "refused"),
    ("https://my-store.myshopify.com/webhooks/shopify", "refused"),
    ("https://hooks.example.com/webhooks/shopify", "created"),
]


@pytest.mark.parametrize("profile", PROFILES)
def test_webhook_addresses_on_internal_or_shopify_hosts_are_refused(make_sandbox, profile) -> None:  # noqa: F811
    sandbox = make_sandbox(profile=profile)
    for uri, outcome in WEBHOOK_URIS:
        answer = data(sandbox, "WebhookSubscriptionCreate", {"topic": "PRODUCTS_UPDATE", "uri": uri})
        created = answer["webhookSubscriptionCreate"]
        if profile == "production" and outcome == "refused":
            assert created["webhookSubscription"] is None
            assert [e["message"] for e in created["userErrors"]] == [
                "Address cannot be a Shopify or an internal domain"
            ]
        elif uri.startswith("https://10.") or "myshopify" in uri:
            assert created["webhookSubscription"] is not None  # the default profile is kinder here
        else:
            assert created["userErrors"] == [] and created["webhookSubscription"]["uri"] == uri


@pytest.mark.parametrize("profile, stored", [("default", "$app:retouch"), ("production", "app--347082227713--retouch")])
def test_an_app_namespace_is_stored_resolved(make_sandbox: Callable[..., ShopifySandbox], profile, stored) -> None:  # noqa: F811
    sandbox = make_sandbox(profile=profile)
    (product,) = sandbox.seed(products=1, images_per_product=1, seed=43)
    value = json.dumps({"media_ids": [product["media"][0]["id"]]})
    written = data(
        sandbox,
        "MetafieldsSet",
        {
            "metafields": [
                {
                    "ownerId": product["id"],
                    "namespace": "$app:retouch",
                    "key": "output_media",
                    "type": "json",
                    "value": value,
                    "compareDigest": None,
                }
            ]
        },
    )["metafieldsSet"]
    assert written["userErrors"] == [] and written["metafields"][0]["namespace"] == stored
    assert f"{stored}.output_media" in sandbox.product(product["legacy_id"])["metafields"]
    read = data(sandbox, "Product", {"id": product["id"], "mediaFirst": 5})["product"]  # asks by "$app:retouch"
    assert json.loads(read["marker"]["value"]) == json.loads(value)


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Shopify sandbox profile 'kind'"):
        ShopifySandbox(profile="kind")
