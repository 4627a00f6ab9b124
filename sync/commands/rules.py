"""`retouch rules test --product ID`: which [[rules]] rule an existing product meets, and what it would send."""

from __future__ import annotations

import json

import typer

from ..config import Settings
from ..logs import REDACTOR
from ..rules import facts_of, first_match, options_for
from ..runtime import provider_client, shopify_client

# Added when a job is sent, not chosen by a rule (and the callback URL carries a token).
NOT_SHOWN = ("webhook_url",)


async def rules_test_command(settings: Settings, product_id: str) -> int:
    shopify, provider = shopify_client(settings), provider_client(settings)
    try:
        product = await shopify.get_product(product_id)
        if product is None:
            typer.echo(f"no product {product_id} in the store", err=True)
            return 1
        facts = facts_of(product)
        typer.echo(
            f"{product.title} ({product.id}): tags {list(facts.tags)}, type {facts.product_type!r}, "
            f"vendor {facts.vendor!r}, status {facts.status or '?'}, collections {list(facts.collections)}"
        )
        rule = first_match(settings.rules, facts)
        if rule is None:
            typer.echo(
                f"no rule matches ({len(settings.rules)} rule(s)): the [{settings.provider.name}] table as it is"
            )
            options = provider.request_options()
        elif rule.settings.skip:
            typer.echo(f"rule {rule.label} matches: its images are skipped (nothing is sent)")
            return 0
        else:
            typer.echo(f"rule {rule.label} matches")
            options = options_for(provider, settings.provider_table, rule.settings.options)
        shown = {key: value for key, value in options.items() if key not in NOT_SHOWN}
        typer.echo("would send: " + REDACTOR.scrub(json.dumps(shown, sort_keys=True)))
        return 0
    finally:
        await shopify.aclose()
        await provider.aclose()
