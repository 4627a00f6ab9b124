"""Imagen AI: retouch against the official SDK's `quick_edit` on the same images (not a test).

    .venv/bin/python bench/imagen_vs_sdk.py [--images 40] [--seed 1] [--first-poll 10]
        [--sdk-python /tmp/sdkvenv/bin/python]

The SDK lives in a throwaway venv, never in retouch's:

    python -m venv /tmp/sdkvenv && /tmp/sdkvenv/bin/pip install imagen-ai-sdk

Two runs, each on a fresh Imagen sandbox (its default durations: edit 0.5 s pending + 2 s, export
1 s) and a fresh Shopify sandbox seeded with the same `--images` products (one image each):

  retouch  the real daemon (`python -m retouch.sync run -c config`) with new_only = false and
           [imagen] batch_size = --images (one project), first_poll = --first-poll (10 s: the
           SDK's own first interval, which it hard-codes), the shipped [schedule] (tick 2 s).
           It downloads the originals from the Shopify CDN, converts them to JPEG, uploads, edits,
           exports, fetches the results and WRITES THEM BACK TO SHOPIFY (backup, replace, wait
           until READY). Wall time: from starting the daemon until every image is `done` in the
           store; also shown: until every result was in hand (state enhanced or later).
  SDK      the originals are first downloaded from the same CDN URLs to a temp dir and converted
           to JPEG (the SDK refuses non-.jpg files for a JPG profile) — timed separately, as
           "prep"; then a small script in the SDK's venv calls
           `quick_edit(api_key, 5700, paths, export=True, download=True, base_url=<sandbox>/v1)`
           (profile check, project, upload, edit and wait, edit links, export and wait, export
           links, download of the edit files and of the exports). Wall time: the subprocess,
           from its start until its results are downloaded (its own quick_edit time is shown too).

Requests are the Imagen sandbox's own counts ("requests" per endpoint: the /v1 API, plus the
presigned storage PUTs and GETs). retouch's Shopify calls (discovery, CDN downloads, write-back)
are not Imagen requests and are not counted.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import structlog
from daemon_run import run_daemon_until_settled
from harness import Row, command_line, emit
from PIL import Image

from retouch.plugin.providers.imagen.sandbox import ImagenSandbox
from retouch.plugin.shopify.sandbox import ShopifySandbox

SHOP_TOKEN = "shpat_bench_shop_token_0002"
KEY = "imagen_bench_key_0123456789"
PROFILE = 5700  # the sandbox's JPG profile ("CLEAN PRODUCT")
STORAGE = ("upload", "download")  # the sandbox's names for presigned PUTs and GETs
DEFAULT_SDK_PYTHON = "/tmp/sdkvenv/bin/python"
RESULT_STATES = ("enhanced", "backed_up", "written", "done")

# Runs inside the SDK's venv: argv[1] is a JSON object of arguments; prints one JSON line.
SDK_SCRIPT = r'''
import asyncio, json, logging, sys, time, traceback
args = json.loads(sys.argv[1])
started = time.monotonic()
out = {}
try:
    import imagen_sdk
    from imagen_sdk import quick_edit
    out["sdk_version"] = getattr(imagen_sdk, "__version__", "?")
    logging.getLogger().setLevel(logging.WARNING)
    began = time.monotonic()
    result = asyncio.run(quick_edit(api_key=args["api_key"], profile_key=args["profile_key"],
                                    image_paths=args["paths"], export=True, download=True,
                                    download_dir=args["download_dir"], base_url=args["base_url"]))
    out["quick_edit_seconds"] = time.monotonic() - began
    out["project_uuid"] = result.project_uuid
    out["uploaded"] = result.upload_summary.successful
    out["edit_links"] = len(result.download_links or [])
    out["export_links"] = len(result.export_links or [])
    out["downloaded_files"] = len(result.downloaded_files or [])
    out["exported_files"] = len(result.exported_files or [])
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
    out["traceback"] = traceback.format_exc()[-3000:]
out["script_seconds"] = time.monotonic() - started
print(json.dumps(out))
'''


@dataclass
class Run:
    name: str
    wall: float | None = None  # the figure compared (see the module docstring)
    results_at: float | None = None  # retouch: every result in hand
    finished: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    charges: int = 0
    projects: int = 0
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def api_requests(self) -> int:
        return sum(n for endpoint, n in self.requests.items() if endpoint not in STORAGE)

    @property
    def storage_requests(self) -> int:
        return sum(n for endpoint, n in self.requests.items() if endpoint in STORAGE)


def start(args) -> tuple[ShopifySandbox, object, ImagenSandbox, list[dict]]:
    shop = ShopifySandbox(access_token=SHOP_TOKEN, processing_seconds=0.2)
    shop_server = shop.start()
    imagen = ImagenSandbox(api_keys=(KEY,))  # the sandbox's default durations
    imagen.start()
    products = shop.seed(products=args.images, images_per_product=1, seed=args.seed)
    return shop, shop_server, imagen, products


def take_stats(run: Run, imagen: ImagenSandbox) -> None:
    stats = imagen.stats()
    run.requests = dict(stats["requests"])
    run.charges = stats["charges"]
    run.projects = stats["projects"]


# --- retouch ------------------------------------------------------------------------------------------


def config_text(shop: ShopifySandbox, imagen: ImagenSandbox, tmp: Path, args) -> str:
    """As tests/conftest.py's provider_config_text writes it for imagen; the shipped [schedule]."""
    return f"""
[shop]
url = "{shop.shop_url}"
access_token = "{SHOP_TOKEN}"

[provider]
name = "imagen"
api_key = "{KEY}"
base_url = "{imagen.api_url}"
timeout = "30s"

[imagen]
profile_key = {PROFILE}
batch_size = {args.images}
first_poll = "{args.first_poll:g}s"

[selection]
new_only = false

[writeback]
mode = "replace"
backup_dir = "{tmp / 'backups'}"

[schedule]
tick = "{args.tick:g}s"

[storage]
url = "sqlite:///{tmp / 'retouch.db'}"

[log]
level = "debug"
format = "json"
"""


def run_retouch(args) -> Run:
    run = Run("retouch")
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-imagen-"))
    shop, shop_server, imagen, products = start(args)
    media_ids = [m["id"] for p in products for m in p["media"]]
    try:
        config = tmp / "config.toml"
        config.write_text(config_text(shop, imagen, tmp, args))
        db = tmp / "retouch.db"
        log_path = tmp / "daemon.log"

        def note_results(states: list, at: float) -> None:
            if run.results_at is None and all(s in RESULT_STATES for s in states):
                run.results_at = at

        outcome = run_daemon_until_settled(config, db, media_ids, log_path, timeout=args.timeout, on_tick=note_results)
        states, elapsed = outcome.states, outcome.elapsed
        run.finished = states.count("done")
        run.wall = elapsed
        take_stats(run, imagen)
        if run.finished < len(media_ids):
            run.error = f"not every image done after {elapsed:.0f} s: states {sorted(set(map(str, states)))}"
        run.notes.extend(phase_notes(log_path))
        run.notes.append(f"daemon log: {log_path}")
        return run
    finally:
        imagen.close()
        shop_server.stop()


def phase_notes(path: Path) -> list[str]:
    """When each phase happened, from the daemon's JSON log (seconds after its first line)."""
    from datetime import datetime

    firsts: dict[str, float] = {}
    lasts: dict[str, float] = {}
    t0 = None
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
            at = datetime.fromisoformat(event["timestamp"]).timestamp()
        except (ValueError, KeyError):
            continue
        t0 = at if t0 is None else t0
        name = event.get("event", "")
        firsts.setdefault(name, at - t0)
        lasts[name] = at - t0
    wanted = [
        ("queued", "queued"),
        ("project_created", "project created"),
        ("storage_requested", "storage"),
        ("edit_started", "edit started"),
        ("export_started", "export started"),
        ("job_finished", "exported"),
        ("item_enhanced", "results recorded"),
        ("backed_up", "backed up"),
        ("written", "written to Shopify"),
        ("done", "done"),
    ]
    parts = []
    for key, label in wanted:
        if key in firsts:
            span = (
                f"{firsts[key]:.1f}" if abs(lasts[key] - firsts[key]) < 0.05 else f"{firsts[key]:.1f}-{lasts[key]:.1f}"
            )
            parts.append(f"{label} {span}")
    return ["phases (s after the daemon's first log line): " + ", ".join(parts)] if parts else []


# --- the SDK ------------------------------------------------------------------------------------------


def prepare_originals(products: list[dict], folder: Path) -> list[Path]:
    """Download every original from its CDN URL and save it as a JPEG (the SDK uploads files)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    with httpx.Client(timeout=30, trust_env=False) as http:
        for index, product in enumerate(products):
            for media in product["media"]:
                answer = http.get(media["url"])
                answer.raise_for_status()
                data = answer.content
                with Image.open(io.BytesIO(data)) as image:
                    if image.format != "JPEG":
                        buffer = io.BytesIO()
                        image.convert("RGB").save(buffer, "JPEG", quality=92)
                        data = buffer.getvalue()
                # unique names: two products may share a title
                path = folder / f"{index:03d}_{media['id'].rsplit('/', 1)[-1]}.jpg"
                path.write_bytes(data)
                paths.append(path)
    return paths


def run_sdk(args) -> Run:
    run = Run("imagen-ai-sdk quick_edit")
    sdk_python = Path(args.sdk_python)
    if not sdk_python.exists():
        run.error = (
            f"the SDK's venv is missing ({sdk_python}): python -m venv /tmp/sdkvenv && "
            "/tmp/sdkvenv/bin/pip install imagen-ai-sdk"
        )
        return run
    tmp = Path(tempfile.mkdtemp(prefix="retouch-bench-sdk-"))
    _shop, shop_server, imagen, products = start(args)
    try:
        began = time.monotonic()
        paths = prepare_originals(products, tmp / "originals")
        run.notes.append(
            f"prep (CDN download + JPEG conversion of {len(paths)} originals, not in the wall time): "
            f"{time.monotonic() - began:.1f} s"
        )
        script = tmp / "sdk_quick_edit.py"
        script.write_text(SDK_SCRIPT)
        payload = {
            "api_key": KEY,
            "profile_key": PROFILE,
            "paths": [str(p) for p in paths],
            "download_dir": str(tmp / "downloads"),
            "base_url": imagen.api_url,
        }
        started = time.monotonic()
        done = subprocess.run(
            [str(sdk_python), str(script), json.dumps(payload)],
            capture_output=True,
            text=True,
            check=False,
            timeout=args.timeout,
            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
        )
        run.wall = time.monotonic() - started
        take_stats(run, imagen)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        out = json.loads(lines[-1]) if lines else {}
        if not out:
            run.error = f"the SDK script printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
            return run
        if "error" in out:
            run.error = f"quick_edit failed against the sandbox: {out['error']}"
            (tmp / "sdk_error.txt").write_text(out.get("traceback", ""))
            run.notes.append(f"full traceback: {tmp / 'sdk_error.txt'}")
            return run
        run.finished = out["exported_files"]
        run.notes.append(
            f"imagen-ai-sdk {out.get('sdk_version', '?')}: quick_edit itself {out['quick_edit_seconds']:.1f} s "
            f"(the rest of the wall time is the interpreter starting and importing); uploaded "
            f"{out['uploaded']}, {out['edit_links']} edit links, {out['export_links']} export links, "
            f"downloaded {out['downloaded_files']} edit files + {out['exported_files']} exports"
        )
        return run
    finally:
        imagen.close()
        shop_server.stop()


# --- report -------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--first-poll",
        type=float,
        default=10.0,
        help="retouch's [imagen] first_poll in seconds (the SDK's first interval: 10 s, fixed)",
    )
    parser.add_argument("--tick", type=float, default=2.0, help="retouch's [schedule] tick (shipped: 2 s)")
    parser.add_argument("--sdk-python", default=DEFAULT_SDK_PYTHON)
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    runs = []
    for which in (run_retouch, run_sdk):
        t0 = time.monotonic()
        print(f"... {which.__name__}", file=sys.stderr, flush=True)
        runs.append(which(args))
        print(f"... {which.__name__} took {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    retouch, sdk = runs

    print(
        f"\nImagen: {args.images} images, one project each side, profile {PROFILE}, sandbox default durations "
        f"(edit 0.5+2 s, export 1 s), retouch first_poll {args.first_poll:g} s, tick {args.tick:g} s, "
        f"seed {args.seed}"
    )
    header = (
        f"{'run':<25} {'wall s':>7} {'results s':>9} {'images':>6} {'API req':>7} {'storage':>7} {'total':>6} "
        f"{'charges':>7} {'projects':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        wall = f"{r.wall:7.1f}" if r.wall is not None else f"{'-':>7}"
        results = f"{r.results_at:9.1f}" if r.results_at is not None else f"{'-':>9}"
        print(
            f"{r.name:<25} {wall} {results} {r.finished:6d} {r.api_requests:7d} {r.storage_requests:7d} "
            f"{r.api_requests + r.storage_requests:6d} {r.charges:7d} {r.projects:8d}"
        )
    print()
    endpoints = sorted(set(retouch.requests) | set(sdk.requests))
    if endpoints:
        print("requests by endpoint:  " + "  ".join(f"{e}" for e in endpoints))
        for r in runs:
            print(f"  {r.name:<25} " + "  ".join(f"{e}={r.requests.get(e, 0)}" for e in endpoints))
        print()
    for r in runs:
        for note in r.notes:
            print(f"  {r.name}: {note}")
        if r.error:
            print(f"  {r.name}: ERROR: {r.error}")
    print(
        "  retouch's wall time includes writing the results back to Shopify (backup, replace, READY); the "
        "SDK's ends when its files are downloaded. Only Imagen-side requests are compared."
    )
    ok = retouch.error is None and sdk.error is None
    if ok:
        ratio = retouch.wall / sdk.wall
        print(
            f"  wall: retouch (all done in the store) / SDK (downloaded) = {ratio:.2f}x -> "
            f"{'met' if ratio <= 1 else 'NOT met'} (target: no slower)"
        )
        if retouch.results_at is not None:
            print(
                f"  results in hand: retouch {retouch.results_at:.1f} s vs SDK {sdk.wall:.1f} s = "
                f"{retouch.results_at / sdk.wall:.2f}x"
            )
        req_ratio = retouch.api_requests / sdk.api_requests if sdk.api_requests else float("nan")
        all_ratio = (
            (retouch.api_requests + retouch.storage_requests) / (sdk.api_requests + sdk.storage_requests)
            if sdk.api_requests + sdk.storage_requests
            else float("nan")
        )
        print(
            f"  Imagen API requests: retouch / SDK = {retouch.api_requests}/{sdk.api_requests} = {req_ratio:.2f}x; "
            f"with storage: {all_ratio:.2f}x -> {'met' if all_ratio <= 1 and req_ratio <= 1 else 'NOT met'} "
            f"(target: no more requests)"
        )
        ok = ratio <= 1 and req_ratio <= 1 and all_ratio <= 1
    command = [
        "bench/imagen_vs_sdk.py",
        "--images",
        str(args.images),
        "--seed",
        str(args.seed),
        "--first-poll",
        f"{args.first_poll:g}",
    ]
    if args.tick != 2.0:
        command += ["--tick", f"{args.tick:g}"]
    if args.sdk_python != DEFAULT_SDK_PYTHON:
        command += ["--sdk-python", args.sdk_python]
    command_text = command_line(*command)
    print(f"command: {command_text}")
    emit(rows(args, retouch, sdk, command_text))
    return 0 if retouch.error is None else 1


def rows(args, retouch: Run, sdk: Run, command: str) -> list[Row]:
    """The harness's rows: the SDK's figure beside each of ours (or why there is none)."""
    scenario = f"Imagen, {args.images} images"

    def peer(value: str) -> str:
        return value if sdk.error is None else "n/a (SDK not installed)"

    out = []
    if retouch.results_at is not None:
        out.append(
            Row(
                scenario,
                "results in hand (SDK: downloaded)",
                retouch.results_at,
                "s",
                naive=peer(f"{sdk.wall:.1f} s" if sdk.wall else ""),
                command=command,
            )
        )
    if retouch.wall is not None:
        out.append(
            Row(
                scenario,
                "all written back to Shopify and READY",
                retouch.wall,
                "s",
                naive=peer("does not write back"),
                command=command,
            )
        )
    out.append(
        Row(
            scenario,
            "Imagen requests (API + storage)",
            retouch.api_requests + retouch.storage_requests,
            "",
            naive=peer(f"{sdk.api_requests + sdk.storage_requests}"),
            target="no more than the SDK",
            met=None
            if sdk.error
            else retouch.api_requests + retouch.storage_requests <= sdk.api_requests + sdk.storage_requests,
            command=command,
        )
    )
    return out


if __name__ == "__main__":
    raise SystemExit(main())
