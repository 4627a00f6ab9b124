"""Shared fixtures: the sandboxes on loopback, config files, and the CLI as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.plugin.providers.base import webhook_token
from retouch.plugin.providers.imagen.sandbox import ImagenSandbox
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _structlog_as_it_was() -> Iterator[None]:
    """A test that configures logging in this process (`logs.configure("info", …)`) leaves structlog's
    level filter behind: a later test's `capture_logs()` would then miss every debug event. Put back
    the configuration each test found, so no test depends on the order the suite runs in."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# Distinctive fake secrets: tests assert they never show up in output.
SHOP_TOKEN = "shpat_TESTSECRET_shop_7f3a9c"
PROVIDER_KEY = "aigen_test_TESTSECRETprovider4b2e"
IMAGEN_KEY = "imagen_TESTSECRET_key_5d8e1a"
PRODUCTAI_KEY = "pai_TESTSECRET_key_c4f0b7"
# A Dev Dashboard app's credentials (the client ID is not secret; the client secret is).
CLIENT_ID = "retouch-test-app-0d4c"
CLIENT_SECRET = "shpss_TESTSECRET_client_2b7e91"
# The keys, and the webhook path tokens derived from them (secret too).
SECRETS = [
    SHOP_TOKEN,
    PROVIDER_KEY,
    IMAGEN_KEY,
    PRODUCTAI_KEY,
    CLIENT_SECRET,
    *(webhook_token(key) for key in (PROVIDER_KEY, IMAGEN_KEY, PRODUCTAI_KEY)),
]
# Sandboxes whose issued access tokens must not leak either (each one, whenever it was issued).
TOKEN_ISSUERS: list[ShopifySandbox] = []


# The Shopify sandbox profile of the `shop` fixture (plugin/shopify/sandbox/profiles.py).
SHOPIFY_PROFILE = os.environ.get("RETOUCH_TEST_SHOPIFY_PROFILE", "default")


def marker_of(shop: ShopifySandbox, legacy_id) -> dict | None:
    """The product's retouch marker metafield, whichever way the sandbox stores its `$app:` namespace
    (resolved to `app--<id>--retouch` in the production profile)."""
    metafields = shop.product(legacy_id)["metafields"]
    return next((m for name, m in metafields.items() if name.endswith("retouch.output_media")), None)


class FakeClock:
    """A clock the sandboxes take (quota windows, link signing, media processing, bulk operations):
    tests move it, nothing sleeps. Starts at `now` (default: the real time)."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.1, what: str = "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


@pytest.fixture
def shop() -> Iterator[ShopifySandbox]:
    # RETOUCH_TEST_SHOPIFY_PROFILE=production runs every test on the sandbox's production profile.
    sandbox = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2, profile=SHOPIFY_PROFILE)
    server = sandbox.start()
    yield sandbox
    server.stop()


# The provider fixtures take a sandbox profile by indirect parametrization ("default" unless a test
# asks): `@pytest.mark.parametrize("provider", PROFILES, indirect=True)` runs it against both.
PROFILES = ["default", "production"]


@pytest.fixture
def app_shop() -> Iterator[ShopifySandbox]:
    """A store with a Dev Dashboard app installed: client credentials only (no static token),
    tokens living 3 s, so a test of a few seconds crosses several expiries."""
    sandbox = ShopifySandbox(
        access_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_lifetime=3.0, processing_seconds=0.2
    )
    server = sandbox.start()
    TOKEN_ISSUERS.append(sandbox)
    yield sandbox
    server.stop()  # stays in TOKEN_ISSUERS: no_secret_leaks checks its tokens after this teardown


def client_credentials(text: str) -> str:
    """A config text of these fixtures with the static token swapped for the app's client credentials."""
    return text.replace(
        f'access_token = "{SHOP_TOKEN}"', f'client_id = "{CLIENT_ID}"\nclient_secret = "{CLIENT_SECRET}"'
    )


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[AigenSandbox]:
    sandbox = AigenSandbox(window_seconds=3600, seconds_per_item=0.2, profile=getattr(request, "param", "default"))
    server = sandbox.start()
    yield sandbox
    server.stop()


@pytest.fixture
def imagen(request: pytest.FixtureRequest) -> Iterator[ImagenSandbox]:
    """Imagen sandbox with fast edits and exports; its `api_url` is the config's base_url."""
    sandbox = ImagenSandbox(
        api_keys=(IMAGEN_KEY,),
        edit_pending_seconds=0.1,
        edit_seconds=0.4,
        export_seconds=0.3,
        profile=getattr(request, "param", "default"),
    )
    server = sandbox.start()
    yield sandbox
    server.stop()


@pytest.fixture
def productai(request: pytest.FixtureRequest) -> Iterator[ProductAISandbox]:
    """ProductAI sandbox with fast jobs and the documented 15 requests a minute, counted per key."""
    sandbox = ProductAISandbox(
        keys={PRODUCTAI_KEY: 100_000},
        job_seconds=0.3,
        rate_limit_scope="key",
        profile=getattr(request, "param", "default"),
    )
    server = sandbox.start()
    yield sandbox
    server.stop()


# The [<provider>] tables the provider tests start from (fast polling for the sandboxes).
IMAGEN_TABLE = 'profile_key = 5700\nphotography_type = "OTHER"\ncrop = true\nfirst_poll = "0.3s"\n'
PRODUCTAI_TABLE = 'model = "kontext-pro"\nrequests_per_minute = 15\n'


def provider_config_text(
    shop: ShopifySandbox,
    tmp_path: Path,
    *,
    provider: str,
    base_url: str,
    api_key: str,
    table: str = "",
    mode: str = "replace",
    new_only: bool = True,
    extra: str = "",
) -> str:
    """A config for any provider: [provider] and its own table; the rest as config_text has it."""
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "{provider}"
api_key = "{api_key}"
base_url = "{base_url}"
timeout = "5s"

[{provider}]
{table}

[selection]
new_only = {str(new_only).lower()}
exclude_tags = ["no-retouch"]

[writeback]
mode = "{mode}"
backup_dir = "{tmp_path / 'backups'}"

[schedule]
discover_every = "1s"
tick = "0.2s"
discover_overlap = "5s"

[storage]
url = "sqlite:///{tmp_path / 'retouch.db'}"

[log]
level = "debug"
format = "json"
{extra}
"""


def config_text(
    shop: ShopifySandbox,
    provider: AigenSandbox,
    tmp_path: Path,
    *,
    mode: str = "replace",
    new_only: bool = True,
    db_name: str = "retouch.db",
    extra: str = "",
    limits: str = 'window = "1h", jobs = 5, images = 25, polls = 120, active_jobs = 1',
    api_key: str = PROVIDER_KEY,
) -> str:
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "aigenstudio"
api_key = "{api_key}"
base_url = "{provider.base_url}"
timeout = "5s"

[aigenstudio]
limits = {{ {limits} }}

[selection]
new_only = {str(new_only).lower()}
exclude_tags = ["no-retouch"]

[writeback]
mode = "{mode}"
backup_dir = "{tmp_path / 'backups'}"

[schedule]
discover_every = "1s"
poll_every = "0.3s"
tick = "0.2s"
discover_overlap = "5s"

[storage]
url = "sqlite:///{tmp_path / db_name}"

[log]
level = "debug"
format = "json"
{extra}
"""


def pipeline_settings(shop: ShopifySandbox, provider: AigenSandbox, tmp_path: Path, **options):
    """Settings for driving pipeline steps in-process (new_only off: every image is queued)."""
    from retouch.sync.config import load_settings

    path = tmp_path / "config.toml"
    path.write_text(config_text(shop, provider, tmp_path, **{"new_only": False, **options}))
    return load_settings(path)


def run_async(coro, timeout: float = 120):
    import asyncio

    return asyncio.run(asyncio.wait_for(coro, timeout=timeout))


async def until_enhanced(ctx) -> list:
    """Drive discover, submit and track in-process until no image waits for the provider any
    more; returns the images whose enhancement is in hand (not yet written back)."""
    import asyncio

    from retouch.storage.models import ImageState
    from retouch.sync.pipeline import discover, submit, track

    await discover(ctx)
    await submit(ctx)
    for _ in range(200):
        await track(ctx)
        if not ctx.store.images_in_state(ImageState.DISCOVERED, ImageState.SUBMITTED):
            break
        await asyncio.sleep(0.05)
    return ctx.store.images_in_state(ImageState.ENHANCED)


@pytest.fixture
def write_config(tmp_path: Path, shop: ShopifySandbox, provider: AigenSandbox) -> Callable[..., Path]:
    def write(name: str = "config.toml", **options) -> Path:
        path = tmp_path / name
        path.write_text(config_text(shop, provider, tmp_path, **options))
        return path

    return write


# Everything the CLI printed during the current test, for the secrets check below.
CLI_OUTPUT: list[str] = []


def cli(
    *args: str,
    config: Path | None = None,
    timeout: float = 120,
    input: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "retouch.sync", *args] + (["-c", str(config)] if config else [])
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )
    CLI_OUTPUT.extend((done.stdout, done.stderr))
    return done


@pytest.fixture
def no_secret_leaks(tmp_path: Path) -> Iterator[None]:
    """After the test: the distinctive fake secrets appear in no file the test's processes wrote
    (database, WAL, backups, daemon logs, demo pages) and in nothing the CLI printed; nor does any
    access token a sandbox store issued during the test (`TOKEN_ISSUERS`). The config
    files and a `credentials/` folder are skipped: the test wrote the secrets there itself."""
    CLI_OUTPUT.clear()
    yield
    secrets = [*SECRETS, *(token for issuer in TOKEN_ISSUERS for token in issuer.tokens.issued())]
    TOKEN_ISSUERS.clear()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.suffix != ".toml" and "credentials" not in path.relative_to(tmp_path).parts:
            data = path.read_bytes()
            leaked = [s for s in secrets if s.encode() in data]
            assert not leaked, f"a secret was written to {path.relative_to(tmp_path)}"
    for text in CLI_OUTPUT:
        assert not any(s in text for s in secrets), "a secret was printed by the CLI"


class DaemonProcess:
    """`retouch run` as a real subprocess; its output goes to files the test can read."""

    def __init__(
        self,
        config: Path,
        log_dir: Path,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        """`wrapper`: a command that ends by exec'ing its arguments (e.g. one that mounts a small
        tmpfs in a mount namespace first): the daemon keeps the wrapper's PID."""
        self.stdout = (log_dir / f"daemon-{time.monotonic_ns()}.out").open("w+")
        self.stderr = (log_dir / f"daemon-{time.monotonic_ns()}.err").open("w+")
        self.proc = subprocess.Popen(
            [*(wrapper or []), sys.executable, "-m", "retouch.sync", "run", "-c", str(config), *args],
            stdout=self.stdout,
            stderr=self.stderr,
            env={**os.environ, "NO_COLOR": "1", **(env or {})},
        )

    def output(self) -> str:
        self.stdout.flush()
        self.stderr.flush()
        return Path(self.stdout.name).read_text() + Path(self.stderr.name).read_text()

    def events(self) -> list[dict]:
        events = []
        for line in self.output().splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def terminate(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(
        config: Path, env: dict[str, str] | None = None, wrapper: list[str] | None = None, args: tuple[str, ...] = ()
    ) -> DaemonProcess:
        process = DaemonProcess(config, tmp_path, env, wrapper, args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def db_rows(db: Path, query: str, *params) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(query, params).fetchall()


def image_states(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    try:
        return dict(db_rows(db, "select media_id, state from image"))
    except sqlite3.OperationalError:
        return {}
