"""Bad input, responses, at pipeline level: AI Gen Studio answered by whatever hypothesis makes up,
the store being the real sandbox. After every work cycle: no exception got out of it, no image row
is lost, a failed image or a job waiting to be retried carries a reason, and the next cycle runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import PROVIDER_KEY, run_async
from fuzz_clients import AIGEN
from fuzz_http import AnsweringServer, answers
from retouch.storage.models import ImageState, JobState
from retouch.sync.config import load_settings
from retouch.sync.pipeline import discover
from retouch.sync.runtime import open_context, work_cycle

EXAMPLES = int(os.environ.get("RETOUCH_FUZZ_PIPELINE_EXAMPLES", "8"))


def config(shop_url: str, provider_url: str, home: Path) -> Path:
    path = home / "config.toml"
    path.write_text(f"""
[shop]
url = "{shop_url}"
access_token = "shpat_TESTSECRET_shop_7f3a9c"
[provider]
api_key = "{PROVIDER_KEY}"
base_url = "{provider_url}"
timeout = "5s"
[selection]
new_only = false
[schedule]
tick = "0.2s"
[storage]
url = "sqlite:///{home / 'retouch.db'}"
[writeback]
backup_dir = "{home / 'backups'}"
""")
    return path


async def cycles(settings, server: AnsweringServer, script) -> list[str]:
    """Discover, then one work cycle per answer; the problems found after each."""
    found: list[str] = []
    async with open_context(settings) as ctx:
        now = [time.time()]
        ctx.clock = lambda: now[0]
        await discover(ctx)
        media = {row.media_id for row in ctx.store.images_in_state(*ImageState)}
        for answer in script:
            server.answer = answer
            try:
                await work_cycle(ctx)
            except Exception as exc:  # the scheduler would log it and go on; here it is the bug
                found.append(f"work cycle raised {type(exc).__name__}: {exc}")
            rows = ctx.store.images_in_state(*ImageState)
            if {row.media_id for row in rows} != media:
                found.append("an image row was lost")
            found += [
                f"{row.media_id} failed without a reason"
                for row in rows
                if row.state == ImageState.FAILED and not (row.error_code and row.error_message)
            ]
            # A job waiting to be sent again says why, or submissions are paused (the reason is the pause's).
            found += [
                f"job {job.id} waits without a reason"
                for job in ctx.store.jobs_in_state(JobState.PENDING)
                if job.attempts and not job.error_code and not ctx.paused()
            ]
            now[0] += 700  # past every backoff: the next cycle may retry
    return found


def test_whatever_the_provider_answers_the_rows_stay_and_say_why(shop, tmp_path: Path) -> None:
    shop.seed(products=3)
    server = AnsweringServer()
    try:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(script=st.lists(answers(AIGEN, server.url), min_size=2, max_size=5))
        def check(script) -> None:
            home = Path(tempfile.mkdtemp(dir=tmp_path))
            settings_ = load_settings(config(shop.shop_url, server.url, home), environ={})
            assert run_async(cycles(settings_, server, script)) == []

        check()
    finally:
        server.stop()
