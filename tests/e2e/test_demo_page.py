"""`retouch demo`'s before/after page, as an owner opens it: products by title, the provider, the cost,
a before/after slider, and the "after" labelled as the sandbox's stand-in for the provider's AI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.sync.commands.demo_page import DemoRow, cost_words, render_page


def seeded_titles(products: int) -> list[str]:
    """The titles the demo's sandbox store gets (its catalogue is deterministic for seed 0)."""
    return [
        p["title"] for p in ShopifySandbox(access_token="unused").seed(products=products, images_per_product=1, seed=0)
    ]


def test_the_page_names_products_provider_cost_and_the_stand_in(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retouch.sync",
            "demo",
            "--products",
            "3",
            "--out",
            str(out),
            "--price-per-credit",
            "0.12",
            "--currency",
            "EUR",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = (out / "index.html").read_text()
    rows = page.split('<tr class="row"')[1:]
    assert len(rows) == 3
    titles = seeded_titles(3)
    assert sorted(re.search(r'class="product">([^<]*)<', row).group(1) for row in rows) == sorted(titles)
    assert "gid://shopify" not in page  # products by title, never by id
    for row in rows:
        assert 'data-state="done"' in row
        assert "AI Gen Studio" in row and "sandbox stand-in" in row
        # The sandbox's production profile charges what AI Gen Studio's price list says; money at 0.12 EUR a credit.
        credits, money = re.search(
            r'class="cost">([\d.]+) credits? \(([\d.]+) EUR\); the sandbox charged nothing', row
        ).groups()
        assert abs(float(credits) * 0.12 - float(money)) < 0.006
        assert '<input type="range"' in row  # the slider
        before, after = re.findall(r'<img class="(?:before|after)" src="([^"]+)"', row)
        assert (out / before).stat().st_size > 0 and (out / after).stat().st_size > 0
        assert (out / before).read_bytes() != (out / after).read_bytes()
    assert "a stand-in for AI Gen Studio's AI" in page
    assert "Set <code>[budget] price_per_credit</code>" not in page  # the price was given


def test_cost_words() -> None:
    assert cost_words(1, "credits", None, "", sandbox=False) == "1 credit"
    assert cost_words(5, "credits", 0.1, "EUR", sandbox=True) == "5 credits (0.50 EUR); the sandbox charged nothing"
    assert cost_words(2.5, "tokens", 2, "", sandbox=False) == "2.50 tokens (5.00)"


def test_the_page_escapes_what_the_store_says_and_hints_at_the_price() -> None:
    row = DemoRow(
        title='<script>alert("x")</script> Mug',
        filename="a.jpg",
        state="failed",
        cost="1 credit",
        before="images/1-before.jpg",
        after=None,
        problem="corrupt_image: <b>bad</b>",
    )
    page = render_page([row], provider="AI Gen Studio", summary="s", priced=False)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert "&lt;b&gt;bad&lt;/b&gt;" in page
    assert 'class="compare"' not in page  # no slider without an "after"
    assert "Set <code>[budget] price_per_credit</code>" in page
