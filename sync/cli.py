"""`retouch` command line: run, resync, status, revert, check, sandbox, demo, init, backups, rules, review.

Exit codes: 0 success, 1 work that failed (an image, a check), 2 usage or config error — a
config error is one line naming the key, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from retouch.storage.store import StorageError

from . import __version__
from .config import ConfigError, Settings, load_settings
from .logs import configure

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Enhance a Shopify store's new product images with an AI service, and write them back.",
)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "-c",
        "--config",
        help="Config file (default: $RETOUCH_CONFIG, ./config.toml, /etc/retouch/config.toml)",
        show_default=False,
    ),
]
ProductOption = Annotated[
    list[str] | None, typer.Option("--product", help="Product id (numeric or gid); repeatable", show_default=False)
]

T = TypeVar("T")


class OnInterrupt(str, Enum):
    """What `resync` does on Ctrl-C with the images still queued (sync/commands/resync.py)."""

    leave = "leave"
    take_back = "take-back"


# A switch takes no value: shown without a type (typer would print `<bool>`) and without a default.
FLAG = {"metavar": "", "show_default": False}
PROVIDERS = "aigenstudio, imagen, productai"  # listed in --provider's help (registry.py holds the plugins)


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        typer.echo(f"config error: {exc}", err=True)
        raise typer.Exit(2) from None
    except (OSError, ValueError) as exc:
        # A path the config or the environment ($STATE_DIRECTORY, the working directory) leads to that
        # the system refuses (a name too long, a NUL, a deleted directory): still one line, exit 2.
        reason = getattr(exc, "strerror", None) or str(exc)
        where = getattr(exc, "filename", None)
        line = (
            f"{str(where)[:200]}: cannot be used ({reason})"
            if where
            else f"{config or 'the config'}: a path it leads to cannot be used ({reason}); "
            "give [storage] url as an absolute path"
        )
        typer.echo(f"config error: {line}", err=True)
        raise typer.Exit(2) from None
    configure(settings.log.level, settings.log.format, settings.secrets())
    return settings


def _run(coro_factory: Callable[[], Any]) -> Any:
    try:
        return asyncio.run(coro_factory())
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def product_gid(value: str) -> str:
    value = value.strip()
    if value.startswith("gid://shopify/Product/"):
        return value
    if value.isdigit():
        return f"gid://shopify/Product/{value}"
    raise typer.BadParameter(
        f"{value!r} is not a product id (a number or gid://shopify/Product/N)", param_hint="--product"
    )


@app.command(epilog="Example: retouch run -c config.toml   (Ctrl-C stops it; systemd runs it as a service)")
def run(
    config: ConfigOption = None,
    take_over: Annotated[
        bool,
        typer.Option(
            "--take-over", help="Take the store from another retouch whose claim has lapsed (never a live one)", **FLAG
        ),
    ] = False,
) -> None:
    """Run the daemon in the foreground (systemd runs this)."""
    settings = _settings(config)
    from .commands.run import run_daemon

    raise typer.Exit(_run(lambda: run_daemon(settings, take_over=take_over)))


@app.command(epilog="Example: retouch resync --all --dry-run   (what it would send, cost and take; sends nothing)")
def resync(
    config: ConfigOption = None,
    product: ProductOption = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Also queue images that existed before the first run", **FLAG)
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Re-enhance done images from their backed-up originals", **FLAG)
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent and its cost; send nothing", **FLAG)
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation", **FLAG)] = False,
    max_credits: Annotated[
        int | None, typer.Option("--max-credits", min=1, help="Spend at most this much (in the provider's unit)")
    ] = None,
    on_interrupt: Annotated[
        OnInterrupt | None,
        typer.Option(
            "--on-interrupt",
            show_default=False,
            help="On Ctrl-C, leave the images still queued for the daemon, or take them back out "
            "(default: ask on a terminal; leave otherwise)",
        ),
    ] = None,
) -> None:
    """Rescan the store ignoring the cursor, queue what is not done, and run until it is finished.

    Ctrl-C stops it cleanly, says what is still queued (images, credits, money) and asks whether to leave
    it for the daemon or take it back out of the queue."""
    settings = _settings(config)
    from .commands.database import announce
    from .commands.resync import resync_command

    announce(settings)
    product_ids = [product_gid(p) for p in product] if product else None
    raise typer.Exit(
        _run(
            lambda: resync_command(
                settings,
                product_ids=product_ids,
                include_baseline=all_,
                force=force,
                dry_run=dry_run,
                yes=yes,
                max_credits=max_credits,
                on_interrupt=on_interrupt.value if on_interrupt else None,
            )
        )
    )


@app.command(epilog="Example: retouch status --json")
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output", **FLAG)] = False,
) -> None:
    """Counts per state, jobs in flight, last discovery, quota left, queue ETA, recent failures."""
    settings = _settings(config)
    from .commands.database import require_database
    from .commands.status import collect_status, print_status

    require_database(settings)
    report = collect_status(settings)
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    else:
        print_status(report)


@app.command(epilog="Example: retouch revert --product 8123456789   (or: retouch revert --all --dry-run)")
def revert(
    config: ConfigOption = None,
    product: ProductOption = None,
    all_: Annotated[bool, typer.Option("--all", help="Revert every product", **FLAG)] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be reverted; change nothing", **FLAG)
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (--all asks)", **FLAG)] = False,
) -> None:
    """Put the original images back (byte-identical to the backup) and forget the marker."""
    from .commands.revert import revert_command

    if not product and not all_:
        typer.echo("error: name products with --product ID, or use --all", err=True)
        raise typer.Exit(2)
    product_ids = None if all_ else [product_gid(p) for p in product or []]
    settings = _settings(config)
    from .commands.database import require_database

    require_database(settings)
    raise typer.Exit(_run(lambda: revert_command(settings, product_ids, dry_run=dry_run, yes=yes or not all_)))


@app.command(epilog="Example: retouch retry --product 8123456789")
def retry(
    config: ConfigOption = None,
    product: ProductOption = None,
    failed: Annotated[bool, typer.Option("--failed", help="Requeue failed images (the default)", **FLAG)] = True,
) -> None:
    """Requeue failed images from the step that failed (a result already paid for is reused)."""
    settings = _settings(config)
    from .commands.database import require_database
    from .commands.retry import retry_command

    require_database(settings)

    product_ids = [product_gid(p) for p in product] if product else None
    raise typer.Exit(retry_command(settings, product_ids))


@app.command(epilog="Example: retouch password   (or: echo \"$PASSWORD\" | retouch password)")
def password(
    config: ConfigOption = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Make up a strong password and print it once", **FLAG)
    ] = False,
) -> None:
    """Set the review page's password (asked twice, or read from standard input); kept only as a hash."""
    settings = _settings(config)
    from .commands.database import require_database
    from .commands.password import password_command

    require_database(settings)
    raise typer.Exit(password_command(settings, generate=generate))


@app.command(epilog="Example: retouch check -c /etc/retouch/config.toml")
def check(config: ConfigOption = None) -> None:
    """Validate the config and reach Shopify and the provider; say what is wrong."""
    settings = _settings(config)
    from .commands.check import check_command

    raise typer.Exit(_run(lambda: check_command(settings)))


@app.command()
def sandbox(
    port: Annotated[
        int, typer.Option(help="Shopify sandbox port (the provider sandbox takes the next one); 0 = any")
    ] = 0,
    products: Annotated[int, typer.Option(help="Products to seed")] = 12,
    provider: Annotated[str, typer.Option(help=f"Provider sandbox to start: {PROVIDERS}")] = "aigenstudio",
    config_out: Annotated[
        Path | None, typer.Option("--write-config", help="Also write the config to this file")
    ] = None,
    shopify_profile: Annotated[
        str,
        typer.Option(
            help="Shopify sandbox profile: default, or production (answers as the real Shopify was recorded to)"
        ),
    ] = "default",
    profile: Annotated[
        str,
        typer.Option(
            help="default, or production: the provider sandbox answers in the shapes the real service documents"
        ),
    ] = "default",
) -> None:
    """Start a sandbox store and provider on loopback, print a ready config, serve until Ctrl-C."""
    from .commands.sandbox import sandbox_command

    _known_provider(provider)
    _known_shopify_profile(shopify_profile)
    if profile not in ("default", "production"):
        typer.echo(f"error: --profile: unknown profile {profile!r} (default or production)", err=True)
        raise typer.Exit(2)
    raise typer.Exit(
        sandbox_command(
            provider=provider,
            port=port,
            products=products,
            config_out=config_out,
            shopify_profile=shopify_profile,
            provider_profile=profile,
        )
    )


def _known_shopify_profile(name: str) -> None:
    from retouch.plugin.shopify.sandbox.profiles import PROFILES

    if name not in PROFILES:
        typer.echo(f"error: --shopify-profile: unknown profile {name!r} (available: {', '.join(PROFILES)})", err=True)
        raise typer.Exit(2)


def _known_provider(name: str) -> None:
    from retouch.plugin.providers import registry

    plugins = registry.available()
    if name not in plugins or plugins[name].start_sandbox is None:
        with_sandbox = sorted(n for n, p in plugins.items() if p.start_sandbox is not None)
        typer.echo(f"error: --provider: unknown provider {name!r} (available: {', '.join(with_sandbox)})", err=True)
        raise typer.Exit(2)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the before/after page and the demo's files")] = Path(
        "retouch-demo"
    ),
    products: Annotated[int, typer.Option(min=1, max=200, help="Products in the sandbox store")] = 12,
    provider: Annotated[
        str, typer.Option(help=f"Enhancement service to demo (its built-in sandbox): {PROVIDERS}")
    ] = "aigenstudio",
    mode: Annotated[str, typer.Option(help="Write-back mode: replace or append")] = "replace",
    price_per_credit: Annotated[
        float | None,
        typer.Option(min=0, help="What one credit costs you, to show money beside credits ([budget] price_per_credit)"),
    ] = None,
    currency: Annotated[str, typer.Option(help="The money's currency on the page, e.g. EUR")] = "",
    review: Annotated[
        bool,
        typer.Option("--review", help="Results wait for you on the live review page (/ui/) instead; Ctrl-C ends it"),
    ] = False,
) -> None:
    """Enhance a sandbox store end to end with the real daemon code; write a before/after page."""
    from .commands.demo import demo_command

    _known_provider(provider)
    if mode not in ("replace", "append"):
        typer.echo(f"error: --mode: {mode!r} is not replace or append", err=True)
        raise typer.Exit(2)
    if len(currency) > 8 or not all(c.isalnum() for c in currency):
        typer.echo(f"error: --currency: {currency!r} is not a currency code like EUR", err=True)
        raise typer.Exit(2)
    raise typer.Exit(
        _run(
            lambda: demo_command(
                out=out,
                products=products,
                provider=provider,
                mode=mode,
                price_per_credit=price_per_credit,
                currency=currency,
                review=review,
            )
        )
    )


@app.command()
def init(
    shop: Annotated[str | None, typer.Option(help="The store: your-store.myshopify.com")] = None,
    client_id: Annotated[str | None, typer.Option(help="Dev Dashboard app's Client ID")] = None,
    client_secret: Annotated[str | None, typer.Option(help="Dev Dashboard app's Client secret")] = None,
    access_token: Annotated[
        str | None, typer.Option(help="Legacy: token of an app made in the admin before 2026")
    ] = None,
    provider: Annotated[
        str | None, typer.Option(help=f"Enhancement service: {PROVIDERS} (default aigenstudio)")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="The provider's API key")] = None,
    provider_url: Annotated[str | None, typer.Option(help="The provider's base URL, when not its default")] = None,
    out: Annotated[Path, typer.Option(help="Config file to write")] = Path("config.toml"),
    credentials_dir: Annotated[
        Path | None, typer.Option(help="Write the secrets here as systemd credential files; the config then names none")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite existing files")] = False,
    yes: Annotated[bool, typer.Option(help="Never ask: every answer comes from the flags")] = False,
    check: Annotated[bool, typer.Option(help="Run `retouch check` on the new config")] = True,
) -> None:
    """Write a config (mode 0600) from your answers or flags, then check it."""
    from .commands.init import Answers, init_command

    answers = Answers(
        shop=shop,
        client_id=client_id,
        client_secret=client_secret,
        access_token=access_token,
        provider=provider,
        api_key=api_key,
        provider_url=provider_url,
    )
    raise typer.Exit(
        _run(
            lambda: init_command(
                answers, out=out, credentials_dir=credentials_dir, force=force, yes=yes, run_check=check
            )
        )
    )


backups_app = typer.Typer(
    add_completion=False,
    invoke_without_command=True,
    help="The originals kept for revert: count, size, and pruning by \\[backup] keep.",
)
app.add_typer(backups_app, name="backups")


@backups_app.callback(invoke_without_command=True)
def backups(
    context: typer.Context,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Count and size of the backed-up originals, how many \\[backup] keep lets go, free disk space."""
    if context.invoked_subcommand is not None:
        return
    settings = _settings(config)
    from .commands.backups import backups_summary, print_summary
    from .commands.database import require_database

    require_database(settings)
    summary = backups_summary(settings)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        print_summary(summary)


@backups_app.command("prune")
def backups_prune(
    config: ConfigOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be deleted; delete nothing")] = False,
) -> None:
    """Delete the originals of images done longer ago than \\[backup] keep and never reverted."""
    settings = _settings(config)
    from .commands.backups import prune_command
    from .commands.database import require_database

    require_database(settings)
    raise typer.Exit(prune_command(settings, dry_run))


rules_app = typer.Typer(add_completion=False, no_args_is_help=True, help="\\[\\[rules]]: per-product choices.")
app.add_typer(rules_app, name="rules")


@rules_app.command("test")
def rules_test(
    product: Annotated[str, typer.Option("--product", help="Product id (numeric or gid)")], config: ConfigOption = None
) -> None:
    """Which rule an existing product meets (first match wins), and what it would send."""
    settings = _settings(config)
    from .commands.rules import rules_test_command

    raise typer.Exit(_run(lambda: rules_test_command(settings, product_gid(product))))


review_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Review before publish (\\[review] mode = \"all\"): results waiting for your approval.",
)
app.add_typer(review_app, name="review")
ImageIds = Annotated[
    list[int] | None,
    typer.Argument(help="Image numbers, as `retouch review list` shows them", metavar="ID", show_default=False),
]
ReviewProduct = Annotated[
    str | None, typer.Option("--product", help="A product: its id or its title", show_default=False)
]
ReviewAll = Annotated[bool, typer.Option("--all", help="Every image waiting for review", **FLAG)]


def _review_settings(
    config: Path | None, ids: list[int] | None, product: str | None, all_: bool, needs_choice: bool = True
) -> Settings:
    if needs_choice and not ids and product is None and not all_:
        typer.echo("error: name images by number (retouch review list), or use --product or --all", err=True)
        raise typer.Exit(2)
    settings = _settings(config)
    from .commands.database import require_database

    require_database(settings)
    return settings


@review_app.command("list", epilog="Example: retouch review list --product 'Blue mug'")
def review_list(config: ConfigOption = None, product: ReviewProduct = None) -> None:
    """Results waiting for your approval: product, file, provider, credits, where before/after are."""
    settings = _review_settings(config, None, product, False, needs_choice=False)
    from .commands.review import list_command

    raise typer.Exit(list_command(settings, product))


@review_app.command("approve", epilog="Example: retouch review approve 12 14   (or --product 8123456789, --all)")
def review_approve(
    ids: ImageIds = None, config: ConfigOption = None, product: ReviewProduct = None, all_: ReviewAll = False
) -> None:
    """Let these results go to the store (the daemon writes them, as reviewed)."""
    settings = _review_settings(config, ids, product, all_)
    from .commands.review import approve_command

    raise typer.Exit(approve_command(settings, ids or [], product, all_))


@review_app.command("reject", epilog="Example: retouch review reject 12 --reason 'label cut off'")
def review_reject(
    ids: ImageIds = None,
    config: ConfigOption = None,
    product: ReviewProduct = None,
    all_: ReviewAll = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept with the image)")] = None,
) -> None:
    """Never write these results; the originals stay in the store."""
    settings = _review_settings(config, ids, product, all_)
    from .commands.review import reject_command

    raise typer.Exit(reject_command(settings, ids or [], product, all_, reason))


@review_app.command("redo", epilog="Example: retouch review redo 12 --preset marketplace_clean_catalog")
def review_redo(
    ids: ImageIds = None,
    config: ConfigOption = None,
    product: ReviewProduct = None,
    all_: ReviewAll = False,
    preset: Annotated[
        str | None, typer.Option("--preset", help="Another preset (AI Gen Studio preset, Imagen profile)")
    ] = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Other instructions (AI Gen Studio, ProductAI)")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation", **FLAG)] = False,
) -> None:
    """Enhance these images again, a new paid attempt, after showing what it costs."""
    settings = _review_settings(config, ids, product, all_)
    from .commands.review import redo_command

    raise typer.Exit(redo_command(settings, ids or [], product, all_, preset, prompt, yes))


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print the version")] = False) -> None:
    if version:
        typer.echo(f"retouch {__version__}")
        raise typer.Exit(0)


def main() -> None:
    from .logs import REDACTOR
    from .redacted_output import scrub_standard_streams

    scrub_standard_streams(REDACTOR.scrub_text)
    try:
        app()
    except ConfigError as exc:  # a config problem found after start-up (e.g. a credential file)
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    except StorageError as exc:  # the database named by [storage] url cannot be used: one line, no traceback
        print(f"database error: {exc}", file=sys.stderr)
        sys.exit(1)
