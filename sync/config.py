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
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator

from retouch.plugin.providers import registry
from retouch.plugin.providers.base import Capabilities, ProviderPlugin, webhook_token
from retouch.plugin.providers.settings import Duration, Section, parse_duration  # noqa: F401  (re-exported)

from .control_settings import BackupSettings, NotifySettings
from .listen import is_loopback_host, is_loopback_listen, parse_listen
from .paths import database_file, resolve_dir
from .paths import database_url as sqlite_url
from .rules import Rule, validate_rules

DEFAULT_CONFIG_PATHS = (Path("config.toml"), Path("/etc/retouch/config.toml"))

# Credential file names under $CREDENTIALS_DIRECTORY (systemd LoadCredential=NAME:PATH).
SHOPIFY_TOKEN_CREDENTIAL = "shopify_access_token"
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
    api_version: str = "2026-07"
    timeout: Duration = 30.0
    # A pass over the whole catalog (first run, `resync --all`) reads it with one bulk operation
    # when the store has at least this many products; below it, page by page.
    bulk_threshold: int = Field(2000, ge=1)

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
    timeout: Duration = 30.0

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
    wait_ready: Duration = 600.0


class ScheduleSettings(Section):
    discover_every: Duration = 300.0
    # Shortest interval between status polls of one job; None: the provider's usual one (AI Gen
    # Studio: its poll quota spread over the window; ProductAI 3 s; Imagen 10 s).
    poll_every: Duration | None = None
    # Products updated this long before the stored cursor are read again, so an update that
    # Shopify indexes late (or a clock difference) is never missed.
    discover_overlap: Duration = 120.0
    tick: Duration = 2.0
    # How long SIGTERM waits for in-flight calls before abandoning them safely.
    shutdown_grace: Duration = 8.0
    # After a 402 (no credits) the next submission is tried this much later.
    credits_retry: Duration = 600.0


class BudgetSettings(Section):
    """Daily caps on what the provider may charge; reached, submissions wait for the next day."""

    max_credits_per_day: int | None = Field(None, ge=1)   # in the provider's unit (credits, tokens, images)
    max_images_per_day: int | None = Field(None, ge=1)


class StorageSettings(Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _sqlite_only(cls, value: str | None) -> str | None:
        if value is not None:
            database_file(value, Path("/"), None)  # raises PathError (a ValueError) with what to write
        return value


class ClaimSettings(Section):
    """The store claim (sync/claim.py): a daemon not heard of for `lease` no longer holds the store."""

    lease: Duration = Field(120.0, ge=2.0)


class ServerSettings(Section):
    """The daemon's own HTTP server (health, metrics, provider webhooks); off unless `listen` is set."""

    listen: str | None = None
    public_url: str | None = None          # how the provider reaches us: enables webhooks
    allow_public_bind: bool = False
    webhook_skew: Duration = 300.0
    # With webhooks, polling is only a safety net: this often at most per job.
    safety_poll_every: Duration = 300.0
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


@dataclass(frozen=True)
class Settings:
    """Validated settings with secrets resolved and paths made absolute."""

    path: Path
    shop: ShopSettings
    provider: ProviderSettings
    provider_table: BaseModel          # the chosen provider's own table, validated by its plugin
    selection: SelectionSettings
    writeback: WritebackSettings
    schedule: ScheduleSettings
    budget: BudgetSettings
    server: ServerSettings
    log: LogSettings
    shop_token: SecretStr
    provider_key: SecretStr
    database_url: str
    backup_dir: Path
    secret_sources: dict[str, str] = field(default_factory=dict)  # "[shop] access_token" -> where it was found
    shopify_webhook_secret: SecretStr | None = None  # [server] shopify_webhook_secret, resolved
    claim: ClaimSettings = ClaimSettings()
    backup: BackupSettings = BackupSettings()
    notify: NotifySettings = NotifySettings()
    rules: tuple[Rule, ...] = ()

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
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction processor."""
        key = self.provider_key.get_secret_value()
        shopify_hooks = [self.shopify_webhook_secret.get_secret_value()] if self.shopify_webhook_secret else []
        return [self.shop_token.get_secret_value(), key, webhook_token(key), *shopify_hooks, *self.notify.secrets()]


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
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    plugins = registry.available()
    # Each provider's table belongs to its plugin; the rest of the file to _File.
    tables = {name: raw.pop(name) for name in list(raw) if name in plugins}
    raw_rules = raw.pop("rules", [])  # [[rules]]: checked against the chosen provider's table below
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(_first(exc.errors()), extra_sections=list(plugins))) from None
    if parsed.provider.name not in plugins:
        raise ConfigError(f"[provider] name: unknown provider {parsed.provider.name!r}; "
                          f"choose one of {', '.join(sorted(plugins))}")
    provider_tables = {}
    # Every provider table present is checked, not only the chosen one; the chosen one may be absent.
    for name in sorted({*tables, parsed.provider.name}):
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}]: must be a table")
        try:
            provider_tables[name] = plugins[name].settings_model.model_validate(table)
        except ValidationError as exc:
            raise ConfigError(_describe(_first(exc.errors()), section=name, model=plugins[name].settings_model)) from None
    plugin = plugins[parsed.provider.name]
    try:
        rules = validate_rules(raw_rules, plugin.name, tables.get(plugin.name, {}), plugin.settings_model)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    shop_token, shop_token_source = _secret(parsed.shop.access_token, parsed.shop.access_token_env,
                                            SHOPIFY_TOKEN_CREDENTIAL, "[shop] access_token", environ)
    provider_key, provider_key_source = _secret(parsed.provider.api_key, parsed.provider.api_key_env,
                                                PROVIDER_KEY_CREDENTIAL, "[provider] api_key", environ)
    key_problem = plugin.check_key(provider_key.get_secret_value())
    if key_problem:
        raise ConfigError(f"[provider] api_key: {key_problem}")

    server = parsed.server
    hook_secret, hook_source = _optional_secret(server.shopify_webhook_secret, server.shopify_webhook_secret_env,
                                                "[server] shopify_webhook_secret", environ)
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
    return Settings(
        path=path.resolve(), shop=parsed.shop, provider=parsed.provider,
        provider_table=provider_tables[plugin.name],
        selection=parsed.selection, writeback=parsed.writeback, schedule=parsed.schedule, budget=parsed.budget,
        server=parsed.server,
        log=parsed.log,
        shop_token=shop_token, provider_key=provider_key, database_url=database_url, backup_dir=backup_dir,
        secret_sources={"[shop] access_token": shop_token_source, "[provider] api_key": provider_key_source,
                        **({"[server] shopify_webhook_secret": hook_source} if hook_source else {})},
        shopify_webhook_secret=hook_secret,
        claim=parsed.claim,
        backup=parsed.backup,
        notify=parsed.notify,
        rules=tuple(rules),
    )


def _secret(value: SecretStr | None, env_name: str | None, credential: str, key: str,
            environ: dict[str, str]) -> tuple[SecretStr, str]:
    """The secret and where it came from (for `retouch check`; never the value)."""
    if value is not None and value.get_secret_value():
        if env_name:
            # Two sources for one secret: whichever we picked, the owner may be rotating the other.
            raise ConfigError(f"{key}_env: {key.split()[-1]} is set too; keep only one of them")
        return value, "the config file"
    if env_name:
        from_env = environ.get(env_name)
        if not from_env:
            raise ConfigError(f"{key}_env: environment variable {env_name} is not set or empty")
        return SecretStr(from_env.strip()), f"environment variable {env_name}"
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / credential).is_file():
        return SecretStr((Path(cred_dir) / credential).read_text().strip()), f"systemd credential {credential}"
    raise ConfigError(f"{key}: missing; set {key.split()[-1]}, {key.split()[-1]}_env, "
                      f"or a systemd credential named {credential}")


def _optional_secret(value: SecretStr | None, env_name: str | None, key: str,
                     environ: dict[str, str]) -> tuple[SecretStr | None, str | None]:
    """A secret that may be left out: (None, None) when neither the value nor `*_env` is given."""
    if (value is None or not value.get_secret_value()) and not env_name:
        return None, None
    return _secret(value, env_name, "", key, environ)


def _check_directory(path: Path, key: str) -> None:
    """A directory that is or can be made: nothing on the way to it may be a file. (Whether it is
    writable by the service's user is `retouch check`'s job: the CLI may run as another user.)"""
    for part in (path, *path.parents):
        if part.exists():
            if not part.is_dir():
                raise ConfigError(f"{key}: {part} is a file, not a directory")
            return


def _first(errors: list[dict]) -> dict:
    """The error to report: an unknown key before anything else, since a misspelt required key is
    also reported "missing", and "did you mean 'profile_key'?" is the line that fixes both."""
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])


def _describe(error: dict, *, section: str | None = None, model: type[BaseModel] | None = None,
              extra_sections: list[str] = ()) -> str:
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
    return f"{where}: {message}"


def _did_you_mean(loc: list[str], model: Any) -> str:
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
