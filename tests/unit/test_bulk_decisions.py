"""Pure decisions of catalog-scale discovery: bulk or paged, what follows each bulk status, and
where to split the updated_at range so that no window pages past Shopify's cap."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouch.plugin.shopify.models import BulkOperation
from retouch.plugin.shopify.windows import CapExceeded, Restart, next_window
from retouch.sync.bulk_decisions import (
    IN_PROGRESS_WAITS,
    Next,
    after_poll,
    bulk_cursor,
    in_progress_wait,
    next_poll_in,
    poll_delay,
    use_bulk,
)

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


def op(status: str, *, url: str | None = None, partial: str | None = None, code: str | None = None) -> BulkOperation:
    return BulkOperation(
        id="gid://shopify/BulkOperation/1",
        status=status,
        error_code=code,
        created_at=T0,
        object_count=0,
        url=url,
        partial_data_url=partial,
    )


def test_switch_point_both_sides():
    assert not use_bulk(1999, 2000)
    assert use_bulk(2000, 2000)
    assert use_bulk(10_000, 2000)


@pytest.mark.parametrize("status", ["CREATED", "RUNNING", "CANCELING"])
def test_unfinished_operations_are_polled_again(status):
    assert after_poll(op(status)) is Next.WAIT


def test_each_ending_has_its_next_step():
    assert after_poll(op("COMPLETED", url="https://x/r.jsonl")) is Next.READ
    assert after_poll(op("COMPLETED")) is Next.READ  # no file: an empty catalog
    assert after_poll(op("FAILED", partial="https://x/p.jsonl", code="TIMEOUT")) is Next.READ_PARTIAL
    assert after_poll(op("CANCELED", partial="https://x/p.jsonl")) is Next.READ_PARTIAL
    assert after_poll(op("FAILED", code="INTERNAL_SERVER_ERROR")) is Next.PAGE
    assert after_poll(op("FAILED", code="ACCESS_DENIED")) is Next.PAGE
    assert after_poll(op("CANCELED")) is Next.PAGE
    assert after_poll(op("EXPIRED", url="https://x/old.jsonl")) is Next.RESTART
    assert after_poll(None) is Next.RESTART  # Shopify forgot the id


def test_polls_aim_at_the_predicted_end_of_the_export():
    # A tenth of 100,000 products exported in 6 s: the rest takes 54 s; aim a little past it.
    assert next_poll_in(1, running_for=6.0, roots_done=10_000, roots_total=100_000) == pytest.approx(54 * 1.1)
    # Nothing exported yet, too few to measure the pace, or the total unknown (resumed after a
    # restart): back off 1, 2, 4 ...
    assert next_poll_in(0, running_for=0.5, roots_done=0, roots_total=100_000) == 1
    assert next_poll_in(1, running_for=1.5, roots_done=1, roots_total=57) == 2
    assert next_poll_in(2, running_for=9.0, roots_done=500, roots_total=None) == 4
    # Everything exported, file still being written: short waits, growing.
    assert next_poll_in(3, running_for=60.0, roots_done=100_000, roots_total=100_000) == 8
    # A prediction is trusted so far, and a near end is not polled in a busy loop.
    assert next_poll_in(1, running_for=600.0, roots_done=20, roots_total=100_000) == 300
    assert next_poll_in(1, running_for=1.0, roots_done=99_999, roots_total=100_000) == 1.0


@given(total=st.integers(1, 10**6), pace=st.floats(1, 1e5), first=st.floats(0.1, 30))
def test_a_steady_export_is_seen_done_in_a_few_polls(total, pace, first):
    """An export at a steady pace (products per second) whose first poll comes `first` seconds in:
    polling as told sees it COMPLETED within a handful of polls (plus one per 5 minutes a long export
    runs, as far as a prediction is trusted), never long after its end: a pace measured on at least
    20 products is off by at most 5%, so with the 10% margin the end is seen within 16% of the
    export's time, or one backoff step (30 s) while too few products are done to measure."""
    duration = total / pace
    now, polls = first, 1
    while now < duration:
        done = min(total, int(pace * now))
        now += next_poll_in(polls, running_for=now, roots_done=done, roots_total=total)
        polls += 1
        assert polls <= 8 + duration / 300
    assert now <= duration * 1.16 + 31


def test_waits_are_bounded():
    assert [poll_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert poll_delay(10_000) == 30
    waits = [in_progress_wait(n) for n in range(len(IN_PROGRESS_WAITS) + 1)]
    assert waits[-1] is None and all(w > 0 for w in waits[:-1])


def test_bulk_cursor_never_passes_the_export_start():
    assert bulk_cursor(T0 + timedelta(hours=1), T0) == T0  # changed while the export ran: look again
    assert bulk_cursor(T0 - timedelta(hours=1), T0) == T0 - timedelta(hours=1)
    assert bulk_cursor(None, T0) is None
    assert bulk_cursor(T0, None) == T0


def test_next_window_pages_on_until_the_cap_then_restarts_at_the_last_second_read():
    last = T0 + timedelta(seconds=30, microseconds=500)
    assert next_window(since=None, read=20, page_size=10, cap=30, last_updated=last) is None
    assert next_window(since=None, read=21, page_size=10, cap=30, last_updated=last) == Restart(
        T0 + timedelta(seconds=30)
    )
    with pytest.raises(CapExceeded):  # one second holds more than a window: no later start exists
        next_window(since=T0 + timedelta(seconds=30), read=21, page_size=10, cap=30, last_updated=last)


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=3), min_size=0, max_size=120),
    page_size=st.integers(min_value=1, max_value=6),
    extra=st.integers(min_value=0, max_value=10),
)
def test_split_windows_read_every_product_and_never_page_past_the_cap(gaps, page_size, extra):
    # A catalog sorted as Shopify pages it (updatedAt, then id); ties at most `page_size` per second
    # plus the room the cap leaves, so every second fits in one window.
    cap = 2 * page_size + extra
    seconds, now, per_second = [], 0, {}
    for gap in gaps:
        now += gap
        if per_second.get(now, 0) >= cap - page_size:
            now += 1
        per_second[now] = per_second.get(now, 0) + 1
        seconds.append(now)
    catalog = [(T0 + timedelta(seconds=s), i) for i, s in enumerate(seconds)]
    seen: set[int] = set()
    since = None
    for _window in range(len(catalog) + 2):
        matching = [p for p in catalog if since is None or p[0] >= since]
        read, offset, restarted = 0, 0, False
        while offset < len(matching):
            assert offset + page_size <= cap or offset == 0, "a page past the cap was asked for"
            page = matching[offset : offset + page_size]
            offset += len(page)
            read += len(page)
            seen.update(i for _, i in page)
            if offset >= len(matching):
                break
            restart = next_window(since=since, read=read, page_size=page_size, cap=cap, last_updated=page[-1][0])
            if restart is not None:
                since, restarted = restart.since, True
                break
        if not restarted:
            break
    else:
        pytest.fail("windows did not converge")
    assert seen == set(range(len(catalog)))
