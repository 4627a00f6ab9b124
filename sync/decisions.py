"""Pure decisions of the pipeline: plain data in, plain data out, no I/O, no clock.

Each function answers one question the pipeline asks ("is this media ours?", "what happens to
this media on discovery?", "how long until the next retry?") so it can be unit-tested exhaustively.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from enum import Enum
from pathlib import PurePosixPath
from urllib.parse import urlsplit

# Files we upload to Shopify are named `retouch-<media number>.<ext>`; Shopify keeps that name in
# the CDN URL, which gives a third way (after the DB and the product marker) to recognise our output.
OUTPUT_FILENAME = re.compile(r"^retouch-\d+(?:-[0-9a-f]{6})?\.[a-z0-9]+$")


class Discovery(Enum):
    IGNORE = "ignore"  # not an image, or already tracked
    OUTPUT = "output"  # ours: remember it as output, never enhance
    BASELINE = "baseline"  # existed before the first run (new_only): record, never process
    QUEUE = "queue"  # a new original: enhance it
    EXCLUDED = "excluded"  # the product carries an excluded tag


@dataclass(frozen=True)
class MediaFacts:
    """What discovery knows about one media of a product."""

    media_id: str
    is_image: bool
    filename: str | None
    in_marker: bool  # listed in the product's retouch metafield
    known_output: bool  # recorded as output in our DB
    tracked: bool  # an image row exists for it already


def filename_of(url: str | None) -> str | None:
    """Last path segment of a URL, without the query ('…/files/shoe.jpg?v=3' -> 'shoe.jpg')."""
    if not url:
        return None
    name = PurePosixPath(urlsplit(url).path).name
    return name or None


def is_output_filename(filename: str | None) -> bool:
    return bool(filename and OUTPUT_FILENAME.match(filename.lower()))


def classify_media(facts: MediaFacts, *, first_run: bool, new_only: bool, excluded: bool) -> Discovery:
    """What discovery does with one media of a product."""
    if not facts.is_image:
        return Discovery.IGNORE
    if facts.known_output or facts.in_marker or is_output_filename(facts.filename):
        return Discovery.OUTPUT
    if facts.tracked:
        return Discovery.IGNORE
    if first_run and new_only:
        return Discovery.BASELINE
    if excluded:
        return Discovery.EXCLUDED
    return Discovery.QUEUE


def is_excluded(tags: tuple[str, ...] | list[str], exclude_tags: list[str]) -> bool:
    wanted = {t.strip().lower() for t in exclude_tags}
    return any(t.strip().lower() in wanted for t in tags)


def output_filename(media_id: str, extension: str) -> str:
    """Name of the file we upload for a media's result: recognisable as ours, extension kept."""
    number = media_id.rsplit("/", 1)[-1]
    return f"retouch-{number}.{extension.lower().lstrip('.')}"


def extension_of(filename: str | None, mime_type: str | None) -> str:
    """The original's extension, from its file name or else its MIME type (Shopify checks it on replace)."""
    if filename and "." in filename:
        return filename.rsplit(".", 1)[1].lower()
    return {"image/png": "png", "image/webp": "webp", "image/gif": "gif"}.get(mime_type or "", "jpg")


def pillow_format(extension: str) -> str:
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF"}.get(extension.lower(), "JPEG")


def mime_for(extension: str) -> str:
    return {
        "jpg": "image/jpeg",
        "jpeg": "image/jpeg",
        "png": "image/png",
        "webp": "image/webp",
        "gif": "image/gif",
    }.get(extension.lower(), "application/octet-stream")


def backoff(attempt: int, *, base: float = 5.0, cap: float = 600.0, rng: random.Random | None = None) -> float:
    """Seconds before retry number `attempt` (1-based): exponential with full jitter, capped."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


def marker_ids_after(
    current: frozenset[str] | set[str],
    add: frozenset[str] | set[str] = frozenset(),
    remove: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """The marker's new list of output media ids, sorted so equal sets give equal values."""
    return sorted((set(current) | set(add)) - set(remove))


def queue_eta_seconds(queued: int, images_per_window: int, window: float, available_now: int) -> float:
    """How long until `queued` images are submitted at the quota: what fits now goes now, the rest
    one window per `images_per_window`."""
    if queued <= available_now:
        return 0.0
    remaining = queued - available_now
    windows = -(-remaining // images_per_window)
    return windows * window


def submit_size(
    allowed: int, *, images_available: int, jobs_available: int, max_batch: int, oldest_wait: float, max_hold: float
) -> int:
    """How many images to send now, given `allowed` (what the quota permits right now).

    Jobs are scarcer than images (5 jobs, 25 images an hour): a job of one image must not cost
    the window its last job while images are left over. So a small job goes only while the jobs
    left after it can still carry the images left after it; otherwise it waits for more images,
    at most `max_hold` seconds (then the image goes anyway: latency beats a perfect packing).
    """
    if allowed <= 0:
        return 0
    needed = min(max_batch, images_available - (jobs_available - 1) * max_batch)
    if allowed >= needed or oldest_wait >= max_hold:
        return allowed
    return 0


def poll_delay(*, elapsed: float, total: int, finished: int, per_item: float | None, min_interval: float) -> float:
    """Seconds until a job's next status poll: near its expected completion, never sooner than
    `min_interval`. Progress so far gives the rate; before any, a rate learned from earlier jobs.
    A job that is late for its learned time is asked again after half the time it has run; with
    nothing learned, after as long again (the polls of a job of unknown length double their
    spacing, so a slow job costs few of them)."""
    if finished > 0:
        remaining = elapsed / finished * (total - finished)
    elif per_item is not None and per_item * total > elapsed:
        remaining = per_item * total - elapsed
    elif per_item is not None:
        remaining = elapsed / 2
    else:
        remaining = elapsed
    return max(min_interval, remaining)


# A first poll that already finds the job done says only "it took at most this long": the estimate
# is pulled down by this factor, while a poll that found it still running pushes it up. The two
# balance where about 70% of first polls find the job done: few wasted polls, short waits.
DONE_AT_FIRST_POLL = 0.9


def observed_duration(*, running_at: float | None, done_at: float) -> float:
    """How long a job took, from the polls that saw it: between the last poll that found it running
    and the one that found it done (the middle of that interval); with no running poll, a little
    less than the done poll's time (an upper bound, so learning it as is would only ever grow)."""
    if running_at is None or running_at >= done_at:
        return done_at * DONE_AT_FIRST_POLL
    return (running_at + done_at) / 2


def retry_from(*, has_result: bool, has_backup: bool) -> str:
    """The step a failed image is retried from: never pay the provider again for a result we have.

    Returns an ImageState value: 'backed_up' (write the result we have again: a Shopify-side
    failure), 'enhanced' (back up the original, then write), or 'discovered' (the provider gave no
    result for it; a failed item was not charged, so sending it again is the only way on).
    """
    if has_result and has_backup:
        return "backed_up"
    if has_result:
        return "enhanced"
    return "discovered"


def budget_left(
    *,
    images_today: int,
    credits_today: float,
    max_images: int | None,
    max_credits: int | None,
    credits_per_image: float,
) -> int | None:
    """How many more images may be sent today under the daily caps (None: no cap applies)."""
    left: int | None = None
    if max_images is not None:
        left = max(0, max_images - images_today)
    if max_credits is not None and credits_per_image > 0:
        by_credits = max(0, math.floor((max_credits - credits_today) / credits_per_image + 1e-9))
        left = by_credits if left is None else min(left, by_credits)
    return left


def next_midnight(now: float) -> float:
    """The start of the next local day (where a daily budget starts again), DST-safe."""
    today = datetime.fromtimestamp(now).astimezone().date()
    return datetime.combine(today + timedelta(days=1), dtime(0)).astimezone().timestamp()


def last_midnight(now: float) -> float:
    today = datetime.fromtimestamp(now).astimezone().date()
    return datetime.combine(today, dtime(0)).astimezone().timestamp()


def verify_delay(age: float, tick: float) -> float:
    """Seconds until a written media Shopify is still processing is looked at again: a quarter of a
    second at first (the sandbox and small images are ready in well under a second), then half its
    age so far, at most one tick: a slow one costs a few cheap reads, a fast one is live at once."""
    return min(max(0.25, age / 2), max(0.25, tick))
