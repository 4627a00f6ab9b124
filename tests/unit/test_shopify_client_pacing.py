"""The cost-bucket pacer and the backoff: pure arithmetic with a fake clock."""

from __future__ import annotations

import pytest

from retouch.plugin.shopify.pacing import CostBucket, backoff_delay, parse_throttle_status
from shopify_testkit import cost


def test_unknown_bucket_never_waits():
    bucket = CostBucket()
    assert bucket.available(0.0) is None
    assert bucket.delay_for(1000, now=0.0) == 0.0


def test_enough_points_means_no_wait():
    bucket = CostBucket()
    bucket.update(cost(available=500), seen_at=10.0)
    assert bucket.delay_for(500, now=10.0) == 0.0


def test_wait_is_deficit_over_restore_rate():
    bucket = CostBucket()
    bucket.update(cost(available=100, rate=50), seen_at=10.0)
    assert bucket.delay_for(400, now=10.0) == pytest.approx(6.0)  # (400 - 100) / 50


def test_refill_since_last_seen_is_extrapolated():
    bucket = CostBucket()
    bucket.update(cost(available=100, rate=50), seen_at=10.0)
    assert bucket.available(12.0) == pytest.approx(200.0)
    assert bucket.delay_for(400, now=12.0) == pytest.approx(4.0)
    # The refill stops at the bucket's size.
    assert bucket.available(1000.0) == 2000.0


def test_a_request_larger_than_the_bucket_waits_only_for_a_full_bucket():
    bucket = CostBucket()
    bucket.update(cost(available=0, maximum=1000, rate=100), seen_at=0.0)
    assert bucket.delay_for(5000, now=0.0) == pytest.approx(10.0)


def test_waiting_the_computed_time_is_enough():
    bucket = CostBucket()
    bucket.update(cost(available=3.3, rate=7.1), seen_at=0.1)
    wait = bucket.delay_for(97.7, now=0.3)
    assert wait > 0
    assert bucket.delay_for(97.7, now=0.3 + wait) == 0.0


def test_estimate_is_the_last_requested_cost_per_operation():
    bucket = CostBucket(default_estimate=10)
    assert bucket.estimate("ProductsPage") == 10
    bucket.update(cost(requested=352), seen_at=0.0, operation="ProductsPage")
    bucket.update(cost(requested=4), seen_at=1.0, operation="Shop")
    assert bucket.estimate("ProductsPage") == 352
    assert bucket.estimate("Shop") == 4


def test_reserve_makes_concurrent_requests_wait_for_each_other():
    bucket = CostBucket()
    bucket.update(cost(available=150, rate=100), seen_at=0.0)
    assert bucket.delay_for(100, now=0.0) == 0.0
    bucket.reserve(100, now=0.0)
    assert bucket.delay_for(100, now=0.0) == pytest.approx(0.5)  # 50 left, 50 more at 100/s


def test_update_ignores_missing_or_malformed_cost():
    bucket = CostBucket()
    bucket.update(None, seen_at=0.0, operation="Shop")
    bucket.update({"throttleStatus": {"currentlyAvailable": "lots"}}, seen_at=0.0)
    assert bucket.status is None
    assert parse_throttle_status({"throttleStatus": None}) is None


def test_zero_restore_rate_does_not_divide_by_zero():
    bucket = CostBucket()
    bucket.update(cost(available=0, rate=0), seen_at=0.0)
    assert bucket.delay_for(10, now=0.0) == 0.0


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    assert backoff_delay(1, 0.999) == pytest.approx(0.4995)  # ceiling 0.5
    assert backoff_delay(3, 0.5) == pytest.approx(1.0)  # ceiling 2.0
    assert backoff_delay(4, 0.0) == 0.0
    assert backoff_delay(20, 0.5) == pytest.approx(15.0)  # capped at 30
    assert backoff_delay(500, 1.0) == 30.0
    with pytest.raises(ValueError):
        backoff_delay(0, 0.5)
