"""The pipeline's pure decisions."""

from __future__ import annotations

import random

import pytest

from retouch.sync.decisions import (
    Discovery,
    MediaFacts,
    backoff,
    classify_media,
    extension_of,
    filename_of,
    is_excluded,
    is_output_filename,
    marker_ids_after,
    observed_duration,
    output_filename,
    poll_delay,
    queue_eta_seconds,
    submit_size,
)


def facts(**changes) -> MediaFacts:
    base = dict(
        media_id="gid://shopify/MediaImage/1",
        is_image=True,
        filename="shoe.jpg",
        in_marker=False,
        known_output=False,
        tracked=False,
    )
    return MediaFacts(**{**base, **changes})


@pytest.mark.parametrize(
    ("changes", "first_run", "new_only", "excluded", "expected"),
    [
        ({}, False, True, False, Discovery.QUEUE),
        ({}, True, True, False, Discovery.BASELINE),
        ({}, True, False, False, Discovery.QUEUE),
        ({}, False, True, True, Discovery.EXCLUDED),
        ({"tracked": True}, False, True, False, Discovery.IGNORE),
        ({"is_image": False}, False, True, False, Discovery.IGNORE),
        ({"in_marker": True}, False, True, False, Discovery.OUTPUT),
        ({"known_output": True, "tracked": True}, False, True, False, Discovery.OUTPUT),
        ({"filename": "retouch-44071803355442.jpg"}, False, True, False, Discovery.OUTPUT),
        # Our output is recognised even on a first run and even on an excluded product.
        ({"in_marker": True}, True, True, True, Discovery.OUTPUT),
    ],
)
def test_classify_media(changes, first_run, new_only, excluded, expected) -> None:
    assert classify_media(facts(**changes), first_run=first_run, new_only=new_only, excluded=excluded) is expected


def test_output_filenames_round_trip() -> None:
    name = output_filename("gid://shopify/MediaImage/44071803355442", "JPG")
    assert name == "retouch-44071803355442.jpg"
    assert is_output_filename(name)
    assert not is_output_filename("retouched-shoe.jpg")
    assert not is_output_filename("shoe.jpg")
    assert not is_output_filename(None)


def test_filename_and_extension() -> None:
    assert filename_of("https://cdn.shopify.com/s/files/1/files/shoe.PNG?v=12") == "shoe.PNG"
    assert filename_of(None) is None
    assert extension_of("shoe.PNG", None) == "png"
    assert extension_of(None, "image/webp") == "webp"
    assert extension_of(None, None) == "jpg"


def test_excluded_tags_ignore_case_and_spaces() -> None:
    assert is_excluded(("Sale", " No-Retouch "), ["no-retouch"])
    assert not is_excluded(("sale",), ["no-retouch"])


def test_marker_ids_are_sorted_and_deduplicated() -> None:
    assert marker_ids_after({"b", "a"}, add={"c", "a"}) == ["a", "b", "c"]
    assert marker_ids_after({"b", "a"}, remove={"a"}) == ["b"]


def test_backoff_grows_and_is_capped() -> None:
    rng = random.Random(1)
    values = [backoff(n, base=1, cap=30, rng=rng) for n in range(1, 12)]
    assert all(0.5 <= v <= 30 for v in values)
    assert values[0] <= 1 and max(values[-3:]) > 8


def test_queue_eta() -> None:
    assert queue_eta_seconds(10, 25, 3600, available_now=25) == 0
    assert queue_eta_seconds(30, 25, 3600, available_now=5) == 3600
    assert queue_eta_seconds(60, 25, 3600, available_now=5) == 3 * 3600


def test_submit_size_keeps_a_job_for_the_images_left() -> None:
    fresh = dict(images_available=25, jobs_available=5, max_batch=20, max_hold=720)
    assert submit_size(1, oldest_wait=0, **fresh) == 1  # plenty of jobs: a single image goes now
    last_job = dict(images_available=21, jobs_available=1, max_batch=20, max_hold=720)
    assert submit_size(3, oldest_wait=0, **last_job) == 0  # would strand 18 images of the window
    assert submit_size(20, oldest_wait=0, **last_job) == 20
    assert submit_size(3, oldest_wait=720, **last_job) == 3  # waited long enough: latency wins
    two_left = dict(images_available=24, jobs_available=2, max_batch=20, max_hold=720)
    assert submit_size(3, oldest_wait=0, **two_left) == 0 and submit_size(4, oldest_wait=0, **two_left) == 4
    assert submit_size(0, oldest_wait=9999, **fresh) == 0


def test_poll_delay_aims_at_the_expected_completion() -> None:
    assert poll_delay(elapsed=0, total=10, finished=0, per_item=None, min_interval=30) == 30
    assert poll_delay(elapsed=0, total=10, finished=0, per_item=12, min_interval=30) == 120
    assert poll_delay(elapsed=40, total=10, finished=4, per_item=None, min_interval=5) == 60
    assert poll_delay(elapsed=200, total=10, finished=0, per_item=12, min_interval=30) == 100  # late: back off
    assert poll_delay(elapsed=4, total=1, finished=0, per_item=None, min_interval=3) == 4  # unknown: doubling
    assert poll_delay(elapsed=1, total=1, finished=0, per_item=0.1, min_interval=0.3) == 0.5
    assert poll_delay(elapsed=0.1, total=1, finished=0, per_item=None, min_interval=0.3) == 0.3


def test_observed_duration_is_the_middle_of_the_interval_the_polls_bracket() -> None:
    assert observed_duration(running_at=30, done_at=40) == 35
    assert observed_duration(running_at=None, done_at=30) == 27  # only an upper bound: pulled down
    assert observed_duration(running_at=30, done_at=30) == 27
