"""[notify]: what to send when (pure), the config's one-line errors, and the daemon end to end
against a loopback receiver (Apprise's JSON webhook to a tiny HTTP server that records the POSTs)."""

from __future__ import annotations

import json
import socket
import threading
from datetime import datetime
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bad_images import animated, jpeg
from conftest import SECRETS, cli, config_text, image_states, wait_for
from retouch.sync.notify.decide import Event, Outbox, Reach, daily_due, paused_event, unreachable_events, url_secrets

NOTIFY_TOKEN = "NTFYtoken9f3c2aSECRET"


# ----- the decision ------------------------------------------------------------------------------------------------


def test_a_burst_is_one_message_per_kind_listing_at_most_max_lines() -> None:
    box = Outbox()
    for n in range(30):
        box.add([Event("failed", f"Shirt {n}: bad")], now=float(n) / 10)
    box.add([Event("paused", "no credits")], now=1.0)
    assert box.due(now=59.0, group_for=60, max_lines=10) == []  # still collecting
    messages = box.due(now=61.0, group_for=60, max_lines=10)
    assert [m.kind for m in messages] == ["failed", "paused"]
    failed = messages[0].body.splitlines()
    assert failed[:10] == [f"Shirt {n}: bad" for n in range(10)] and failed[10] == "… and 20 more" and len(failed) == 11
    assert box.due(now=500.0, group_for=60, max_lines=10) == []  # sent once
    box.add([Event("failed", "Hat: bad")], now=600.0)
    assert [m.body for m in box.due(now=660.0, group_for=60, max_lines=10)] == ["Hat: bad"]


def test_a_pause_is_said_once_and_a_new_one_again() -> None:
    paused = {"reason": "out_of_credits: buy credits", "since": 100.0}
    event, told = paused_event(paused, 0.0, 200.0, 900.0, None)
    assert event == Event("paused", "out_of_credits: buy credits")
    assert paused_event(paused, 0.0, 300.0, 900.0, told) == (None, told)
    assert paused_event(None, 0.0, 400.0, 900.0, told) == (None, None)  # resumed
    assert paused_event({**paused, "since": 500.0}, 0.0, 600.0, 900.0, None)[0] is not None
    # A provider rate limit holding submissions: only when it holds longer than unreachable_after.
    assert paused_event(None, 1000.0 + 60, 1000.0, 900.0, None) == (None, None)
    held, key = paused_event(None, 1000.0 + 3600, 1000.0, 900.0, None)
    assert held is not None and "rate limit" in held.line
    assert paused_event(None, 1000.0 + 3600, 1010.0, 900.0, key)[0] is None


def test_a_service_that_stops_answering_is_said_once_per_outage() -> None:
    after = 900.0
    idle = {"Shopify": Reach(unanswered_since=None, last_answer=0.0)}  # answered, or never asked since
    assert unreachable_events(idle, 5000.0, after, frozenset()) == ([], frozenset())
    down = {"Shopify": Reach(unanswered_since=1001.0, last_answer=1000.0)}
    assert unreachable_events(down, 1800.0, after, frozenset()) == ([], frozenset())  # 800 s: not yet
    events, alerted = unreachable_events(down, 1950.0, after, frozenset())
    assert [e.line for e in events] == ["Shopify has not answered for 16 min"] and alerted == {"Shopify"}
    assert unreachable_events(down, 2500.0, after, alerted) == ([], alerted)  # same outage: once
    back = {"Shopify": Reach(unanswered_since=None, last_answer=2600.1)}
    assert unreachable_events(back, 2700.0, after, alerted) == ([], frozenset())


def test_the_daily_summary_is_due_once_a_day_at_its_time() -> None:
    at = dtime(8, 0)
    assert not daily_due(datetime(2026, 12, 6, 7, 59), at, None)
    assert daily_due(datetime(2026, 12, 6, 8, 0), at, "2026-12-05")
    assert daily_due(datetime(2026, 12, 6, 15, 0), at, None)  # a daemon started later that day
    assert not daily_due(datetime(2026, 12, 6, 15, 0), at, "2026-12-06")


def test_the_secret_parts_of_a_notify_url_are_redacted_and_plain_words_are_not() -> None:
    url = f"json://owner:pa55word-Xy@127.0.0.1:8080/hooks/{NOTIFY_TOKEN}?token=abc123DEF456"
    parts = url_secrets(url)
    assert url in parts and "pa55word-Xy" in parts and NOTIFY_TOKEN in parts and "abc123DEF456" in parts
    assert "127.0.0.1" not in parts and "hooks" not in parts
    slack = url_secrets("slack://hooks.slack.com/T1234ABCD/B5678EFGH/xoxbSecret99")
    assert "hooks.slack.com" not in slack and "xoxbSecret99" in slack
    assert "ab12Cd" not in url_secrets("x://h/ab12Cd")  # under 10 characters: too common to hide everywhere
    assert "T1234ABCDxyz" in url_secrets("tgram://T1234ABCDxyz/chat")


# ----- the config -------------------------------------------------------------------------------------------------


def test_notify_config_errors_are_one_line_and_never_show_the_url(shop, provider, tmp_path: Path) -> None:
    good = f"json://127.0.0.1:9/hook/{NOTIFY_TOKEN}"
    cases = {
        f'urls = ["{good}", "nosuchscheme://{NOTIFY_TOKEN}"]': "[notify] urls: URL #2 is not one Apprise can use",
        'events = ["failed", "lunch"]': "[notify] events.1:",
        'daily_at = "25:00"': "[notify] daily_at: '25:00' is not a time of day",
        'group_for = "soon"': "[notify] group_for:",
        'max_lines = 0': "[notify] max_lines:",
    }
    for line, expected in cases.items():
        config = tmp_path / "config.toml"
        config.write_text(config_text(shop, provider, tmp_path, extra=f"[notify]\n{line}\n"))
        done = cli("check", config=config)
        assert done.returncode == 2, (line, done.stderr)
        assert done.stderr.startswith(f"config error: {expected}"), (line, done.stderr)
        assert NOTIFY_TOKEN not in done.stderr and "Traceback" not in done.stderr


# ----- end to end -------------------------------------------------------------------------------------------------


class Receiver:
    """A loopback HTTP server recording every POST body (Apprise's json:// sends one per message)."""

    def __init__(self) -> None:
        posts = self.posts = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                posts.append({"path": self.path, "body": json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def messages(self, kind_title: str) -> list[dict]:
        return [p["body"] for p in self.posts if p["body"]["title"] == kind_title]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens once it is closed


def test_a_burst_of_failures_is_one_message_and_a_broken_notifier_stops_nothing(
    shop, provider, daemon, receiver, tmp_path: Path
) -> None:
    for n in range(4):
        shop.add_product(f"Moving poster {n}", images=[{"filename": f"moving-{n}.gif", "data": animated("GIF")}])
    shop.add_product("Plain mug", images=[{"filename": "mug.jpg", "data": jpeg()}])
    urls = [
        f"json://127.0.0.1:{receiver.port}/hook/{NOTIFY_TOKEN}",
        f"json://127.0.0.1:{closed_port()}/broken/{NOTIFY_TOKEN}",
    ]
    notify = f'[notify]\nurls = {json.dumps(urls)}\ngroup_for = "3s"\ndaily_at = "00:00"\ntimeout = "5s"\n'
    config = tmp_path / "config.toml"
    config.write_text(config_text(shop, provider, tmp_path, new_only=False, extra=notify))
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(
        lambda: sorted(image_states(db).values()) == ["done", "failed", "failed", "failed", "failed"],
        60,
        what=f"four failed, one done: {image_states(db)}",
    )
    wait_for(
        lambda: receiver.messages("retouch: images failed") and receiver.messages("retouch: daily summary"),
        30,
        what=f"the failed and daily messages ({receiver.posts})",
    )
    (failed,) = receiver.messages("retouch: images failed")
    lines = failed["message"].splitlines()
    assert sorted(line.split(":")[0] for line in lines) == [f"Moving poster {n}" for n in range(4)]
    assert all("animated" in line for line in lines), lines
    (daily,) = receiver.messages("retouch: daily summary")
    assert daily["message"].startswith("last 24 hours: ") and "credits spent" in daily["message"]

    # The broken notifier: one warning per burst, and the pipeline went on (a new image is enhanced).
    shop.add_product("Later mug", images=[{"filename": "later.jpg", "data": jpeg()}])
    wait_for(lambda: list(image_states(db).values()).count("done") == 2, 60, what="the later image done")
    assert run.proc.poll() is None
    assert run.terminate(timeout=20) == 0
    events = run.events()
    warnings = [e for e in events if e.get("event") == "notify_failed"]
    assert len(warnings) == 2 and all(e["level"] == "warning" for e in warnings)  # daily, then failed
    assert sorted(k for e in warnings for k in e["kinds"]) == ["daily", "failed"]
    assert len(receiver.posts) == 2  # no message per image, nothing more
    # No secret in any message, nor in anything the daemon wrote.
    for post in receiver.posts:
        text = json.dumps(post["body"])
        assert NOTIFY_TOKEN not in text and not any(secret in text for secret in SECRETS)
    assert NOTIFY_TOKEN not in run.output()


def test_the_loop_says_a_service_down_past_the_threshold_and_a_pause_once(shop, provider, receiver, tmp_path) -> None:
    """In-process, on a pinned clock: the request hooks see Shopify not answering (a closed port),
    and after unreachable_after one "unreachable" message goes; a pause is said once."""
    import asyncio

    from conftest import SHOP_TOKEN, FakeClock, pipeline_settings, run_async
    from retouch.plugin.shopify.client import ShopifyClient
    from retouch.plugin.shopify.errors import ShopifyError
    from retouch.sync.notify.watch import Notifications
    from retouch.sync.pipeline.context import PAUSED
    from retouch.sync.runtime import open_context

    notify = (
        f'[notify]\nurls = ["json://127.0.0.1:{receiver.port}/hook/{NOTIFY_TOKEN}"]\n'
        'events = ["unreachable", "paused"]\nunreachable_after = "15m"\ngroup_for = "60s"\n'
    )
    settings = pipeline_settings(shop, provider, tmp_path, extra=notify)
    clock = FakeClock()

    async def scenario() -> None:
        async with open_context(settings) as ctx:
            dead = ShopifyClient(f"http://127.0.0.1:{closed_port()}", SHOP_TOKEN, "2026-07", timeout=1, max_attempts=1)
            ctx.shopify = dead
            loop = Notifications(ctx, clock=clock)
            await loop.look()
            with pytest.raises(ShopifyError):
                await dead.shop()
            clock.advance(14 * 60)
            await loop.look()
            assert loop.outbox.waiting == {}  # not yet past the threshold
            clock.advance(2 * 60)
            await loop.look()
            assert list(loop.outbox.waiting) == ["unreachable"]
            ctx.store.set_meta(PAUSED, json.dumps({"reason": "out_of_credits: buy credits", "since": clock()}))
            for _ in range(3):
                clock.advance(30)
                await loop.look()
            clock.advance(120)
            await loop.look()
            await dead.aclose()
            await asyncio.sleep(0)

    run_async(scenario())
    bodies = {post["body"]["title"]: post["body"]["message"] for post in receiver.posts}
    assert bodies == {
        "retouch: cannot reach a service": "Shopify has not answered for 16 min",
        "retouch: submissions paused": "out_of_credits: buy credits",
    }
