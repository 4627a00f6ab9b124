"""Money and time before spending (issue 23): the dry run and the `resync --all` confirmation say what a
run costs in images, credits and money, what the balance pays for, and how long the quota makes it take."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from conftest import cli, config_text
from retouch.plugin.providers.quota import QuotaLimits
from retouch.sync.costs import Estimate, balance_line, duration_words, images_per_hour, last_reported_balance

pytestmark = pytest.mark.usefixtures("no_secret_leaks")

LIVE_KEY = "aigen_live_costs_tests_key"


def test_images_per_hour_is_the_tighter_of_images_and_jobs_times_batch() -> None:
    assert images_per_hour(QuotaLimits(window=3600, jobs=5, images=25, max_batch=10)) == 25
    assert images_per_hour(QuotaLimits(window=3600, jobs=2, images=25, max_batch=10)) == 20
    assert images_per_hour(QuotaLimits(window=60, images=2)) == 120
    assert images_per_hour(QuotaLimits(window=3600)) is None


def test_duration_words() -> None:
    assert duration_words(60 / 25 * 3600) == "2 h 24 min"
    assert duration_words(3600) == "1 h"
    assert duration_words(45 * 60) == "45 min"
    assert duration_words(10) == "1 min"
    assert duration_words(0) == "under a minute"


def test_estimate_words_money_balance_and_time() -> None:
    estimate = Estimate(images=60, credits_per_image=5, price_per_credit=0.1, currency="EUR", balance=200, per_hour=25)
    assert estimate.credits == 300 and estimate.covered == 40
    assert estimate.words() == (
        "60 image(s), 300 credits (30.00 EUR); balance 200 credits: pays for 40 of 60 "
        "image(s); about 2 h 24 min at 25 images an hour"
    )
    paid = Estimate(images=4, credits_per_image=5, balance=500, per_hour=25)
    assert paid.words() == "4 image(s), 20 credits; balance 500 -> 480 credits after; about 10 min at 25 images an hour"
    free = Estimate(images=3, credits_per_image=5, balance=0, per_hour=None, free=True)
    assert free.words() == "3 image(s), 0 credits (sandbox: free)" and free.covered == 3


def test_dry_run_and_confirmation_show_money_and_time(shop, provider, tmp_path: Path) -> None:
    shop.seed(products=6, images_per_product=1, seed=23)
    provider.add_live_key(LIVE_KEY, purchased=500, available=500)
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            shop,
            provider,
            tmp_path,
            new_only=False,
            api_key=LIVE_KEY,
            extra='[budget]\nprice_per_credit = 0.1\ncurrency = "EUR"\n',
        )
    )
    dry = cli("resync", "--all", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "cost and time: 6 image(s), 30 credits (3.00 EUR); about 15 min at 25 images an hour" in dry.stdout
    asked = cli("resync", "--all", config=config)  # no terminal: it says what it would cost, sends nothing
    assert asked.returncode == 2
    assert "(6 image(s), 30 credits (3.00 EUR); about 15 min at 25 images an hour)" in asked.stderr
    assert provider.stats()["keys"][LIVE_KEY]["credits"]["used"] == 0


def test_last_reported_balance_is_the_newest_job_that_carries_one() -> None:
    old, new, newest = datetime(2026, 12, 1, 9), datetime(2026, 12, 2, 9), datetime(2026, 12, 3, 9)
    jobs = [
        (new, '{"remaining_paid_credits": 480}'),
        (old, '{"remaining_paid_credits": 495}'),
        (newest, '{"replayed": false}'),
        (newest, None),
        (newest, "not json"),
        (newest, '{"remaining_paid_credits": null}'),
    ]
    assert last_reported_balance(jobs) == (480.0, new)
    assert last_reported_balance([(old, '{"credits_reserved": 5}')]) is None
    assert balance_line("AI Gen Studio", None, "credits") is None
    assert balance_line("AI Gen Studio", (480.0, new), "credits").startswith(
        "balance: 480 credits, as AI Gen Studio reported it at 2026-12-0"
    )


def test_check_and_dry_run_show_the_reported_balance(shop, provider, tmp_path: Path) -> None:
    products = shop.seed(products=3, images_per_product=1, seed=24)
    provider.add_live_key(LIVE_KEY, purchased=500, available=500)
    config = tmp_path / "config.toml"
    config.write_text(config_text(shop, provider, tmp_path, new_only=False, api_key=LIVE_KEY))
    assert "balance:" not in cli("check", config=config).stdout  # nothing reported yet
    one = cli("resync", "--product", products[0]["legacy_id"], "--yes", config=config)
    assert one.returncode == 0, one.stderr
    check = cli("check", config=config)
    assert "balance: 495 credits, as AI Gen Studio reported it at " in check.stdout, check.stdout
    dry = cli("resync", "--all", "--dry-run", config=config)
    assert "2 image(s), 10 credits; balance 495 -> 485 credits after; about 5 min at 25 images an hour" in dry.stdout


def test_dry_run_is_quiet_about_rows_it_only_looked_at(shop, provider, write_config) -> None:
    shop.seed(products=3, images_per_product=1, seed=25)
    config = write_config()
    assert cli("resync", "--yes", config=config).returncode == 0  # records the baseline
    dry = cli("resync", "--all", "--dry-run", config=config)
    assert dry.returncode == 0, dry.stderr
    assert "3 image(s) would be sent" in dry.stdout
    assert "requeued" not in dry.stderr and "was=baseline" not in dry.stderr, dry.stderr
