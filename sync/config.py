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
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .listen import is_loopback_host, is_loopback_listen, parse_listen

DEFAULT_CONFIG_PATHS = (Path("config.toml"), Path("/etc/retouch/config.toml"))

# Credential file names under $CREDENTIALS_DIRECTORY (systemd LoadCredential=NAME:PATH).
SHOPIFY_TOKEN_CREDENTIAL = "shopify_access_token"
PROVIDER_KEY_CREDENTIAL = "provider_api_key"


class ConfigError(Exception):
    """A store owner's mistake in the config file: one line, naming the key."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """'30s', '5m', '1h30m', '250ms' or a plain number of seconds -> seconds (> 0)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s', '5m' or '1h'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration; write it like '30s', '5m' or '1h'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration like '30s', '5m' or '1h'")
    if seconds <= 0:
        raise ValueError("must be longer than zero")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class ShopSettings(_Section):
    url: str
    access_token: SecretStr | None = None
    access_token_env: str | None = None
    api_version: str = "2026-07"
    timeout: Duration = 30.0

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


class ProviderSettings(_Section):
    name: str = "aigenstudio"
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    base_url: str | None = None
    timeout: Duration = 30.0

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)


class AigenLimits(_Section):
    """The key's quota per window; the defaults are the documented ones."""

    window: Duration = 3600.0
    jobs: int = Field(5, ge=1)
    images: int = Field(25, ge=1)
    polls: int = Field(120, ge=1)
    active_jobs: int = Field(1, ge=1)


class AigenSettings(_Section):
    preset: Literal["single_product_white_background", "marketplace_clean_catalog", "clean_catalog_group"] = (
        "single_product_white_background"
    )
    preservation_level: Literal["strict", "balanced", "creative"] = "strict"
    instructions: str | None = Field(None, min_length=1, max_length=4000)
    batch_size: int = Field(20, ge=1, le=20)
    limits: AigenLimits = AigenLimits()


class SelectionSettings(_Section):
    new_only: bool = True
    exclude_tags: list[str] = []


class WritebackSettings(_Section):
    mode: Literal["replace", "append"] = "replace"
    backup_dir: Path | None = None
    wait_ready: Duration = 600.0


class ScheduleSettings(_Section):
    discover_every: Duration = 300.0
    poll_every: Duration = 30.0
    # Products updated this long before the stored cursor are read again, so an update that
    # Shopify indexes late (or a clock difference) is never missed.
    discover_overlap: Duration = 120.0
    tick: Duration = 2.0
    # How long SIGTERM waits for in-flight calls before abandoning them safely.
    shutdown_grace: Duration = 8.0
    # After a 402 (no credits) the next submission is tried this much later.
    credits_retry: Duration = 600.0


class StorageSettings(_Section):
    url: str | None = None

    @field_validator("url")
    @classmethod
    def _sqlite_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("sqlite:///"):
            raise ValueError("only SQLite is supported: write it as 'sqlite:////absolute/path/retouch.db'")
        return value


class ServerSettings(_Section):
    """The daemon's own HTTP server (health, metrics, provider webhooks); off unless `listen` is set."""

    listen: str | None = None
    public_url: str | None = None          # how the provider reaches us: enables webhooks
    allow_public_bind: bool = False
    webhook_skew: Duration = 300.0
    # With webhooks, polling is only a safety net: this often at most per job.
    safety_poll_every: Duration = 300.0

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


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _File(_Section):
    shop: ShopSettings
    provider: ProviderSettings = ProviderSettings()
    aigenstudio: AigenSettings = AigenSettings()
    selection: SelectionSettings = SelectionSettings()
    writeback: WritebackSettings = WritebackSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    storage: StorageSettings = StorageSettings()
    server: ServerSettings = ServerSettings()
    log: LogSettings = LogSettings()


KNOWN_PROVIDERS = ("aigenstudio",)


@dataclass(frozen=True)
class Settings:
    """Validated settings with secrets resolved and paths made absolute."""

    path: Path
    shop: ShopSettings
    provider: ProviderSettings
    aigenstudio: AigenSettings
    selection: SelectionSettings
    writeback: WritebackSettings
    schedule: ScheduleSettings
    server: ServerSettings
    log: LogSettings
    shop_token: SecretStr
    provider_key: SecretStr
    database_url: str
    backup_dir: Path
    secret_sources: dict[str, str] = field(default_factory=dict)  # "[shop] access_token" -> where it was found

    @property
    def provider_base_url(self) -> str:
        return self.provider.base_url or "https://aigenstudio.app"

    @property
    def provider_is_sandbox(self) -> bool:
        return self.provider_key.get_secret_value().startswith("aigen_test_")

    @property
    def webhook_url(self) -> str | None:
        """Where the provider sends job events, when the server is reachable from outside."""
        if self.server.listen and self.server.public_url:
            return self.server.public_url.rstrip("/") + "/webhooks/aigenstudio"
        return None

    @property
    def database_path(self) -> Path:
        return Path(self.database_url.removeprefix("sqlite:///"))

    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction processor."""
        return [self.shop_token.get_secret_value(), self.provider_key.get_secret_value()]


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
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0], raw)) from None

    if parsed.provider.name not in KNOWN_PROVIDERS:
        raise ConfigError(
            f"[provider] name: unknown provider {parsed.provider.name!r}; choose one of {', '.join(KNOWN_PROVIDERS)}"
        )
    shop_token, shop_token_source = _secret(parsed.shop.access_token, parsed.shop.access_token_env,
                                            SHOPIFY_TOKEN_CREDENTIAL, "[shop] access_token", environ)
    provider_key, provider_key_source = _secret(parsed.provider.api_key, parsed.provider.api_key_env,
                                                PROVIDER_KEY_CREDENTIAL, "[provider] api_key", environ)
    if not re.fullmatch(r"aigen_(test|live)_[A-Za-z0-9_]{8,}", provider_key.get_secret_value()):
        raise ConfigError("[provider] api_key: not an AI Gen Studio key (expected aigen_test_… or aigen_live_…)")

    server = parsed.server
    if server.listen and not server.listen_is_loopback() and not (server.public_url or server.allow_public_bind):
        raise ConfigError("[server] listen: binding beyond loopback needs public_url or allow_public_bind = true")

    state_dir = Path(environ["STATE_DIRECTORY"].split(":")[0]) if environ.get("STATE_DIRECTORY") else None
    database_url = parsed.storage.url or f"sqlite:///{((state_dir or Path.cwd()) / 'retouch.db').resolve()}"
    database_path = Path(database_url.removeprefix("sqlite:///"))
    if not database_path.parent.is_dir():
        raise ConfigError(f"[storage] url: directory {database_path.parent} does not exist")
    backup_dir = parsed.writeback.backup_dir
    if backup_dir is None:
        backup_dir = database_path.parent / "backups"
    elif not backup_dir.is_absolute():
        backup_dir = (path.parent / backup_dir).resolve()
    return Settings(
        path=path.resolve(), shop=parsed.shop, provider=parsed.provider, aigenstudio=parsed.aigenstudio,
        selection=parsed.selection, writeback=parsed.writeback, schedule=parsed.schedule, server=parsed.server,
        log=parsed.log,
        shop_token=shop_token, provider_key=provider_key, database_url=database_url, backup_dir=backup_dir,
        secret_sources={"[shop] access_token": shop_token_source, "[provider] api_key": provider_key_source},
    )


def _secret(value: SecretStr | None, env_name: str | None, credential: str, key: str,
            environ: dict[str, str]) -> tuple[SecretStr, str]:
    """The secret and where it came from (for `retouch check`; never the value)."""
    if value is not None and value.get_secret_value():
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


def _describe(error: dict, raw: dict) -> str:
    """One line for the first pydantic error: '[section] key: what is wrong'."""
    loc = [str(part) for part in error["loc"]]
    where = f"[{loc[0]}]" + (f" {'.'.join(loc[1:])}" if len(loc) > 1 else "")
    kind = error["type"]
    if kind == "extra_forbidden":
        hint = _did_you_mean(loc, raw)
        return f"{where}: unknown key{hint}"
    if kind == "missing":
        return f"{where}: missing (required)"
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


def _did_you_mean(loc: list[str], raw: dict) -> str:
    model: Any = _File
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, BaseModel):
            return ""
        model = field.annotation
    close = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
