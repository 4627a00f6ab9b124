"""Pure decisions of catalog-scale discovery (Shopify bulk operations); no I/O here.

Policy, in one place:
- a pass over the whole store (first run, `resync --all`) uses a bulk operation when the store
  has at least `[shop] bulk_threshold` products; incremental passes always page;
- COMPLETED: read the JSONL (no `url` means an empty catalog);
- FAILED or CANCELED with `partialDataUrl`: read what arrived, but the pass is partial — it moves
  no cursor, closes no baseline and marks nothing deleted; the next full pass reads again;
- EXPIRED, or an id Shopify no longer knows (results are kept seven days; a daemon stopped longer
  than that): the results are gone, not the method — start one new operation;
- FAILED or CANCELED without data (errorCode TIMEOUT, INTERNAL_SERVER_ERROR, ACCESS_DENIED, or
  cancelled by someone else): page the catalog in this pass instead. Paging is slower but does
  not depend on the export, so the owner's pass happens; a real access problem shows up there as
  the ordinary auth error, and the next full pass tries bulk again;
- OPERATION_IN_PROGRESS (the app already runs five bulk queries): wait and try again, a bounded
  number of times, then page.
"""

from __future__ import annotations

from enum import StrEnum

from retouch.plugin.shopify.models import BulkOperation


class Next(StrEnum):
    WAIT = "wait"  # still CREATED / RUNNING / CANCELING: poll again
    READ = "read"  # COMPLETED: read every line
    READ_PARTIAL = "read_partial"  # ended early with partial data: read it, move nothing
    RESTART = "restart"  # results gone (EXPIRED / unknown id): run a new operation
    PAGE = "page"  # no data: page the catalog instead


def use_bulk(product_count: int, threshold: int) -> bool:
    """Whether a whole-store pass over `product_count` products reads them in bulk."""
    return product_count >= threshold


def after_poll(operation: BulkOperation | None) -> Next:
    if operation is None or operation.status == "EXPIRED":
        return Next.RESTART
    if not operation.terminal:
        return Next.WAIT
    if operation.status == "COMPLETED":
        return Next.READ
    return Next.READ_PARTIAL if operation.partial_data_url else Next.PAGE


def poll_delay(polls: int, *, first: float = 1.0, longest: float = 30.0) -> float:
    """Seconds before poll number `polls + 1` when the export's progress says nothing yet: 1, 2,
    4 … up to 30."""
    return min(longest, first * 2 ** min(polls, 16))


# Aim a little past the predicted end: a poll just before it costs a point and a wait.
FINISH_MARGIN = 1.1
LONGEST_PREDICTED_WAIT = 300.0  # the prediction is trusted this far at most
# A pace measured on fewer products is too coarse to aim with (a count of 1 in 1.5 s, at one
# product a second, predicts an end 50% late): back off until this many are done.
PACE_SAMPLE = 20


def next_poll_in(polls: int, *, running_for: float, roots_done: int, roots_total: int | None) -> float:
    """Seconds until the next poll of a running export. Each poll costs a point, so instead of
    polling on a fixed beat we aim at the predicted end: Shopify reports the products exported so
    far (`rootObjectCount`), we know how many there are (productsCount), and exports run at a
    steady pace, so what is left takes `running_for * left / done`. Without a prediction (too few
    exported yet to measure the pace, or the total unknown after a restart) it backs off 1, 2, 4 …
    30 s."""
    backoff = poll_delay(polls)
    if not roots_total or roots_done < min(PACE_SAMPLE, roots_total) or running_for <= 0:
        return backoff
    left = max(0, roots_total - roots_done)
    predicted = running_for * left / roots_done * FINISH_MARGIN
    # Everything exported but not COMPLETED yet (the file is being written): back off from 1 s.
    return min(LONGEST_PREDICTED_WAIT, max(predicted, backoff if left == 0 else 1.0))


# Waits between tries after OPERATION_IN_PROGRESS (seconds); then the pass pages instead.
IN_PROGRESS_WAITS = (5.0, 15.0, 30.0, 60.0, 120.0)


def in_progress_wait(tries: int) -> float | None:
    """The wait before try `tries + 1` after OPERATION_IN_PROGRESS, None when it is time to page."""
    return IN_PROGRESS_WAITS[tries] if tries < len(IN_PROGRESS_WAITS) else None


def bulk_cursor(newest_seen, started_at):
    """The discovery cursor after a complete bulk pass: the newest `updatedAt` read, but no later
    than the moment the export began — a product changed while the export ran may have been read
    before the change, so the next incremental pass must look again from there."""
    if newest_seen is None or started_at is None:
        return newest_seen
    return min(newest_seen, started_at)
