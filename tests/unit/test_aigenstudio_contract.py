"""contract.py agrees with the documented AI Gen Studio contract (CONTRACTS.md §1) where the docs give numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from retouch.plugin.providers.aigenstudio import contract
from retouch.plugin.providers.aigenstudio.quota import QuotaLimits, documented_limits

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CONTRACTS = SHARED / "reference" / "providers" / "CONTRACTS.md"


@pytest.fixture(scope="module")
def section() -> str:
    if not CONTRACTS.exists():
        pytest.skip(f"the shared reference is not here ({CONTRACTS}); it sits beside the repository")
    text = CONTRACTS.read_text()
    return text[text.index("## 1. AI Gen Studio") : text.index("## 2.")]


def test_usage_limits_match_the_documented_table(section: str) -> None:
    table = dict(re.findall(r"^\| ([a-z ]+) \| (\d+) \|$", section, flags=re.MULTILINE))
    assert {
        "images per job": contract.MAX_IMAGES_PER_JOB,
        "images processed per hour": contract.IMAGES_PER_WINDOW,
        "job creations per hour": contract.JOBS_PER_WINDOW,
        "status polling requests per hour": contract.POLLS_PER_WINDOW,
        "active jobs per key": contract.ACTIVE_JOBS_PER_KEY,
        "active jobs per account": contract.ACTIVE_JOBS_PER_ACCOUNT,
    } == {name: int(value) for name, value in table.items()}
    assert documented_limits() == QuotaLimits(window=3600, jobs=5, images=25, polls=120, active_jobs=1, max_batch=20)


def test_documented_names_and_numbers(section: str) -> None:
    for preset in contract.PRESET_IDS:
        assert f"`{preset}`" in section
    for level in contract.PRESERVATION_LEVELS:
        assert f"`{level}`" in section
    for code in (contract.INVALID_PAYLOAD, contract.IDEMPOTENCY_CONFLICT, contract.INSUFFICIENT_API_CREDITS):
        assert f"`{code}`" in section
    for header in (contract.SIGNATURE_HEADER, contract.TIMESTAMP_HEADER, contract.EVENT_ID_HEADER):
        assert f"`{header}" in section
    assert "5 credits per image" in section and contract.CREDITS_PER_IMAGE == 5
    assert "purchased credits ≥ 200" in section and contract.MIN_LIFETIME_PURCHASED_CREDITS == 200
    assert "8 to 160 characters" in section and contract.IDEMPOTENCY_KEY_PATTERN.pattern.endswith("{8,160}$")
    assert "≤ 10 MB; ≤ 3 redirects; 10 s" in section
    assert (contract.MAX_SOURCE_BYTES, contract.MAX_SOURCE_REDIRECTS, contract.SOURCE_TIMEOUT_SECONDS) == (
        10 * 1024 * 1024,
        3,
        10.0,
    )
