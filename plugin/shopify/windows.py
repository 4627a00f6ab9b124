"""Paging past Shopify's pagination cap: split the `updated_at` range where the reading got to.

A connection can be paged through at most `PAGINATION_CAP` objects; asking for a page beyond that
is refused. Discovery pages products sorted by `updatedAt` (oldest first) under
`updated_at:>='<since>'`, so when the next page would cross the cap, everything updated before the
last product read has been read: the remaining range starts at that product's `updatedAt`, and
is paged as a fresh query (a new window) from its first page. Whole seconds, and `>=`: the products
of that very second are read again (discovery takes a product twice without harm), and none is
skipped.

Why split there and not at the middle of the range: the cut is exactly where the reading stands,
so nothing is read twice but one second's products, and no count query is needed to choose a cut.
The one range this cannot split is a single second holding more products than the cap (the new
window would start where the old one did): `next_window` says so with `CapExceeded`, which is
better than paging in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

# Shopify stops paging a connection after this many objects.
PAGINATION_CAP = 25_000


class CapExceeded(Exception):
    """More products share one second of `updatedAt` than one window can page through."""


@dataclass(frozen=True)
class Restart:
    """Start a new window at `since` (inclusive, whole seconds)."""

    since: datetime


def whole_second(moment: datetime) -> datetime:
    """`moment` in UTC, without the fraction of a second (how the search query writes it)."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return aware.astimezone(timezone.utc).replace(microsecond=0)


def next_window(
    *, since: datetime | None, read: int, page_size: int, cap: int, last_updated: datetime
) -> Restart | None:
    """What to do before asking for the next page of a window that began at `since` (None: the
    start of time) and has yielded `read` products, the last one updated at `last_updated`:
    None — ask for the next page (it stays within the cap); Restart — page a new window instead.
    Raises CapExceeded when the new window could not start later than this one."""
    if read + page_size <= cap:
        return None
    start = whole_second(last_updated)
    if since is not None and start <= whole_second(since):
        raise CapExceeded(f"more than {cap - page_size} products were updated within the second {start.isoformat()}")
    return Restart(start)
