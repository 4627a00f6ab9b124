"""ProductAI as the provider, end to end: the real CLI (or the pipeline in-process where noted)
against the ProductAI and Shopify sandboxes on loopback, with a real SQLite file.

ProductAI has no idempotency key and one shared budget of requests, so these tests watch what it
charged (`jobs_by_image_url`), how busy the busiest window was, and what happens when an answer
is lost, tokens run out or the daemon is killed."""

from __future__ import annotations

import hashlib
import io
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import (
    PRODUCTAI_KEY,
    PRODUCTAI_TABLE,
    PROFILES,
    cli,
    db_rows,
    image_states,
    provider_config_text,
    run_async,
    wait_for,
)
from retouch.plugin.providers.base import webhook_token
from retouch.plugin.providers.productai.sandbox import ProductAISandbox
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import discover, submit
from retouch.sync.pipeline.context import LAST_DISCOVERY, PAUSED
from retouch.sync.runtime import open_context, run_until_settled

# Every test here may run the real CLI with distinctive fake secrets; none may leak anywhere.
pytestmark = pytest.mark.usefixtures("no_secret_leaks")

WINDOW = 6.0  # a short budget window, the same in the sandbox and in [productai], to keep tests fast
FAST_TABLE = PRODUCTAI_TABLE + f'window = "{WINDOW:g}s"\n'


@pytest.fixture
def pai():
    """Start a ProductAI sandbox with the short window (and any other option); stopped after the test."""
    servers = []

    def start(**options) -> ProductAISandbox:
        sandbox = ProductAISandbox(
            **{
                "keys": {PRODUCTAI_KEY: 100_000},
                "job_seconds": 0.3,
                "rate_limit_scope": "key",
                "window_seconds": WINDOW,
                **options,
            }
        )
        servers.append(sandbox.start())
        return sandbox

    yield start
    for server in servers:
        server.stop()


def write_config(
    shop,
    tmp_path: Path,
    sandbox,
    *,
    table: str = FAST_TABLE,
    schedule: str = "",
    timeout: str | None = None,
    name: str = "config.toml",
    **options,
) -> Path:
    text = provider_config_text(
        shop, tmp_path, provider="productai", base_url=sandbox.base_url, api_key=PRODUCTAI_KEY, table=table, **options
    )
    text = text.replace("[schedule]\n", "[schedule]\n" + schedule)
    if timeout:
        text = text.replace('timeout = "5s"', f'timeout = "{timeout}"')
    path = tmp_path / name
    path.write_text(text)
    return path


def key_stats(sandbox: ProductAISandbox) -> dict:
    return sandbox.stats()["keys"][PRODUCTAI_KEY]


def meta(db: Path, key: str) -> str | None:
    rows = db_rows(db, "select value from meta where key = ?", key)
    return rows[0][0] if rows else None


def states_of(db: Path, media_ids: list[str]) -> list[str | None]:
    states = image_states(db)
    return [states.get(m) for m in media_ids]


def wait_done(db: Path, media_ids: list[str], timeout: float = 90) -> None:
    wait_for(
        lambda: set(states_of(db, media_ids)) == {"done"},
        timeout,
        what=f"{media_ids} done (states: {image_states(db)})",
    )


def wait_baseline(db: Path, count: int) -> None:
    wait_for(lambda: list(image_states(db).values()) == ["baseline"] * count, 60, what="baseline recorded")


def run_pipeline(settings, *, queued: int | None = None) -> dict:
    """Discover (new_only off: every image is queued) and run the pipeline until nothing is pending."""

    async def scenario():
        async with open_context(settings) as ctx:
            found = await discover(ctx)
            if queued is not None:
                assert found["queued"] == queued
            await run_until_settled(ctx)
            return ctx.store.counts_by_state()

    return run_async(scenario(), timeout=300)


def image_row(db: Path, media_id: str) -> dict:
    query = "select state, error_code, error_message, paid_attempts, source_url, job_id from image where media_id = ?"
    (row,) = db_rows(db, query, media_id)
    return dict(zip(("state", "error_code", "error_message", "paid_attempts", "source_url", "job_id"), row))


# --- 1. end to end ---------------------------------------------------------------------------------


@pytest.mark.parametrize("productai", PROFILES, indirect=True)  # production: NOT_STARTED first, FAILED/TIMEOUT
@pytest.mark.parametrize("mode", ["replace", "append"])
def test_end_to_end_through_the_cli(mode, shop, productai, daemon, tmp_path: Path) -> None:
    products = shop.seed(products=2, images_per_product=1, seed=41)
    db = tmp_path / "retouch.db"
    run = daemon(write_config(shop, tmp_path, productai, table=PRODUCTAI_TABLE, mode=mode))
    wait_baseline(db, 2)
    added = [
        shop.add_image(p["legacy_id"], filename=name, alt=f"New {name}")
        for p, name in zip(products, ("front.jpg", "side.png"))
    ]
    wait_done(db, [a["id"] for a in added])

    for product, original in zip(products, added):
        media = shop.product(product["legacy_id"])["media"]
        by_id = {m["id"]: m for m in media}
        ((output_id, sha),) = db_rows(
            db, "select output_media_id, backup_sha256 from image where media_id = ?", original["id"]
        )
        if mode == "replace":
            assert output_id == original["id"] and len(media) == 2
            assert by_id[output_id]["sha256"] != original["sha256"]
        else:  # the result sits right after its original, which is kept unchanged
            assert output_id != original["id"] and len(media) == 3
            assert by_id[original["id"]]["sha256"] == original["sha256"]
            assert by_id[output_id]["position"] == by_id[original["id"]]["position"] + 1
        assert by_id[output_id]["mime_type"] == original["mime_type"] and by_id[output_id]["status"] == "READY"
        assert len({m["sha256"] for m in media}) == len(media)  # no duplicate media
        # The original is kept byte for byte in the backup store.
        assert sha == original["sha256"]
        assert hashlib.sha256((tmp_path / "backups" / sha[:2] / sha).read_bytes()).hexdigest() == sha

    # Two more discovery passes (our writes bumped updatedAt) send nothing again.
    since = time.time()
    wait_for(lambda: float(meta(db, LAST_DISCOVERY) or 0) > since + 1.5, 30, what="two more discovery passes")
    stats = key_stats(productai)
    sources = {image_row(db, a["id"])["source_url"] for a in added}
    assert stats["jobs_by_image_url"] == {url: 1 for url in sources}
    assert stats["jobs_started"] == {"generate": 2, "upscale": 0}
    assert stats["rate_limited"] == 0
    assert sum(len(shop.product(p["legacy_id"])["media"]) for p in products) == (4 if mode == "replace" else 6)
    assert run.terminate(timeout=15) == 0


# --- 2. the shared budget ------------------------------------------------------------------------


def test_the_request_budget_is_never_exceeded_over_60_images(shop, pai, tmp_path: Path) -> None:
    sandbox = pai(requests_per_window=15)
    shop.seed(products=30, images_per_product=2, seed=42)
    settings = load_settings(write_config(shop, tmp_path, sandbox, new_only=False))
    assert run_pipeline(settings, queued=60) == {"done": 60}
    stats = key_stats(sandbox)
    assert stats["rate_limited"] == 0  # not one 429 provoked
    assert stats["max_requests_per_window"] <= 15
    assert len(stats["jobs_by_image_url"]) == 60 and set(stats["jobs_by_image_url"].values()) == {1}
    assert stats["jobs_started"]["generate"] == 60


# --- 3. out of tokens --------------------------------------------------------------------------------


def test_out_of_tokens_pauses_and_resumes_by_itself(shop, pai, daemon, tmp_path: Path) -> None:
    sandbox = pai()  # answers OUT_OF_TOKENS in its two shapes in turn
    products = shop.seed(products=1, images_per_product=1, seed=43)
    db = tmp_path / "retouch.db"
    config = write_config(shop, tmp_path, sandbox, schedule='credits_retry = "1s"\n')
    daemon(config)
    wait_baseline(db, 1)
    sandbox.set_tokens(PRODUCTAI_KEY, 3)  # one kontext-pro image, no more
    added = [shop.add_image(products[0]["legacy_id"], filename=f"new-{i}.jpg") for i in range(3)]
    ids = [a["id"] for a in added]

    # Both shapes answered (the paused retry meets the second): still paused, nothing failed.
    wait_for(lambda: key_stats(sandbox)["out_of_tokens"] >= 2 and meta(db, PAUSED), 60, what="two OUT_OF_TOKENS")
    assert "failed" not in states_of(db, ids)
    assert states_of(db, ids).count("discovered") >= 1
    pending = db_rows(db, "select provider_job_id from job where state = ?", str(JobState.PENDING))
    assert pending == [(None,)]  # the job that ran out keeps its images, unsent
    status = cli("status", "--json", config=config)
    assert status.returncode == 0, status.stderr
    assert "OUT_OF_TOKENS" in json.loads(status.stdout)["paused"]["reason"]
    assert key_stats(sandbox)["jobs_started"]["generate"] == 1

    sandbox.set_tokens(PRODUCTAI_KEY, 100_000)  # the owner buys tokens: no command needed
    wait_done(db, ids)
    assert meta(db, PAUSED) is None
    stats = key_stats(sandbox)
    assert len(stats["jobs_by_image_url"]) == 3 and set(stats["jobs_by_image_url"].values()) == {1}


# --- 4. a crash mid-batch ----------------------------------------------------------------------------


def test_kill_9_mid_batch_and_restart_charges_each_image_once(shop, pai, daemon, tmp_path: Path) -> None:
    sandbox = pai(job_seconds=6.0)
    products = shop.seed(products=2, images_per_product=1, seed=44)
    db = tmp_path / "retouch.db"
    # Three jobs at once: the kill comes while three run and three wait, with no send in flight.
    config = write_config(shop, tmp_path, sandbox, table=FAST_TABLE + "active_jobs = 3\n")
    first = daemon(config)
    wait_baseline(db, 2)
    ids = [shop.add_image(products[i % 2]["legacy_id"], filename=f"batch-{i}.jpg")["id"] for i in range(6)]

    def three_running() -> bool:
        jobs = db_rows(db, "select state, provider_job_id from job")
        return (
            sorted(state for state, _ in jobs) == ["submitted"] * 3
            and all(pid for _, pid in jobs)
            and "done" not in states_of(db, ids)
        )

    wait_for(three_running, 60, interval=0.05, what="three jobs submitted")
    first.kill()
    assert key_stats(sandbox)["jobs_started"]["generate"] == 3
    assert states_of(db, ids).count("discovered") == 3

    daemon(config)
    wait_done(db, ids, timeout=120)
    stats = key_stats(sandbox)
    sources = {image_row(db, m)["source_url"] for m in ids}
    assert stats["jobs_by_image_url"] == {url: 1 for url in sources}
    assert stats["jobs_started"]["generate"] == 6


# --- 5. a lost answer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("lost", ["drop_response", "timeout"])
def test_lost_answer_with_one_attempt_fails_and_is_only_resent_by_retry(lost, shop, pai, tmp_path: Path) -> None:
    """drop_response: the job starts (and is charged), then the answer is a 500. timeout: the answer
    comes after the client gave up (the job is charged then)."""
    sandbox = pai()
    (product,) = shop.seed(products=1, images_per_product=1, seed=45)
    media_id = product["media"][0]["id"]
    db = tmp_path / "retouch.db"
    # A 4 s timeout that a stalled CI machine cannot outlast on an answered request, and a hang
    # that outlasts it by more than such a stall (waited for below: 5.5 s more than before).
    config = write_config(shop, tmp_path, sandbox, new_only=False, timeout="4s")
    if lost == "drop_response":
        sandbox.add_fault("generate", mode="drop_response")
    else:
        sandbox.add_fault("generate", mode="hang", seconds=7.5)
    settings = load_settings(config)

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)
            for _ in range(3):  # nothing is sent again by itself
                assert await submit(ctx) == 0
            return ctx.store.counts_by_state()

    assert run_async(scenario()) == {"failed": 1}
    row = image_row(db, media_id)
    assert row["error_code"] == "submission_uncertain" and "retouch retry" in row["error_message"]
    wait_for(lambda: key_stats(sandbox)["jobs_started"]["generate"] == 1, 20, what="the lost job charged")
    assert list(key_stats(sandbox)["jobs_by_image_url"].values()) == [1]

    retried = cli("retry", config=config)  # the owner decides to pay again
    assert retried.returncode == 0, retried.stderr
    assert "1 image(s) requeued" in retried.stdout
    assert run_pipeline(settings) == {"done": 1}
    assert list(key_stats(sandbox)["jobs_by_image_url"].values()) == [2]


def test_lost_answer_with_two_attempts_is_sent_again(shop, pai, tmp_path: Path) -> None:
    sandbox = pai()
    (product,) = shop.seed(products=1, images_per_product=1, seed=46)
    sandbox.add_fault("generate", mode="drop_response")
    config = write_config(shop, tmp_path, sandbox, table=FAST_TABLE + "max_attempts = 2\n", new_only=False)
    assert run_pipeline(load_settings(config)) == {"done": 1}
    assert list(key_stats(sandbox)["jobs_by_image_url"].values()) == [2]  # charged twice, deliberately
    assert image_row(tmp_path / "retouch.db", product["media"][0]["id"])["paid_attempts"] == 2


# --- 6. a job that ends in ERROR ---------------------------------------------------------------------


def test_a_job_error_fails_the_image_with_the_reason_and_is_not_retried(shop, pai, tmp_path: Path) -> None:
    sandbox = pai()
    shop.seed(products=2, images_per_product=1, seed=47)
    settings = load_settings(write_config(shop, tmp_path, sandbox, new_only=False))
    # The first generate is accepted and charged, then ends in ERROR. (A broken source URL no longer
    # reaches ProductAI: pre-flight looks at every original first.)
    sandbox.add_fault("generate", mode="fail")

    async def scenario():
        async with open_context(settings) as ctx:
            await discover(ctx)
            await run_until_settled(ctx)
            for _ in range(3):
                assert await submit(ctx) == 0
            (broken,) = ctx.store.images_in_state(ImageState.FAILED)
            return broken, ctx.store.counts_by_state()

    broken, counts = run_async(scenario())
    assert counts == {"done": 1, "failed": 1}
    assert broken.state == "failed" and broken.error_code == "productai_error" and broken.error_message
    stats = key_stats(sandbox)
    assert stats["jobs_by_image_url"][broken.source_url] == 1  # max_attempts = 1: not sent again
    assert stats["jobs_started"]["generate"] == 2
    (provider_job_id,) = db_rows(
        tmp_path / "retouch.db", "select provider_job_id from job where id = ?", broken.job_id
    )[0]
    job = sandbox.job(int(provider_job_id))
    assert job["status"] == "ERROR"  # (its API gives no reason: the message says ProductAI reported an error)


# --- 7. upscale ------------------------------------------------------------------------------------------


def test_upscale_adds_a_second_job_and_writes_the_upscaled_image(shop, pai, tmp_path: Path) -> None:
    sandbox = pai()
    products = shop.seed(products=2, images_per_product=1, seed=48)
    settings = load_settings(
        write_config(shop, tmp_path, sandbox, table=FAST_TABLE + "upscale = true\n", new_only=False)
    )
    assert run_pipeline(settings, queued=2) == {"done": 2}
    stats = key_stats(sandbox)
    assert stats["jobs_started"] == {"generate": 2, "upscale": 2}
    assert stats["rate_limited"] == 0
    db = tmp_path / "retouch.db"
    for product in products:
        media_id = product["media"][0]["id"]
        ((state_json, result_url),) = db_rows(
            db,
            "select job.provider_state, image.result_url from image join job on job.id = image.job_id "
            "where image.media_id = ?",
            media_id,
        )
        state = json.loads(state_json)
        assert sandbox.job(int(state["upscale_id"]))["result_url"] == result_url
        generated = Image.open(io.BytesIO(httpx.get(state["generated_url"], trust_env=False).content))
        written = shop.product(product["legacy_id"])["media"][0]
        assert (written["width"], written["height"]) == (generated.width * 2, generated.height * 2)


def test_an_upscale_whose_answer_is_lost_is_not_paid_for_twice(shop, pai, tmp_path: Path) -> None:
    sandbox = pai()
    shop.seed(products=1, images_per_product=1, seed=51)
    sandbox.add_fault("upscale", mode="drop_response")  # the upscale starts (20 tokens), its answer is a 500
    settings = load_settings(
        write_config(shop, tmp_path, sandbox, table=FAST_TABLE + "upscale = true\n", new_only=False)
    )
    assert run_pipeline(settings) == {"done": 1}  # with the generated image, not upscaled
    assert key_stats(sandbox)["jobs_started"] == {"generate": 1, "upscale": 1}


# --- 8. the account webhook ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_webhooks_bring_the_poll_forward(shop, pai, daemon, tmp_path: Path) -> None:
    # Jobs outlast the first poll; with an hour between safety polls only a webhook finishes them soon.
    sandbox = pai(job_seconds=5.0)
    products = shop.seed(products=1, images_per_product=1, seed=49)
    public_url = f"http://127.0.0.1:{free_port()}"
    config = write_config(
        shop,
        tmp_path,
        sandbox,
        extra=f'[server]\nlisten = "{public_url[7:]}"\npublic_url = "{public_url}"\nsafety_poll_every = "1h"\n',
    )
    hook_url = f"{public_url}/webhooks/productai/{webhook_token(PRODUCTAI_KEY)}"
    sandbox.set_webhook(PRODUCTAI_KEY, hook_url)
    # `retouch check` prints the URL to set on the dashboard (its secret token on purpose, so this
    # output is kept out of the leak check). Run before the daemon: see the /healthz test below.
    check = subprocess.run(
        [sys.executable, "-m", "retouch.sync", "check", "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0 and hook_url in check.stdout, check.stdout + check.stderr
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_baseline(db, 1)

    ids = [shop.add_image(products[0]["legacy_id"], filename=f"hook-{i}.jpg")["id"] for i in range(2)]
    wait_done(db, ids, timeout=60)
    received = {e["job_id"] for e in run.events() if e.get("event") == "webhook_received"}
    job_ids = {image_row(db, m)["job_id"] for m in ids}
    assert job_ids <= received
    stats = key_stats(sandbox)
    assert sandbox.stats()["webhooks"]["delivered"] >= 2
    assert stats["requests"]["job"] <= 2 * len(ids) + 1  # the first poll, the one the webhook asked for (+ check)

    wrong = httpx.post(
        f"{public_url}/webhooks/productai/{'0' * 32}",
        json={"status": "success", "job_id": "1", "image_url": "https://example.com/x.png"},
        trust_env=False,
    )
    assert wrong.status_code == 401
    assert httpx.post(f"{public_url}/webhooks/productai", json={"status": "error"}, trust_env=False).status_code == 401
    assert run.terminate(timeout=15) == 0


def test_a_health_probe_beside_another_command_keeps_the_daemons_writes(
    shop, productai, daemon, tmp_path: Path
) -> None:
    """What `retouch check` does with webhooks on and the daemon running: GET its /healthz, and
    open the database from another process. The daemon's later writes must still reach the file."""
    products = shop.seed(products=1, images_per_product=1, seed=50)
    listen = f"127.0.0.1:{free_port()}"
    config = write_config(shop, tmp_path, productai, table=PRODUCTAI_TABLE, extra=f'[server]\nlisten = "{listen}"\n')
    db = tmp_path / "retouch.db"
    daemon(config)
    wait_baseline(db, 1)
    assert httpx.get(f"http://{listen}/healthz", trust_env=False).status_code == 200
    assert cli("status", config=config).returncode == 0
    added = shop.add_image(products[0]["legacy_id"], filename="after-probe.jpg")
    wait_done(db, [added["id"]], timeout=30)


# --- 9. config errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('model = "gpt 5!"', "[productai] model"),  # an unlisted model ("gpt-5") is accepted with a warning
        ("requests_per_minute = 0", "[productai] requests_per_minute"),
        ("upscal = true", "[productai] upscal: unknown key; did you mean 'upscale'?"),
    ],
)
def test_config_errors_exit_2_naming_the_key(line, expected, shop, tmp_path: Path) -> None:
    class Offline:
        base_url = "http://127.0.0.1:9/v1"

    config = write_config(shop, tmp_path, Offline, table=line + "\n")
    done = cli("check", config=config)
    assert done.returncode == 2
    assert expected in done.stderr


def test_check_accepts_a_model_beyond_the_documented_list_with_a_warning(shop, productai, tmp_path: Path) -> None:
    # The vendor adds models (its own client code lists more than the page): not refused, but said.
    config = write_config(shop, tmp_path, productai, table='model = "nanobanana2"\nrequests_per_minute = 15\n')
    done = cli("check", config=config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning — [productai] model: 'nanobanana2' is not on ProductAI's documented list" in done.stdout
