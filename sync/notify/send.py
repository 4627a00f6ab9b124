"""The thin executor: hand a message to Apprise (blocking) in a thread, with a deadline.

Apprise logs through the standard `logging` module, and its lines may carry the URL it failed on:
its logger is silenced here, and a failure becomes one warning of ours with no URL in it."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import SecretStr

from .decide import Message

# Two threads: a notifier stuck past its timeout holds one; the next burst still has the other.
_EXECUTOR = ThreadPoolExecutor(max_workers=2, thread_name_prefix="retouch-notify")


def quiet_apprise() -> None:
    apprise_log = logging.getLogger("apprise")
    apprise_log.setLevel(logging.CRITICAL + 1)
    apprise_log.propagate = False
    apprise_log.addHandler(logging.NullHandler())


def build(urls: list[SecretStr]) -> tuple[Any, int]:
    """An Apprise object for these URLs, and how many it refused (unknown scheme, malformed)."""
    import apprise

    quiet_apprise()
    sender = apprise.Apprise()
    refused = sum(0 if sender.add(url.get_secret_value()) else 1 for url in urls)
    return sender, refused


def _notify(sender: Any, message: Message) -> bool:
    return bool(sender.notify(title=message.title, body=message.body))


async def send(sender: Any, message: Message, timeout: float) -> bool:
    """True when every URL took the message; False when one refused, raised or took longer than `timeout`."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(_EXECUTOR, _notify, sender, message), timeout)
    except Exception:  # a notifier's bug or timeout is its own problem, never the pipeline's
        return False
