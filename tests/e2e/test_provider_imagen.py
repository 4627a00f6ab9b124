"""Imagen AI through the whole of retouch: the real CLI and daemon (subprocesses), a real SQLite
file, and the Shopify and Imagen sandboxes on loopback. Steps are driven in-process only where a
test must move the Imagen sandbox's clock (expired download links)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from structlog.testing import capture_logs

from conftest import (
    IMAGEN_KEY,
    IMAGEN_TABLE,
    PROFILES,
    FakeClock,
    cli,
    db_rows,
    image_states,
    provider_config_text,
    run_async,
    wait_for,
)
from retouch.plugin.providers.base import token_matches
from retouch.plugin.providers.imagen.sandbox import ImagenSandbox
from retouch.storage.models import ImageState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import discover, submit, track
from retouch.sync.runtime import open_context, run_until_settled

# Every test here runs with distinctive fake secrets (and the webhook token derived from the key):
# none may show up in anything the CLI printed, the daemon logged or the database kept.
pytestmark = pytest.mark.usefixtures("no_secret_leaks")


# --- helpers ------------------------------------------------------------------------------------


def imagen_config(
    shop, sandbox: ImagenSandbox, tmp_path: Path, *, name: str = "config.toml", table: str = IMAGEN_TABLE, **options
) -> Path:
    path = tmp_path / name
    path.write_text(
        provider_config_text(
            shop, tmp_path, provider="imagen", base_url=sandbox.api_url, api_key=IMAGEN_KEY, table=table, **options
        )
    )
    return path


def file_name(media: dict) -> str:
    """The name the adapter gives an image in its Imagen project: `<product id>_<media number>.jpg`."""
    return f"{media['product_id'].rsplit('/', 1)[-1]}_{media['id'].rsplit('/', 1)[-1]}.jpg"


def media_by_id(shop, product_id: str) -> dict[str, dict]:
    return {m["id"]: m for m in shop.product(product_id.rsplit("/", 1)[-1])["media"]}


def wait_done(db: Path, media_ids, timeout: float = 90) -> None:
    wait_for(
        lambda: all(image_states(db).get(m) == "done" for m in media_ids),
        timeout,
        0.2,
        what=f"{list(media_ids)} done (states: {image_states(db)})",
    )


def jobs(db: Path) -> list[dict]:
    if not db.exists():
        return []
    try:
        rows = db_rows(db, "select state, provider_job_id, provider_state from job")
    except Exception:  # the daemon has not created its tables yet
        return []
    return [{"state": s, "project": p, **json.loads(ps or "{}")} for s, p, ps in rows]


def last_discovery(db: Path) -> float:
    rows = db_rows(db, "select value from meta where key = 'last_discovery_at'")
    return float(rows[0][0]) if rows else 0.0


def assert_charged_once_each(sandbox: ImagenSandbox, media: list[dict]) -> None:
    stats = sandbox.stats()
    assert stats["charges_per_file_name"] == {file_name(m): 1 for m in media}
    assert stats["charges"] == len(media)


def slow_edit_sandbox() -> ImagenSandbox:
    """An edit that runs for seconds: long enough to kill the daemon while it runs, or to need a webhook."""
    # 6 s, not 3: a stalled CI machine cannot let the edit finish before the kill is checked.
    return ImagenSandbox(api_keys=(IMAGEN_KEY,), edit_pending_seconds=0.3, edit_seconds=6.0, export_seconds=0.3)


@pytest.fixture
def slow_imagen():
    sandbox = slow_edit_sandbox()
    server = sandbox.start()
    yield sandbox
    server.stop()


# --- 1. end to end, replace and append ----------------------------------------------------------


@pytest.mark.parametrize("imagen", PROFILES, indirect=True)  # production: root bodies, exports renamed .JPG
@pytest.mark.parametrize("mode", ["replace", "append"])
def test_new_images_enhanced_by_imagen_end_to_end(shop, imagen, daemon, tmp_path: Path, mode: str) -> None:
    products = shop.seed(products=2, images_per_product=1, seed=21)
    db = tmp_path / "retouch.db"
    run = daemon(imagen_config(shop, imagen, tmp_path, mode=mode, new_only=True))
    wait_for(
        lambda: set(image_states(db).values()) == {"baseline"} and len(image_states(db)) == 2,
        60,
        what="baseline recorded",
    )
    added = [
        shop.add_image(products[0]["legacy_id"], filename="front.jpg", alt="Front, new"),
        shop.add_image(products[1]["legacy_id"], filename="side.jpg", alt="Side, new"),
    ]
    wait_done(db, [a["id"] for a in added])

    for original in added:
        media = media_by_id(shop, original["product_id"])
        ids = list(media)
        if mode == "replace":
            now = media[original["id"]]
            assert len(media) == 2
            assert now["sha256"] != original["sha256"]
            assert (now["position"], now["alt"], now["mime_type"]) == (
                original["position"],
                original["alt"],
                original["mime_type"],
            )
        else:
            output_id = db_rows(db, "select output_media_id from image where media_id = ?", original["id"])[0][0]
            assert len(media) == 3 and output_id != original["id"]
            assert ids.index(output_id) == ids.index(original["id"]) + 1
            assert media[original["id"]]["sha256"] == original["sha256"]  # the original is untouched
            assert media[output_id]["alt"] == original["alt"] and media[output_id]["sha256"] != original["sha256"]
        sha = db_rows(db, "select backup_sha256 from image where media_id = ?", original["id"])[0][0]
        assert sha == original["sha256"]
        assert hashlib.sha256((tmp_path / "backups" / sha[:2] / sha).read_bytes()).hexdigest() == sha
    assert_charged_once_each(imagen, added)
    assert imagen.stats()["non_jpeg_uploads"] == 0

    # Two more discovery passes over the products we just wrote: nothing is sent or added again.
    settled = time.time()
    wait_for(lambda: last_discovery(db) > settled + 2.5, 30, what="two more discovery passes")
    assert_charged_once_each(imagen, added)
    assert [len(media_by_id(shop, a["product_id"])) for a in added] == [2 if mode == "replace" else 3] * 2
    assert run.terminate(timeout=20) == 0


# --- 2. a PNG original ----------------------------------------------------------------------------


def test_png_original_is_uploaded_as_jpeg_and_written_back_as_png(shop, imagen, tmp_path: Path) -> None:
    (product,) = shop.seed(products=1, images_per_product=1, seed=22)
    png = shop.add_image(product["legacy_id"], filename="x.png", alt="PNG shot")
    assert png["mime_type"] == "image/png"
    settings = load_settings(imagen_config(shop, imagen, tmp_path, mode="replace", new_only=False))

    async def scenario():
        async with open_context(settings) as ctx:
            assert (await discover(ctx))["queued"] == 2
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    assert run_async(scenario()) == {"done": 2}
    stats = imagen.stats()
    assert stats["images_uploaded"] == 2 and stats["non_jpeg_uploads"] == 0  # a project is all-JPEG
    assert stats["edits_failed"] == 0
    now = media_by_id(shop, png["product_id"])[png["id"]]
    assert now["mime_type"] == "image/png" and now["sha256"] != png["sha256"]  # the result, as a PNG again
    assert now["url"].split("?")[0].endswith(".png")
    assert_charged_once_each(imagen, [m for m in media_by_id(shop, png["product_id"]).values()])


# --- 3. an expired download link ------------------------------------------------------------------


def test_expired_result_link_is_renewed_without_a_new_edit(shop, tmp_path: Path) -> None:
    clock = FakeClock()
    sandbox = ImagenSandbox(
        api_keys=(IMAGEN_KEY,),
        edit_pending_seconds=0.1,
        edit_seconds=0.3,
        export_seconds=0.2,
        link_lifetime_seconds=60,
        clock=clock,
    )
    server = sandbox.start()
    try:
        products = shop.seed(products=2, images_per_product=1, seed=23)
        settings = load_settings(imagen_config(shop, sandbox, tmp_path, new_only=False))

        async def scenario():
            async with open_context(settings) as ctx:
                await discover(ctx)
                deadline = time.monotonic() + 60
                while ctx.store.counts_by_state() != {"enhanced": 2}:
                    assert time.monotonic() < deadline, ctx.store.counts_by_state()
                    await submit(ctx)
                    await track(ctx)
                    await asyncio.sleep(0.1)
                first = {i.media_id: i.result_url for i in ctx.store.images_in_state(ImageState.ENHANCED)}
                clock.now += 600  # the links (60 s) expired before the write-back
                with capture_logs() as events:
                    await run_until_settled(ctx)
                return first, {i.media_id: i for i in ctx.store.images_in_state(ImageState.DONE)}, events

        first, done, events = run_async(scenario())
    finally:
        server.stop()
    assert set(done) == set(first) and len(done) == 2
    renewed_at = datetime.fromtimestamp(clock.now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for media_id, image in done.items():
        assert image.result_url != first[media_id]
        assert parse_qs(urlsplit(image.result_url).query)["X-Amz-Date"] == [renewed_at]
    renewals = [e for e in events if e["event"] == "result_link_renewed"]
    assert sorted(e["media_id"] for e in renewals) == sorted(done)
    stats = sandbox.stats()
    assert stats["expired_link_fetches"] >= 1
    assert stats["edits_started"] == 1 and stats["exports_started"] == 1  # new links, not a new export
    assert_charged_once_each(sandbox, [p["media"][0] for p in products])
    for product in products:
        (now,) = shop.product(product["legacy_id"])["media"]
        assert now["sha256"] != product["media"][0]["sha256"]


# --- 4. kill -9 during a job, then restart -------------------------------------------------------


@pytest.mark.parametrize("moment", ["edit_running", "edit_answer_lost", "edit_not_reached"])
def test_kill_9_mid_job_and_restart_charges_once(shop, slow_imagen, daemon, tmp_path: Path, moment: str) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=24)
    originals = [p["media"][0] for p in products]
    db = tmp_path / "retouch.db"
    config = imagen_config(shop, slow_imagen, tmp_path, new_only=False)
    if moment == "edit_answer_lost":
        slow_imagen.add_fault("edit", mode="drop_response")  # the edit starts (and is charged); the answer is a 500
    elif moment == "edit_not_reached":
        slow_imagen.add_fault("edit", mode="hang", seconds=120)  # the edit request never gets through

    def killable() -> bool:
        stats = slow_imagen.stats()
        state = jobs(db)
        if moment == "edit_not_reached":
            return bool(state) and state[0].get("uploaded") is True and stats["requests"].get("edit", 0) >= 1
        return bool(state) and state[0].get("edit_started") is True and stats["edits_started"] == 1

    first = daemon(config)
    wait_for(killable, 60, 0.05, what=f"the moment {moment} ({jobs(db)}, {slow_imagen.stats()})")
    first.kill()
    stats = slow_imagen.stats()
    assert stats["projects"] == 1 and stats["images_uploaded"] == 3
    assert stats["edits_started"] == (0 if moment == "edit_not_reached" else 1)
    assert stats["charges"] == 0  # the edit had not finished: nothing charged yet
    assert set(image_states(db).values()) == {"submitted"}

    second = daemon(config)
    wait_done(db, [m["id"] for m in originals])
    stats = slow_imagen.stats()
    assert stats["projects"] == 1 and stats["images_uploaded"] == 3  # the project resumed, nothing re-uploaded
    assert stats["edits_started"] == 1 and stats["exports_started"] == 1
    assert_charged_once_each(slow_imagen, originals)
    ((project,),) = db_rows(db, "select distinct provider_job_id from job")
    assert (slow_imagen.project(project) or {})["edit"]["status"] == "Completed"
    for original in originals:
        media = media_by_id(shop, original["product_id"])
        assert list(media) == [original["id"]] and media[original["id"]]["sha256"] != original["sha256"]
    assert second.terminate(timeout=20) == 0


# --- 5. config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ('photography_type = "OTHER"\n', "config error: [imagen] profile_key: missing (required)"),
        (
            IMAGEN_TABLE.replace("crop = true\n", "") + "straighten = true\nperspective_correction = true\n",
            "config error: [imagen] perspective_correction: cannot be used with straighten",
        ),
        (IMAGEN_TABLE + "headshot_crop = true\n", "config error: [imagen] headshot_crop: cannot be used with crop"),
        (IMAGEN_TABLE + "crpo = true\n", "config error: [imagen] crpo: unknown key; did you mean 'crop'?"),
    ],
    ids=["no_profile_key", "straighten_and_perspective", "two_crops", "typo"],
)
def test_bad_imagen_table_exits_2_with_one_line(shop, imagen, tmp_path: Path, table: str, expected: str) -> None:
    config = imagen_config(shop, imagen, tmp_path, table=table)
    for command in ("check", "run"):
        result = cli(command, config=config, timeout=60)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.strip().startswith(expected), (command, result.stderr)
        assert "\n" not in result.stderr.strip()
        assert "Traceback" not in result.stderr + result.stdout
    assert imagen.stats()["requests"] == {}  # refused before anything was asked


# --- 6. retouch check and the account's profiles --------------------------------------------------


def test_check_lists_profiles_and_refuses_an_unknown_profile(shop, imagen, tmp_path: Path) -> None:
    good = cli("check", config=imagen_config(shop, imagen, tmp_path))
    assert good.returncode == 0, good.stdout + good.stderr
    (line,) = [x for x in good.stdout.splitlines() if x.startswith("provider:")]
    assert "ok" in line and "5700" in line and "CLEAN PRODUCT" in line
    assert "14715" in line and "163322" in line  # the account's other profiles are listed too

    bad = cli(
        "check",
        config=imagen_config(shop, imagen, tmp_path, name="bad.toml", table=IMAGEN_TABLE.replace("5700", "4242")),
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    (line,) = [x for x in bad.stdout.splitlines() if x.startswith("provider:")]
    assert "4242" in line and "5700" in line and "CLEAN PRODUCT" in line
    assert "ok" not in line.split()
    assert "Traceback" not in bad.stdout + bad.stderr


# --- 7. the edit's callback (webhook) -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_edit_callback_reaches_the_daemon_and_a_wrong_token_is_refused(
    shop, slow_imagen, daemon, tmp_path: Path
) -> None:
    port = free_port()
    server = f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "http://127.0.0.1:{port}"\n'
    (product,) = shop.seed(products=1, images_per_product=1, seed=27)
    original = product["media"][0]
    db = tmp_path / "retouch.db"
    run = daemon(imagen_config(shop, slow_imagen, tmp_path, new_only=False, extra=server))
    # With webhooks on, a running edit is polled again only after safety_poll_every (5 min): the job
    # finishes within the timeout only because Imagen's callback brought the next poll forward.
    wait_done(db, [original["id"]], timeout=60)

    ((project,),) = db_rows(db, "select provider_job_id from job")
    edit = httpx.get(f"{slow_imagen.base_url}/_sandbox/projects/{project}").json()["edit"]
    callback = edit["options"]["callback_url"] or ""
    assert callback.startswith(f"http://127.0.0.1:{port}/webhooks/imagen/")
    assert token_matches(IMAGEN_KEY, callback.rsplit("/", 1)[-1])  # compared, never printed
    assert slow_imagen.stats()["callbacks"]["delivered"] >= 1
    received = [e for e in run.events() if e.get("event") == "webhook_received"]
    assert received and all(e["provider_job_id"] == project for e in received)
    assert {e["type"] for e in received} >= {"edit.Completed"}

    refused = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/imagen/wrongtoken",
        json={"project_uuid": project, "status": "Completed", "action": "edit"},
    )
    assert refused.status_code == 401
    wait_for(lambda: any(e.get("event") == "webhook_rejected" for e in run.events()), 10, what="rejection logged")
    assert_charged_once_each(slow_imagen, [original])
    assert run.terminate(timeout=20) == 0
