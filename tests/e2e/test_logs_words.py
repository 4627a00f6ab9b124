"""Logs an owner can read (issue 23): no None-valued fields, a human `message` on every JSON line, the
image's file name on image events, failures at warning, local time on a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from conftest import cli
from retouch.sync import logs

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def test_json_lines_drop_none_and_carry_a_message() -> None:
    stream = io.StringIO()
    logs.configure("info", "json", stream=stream)
    log = structlog.get_logger()
    log.info("item_completed", media_id="m1", filename="shirt.jpg", error_code=None)
    log.warning("item_failed", media_id="m2", filename="cap.png", error_code="provider_timeout")
    log.error("job_rejected", message="the provider's own words")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "error_code" not in first and first["message"] == "item completed: shirt.jpg"
    assert second["message"] == "item failed: cap.png, error_code=provider_timeout" and second["level"] == "warning"
    assert third["message"] == "the provider's own words"
    assert first["timestamp"].endswith("Z") or "+00:00" in first["timestamp"]  # UTC in JSON


def test_console_lines_use_local_time_and_no_none() -> None:
    stream = io.StringIO()
    logs.configure("info", "console", stream=stream)
    structlog.get_logger().info("item_completed", media_id="m1", error_code=None)
    line = stream.getvalue()
    assert "error_code" not in line and "Z " not in line and "item_completed" in line


def test_a_run_logs_json_an_owner_can_read(shop, provider, write_config, tmp_path: Path) -> None:
    shop.seed(products=2, images_per_product=1, seed=23)
    config = write_config(new_only=False)
    done = cli("resync", "--all", "--yes", config=config)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert lines, done.stderr
    assert all(line.get("message") for line in lines)
    assert not [line for line in lines if None in line.values()]
    enhanced = [line for line in lines if line["event"] == "item_enhanced"]
    assert enhanced and all(line.get("filename") for line in enhanced), enhanced
