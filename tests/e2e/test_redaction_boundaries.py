"""A secret quoted back by a service is redacted at every boundary, not only in the log: the
database file, `status`, `status --json`, `check`, `/metrics` and `/healthz`; the redactor knows
each secret's header, URL-encoded and Basic forms; a new free-text column cannot bypass it."""

from __future__ import annotations

import base64
import json
import socket
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import DateTime, String, insert, select, update
from sqlmodel import SQLModel
from sqlmodel.sql.sqltypes import AutoString, UTCDateTime

import retouch.sync  # noqa: F401  (installs the redactor into the Store)
from conftest import PROVIDER_KEY, SHOP_TOKEN, cli, config_text, image_states, run_async, wait_for
from retouch.plugin.providers import errors as provider_errors
from retouch.plugin.providers.aigenstudio.client import AigenClient
from retouch.plugin.providers.aigenstudio.sandbox import AigenSandbox
from retouch.storage.store import Store
from retouch.sync.logs import REDACTED, REDACTOR, Redactor


def quoted_forms(key: str) -> list[str]:
    """What the sandbox's quote_auth fault sends back (sandbox_kit.faults.quoted_credentials)."""
    return [key, quote(key, safe=""), base64.b64encode(f"account-7:{key}".encode()).decode()]


def leaks(text: str | bytes) -> list[str]:
    data = text if isinstance(text, bytes) else text.encode()
    return [form for secret in (PROVIDER_KEY, SHOP_TOKEN) for form in quoted_forms(secret) if form.encode() in data]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----- the redactor -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        "Authorization: Bearer {k}",
        "{{'authorization': 'Bearer {k}'}}",
        "x-api-key: {k}",
        "?api_key={q}&x=1",
        "{b64user}",
        "{b64userlong}",
        "{b64alone}",
        '"{k}"',
        "X-Shopify-Access-Token: shpat_0123456789abcdef",
        "Authorization: Basic dXNlcjpzb21lb25lLWVsc2VzLWtleQ==",
        "Bearer unknownToken12345",
    ],
)
def test_the_redactor_knows_the_forms_a_secret_travels_in(form: str) -> None:
    key = "aigen_live_Q7x+/k=ey9Zr"
    text = form.format(
        k=key,
        q=quote(key, safe=""),
        b64user=base64.b64encode(f"u:{key}".encode()).decode(),
        b64userlong=base64.b64encode(f"account-77:{key}".encode()).decode(),
        b64alone=base64.b64encode(key.encode()).decode(),
    )
    redactor = Redactor([key])
    scrubbed = redactor.scrub(text)
    assert REDACTED in scrubbed
    for secret_form in (
        key,
        quote(key, safe=""),
        "dXNlcjpzb21lb25lLWVsc2VzLWtleQ",
        "shpat_0123456789abcdef",
        "unknownToken12345",
    ):
        assert secret_form not in scrubbed


@pytest.mark.parametrize(
    "text",
    [
        "[shop] access_token: missing; set it or access_token_file",
        "the token was rejected",
        "Bearer of bad news",
        "basic information",
        "https://cdn.shopify.com/s/files/1/img.jpg?v=1712345678",
    ],
)
def test_the_redactor_leaves_ordinary_text_alone(text: str) -> None:
    assert Redactor(["aigen_live_abcdef123456"]).scrub(text) == text


# ----- the database: every text column of every table ------------------------------------------------------


def _python_type(column) -> type | None:
    if isinstance(column.type, (String, AutoString)):  # SQLModel's str columns are AutoString
        return str
    if isinstance(column.type, (DateTime, UTCDateTime)):
        return datetime
    try:
        return column.type.python_type
    except NotImplementedError:
        return None


def text_columns(table) -> list:
    return [column for column in table.columns if _python_type(column) is str and not column.foreign_keys]


def _filler(column) -> object:
    if column.foreign_keys or (column.nullable and not column.primary_key):
        return None
    return {int: 1, float: 1.0, bool: False, str: f"x-{column.name}", datetime: datetime.now(timezone.utc)}.get(
        _python_type(column)
    )


def test_every_text_column_of_every_table_is_scrubbed_on_insert_and_update(tmp_path: Path) -> None:
    """Walks the schema, so a column added later is covered without anyone remembering it: a write of
    a quoted secret through the Store's engine, insert or update, keeps none of it."""
    secret = "aigen_live_COLUMNWALK_5e1f"
    REDACTOR.add([secret])
    store = Store(f"sqlite:///{tmp_path / 'walk.db'}")
    tables = [table for table in SQLModel.metadata.sorted_tables if text_columns(table)]
    assert sum(len(text_columns(table)) for table in tables) >= 10  # the walk found the schema
    with store.engine.begin() as conn:
        conn.execute(SQLModel.metadata.tables["meta"].delete())
        for table in tables:
            row = {
                column.name: _filler(column)
                for column in table.columns
                if not (column.primary_key and _python_type(column) is int)
            }
            quoted = {column.name: f"{column.name}: Authorization: Bearer {secret}" for column in text_columns(table)}
            row.update(quoted)
            conn.execute(insert(table), [row])
        for table in tables:
            conn.execute(
                update(table).values(
                    {column.name: f"again {secret}" for column in text_columns(table) if not column.primary_key}
                )
            )
    with store.engine.connect() as conn:
        for table in tables:
            for column in text_columns(table):
                values = [value for (value,) in conn.execute(select(column))]
                assert values and not any(secret in str(value) for value in values), (table.name, column.name)
    store.close()
    for path in tmp_path.glob("walk.db*"):
        assert secret.encode() not in path.read_bytes(), path.name


# ----- each client scrubs what it raises ------------------------------------------------------------------


def test_the_aigen_client_does_not_raise_its_own_key(tmp_path: Path) -> None:
    sandbox = AigenSandbox(window_seconds=3600)
    server = sandbox.start()
    try:
        sandbox.add_fault("status", mode="quote_auth")

        async def ask() -> str:
            async with AigenClient(PROVIDER_KEY, sandbox.base_url) as client:
                with pytest.raises(provider_errors.ProviderError) as caught:
                    await client.get_enhancement("enh_x")
                return f"{caught.value} {caught.value!r} {vars(caught.value)}"

        text = run_async(ask())
    finally:
        server.stop()
    assert "request rejected" in text
    assert PROVIDER_KEY not in text


# ----- the quoted-secret test: the daemon, the database, the CLI, /metrics ---------------------------------


def test_a_secret_quoted_back_by_the_provider_reaches_no_boundary(
    shop, provider: AigenSandbox, tmp_path: Path, daemon, no_secret_leaks
) -> None:
    product = shop.seed(products=1, images_per_product=1, seed=77)[0]
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(shop, provider, tmp_path, new_only=False, extra=f'\n[server]\nlisten = "127.0.0.1:{port}"\n')
    )
    db = tmp_path / "retouch.db"
    provider.add_fault("create", mode="quote_auth", count=50)
    run = daemon(config)
    wait_for(lambda: set(image_states(db).values()) == {"failed"}, 60, what="the image failed with the quoted answer")
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10)
    pages = [http.get("/metrics").text, http.get("/healthz").text]
    assert run.terminate(timeout=20) == 0
    assert "request rejected" in (
        db.read_bytes() + (tmp_path / "retouch.db-wal").read_bytes()
        if (tmp_path / "retouch.db-wal").exists()
        else db.read_bytes()
    ).decode("latin-1")

    provider.add_fault("status", mode="quote_auth", count=5)  # check's key probe meets the quoting answer
    outputs = {
        name: cli(*args, config=config)
        for name, args in {"status": ("status",), "status --json": ("status", "--json"), "check": ("check",)}.items()
    }
    assert "request rejected" in outputs["status --json"].stdout
    assert "request rejected" in outputs["check"].stdout
    assert json.loads(outputs["status --json"].stdout)
    for name, done in outputs.items():
        assert leaks(done.stdout + done.stderr) == [], name
    for path in tmp_path.rglob("retouch.db*"):
        assert leaks(path.read_bytes()) == [], path.name
    for page in pages:
        assert leaks(page) == []
    assert leaks(run.output()) == []
    assert product["legacy_id"]


# ----- what the owner must see whole ------------------------------------------------------------------------


def test_the_sandbox_command_still_prints_a_config_that_can_be_copied(tmp_path: Path) -> None:
    """The scrubber is no broader than it must be: the sandboxes' throw-away keys, printed to be
    copied, stay whole (and `check`'s webhook URL to paste into ProductAI's dashboard, which holds a
    real secret, is let through by name: test_provider_productai.py)."""
    import os
    import signal
    import subprocess
    import sys

    from retouch.sync.commands.sandbox import SANDBOX_CLIENT_SECRET

    proc = subprocess.Popen(
        [sys.executable, "-m", "retouch.sync", "sandbox", "--products", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=tmp_path,
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Serving until"):
                break
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    printed = "".join(lines)
    assert f'client_secret = "{SANDBOX_CLIENT_SECRET}"' in printed, printed
    assert 'api_key = "[REDACTED]"' not in printed
