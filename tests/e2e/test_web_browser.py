"""The review page in a real headless Chromium (Debian's `chromium`, driven by Playwright with the
system browser; never `playwright install`), on a real daemon subprocess with `[review] mode = "all"`
against the sandboxes: sign in, approve one result, reject one, redo one; then Shopify holds exactly
the approved result, the rejected original is untouched, the redone image was charged once more and
nothing else changed; a revert from the product page (after its confirmation) puts the original
back. Every picture on every page loads; a POST without the CSRF token, a wrong
password and a flood of logins are refused.

Screenshots of each page go to $RETOUCH_SCREENSHOTS (default tests/output/screenshots/), printed at
the end, for a person to look at; with RETOUCH_DOCS_SCREENSHOT=1 the review page's also replaces
docs/review.png (the README's picture)."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from playwright import sync_api

from conftest import PROVIDER_KEY, ROOT, cli, config_text, db_rows, image_states, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "a long review password"
SHOTS = Path(os.environ.get("RETOUCH_SCREENSHOTS", ROOT / "tests" / "output" / "screenshots"))

pytestmark = pytest.mark.usefixtures("no_secret_leaks")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def charged(provider) -> int:
    keys = provider.stats()["keys"]
    return keys[PROVIDER_KEY]["images_charged"] if PROVIDER_KEY in keys else 0


def all_pictures_load(page) -> list[str]:
    """The src of every <img> on the page that did not load (natural width 0), after waiting for all."""
    # Polled from here: the page's CSP (no eval) refuses Playwright's in-page wait_for_function.
    wait_for(
        lambda: page.evaluate("() => Array.from(document.images).every(i => i.complete)"),
        30,
        what="every picture loaded or failed",
    )
    return page.eval_on_selector_all("img", "imgs => imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.src)")


def shoot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_review_page_in_a_browser(shop, provider, daemon, tmp_path: Path) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is missing: apt-get install chromium (.ci/run does)"
    products = shop.seed(products=3, images_per_product=1, seed=22)
    originals = {p["legacy_id"]: shop.product(p["legacy_id"])["media"][0] for p in products}
    port = free_port()
    base = f"http://127.0.0.1:{port}/ui"
    config = tmp_path / "config.toml"
    config.write_text(
        config_text(
            shop,
            provider,
            tmp_path,
            new_only=False,
            extra=f"""
[server]
listen = "127.0.0.1:{port}"

[review]
mode = "all"
""",
        )
    )
    db = tmp_path / "retouch.db"
    run = daemon(config)
    wait_for(lambda: len(image_states(db)) == 3, 60, what="images discovered")
    done = cli("password", config=config, input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    wait_for(
        lambda: set(image_states(db).values()) == {"awaiting_review"},
        120,
        what=f"every result waiting for review ({image_states(db)})",
    )
    assert charged(provider) == 3
    media_of = {legacy: original["id"] for legacy, original in originals.items()}
    image_id = {
        legacy: db_rows(db, "select id from image where media_id = ?", media)[0][0]
        for legacy, media in media_of.items()
    }
    approved, rejected, redone = (p["legacy_id"] for p in products)

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            # Signed out: every page sends to the login; a wrong password is refused.
            page.goto(f"{base}/review")
            assert page.url.endswith("/ui/login")
            page.fill("input[name=password]", "not the password")
            page.click("button[type=submit]")
            assert page.locator(".error").inner_text() == "wrong password"
            shoot(page, "1-login")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")

            assert not all_pictures_load(page)
            assert "3 result(s) wait for your review" in page.inner_text("main")
            shoot(page, "2-overview")

            page.goto(f"{base}/review")
            page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")  # the full-size sliders
            assert page.locator("article.item").count() == 3
            assert not all_pictures_load(page)
            assert "aigenstudio" in page.inner_text(f"#item-{image_id[approved]}")
            shoot(page, "3-review")
            if os.environ.get("RETOUCH_DOCS_SCREENSHOT") == "1":
                page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = false)")
                page.evaluate("() => window.scrollTo(0, 0)")
                page.screenshot(path=str(ROOT / "docs" / "review.png"))

            # A POST without the CSRF token, from the signed-in browser itself: refused, nothing moves.
            forged = page.request.post(f"{base}/review/approve", form={"image": str(image_id[rejected])})
            assert forged.status == 403
            assert image_states(db)[media_of[rejected]] == "awaiting_review"

            # Approve one with the keyboard (a), reject one with a reason, redo one after its quote.
            page.click(f"#item-{image_id[approved]}")
            page.keyboard.press("a")
            page.wait_for_url(f"{base}/review")
            assert "1 image(s) approved" in page.inner_text(".flash")
            item = page.locator(f"#item-{image_id[rejected]}")
            item.locator("form.reject input[name=reason]").fill("the label is cut off")
            item.locator("form.reject button").click()
            assert "1 image(s) rejected" in page.inner_text(".flash")
            page.locator(f"#item-{image_id[redone]} form.redo button").click()
            assert "redo 1 image(s)" in page.inner_text(".quote")  # what it costs, before it is spent
            shoot(page, "4-redo-confirm")
            page.click("#confirm")
            assert "1 image(s) sent again" in page.inner_text(".flash")

            wait_for(lambda: image_states(db)[media_of[approved]] == "done", 120, what="the approved one written")
            wait_for(
                lambda: image_states(db)[media_of[redone]] == "awaiting_review" and charged(provider) == 4,
                120,
                what=f"the redone one back for review ({image_states(db)})",
            )
            assert image_states(db)[media_of[rejected]] == "rejected"

            page.goto(f"{base}/product/{approved}")
            assert not all_pictures_load(page)
            assert "written to Shopify" in page.inner_text("main")
            shoot(page, "5-product")
            page.goto(f"{base}/")
            assert not all_pictures_load(page)
            shoot(page, "6-overview-after")

            # Shopify holds exactly the approved result; the rejected and the redone originals are untouched.
            kept = db_rows(db, "select result_sha256 from image where id = ?", image_id[approved])[0][0]
            for legacy, original in originals.items():
                media = shop.product(legacy)["media"]
                assert [m["id"] for m in media] == [original["id"]]
                assert media[0]["sha256"] == (kept if legacy == approved else original["sha256"]), legacy
            assert charged(provider) == 4  # three results and the one redo, nothing else

            # Revert from the product page, after its confirmation: the original is back in Shopify.
            page.goto(f"{base}/product/{approved}")
            page.click("text=Revert this product")
            assert "Put back the original of 1 image(s)" in page.inner_text(".quote")
            assert shop.product(approved)["media"][0]["sha256"] == kept  # asking changed nothing
            shoot(page, "7-revert-confirm")
            page.click("#confirm")
            assert "reverted 1 image(s)" in page.inner_text(".flash")
            assert shop.product(approved)["media"][0]["sha256"] == originals[approved]["sha256"]
            assert image_states(db)[media_of[approved]] == "reverted"

            # Logins from one client: a few tries a minute, then 429 with Retry-After.
            # Logins from one client: a few tries a minute, then 429 with Retry-After.
            statuses, retry_after = [], None
            for _ in range(8):
                fresh = browser.new_page()
                fresh.goto(f"{base}/login")
                token = fresh.get_attribute("input[name=csrf]", "value")
                answer = fresh.request.post(f"{base}/login", form={"csrf": token, "password": "guess"})
                statuses.append(answer.status)
                retry_after = answer.headers.get("retry-after")
                fresh.close()
                if answer.status == 429:
                    break
            assert statuses[-1] == 429 and int(retry_after) > 0 and len(statuses) <= 6, statuses
        finally:
            browser.close()

    assert charged(provider) == 4
    assert run.terminate(timeout=15) == 0
    print(f"\nscreenshots of each page: {SHOTS}")
