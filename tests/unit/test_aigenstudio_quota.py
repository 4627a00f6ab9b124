"""The AI Gen Studio quota pacer: pure decisions, tested without a network."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from retouch.plugin.providers.aigenstudio.quota import QuotaLedger, documented_limits

W = 3600.0
T0 = 1_800_000_000.0


def ledger(**limits: float) -> QuotaLedger:
    return QuotaLedger(documented_limits(**limits))  # type: ignore[arg-type]


# --- basics --------------------------------------------------------------------------------------


def test_used_counts_a_half_open_sliding_window() -> None:
    book = ledger()
    book.record("image", T0, 3)
    book.record("image", T0 + 10, 2)
    assert book.used("image", T0 + 5) == 5  # an event in the future counts already
    assert book.used("image", T0 + 10) == 5
    assert book.used("image", T0 + W - 0.001) == 5
    assert book.used("image", T0 + W) == 2  # the event at T0 has left (T0, T0 + W]
    assert book.used("image", T0 + W + 10) == 0
    assert book.available("image", T0 + 10) == 20
    assert book.used("job", T0) == 0


def test_events_given_at_construction_equal_recorded_ones_in_any_order() -> None:
    events = [("job", T0 + 5, 1), ("image", T0 + 5, 7), ("job", T0, 1), ("poll", T0 + 1, 1)]
    rebuilt = QuotaLedger(documented_limits(), events)
    recorded = ledger()
    for kind, at, count in sorted(events, key=lambda event: event[1]):
        recorded.record(kind, at, count)
    for kind in ("job", "image", "poll"):
        for now in (T0, T0 + 5, T0 + W + 1, T0 + W + 5):
            assert rebuilt.used(kind, now) == recorded.used(kind, now)
    assert rebuilt.next_submit_at(T0 + 6, 0, 20) == recorded.next_submit_at(T0 + 6, 0, 20)


def test_invalid_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        documented_limits(window=0)
    with pytest.raises(ValueError):
        documented_limits(jobs=0)
    book = ledger()
    with pytest.raises(ValueError):
        book.record("jobs", T0)
    with pytest.raises(ValueError):
        book.record("job", T0, -1)
    with pytest.raises(ValueError):
        book.used("nothing", T0)


def test_future_events_count_until_a_window_after_them() -> None:
    # A clock that went backwards after a restart must not free the quota early.
    book = ledger(jobs=1)
    book.record("job", T0 + 100)
    assert book.available("job", T0) == 0
    assert book.next_submit_at(T0, 0) == T0 + 100 + W


# --- batch size ----------------------------------------------------------------------------------


def test_batch_size_is_bounded_by_queue_max_batch_and_images_left() -> None:
    book = ledger()
    assert book.batch_size(3, T0, 0) == 3
    assert book.batch_size(100, T0, 0) == 20
    book.record("image", T0, 20)
    book.record("job", T0)
    assert book.batch_size(100, T0 + 1, 0) == 5
    assert book.batch_size(0, T0 + 1, 0) == 0


def test_batch_size_is_zero_without_a_job_slot_images_or_with_an_active_job() -> None:
    book = ledger()
    assert book.batch_size(5, T0, active_jobs=1) == 0
    for i in range(5):
        book.record("job", T0 + i)
    assert book.batch_size(5, T0 + 10, 0) == 0
    assert book.batch_size(5, T0 + W + 0.5, 0) == 5  # the first job left the window

    images = ledger()
    images.record("image", T0, 25)
    assert images.batch_size(1, T0 + 1, 0) == 0


def test_block_until_holds_the_affected_actions_only() -> None:
    book = ledger()
    book.block_until(T0 + 30, "job")
    assert book.batch_size(5, T0, 0) == 0
    assert book.batch_size(5, T0 + 30, 0) == 5
    assert book.next_submit_at(T0, 0) == T0 + 30
    assert book.next_poll_at(T0, None, 1.0, 1) == T0  # polls are not blocked by a create 429

    book.block_until(T0 + 50, "poll")
    assert book.next_poll_at(T0, None, 1.0, 1) == T0 + 50

    everything = ledger()
    everything.block_until(T0 + 9)
    assert everything.batch_size(1, T0, 0) == 0
    assert everything.next_poll_at(T0, None, 1.0, 1) == T0 + 9
    everything.block_until(T0 + 3)  # an earlier block never shortens a later one
    assert everything.next_submit_at(T0, 0) == T0 + 9


# --- next submit ---------------------------------------------------------------------------------


def test_next_submit_waits_for_an_active_job_then_for_the_oldest_job_to_expire() -> None:
    book = ledger()
    assert book.next_submit_at(T0, active_jobs=1) is None
    assert book.next_submit_at(T0, active_jobs=0) == T0
    for i in range(5):
        book.record("job", T0 + i * 60)
    assert book.next_submit_at(T0 + 300, 0) == T0 + W


def test_next_submit_waits_until_enough_images_left_the_window() -> None:
    book = ledger()
    book.record("image", T0, 10)
    book.record("image", T0 + 100, 10)
    book.record("image", T0 + 200, 5)
    assert book.next_submit_at(T0 + 300, 0, want=5) == T0 + W  # the first 10 leave
    assert book.next_submit_at(T0 + 300, 0, want=15) == T0 + 100 + W  # 20 must leave
    # A wish above what can ever fit is capped at the max batch (20).
    assert book.next_submit_at(T0 + 300, 0, want=500) == book.next_submit_at(T0 + 300, 0, want=20) == T0 + 100 + W
    at = book.next_submit_at(T0 + 300, 0, want=15)
    assert at is not None and book.batch_size(15, at, 0) == 15
    assert book.batch_size(15, at - 0.001, 0) < 15


# --- polls ---------------------------------------------------------------------------------------


def test_next_poll_spreads_the_budget_and_respects_min_interval() -> None:
    book = ledger()
    assert book.next_poll_at(T0, None, 5.0, active_jobs=0) == math.inf
    assert book.next_poll_at(T0, None, 5.0, active_jobs=1) == T0
    book.record("poll", T0)
    # 119 polls left for the hour the first one stays counted: one every 3600/119 s.
    assert book.next_poll_at(T0, T0, 5.0, 1) == pytest.approx(T0 + W / 119)
    assert book.next_poll_at(T0, T0, 60.0, 1) == T0 + 60.0  # never below min_interval
    # A poll due in the past is due now.
    assert book.next_poll_at(T0 + 1000, T0, 5.0, 1) == T0 + 1000


def test_next_poll_with_an_exhausted_budget_waits_for_the_oldest_poll_to_leave() -> None:
    book = ledger(polls=3)
    for at in (T0, T0 + 10, T0 + 20):
        book.record("poll", at)
    assert book.available("poll", T0 + 30) == 0
    assert book.next_poll_at(T0 + 30, T0 + 20, 1.0, 1) == T0 + W


def test_next_poll_uses_a_late_budget_faster() -> None:
    # Polls made early in the window leave room to poll faster just before they expire.
    book = ledger(polls=10)
    book.record("poll", T0)
    now = T0 + W - 90
    assert book.next_poll_at(now, now - 1, 0.5, 1) == pytest.approx(now - 1 + 90 / 9)


# --- pruning -------------------------------------------------------------------------------------


def test_prune_forgets_only_events_that_no_longer_count() -> None:
    book = ledger()
    for i in range(100):
        book.record("poll", T0 + i * 100)
        book.record("job", T0 + i * 100)
    now = T0 + 9900 + 1
    before = {kind: book.used(kind, now) for kind in ("job", "poll")}
    book.prune(now)
    assert {kind: book.used(kind, now) for kind in ("job", "poll")} == before
    assert len(book._events["poll"]) == before["poll"]  # memory stays flat
    assert book.next_poll_at(now, now, 1.0, 1) == QuotaLedger(
        documented_limits(), [("poll", at, 1) for at, _ in book._events["poll"]]
    ).next_poll_at(now, now, 1.0, 1)


# --- the safety property -------------------------------------------------------------------------


def _max_in_any_window(events: list[tuple[float, int]], window: float) -> int:
    """The largest total in any half-open window [a, a + window): the maximum starts at an event."""
    ordered = sorted(events)
    return max((sum(c for at, c in ordered if start <= at < start + window) for start, _ in ordered), default=0)


step = st.tuples(
    # time passes: small steps, large ones, and steps that land just inside a window's end
    st.one_of(st.floats(0.0, 5.0), st.floats(0.0, 900.0), st.sampled_from([0.0, 0.5, 599.5, 3599.5])),
    st.sampled_from(["submit", "poll", "poll_greedy", "finish", "block"]),
    st.integers(min_value=0, max_value=40),  # images waiting
)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(step, max_size=120), window=st.sampled_from([600.0, 3600.0]), start=st.floats(0, 1e6))
def test_actions_the_ledger_allows_never_exceed_any_limit_in_any_window(
    steps: list[tuple[float, str, int]], window: float, start: float
) -> None:
    limits = documented_limits(window=window)
    book = QuotaLedger(limits)
    now, active, last_poll = start, 0, None
    done: dict[str, list[tuple[float, int]]] = {"job": [], "image": [], "poll": []}
    for elapsed, action, queued in steps:
        now += elapsed
        book.prune(now)
        if action == "submit":
            size = book.batch_size(queued, now, active)
            assert size <= min(queued, limits.max_batch)
            if size:
                for kind, count in (("job", 1), ("image", size)):
                    book.record(kind, now, count)
                    done[kind].append((now, count))
                active += 1
            else:
                # The ledger's "when" must agree with its "now": at that time a job fits.
                at = book.next_submit_at(now, active, want=max(1, queued))
                if at is not None and queued:
                    assert at >= now
                    assert book.batch_size(queued, at, active) >= min(queued, limits.max_batch, limits.images)
        elif action == "poll" and active:
            at = book.next_poll_at(now, last_poll, 1.0, active)
            assert book.available("poll", at) >= 1
            if at <= now:
                book.record("poll", now)
                done["poll"].append((now, 1))
                last_poll = now
        elif action == "poll_greedy" and book.next_poll_at(now, None, 0.0, 1) <= now:
            book.record("poll", now)  # as fast as the budget allows, ignoring the spreading
            done["poll"].append((now, 1))
            last_poll = now
        elif action == "finish":
            active = max(0, active - 1)
        elif action == "block":
            book.block_until(now + queued * 10.0)
        assert active <= limits.active_jobs
    assert _max_in_any_window(done["job"], window) <= limits.jobs
    assert _max_in_any_window(done["image"], window) <= limits.images
    assert _max_in_any_window(done["poll"], window) <= limits.polls


@settings(max_examples=100, deadline=None)
@given(
    gaps=st.lists(
        st.one_of(st.floats(0, 4000, allow_nan=False), st.sampled_from([0.0, 0.25, 3599.75])), min_size=1, max_size=60
    ),
    offset=st.floats(min_value=0, max_value=3600, allow_nan=False),
)
def test_greedy_use_is_safe_under_any_fixed_window_alignment(gaps: list[float], offset: float) -> None:
    """Acting whenever the ledger allows, no provider-style fixed window ever sees more than the limit."""
    book = QuotaLedger(documented_limits(jobs=5))
    accepted = []
    times = [sum(gaps[: i + 1]) for i in range(len(gaps))]
    for at in times:
        if book.available("job", at) >= 1:
            book.record("job", at)
            accepted.append(at)
    per_window: dict[int, int] = {}
    for at in accepted:
        index = math.floor((at - offset) / W)
        per_window[index] = per_window.get(index, 0) + 1
    assert max(per_window.values()) <= 5
