"""[[rules]]: the matchers, first-match order, validation (one line naming the rule and key), and the
pipeline: a rule that skips, a rule that changes the preset (the provider sandbox receives it), the
recorded rule surviving a reload, product facts read in the product query with no extra request."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from conftest import cli, config_text, pipeline_settings, run_async
from retouch.plugin.providers.aigenstudio.plugin import AigenSettings
from retouch.storage.models import ImageState
from retouch.sync.config import ConfigError, load_settings
from retouch.sync.rules import ProductFacts, Rule, RuleSettings, first_match, matches, validate_rules

SUMMER = """
[[rules]]
name = "summer"
tags = ["summer"]
preset = "marketplace_clean_catalog"

[[rules]]
vendors = ["Acme"]
skip = true
"""


def rule(**conditions) -> RuleSettings:
    return RuleSettings.model_validate(conditions)


def test_each_matcher_and_all_given_must_match() -> None:
    shirt = ProductFacts(
        tags=("Summer", "sale"),
        product_type="Shirts",
        vendor="Acme",
        status="ACTIVE",
        collections=("summer-2026", "Summer 2026"),
    )
    assert matches(rule(), shirt)  # no condition: every product
    assert matches(rule(tags=["summer"]), shirt) and not matches(rule(tags=["winter"]), shirt)
    assert matches(rule(product_types=["shirts"]), shirt) and not matches(rule(product_types=["Hats"]), shirt)
    assert matches(rule(vendors=["ACME"]), shirt) and not matches(rule(vendors=["Other"]), shirt)
    assert matches(rule(status=["active"]), shirt) and not matches(rule(status=["draft"]), shirt)
    assert matches(rule(collections=["summer-2026"]), shirt) and matches(rule(collections=["summer 2026"]), shirt)
    assert not matches(rule(collections=["winter"]), shirt)
    assert matches(rule(tags=["winter", "sale"]), shirt)  # any value of one condition
    assert matches(rule(tags=["sale"], vendors=["Acme"], status=["ACTIVE"]), shirt)
    assert not matches(rule(tags=["sale"], vendors=["Other"]), shirt)  # every condition given


def test_the_first_match_wins() -> None:
    rules = [Rule(1, rule(tags=["summer"], name="a")), Rule(2, rule(vendors=["Acme"])), Rule(3, rule())]
    assert first_match(rules, ProductFacts(tags=("summer",), vendor="Acme")).number == 1
    assert first_match(rules, ProductFacts(vendor="Acme")).number == 2
    assert first_match(rules, ProductFacts()).label == "#3"
    assert first_match(rules[:2], ProductFacts()) is None
    assert rules[0].label == "#1 (a)"


@pytest.mark.parametrize(
    "rules, expected",
    [
        ('[[rules]]\ntags = ["x"]\n\n[[rules]]\npreset = "glossy"\n', "[[rules]] #2 preset: Input should be"),
        ('[[rules]]\nvendor = ["Acme"]\n', "[[rules]] #1 vendor: not a condition nor an option a rule can set"),
        ('[[rules]]\nbatch_size = 3\n', "[[rules]] #1 batch_size: not a condition nor an option"),
        ('[[rules]]\nstatus = ["live"]\n', "[[rules]] #1 status: 'live' is not a product status"),
        ('[[rules]]\ntags = "summer"\n', "[[rules]] #1 tags: Input should be a valid list"),
        (
            '[[rules]]\nskip = true\npreset = "clean_catalog_group"\n',
            "[[rules]] #1 skip: a rule that skips sets no options",
        ),
        ('rules = 3\n', "[[rules]]: write each rule as a [[rules]] table"),
    ],
)
def test_a_bad_rule_is_one_line_naming_the_rule_and_key(
    shop, provider, tmp_path: Path, rules: str, expected: str
) -> None:
    config = tmp_path / "config.toml"
    text = config_text(shop, provider, tmp_path)
    config.write_text(rules + text if rules.startswith("rules =") else text + rules)
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value).startswith(expected), str(caught.value)


def test_a_bad_rule_stops_the_cli_with_exit_2(shop, provider, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(config_text(shop, provider, tmp_path) + '[[rules]]\npreset = "glossy"\n')
    done = cli("check", config=config)
    assert done.returncode == 2 and done.stderr.startswith("config error: [[rules]] #1 preset:")
    assert "Traceback" not in done.stderr


def test_options_for_other_providers_are_checked_against_their_table() -> None:
    # A model beyond ProductAI's list is accepted (the vendor adds models); a malformed name is not.
    with pytest.raises(ValueError, match=r"\[\[rules\]\] #1 model: 'dall e 3!' is not a model name"):
        validate_rules(
            [{"model": "dall e 3!"}],
            "productai",
            {},
            __import__("retouch.plugin.providers.productai.plugin", fromlist=["x"]).ProductAISettings,
        )
    (ok,) = validate_rules([{"preservation_level": "creative"}], "aigenstudio", {}, AigenSettings)
    assert ok.settings.options == {"preservation_level": "creative"}


def _seed(shop) -> dict[str, dict]:
    products = {
        "summer": shop.add_product("Summer dress", tags=["summer"], images=[{"filename": "dress.jpg"}]),
        "acme": shop.add_product("Acme anvil", images=[{"filename": "anvil.jpg"}]),
        "plain": shop.add_product("Plain mug", images=[{"filename": "mug.jpg"}]),
    }
    shop.set_product_facts(products["acme"]["legacy_id"], vendor="Acme", product_type="Tools", status="ACTIVE")
    return products


def test_rules_decide_what_is_sent_and_what_is_skipped(shop, provider, tmp_path: Path) -> None:
    from retouch.sync.pipeline import discover
    from retouch.sync.runtime import open_context, run_until_settled

    products = _seed(shop)
    settings = pipeline_settings(shop, provider, tmp_path, extra=SUMMER)

    async def scenario():
        async with open_context(settings) as ctx:
            operations: list[str] = []
            execute = ctx.shopify.execute

            async def counted(name, *args, **kwargs):
                operations.append(name)
                return await execute(name, *args, **kwargs)

            ctx.shopify.execute = counted
            await discover(ctx)
            ctx.shopify.execute = execute
            await run_until_settled(ctx)
            return operations, {i.product_legacy_id: i for i in ctx.store.images_in_state(*ImageState)}

    operations, images = run_async(scenario())
    by_product = {name: images[str(p["legacy_id"])] for name, p in products.items()}
    assert by_product["acme"].state == "skipped" and by_product["acme"].error_code == "rule_skip"
    assert by_product["acme"].error_message == "rule #2 skips this product"
    assert by_product["summer"].state == "done" and by_product["plain"].state == "done"
    assert json.loads(by_product["summer"].rule)["rule"] == "#1 (summer)" and by_product["plain"].rule is None
    # The provider received the rule's preset for the summer dress, and its own for the mug.
    sent = {tuple(job["external_ids"]): job["preset"] for job in provider.enhancements()}
    assert sent == {
        (str(products["summer"]["legacy_id"]),): "marketplace_clean_catalog",
        (str(products["plain"]["legacy_id"]),): "single_product_white_background",
    }
    # Vendor, type and status came with the products: one page for three products, no call per product.
    assert operations.count("ProductsPage") == 1 and "Product" not in operations, operations


def test_the_recorded_rule_survives_a_reload_mid_flight(shop, provider, tmp_path: Path) -> None:
    from retouch.sync.pipeline import discover, submit
    from retouch.sync.runtime import open_context

    products = _seed(shop)
    settings = pipeline_settings(shop, provider, tmp_path, extra=SUMMER)
    reloaded = pipeline_settings(shop, provider, tmp_path)  # the same file with the rules removed
    assert reloaded.rules == ()

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)  # queued under the rules
            ctx.settings = dataclasses.replace(reloaded)
            while await submit(ctx):
                pass

    run_async(scenario())
    sent = {tuple(job["external_ids"]): job["preset"] for job in provider.enhancements()}
    assert sent[(str(products["summer"]["legacy_id"]),)] == "marketplace_clean_catalog"
    assert (str(products["acme"]["legacy_id"]),) not in sent  # skipped when it was queued


def test_rules_test_shows_the_rule_a_product_meets(shop, provider, write_config) -> None:
    products = _seed(shop)
    config = write_config(extra=SUMMER)
    summer = cli("rules", "test", "--product", str(products["summer"]["legacy_id"]), config=config)
    assert summer.returncode == 0, summer.stderr
    assert "Summer dress" in summer.stdout and "rule #1 (summer) matches" in summer.stdout
    assert '"preset": "marketplace_clean_catalog"' in summer.stdout
    acme = cli("rules", "test", "--product", str(products["acme"]["legacy_id"]), config=config)
    assert "vendor 'Acme'" in acme.stdout and "rule #2 matches: its images are skipped" in acme.stdout
    plain = cli("rules", "test", "--product", str(products["plain"]["legacy_id"]), config=config)
    assert "no rule matches" in plain.stdout and '"preset": "single_product_white_background"' in plain.stdout
    assert cli("rules", "test", "--product", "999999", config=config).returncode == 1


CATALOG_RULE = """
[[rules]]
name = "catalog"
collections = ["catalog"]
preset = "clean_catalog_group"
"""


def _in_collections(shop) -> dict[str, dict]:
    """A product in the "catalog" collection, one in twelve collections (its eleventh is "catalog":
    beyond the first page of ten), and one in none."""
    products = {
        name: shop.add_product(title, images=[{"filename": f"{name}.jpg"}])
        for name, title in (("listed", "Listed lamp"), ("crowded", "Crowded chair"), ("alone", "Lone vase"))
    }
    ids = {name: p["legacy_id"] for name, p in products.items()}
    for n in range(10):
        shop.add_collection(f"Theme {n}", products=[ids["crowded"]])
    shop.add_collection("Catalog", handle="catalog", products=[ids["listed"], ids["crowded"]])
    shop.add_collection("Sale", products=[ids["crowded"]])
    return products


def _rules_of(settings, products) -> dict[str, str | None]:
    from retouch.sync.runtime import open_context

    async def scenario():
        async with open_context(settings) as ctx:
            from retouch.sync.pipeline import discover

            counts = await discover(ctx)
            images = {i.product_legacy_id: i for i in ctx.store.images_in_state(*ImageState)}
            return counts, {
                name: (json.loads(images[str(p["legacy_id"])].rule or "null") or {}).get("rule")
                for name, p in products.items()
            }

    return run_async(scenario())


def test_collection_membership_comes_with_the_paged_products(shop, provider, tmp_path: Path) -> None:
    products = _in_collections(shop)
    before = dict(shop.stats()["operations"])
    counts, rules = _rules_of(pipeline_settings(shop, provider, tmp_path, extra=CATALOG_RULE), products)
    assert rules == {"listed": "#1 (catalog)", "crowded": "#1 (catalog)", "alone": None}
    calls = {k: v - before.get(k, 0) for k, v in shop.stats()["operations"].items() if v - before.get(k, 0)}
    # One page for the three products; one more call only for the product in more than ten collections.
    assert calls.get("ProductsPage") == 1 and calls.get("ProductCollectionsPage") == 1, calls
    assert "Product" not in calls and counts["queued"] == 3


def test_collection_membership_comes_in_the_bulk_export(shop, provider, tmp_path: Path, monkeypatch) -> None:
    import asyncio

    from retouch.sync.pipeline import bulk

    monkeypatch.setattr(bulk, "_sleep", asyncio.sleep)  # the sandbox's operation takes real (short) time
    products = _in_collections(shop)
    path = tmp_path / "config.toml"
    path.write_text(
        config_text(shop, provider, tmp_path, new_only=False, extra=CATALOG_RULE).replace(
            "[shop]\n", "[shop]\nbulk_threshold = 3\n", 1
        )
    )
    before = dict(shop.stats()["operations"])
    counts, rules = _rules_of(load_settings(path), products)
    assert counts["bulk"] == 1
    assert rules == {"listed": "#1 (catalog)", "crowded": "#1 (catalog)", "alone": None}
    calls = {k: v - before.get(k, 0) for k, v in shop.stats()["operations"].items() if v - before.get(k, 0)}
    # Every collection line came in the export: no product, page or collections call per product.
    assert not {"ProductsPage", "Product", "ProductCollectionsPage"} & set(calls), calls
