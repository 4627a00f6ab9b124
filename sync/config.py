"""The store owner's TOML file -> validated, typed settings.

Every mistake becomes one `ConfigError` whose message names the key (`[shop] url: …`) and says
what to do; the CLI prints that one line and exits 2. Secrets are resolved here, in this order:
the value in the file, the environment variable named by `*_env`, then a systemd credential
(`$CREDENTIALS_DIRECTORY/<name>`). They are kept as `SecretStr`, so no repr or log shows them.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from retouch.plugin.providers import registry
from retouch.plugin.providers.base import Capabilities, ProviderPlugin, webhook_token
from retouch.plugin.providers.settings import DAY, HOUR, Count, Duration, DurationBetween, Section, parse_duration  # noqa: F401  (re-exported)
from retouch.storage.database_file import database_problem, sqlite_file

from .config_file import CONFIG_MAX_BYTES, UnreadableFile, parse_toml, read_regular_file
from .control_settings import BackupSettings, NotifySettings
from .credentials import read_credential, secret_problem
from .listen import is_loopback_host, is_loopback_listen, parse_listen
from .paths import database_file, resolve_dir
from .paths import database_url as sqlite_url
from .review_settings import ReviewSettings
from .rules import Rule, validate_rules

DEFAULT_CONFIG_PATHS = (Path("config.toml"), Path("/etc/retouch/config.toml"))

# Credential file names under $CREDENTIALS_DIRECTORY (systemd LoadCredential=NAME:PATH).
SHOPIFY_TOKEN_CREDENTIAL = "shopify_access_token"
SHOPIFY_SECRET_CREDENTIAL = "shopify_client_secret"
PROVIDER_KEY_CREDENTIAL = "provider_api_key"


class ConfigError(Exception):
    """A store owner's mistake in the config file: one line, naming the key."""


def _http_url(value: str, *, allow_bare_host: bool = False) -> str:
    """https anywhere; plain http only for loopback hosts (sandboxes on this machine)."""
    text = value.strip().rstrip("/")
    if allow_bare_host and "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (plain http is accepted only for 127.0.0.1/localhost sandboxes)")
    return text


class ShopSettings(Section):
    url: str
    access_token: SecretStr | None = None
    access_token_env: str | None = None
    # A Dev Dashboard app (every app made since 2026): its Client ID and secret, exchanged for
    # tokens that expire (the client credentials grant). Exactly one of this and access_token.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    api_version: str = "2026-07"
    timeout: DurationBetween(0.1, HOUR) = 30.0
    # A pass over the whole catalog (first run, `resync --all`) reads it with one bulk operation
    # when the store has at least this many products; below it, page by page.
    bulk_threshold: Count = Field(2000, ge=1, le=10_000_000)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        url = _http_url(value, allow_bare_host=True)
        host = urlsplit(url).hostname or ""
        if not (host.endswith(".myshopify.com") or is_loopback_host(host)):
            # The Admin API lives on the shop's permanent domain, not on a custom storefront domain.
            raise ValueError(f"{host!r} is not a shop domain; use your-store.myshopify.com")
        return url

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-(01|04|07|10)", value):
            raise ValueError(f"{value!r} is not a Shopify API version like '2026-07'")
        return value


class ProviderSettings(Section):
    name: str = "aigenstudio"
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: DurationBetween(0.1, HOUR) = 30.0
    # Every job's deadline; None: the provider's own default (its Capabilities.max_job_age).
    max_job_age: Duration | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class SelectionSettings(Section):
    new_only: bool = True
    exclude_tags: list[str] = []


class WritebackSettings(Section):
    mode: Literal["replace", "append"] = "replace"
    backup_dir: Path | None = None
    wait_ready: DurationBetween(1.0, DAY) = 600.0

    @field_validator("backup_dir")
    @classmethod
    def _plain_path(cls, value: Path | None) -> Path | None:
        if value is not None and (any(ord(char) < 0x20 for char in str(value)) or len(str(value)) > 4000):
            raise ValueError("the path holds a control character (a NUL, a line break…) or is too long")
        return value


class ScheduleSettings(Section):
    # Lower bounds of a millisecond: the benchmarks scale time down (a 6 s quota window, a 3 ms tick);
    # the upper ones keep every wait finite and within what the event loop and datetime can hold.
    discover_every: DurationBetween(0.001, 30 * DAY) = 300.0
    # Shortest interval between status polls of one job; None: the provider's usual one (AI Gen
    # Studio: its poll quota spread over the window; ProductAI 3 s; Imagen 10 s).
    poll_every: DurationBetween(0.001, DAY) | None = None
    # Products updated this long before the stored cursor are read again, so an update that
    # Shopify indexes late (or a clock difference) is never missed.
    discover_overlap: DurationBetween(0.001, 30 * DAY) = 120.0
    tick: DurationBetween(0.001, HOUR) = 2.0
    # How long SIGTERM waits for in-flight calls before abandoning them safely.
    shutdown_grace: DurationBetween(0.001, HOUR) = 8.0
    # After a 402 (no credits) the next submission is tried this much later.
    credits_retry: DurationBetween(1.0, 30 * DAY) = 600.0


class BudgetSettings(Section):
    """Daily caps on what the provider may charge; reached, submissions wait for the next day."""

    max_credits_per_day: Count | None = Field(None, ge=1, le=1_000_000_000)  # the provider's unit: credits, tokens…
    max_images_per_day: Count | None = Field(None, ge=1, le=10_000_000)
    # What one credit costs the owner, only to show money beside credits before a run (issue 23).
    price_per_credit: float | None = Field(None, ge=0, le=1_000_000)
    currency: str = Field("", max_length=8)


class StorageSettings(Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _sqlite_only(cls, value: str | None) -> str | None:
        if value is not None and "?" in value:
            # SQLAlchemy drops most of them with a warning; uri=true&mode=ro would make it read-only.
            raise ValueError(
                f"{value[value.index('?') :][:60]!r}: retouch takes no URL parameters (it sets SQLite's "
                "options itself); remove them"
            )
        if value is not None:
            database_file(value, Path("/"), None)  # raises PathError (a ValueError) with what to write
        return value


class ClaimSettings(Section):
    """The store claim (sync/claim.py): a daemon not heard of for `lease` no longer holds the store."""

    lease: Duration = Field(120.0, ge=2.0)


class ServerSettings(Section):
    """The daemon's own HTTP server (health, metrics, provider webhooks); off unless `listen` is set."""

    listen: str | None = None
    public_url: str | None = None  # how the provider reaches us: enables webhooks
    allow_public_bind: bool = False
    webhook_skew: DurationBetween(1.0, HOUR) = 300.0
    # With webhooks, polling is only a safety net: this often at most per job.
    safety_poll_every: DurationBetween(1.0, DAY) = 300.0
    # The Shopify app's client secret, which signs product webhooks; with public_url, the daemon
    # subscribes to PRODUCTS_CREATE/UPDATE so a new image is discovered at once.
    shopify_webhook_secret: SecretStr | None = None
    shopify_webhook_secret_env: str | None = None

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parse_listen(value)  # raises ValueError with the reason
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    def listen_is_loopback(self) -> bool:
        return self.listen is not None and is_loopback_listen(self.listen)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _File(Section):
    shop: ShopSettings
    provider: ProviderSettings = ProviderSettings()
    selection: SelectionSettings = SelectionSettings()
    writeback: WritebackSettings = WritebackSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    budget: BudgetSettings = BudgetSettings()
    storage: StorageSettings = StorageSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()
    claim: ClaimSettings = ClaimSettings()
    backup: BackupSettings = BackupSettings()
    notify: NotifySettings = NotifySettings()
    review: ReviewSettings = ReviewSettings()


@dataclass(frozen=True)
class Settings:
    """Validated settings with secrets resolved and paths made absolute."""

    path: Path
    shop: ShopSettings
    provider: ProviderSettings
    provider_table: BaseModel  # the chosen provider's own table, validated by its plugin
    selection: SelectionSettings
    writeback: WritebackSettings
    schedule: ScheduleSettings
    budget: BudgetSettings
    server: ServerSettings
    log: LogSettings
    shop_token: SecretStr | None  # [shop] access_token (legacy), or None with client credentials
    provider_key: SecretStr
    database_url: str
    backup_dir: Path
    secret_sources: dict[str, str] = field(default_factory=dict)  # "[shop] access_token" -> where it was found
    shopify_webhook_secret: SecretStr | None = None  # [server] shopify_webhook_secret, resolved
    shop_client_secret: SecretStr | None = None  # [shop] client_secret, resolved
    claim: ClaimSettings = ClaimSettings()
    backup: BackupSettings = BackupSettings()
    notify: NotifySettings = NotifySettings()
    rules: tuple[Rule, ...] = ()
    review: ReviewSettings = ReviewSettings()

    @property
    def shop_auth(self) -> str:
        """How the Admin API token is obtained: "client_credentials" or "static"."""
        return "client_credentials" if self.shop_client_secret is not None else "static"

    @cached_property
    def plugin(self) -> ProviderPlugin:
        return registry.get(self.provider.name)

    @cached_property
    def capabilities(self) -> Capabilities:
        return self.plugin.capabilities(self.provider_table)

    @property
    def provider_base_url(self) -> str:
        return self.provider.base_url or self.plugin.default_base_url

    @property
    def provider_is_sandbox(self) -> bool:
        return self.plugin.is_sandbox(self.provider_key.get_secret_value(), self.provider_base_url)

    @property
    def public_url(self) -> str | None:
        """[server] public_url when the daemon serves HTTP: how providers reach its webhooks."""
        return self.server.public_url if self.server.listen else None

    @property
    def webhooks(self) -> bool:
        """Does the provider tell us when a job is done (so polling is only a safety net)?"""
        return self.public_url is not None and "webhook" in self.capabilities.completion

    @property
    def shopify_webhooks(self) -> bool:
        """Does the daemon subscribe to Shopify's product webhooks (and accept them)?"""
        return self.public_url is not None and self.shopify_webhook_secret is not None

    @property
    def poll_floor(self) -> float:
        """Shortest interval between two polls of one job: the owner's, else the provider's usual
        one; never below the provider's own floor."""
        caps = self.capabilities
        return max(caps.min_poll_interval, self.schedule.poll_every or caps.poll_interval)

    @property
    def poll_spacing(self) -> float:
        """Shortest interval between the regular polls of one job (the first is at its expected
        end). Where polls are counted by a quota (AI Gen Studio), the quota is the limit, not an
        interval: few jobs fit in a window, each needs a handful of polls spaced by their growing
        age, and the ledger never lets one through beyond the quota; so a job is looked at when it
        should be done, not half a minute later. Otherwise the poll floor."""
        if self.schedule.poll_every is None and self.capabilities.quota.limited("poll"):
            return max(self.capabilities.min_poll_interval, self.schedule.tick)
        return self.poll_floor

    @property
    def max_job_age(self) -> float:
        """A provider job's deadline: [provider] max_job_age, else the provider's declared default."""
        return self.provider.max_job_age or self.capabilities.max_job_age

    @property
    def database_path(self) -> Path:
        """The file SQLite opens (the URL without its ?query, %-escapes decoded)."""
        return sqlite_file(self.database_url)

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction processor."""
        key = self.provider_key.get_secret_value()
        shopify_hooks = [self.shopify_webhook_secret.get_secret_value()] if self.shopify_webhook_secret else []
        shop = [s.get_secret_value() for s in (self.shop_token, self.shop_client_secret) if s is not None]
        return [*shop, key, webhook_token(key), *shopify_hooks, *self.notify.secrets()]


def find_config_path(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get("RETOUCH_CONFIG")
    if env:
        return Path(env)
    for candidate in DEFAULT_CONFIG_PATHS:
        if candidate.exists():
            return candidate
    raise ConfigError(
        "no config file: pass -c PATH, set RETOUCH_CONFIG, or create ./config.toml (see config.example.toml)"
    )


def load_settings(path: Path | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read, validate and resolve the config file; every failure is a one-line ConfigError."""
    environ = dict(os.environ) if environ is None else environ
    path = find_config_path(path)
    try:
        raw = parse_toml(read_regular_file(path, CONFIG_MAX_BYTES))
    except UnreadableFile as exc:
        raise ConfigError(f"{path}: {exc}") from None
    plugins = registry.available()
    # Each provider's table belongs to its plugin; the rest of the file to _File.
    tables = {name: raw.pop(name) for name in list(raw) if name in plugins}
    raw_rules = raw.pop("rules", [])  # [[rules]]: checked against the chosen provider's table below
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(_first(exc.errors()), extra_sections=list(plugins))) from None
    if parsed.provider.name not in plugins:
        raise ConfigError(
            f"[provider] name: unknown provider {parsed.provider.name!r}; choose one of {', '.join(sorted(plugins))}"
        )
    provider_tables = {}
    # Every provider table present is checked, not only the chosen one; the chosen one may be absent.
    for name in sorted({*tables, parsed.provider.name}):
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}]: must be a table")
        try:
            provider_tables[name] = plugins[name].settings_model.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(
                _describe(_first(exc.errors()), section=name, model=plugins[name].settings_model)
            ) from None
    plugin = plugins[parsed.provider.name]
    try:
        rules = validate_rules(raw_rules, plugin.name, tables.get(plugin.name, {}), plugin.settings_model)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    shop_token, client_secret, shop_sources = _shop_credentials(parsed.shop, environ)
    provider_key, provider_key_source = _secret(
        parsed.provider.api_key, parsed.provider.api_key_env, PROVIDER_KEY_CREDENTIAL, "[provider] api_key", environ
    )
    key_problem = plugin.check_key(provider_key.get_secret_value())
    if key_problem:
        raise ConfigError(f"[provider] api_key: {key_problem}")
    try:  # what `run` derives from the provider's table is derived here too, so `check` refuses what `run` would
        plugin.capabilities(provider_tables[plugin.name])
    except ValueError as exc:
        raise ConfigError(f"[{plugin.name}]: {exc}") from None

    server = parsed.server
    hook_secret, hook_source = _optional_secret(
        server.shopify_webhook_secret, server.shopify_webhook_secret_env, "[server] shopify_webhook_secret", environ
    )
    if hook_secret is None and client_secret is not None:
        # The Dev Dashboard app's client secret is also what signs its webhooks.
        hook_secret, hook_source = client_secret, "[shop] client_secret"
    if server.listen and not server.listen_is_loopback() and not (server.public_url or server.allow_public_bind):
        raise ConfigError("[server] listen: binding beyond loopback needs public_url or allow_public_bind = true")

    # Relative paths mean the config file's folder for every command, never the current one (sync/paths.py).
    config_dir = path.resolve().parent
    state_dir = Path(environ["STATE_DIRECTORY"].split(":")[0]) if environ.get("STATE_DIRECTORY") else None
    database_path = database_file(parsed.storage.url, config_dir, state_dir)
    database_url = sqlite_url(database_path)
    if not database_path.parent.is_dir():
        raise ConfigError(f"[storage] url: directory {database_path.parent} does not exist")
    backup_dir = parsed.writeback.backup_dir
    if backup_dir is None:
        backup_dir = database_path.parent / "backups"
    else:
        backup_dir = resolve_dir(backup_dir, config_dir)
    _check_directory(backup_dir, "[writeback] backup_dir")
    _check_database(database_url)
    return Settings(
        path=path.resolve(),
        shop=parsed.shop,
        provider=parsed.provider,
        provider_table=provider_tables[plugin.name],
        selection=parsed.selection,
        writeback=parsed.writeback,
        schedule=parsed.schedule,
        budget=parsed.budget,
        server=parsed.server,
        log=parsed.log,
        shop_token=shop_token,
        provider_key=provider_key,
        database_url=database_url,
        backup_dir=backup_dir,
        secret_sources={
            **shop_sources,
            "[provider] api_key": provider_key_source,
            **({"[server] shopify_webhook_secret": hook_source} if hook_source else {}),
        },
        shopify_webhook_secret=hook_secret,
        shop_client_secret=client_secret,
        claim=parsed.claim,
        backup=parsed.backup,
        notify=parsed.notify,
        rules=tuple(rules),
        review=parsed.review,
    )


def _shop_credentials(
    shop: ShopSettings, environ: dict[str, str]
) -> tuple[SecretStr | None, SecretStr | None, dict[str, str]]:
    """(access token, client secret, where each came from): exactly one of the two ways to connect.

    Client credentials when client_id is set; a static token when access_token(_env) is, or, with
    neither, when a systemd credential of one of them exists."""
    token_given = (shop.access_token is not None and bool(shop.access_token.get_secret_value())) or bool(
        shop.access_token_env
    )
    secret_given = (shop.client_secret is not None and bool(shop.client_secret.get_secret_value())) or bool(
        shop.client_secret_env
    )
    if shop.client_id is not None and not shop.client_id.strip():
        raise ConfigError("[shop] client_id: empty; copy the Client ID from the Dev Dashboard (your app → Settings)")
    if token_given and (shop.client_id or secret_given):
        raise ConfigError(
            "[shop] access_token: set either client_id + client_secret (an app made in the Dev "
            "Dashboard) or access_token (an app made in the admin before 2026), not both"
        )
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    # A credential counts as given when anything stands under its name: a broken one (a directory, a
    # FIFO, an empty file) is then reported by `_secret` for what it is, not as "missing".
    secret_credential = bool(cred_dir) and os.path.lexists(Path(cred_dir or ".") / SHOPIFY_SECRET_CREDENTIAL)
    if secret_given and not shop.client_id:
        raise ConfigError(
            "[shop] client_id: missing; client_secret needs the app's Client ID too "
            "(Dev Dashboard → your app → Settings)"
        )
    if shop.client_id:
        secret, source = _secret(
            shop.client_secret, shop.client_secret_env, SHOPIFY_SECRET_CREDENTIAL, "[shop] client_secret", environ
        )
        return None, secret, {"[shop] client_secret": source}
    token_credential = bool(cred_dir) and os.path.lexists(Path(cred_dir or ".") / SHOPIFY_TOKEN_CREDENTIAL)
    if not token_given and not token_credential:
        try:  # a $CREDENTIALS_DIRECTORY that cannot be looked in is the reason, not a missing key
            read_credential(cred_dir, SHOPIFY_TOKEN_CREDENTIAL, "[shop] access_token")
        except UnreadableFile as exc:
            raise ConfigError(str(exc)) from None
        if secret_credential:
            raise ConfigError(
                "[shop] client_id: missing; the systemd credential shopify_client_secret needs the "
                "app's Client ID in the config (Dev Dashboard → your app → Settings)"
            )
        raise ConfigError(
            "[shop] client_id: missing; set client_id and client_secret (from your app in the Dev "
            "Dashboard), or access_token for an app made in the admin before 2026"
        )
    token, source = _secret(
        shop.access_token, shop.access_token_env, SHOPIFY_TOKEN_CREDENTIAL, "[shop] access_token", environ
    )
    return token, None, {"[shop] access_token": source}


def _secret(
    value: SecretStr | None, env_name: str | None, credential: str, key: str, environ: dict[str, str]
) -> tuple[SecretStr, str]:
    """The secret and where it came from (for `retouch check`; never the value)."""
    if value is not None and value.get_secret_value():
        if env_name:
            # Two sources for one secret: whichever we picked, the owner may be rotating the other.
            raise ConfigError(f"{key}_env: {key.split()[-1]} is set too; keep only one of them")
        return _header_safe(value.get_secret_value(), key, "the config file"), "the config file"
    if env_name:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,127}", env_name):
            raise ConfigError(f"{key}_env: {env_name[:60]!r} is not an environment variable name (letters, digits, _)")
        from_env = environ.get(env_name)
        if not from_env:
            raise ConfigError(f"{key}_env: environment variable {env_name} is not set or empty")
        source = f"environment variable {env_name}"
        return _header_safe(from_env.strip(), f"{key}_env", source), source
    try:
        from_credential = read_credential(environ.get("CREDENTIALS_DIRECTORY"), credential, key) if credential else None
    except UnreadableFile as exc:
        raise ConfigError(str(exc)) from None
    if from_credential is not None:
        source = f"systemd credential {credential}"
        return _header_safe(from_credential, key, source), source
    raise ConfigError(
        f"{key}: missing; set {key.split()[-1]}, {key.split()[-1]}_env, or a systemd credential named {credential}"
    )


def _header_safe(value: str, key: str, source: str) -> SecretStr:
    """A secret goes into HTTP headers (and an HMAC key): printable ASCII with no space, or the
    first request fails deep in the HTTP client. Said without the value, which is a secret."""
    problem = secret_problem(value)
    if problem:
        raise ConfigError(f"{key}: the value from {source} {problem}; a token is printable ASCII without spaces")
    return SecretStr(value)


def _optional_secret(
    value: SecretStr | None, env_name: str | None, key: str, environ: dict[str, str]
) -> tuple[SecretStr | None, str | None]:
    """A secret that may be left out: (None, None) when neither the value nor `*_env` is given."""
    if (value is None or not value.get_secret_value()) and not env_name:
        return None, None
    return _secret(value, env_name, "", key, environ)


def _check_database(url: str) -> None:
    """The file [storage] url names can be a database: not a directory, a FIFO (SQLite would wait
    on it for ever) or another kind of file. What only SQLite can tell (a damaged or read-only
    file, a schema from a newer retouch) is found when the database is opened: a one-line
    `database error`, exit 1."""
    try:
        path = sqlite_file(url)  # the default URL too, made from $STATE_DIRECTORY or the working directory
    except ValueError as exc:
        raise ConfigError(f"[storage] url: {exc}") from None
    problem = database_problem(path)
    if problem:
        raise ConfigError(f"[storage] url: {path} {problem}")


def _check_directory(path: Path, key: str) -> None:
    """A directory that is or can be made: nothing on the way to it may be a file. (Whether it is
    writable by the service's user is `retouch check`'s job: the CLI may run as another user.)"""
    if any(ord(char) < 0x20 for char in str(path)):
        raise ConfigError(f"{key}: the path holds a control character (a NUL, a line break…)")
    for part in (path, *path.parents):
        try:
            exists = part.exists()
        except OSError as exc:  # a name too long, a loop of symlinks
            raise ConfigError(
                f"{key}: {str(part)[:200]} cannot be used ({exc.strerror or type(exc).__name__})"
            ) from None
        if exists:
            if not part.is_dir():
                raise ConfigError(f"{key}: {part} is a file, not a directory")
            return


def _first(errors: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The error to report: an unknown key before anything else, since a misspelt required key is
    also reported "missing", and "did you mean 'profile_key'?" is the line that fixes both."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _describe(
    error: Mapping[str, Any],
    *,
    section: str | None = None,
    model: type[BaseModel] | None = None,
    extra_sections: Sequence[str] = (),
) -> str:
    """One line for the first pydantic error: '[section] key: what is wrong'.

    `section` and `model`: the error is about a provider's own table, validated by that model."""
    loc = ([section] if section else []) + [str(part) for part in error["loc"]]
    if not loc:
        return f"[{section}]: {error['msg']}"
    where = f"[{loc[0]}]" + (f" {'.'.join(loc[1:])}" if len(loc) > 1 else "")
    kind = error["type"]
    if kind == "extra_forbidden":
        if len(loc) == 1:  # a whole table nobody knows
            close = difflib.get_close_matches(loc[0], [*_File.model_fields, *extra_sections], n=1)
            return f"{where}: unknown section" + (f"; did you mean [{close[0]}]?" if close else "")
        hint = _did_you_mean(loc[1:] if section else loc, model or _File)
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: missing (required)"
    message = error["msg"].removeprefix("Value error, ")
    if kind in ("greater_than_equal", "less_than_equal", "finite_number", "int_from_float"):
        message += _allowed_range(loc[1:] if section else loc, model or _File)
    return f"{where}: {message}"


def _allowed_range(loc: list[str], model: Any) -> str:
    """'; allowed: 1 to 20' for a bounded number: the owner sees both ends, not only the one crossed."""
    for part in loc:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return ""
        model = field
        if part != loc[-1]:
            model = field.annotation
    low = next((m.ge for m in model.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in model.metadata if hasattr(m, "le")), None)
    return f"; allowed: {low:,} to {high:,}" if low is not None and high is not None else ""


def _did_you_mean(loc: list[str], model: Any) -> str:
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
