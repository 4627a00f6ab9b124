"""`retouch check`: the config is valid; Shopify and the provider answer and accept our credentials."""

from __future__ import annotations

import typer

from retouch.plugin.providers.aigenstudio import errors as provider_errors
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyError

from ..config import Settings
from ..runtime import open_context

# A status request for an id that cannot exist: 404 proves the key is accepted (401 would not);
# it costs one poll of the hourly quota, nothing else.
PROBE_ID = "00000000-0000-0000-0000-000000000000"


async def check_command(settings: Settings) -> int:
    ok = True
    typer.echo(f"config: {settings.path} ok ({'sandbox' if settings.provider_is_sandbox else 'live'} provider key)")
    async with open_context(settings) as ctx:
        try:
            shop = await ctx.shopify.shop()
            typer.echo(f"shopify: ok — {shop.name} ({shop.domain}), API {settings.shop.api_version}")
        except ShopifyAuthError:
            ok = False
            typer.echo("shopify: the access token was rejected — check [shop] access_token and its scopes "
                       "(read_products, write_products, write_files)")
        except ShopifyError as exc:
            ok = False
            typer.echo(f"shopify: cannot reach {settings.shop.url}: {exc}")
        try:
            presets = await ctx.provider.list_presets()
            await ctx.provider.get_enhancement(PROBE_ID)
        except provider_errors.NotFound:
            ids = {p.id for p in presets}
            if settings.aigenstudio.preset not in ids:
                ok = False
                typer.echo(f"provider: preset {settings.aigenstudio.preset!r} is not offered ({', '.join(sorted(ids))})")
            else:
                typer.echo(f"provider: ok — {settings.provider.name} at {settings.provider_base_url}, key accepted")
        except provider_errors.AuthenticationFailed:
            ok = False
            typer.echo("provider: the API key was rejected — check [provider] api_key")
        except provider_errors.AigenError as exc:
            ok = False
            typer.echo(f"provider: cannot reach {settings.provider_base_url}: {exc}")
        else:
            typer.echo("provider: unexpected answer to the key check")
            ok = False
    return 0 if ok else 1
