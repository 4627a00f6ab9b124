"""The review page's locks over real HTTP, in the daemon's own app (server.build_app, with its
scrubbing and error middleware): the password only as an Argon2 hash, the session cookie's flags,
CSRF on every POST, the login rate limit, the security headers, and pictures served from local disk
only when they are pictures. (The browser tests, test_web_browser.py, drive the whole flow.)"""

from __future__ import annotations

import io
import re
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from PIL import Image

from conftest import SECRETS, cli, config_text, pipeline_settings
from retouch.plugin.serve import serve_in_thread
from retouch.storage.backups import BackupStore
from retouch.storage.models import ImageState
from retouch.storage.store import Store
from retouch.sync.metrics import build_registry
from retouch.sync.server import ServerDeps, build_app
from retouch.sync.web import UiDeps, build_ui
from retouch.sync.web.auth import LOGIN_ATTEMPTS, PASSWORD_META, hash_password

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Page:
    """The daemon's HTTP app with the review page mounted, on loopback, over a real Store."""

    def __init__(self, settings, store: Store) -> None:
        self.clock = Clock()
        ctx = SimpleNamespace(settings=settings, store=store, backups=BackupStore(settings.backup_dir))
        ui = build_ui(UiDeps(context=lambda: ctx, clock=self.clock))
        registry = build_registry(store, "aigenstudio", settings.capabilities.quota, lambda: None, lambda: None)
        deps = ServerDeps(
            store=store,
            provider=lambda: None,
            discover_every=60,
            scheduler_alive=lambda: True,
            on_provider_event=lambda event: None,
            ui=ui,
        )
        self.server = serve_in_thread(build_app(deps, registry))
        self.http = httpx.Client(base_url=self.server.url, trust_env=False, timeout=10)

    def csrf(self, path: str = "/ui/login") -> str:
        answer = self.http.get(path)
        return re.search(r'name="csrf" value="([^"]+)"', answer.text).group(1)

    def login(self, password: str = PASSWORD) -> httpx.Response:
        return self.http.post("/ui/login", data={"csrf": self.csrf(), "password": password})

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture
def setup(shop, provider, tmp_path: Path) -> Iterator[tuple[Page, Store, object]]:
    settings = pipeline_settings(shop, provider, tmp_path)
    store = Store(settings.database_url)
    store.set_meta(PASSWORD_META, hash_password(PASSWORD))  # as `retouch password` does (tested above)
    page = Page(settings, store)
    yield page, store, settings
    page.close()
    store.close()


def test_password_is_kept_only_as_an_argon2_hash(shop, provider, tmp_path: Path) -> None:
    settings = pipeline_settings(shop, provider, tmp_path)
    config = tmp_path / "config.toml"
    Store(settings.database_url).close()
    short = cli("password", config=config, input="short\n")
    assert short.returncode == 2 and "at least" in short.stderr
    done = cli("password", config=config, input=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    with sqlite3.connect(settings.database_path) as conn:
        (stored,) = conn.execute("select value from meta where key = ?", (PASSWORD_META,)).fetchone()
    assert stored.startswith("$argon2id$")
    assert PASSWORD.encode() not in settings.database_path.read_bytes()
    generated = cli("password", "--generate", config=config)
    assert generated.returncode == 0
    printed = re.search(r"keep it\): (\S+)", generated.stdout).group(1)
    with sqlite3.connect(settings.database_path) as conn:
        (again,) = conn.execute("select value from meta where key = ?", (PASSWORD_META,)).fetchone()
    from argon2 import PasswordHasher

    assert PasswordHasher().verify(again, printed) and again != stored


def test_login_session_cookie_and_wrong_password(setup) -> None:
    page, store, settings = setup
    assert page.http.get("/ui/", follow_redirects=False).headers["location"].endswith("/ui/login")
    wrong = page.login("not the password")
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    assert page.http.get("/ui/", follow_redirects=False).status_code == 303  # still signed out
    right = page.login()
    assert right.status_code == 303 and right.headers["location"].endswith("/ui/")
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    assert "secure" not in cookie  # plain http on loopback: a Secure cookie would never come back
    overview = page.http.get("/ui/")
    assert overview.status_code == 200 and "Overview" in overview.text
    key_file = settings.database_path.with_name(settings.database_path.name + ".ui-key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    for text in (overview.text, right.headers["set-cookie"]):
        assert key not in text and not any(secret in text for secret in SECRETS)
    assert key.encode() not in settings.database_path.read_bytes()
    # A new password ends the sessions signed in with the old one.
    store.set_meta(PASSWORD_META, "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$c29tZWhhc2g")
    assert page.http.get("/ui/", follow_redirects=False).status_code == 303


def test_every_post_needs_the_csrf_token(setup) -> None:
    page, store, settings = setup
    assert page.http.post("/ui/login", data={"password": PASSWORD}).status_code == 403
    assert page.login().status_code == 303
    token = page.csrf("/ui/")
    for path in ("/ui/retry", "/ui/review/approve", "/ui/review/reject", "/ui/review/redo", "/ui/logout"):
        assert page.http.post(path, data={"image": "1"}).status_code == 403, path
        assert page.http.post(path, data={"image": "1", "csrf": token + "x"}).status_code == 403, path
    assert page.http.post("/ui/retry", data={"csrf": token}).status_code == 303  # with it: done


def test_login_attempts_are_rate_limited_per_client(setup) -> None:
    page, store, settings = setup
    for _ in range(LOGIN_ATTEMPTS):
        assert page.login("guess number n").status_code == 401
    refused = page.login()  # even the right password: the client must wait
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    page.clock.now += 61
    assert page.login().status_code == 303


def test_security_headers_on_every_answer(setup) -> None:
    page, store, settings = setup
    answers = [
        page.http.get("/ui/login"),
        page.http.get("/ui/nothing-here"),
        page.http.get("/ui/static/style.css"),
        page.http.post("/ui/retry", data={}),
    ]
    page.login()
    answers += [page.http.get("/ui/"), page.http.get("/ui/picture/999/before")]
    for answer in answers:
        csp = answer.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, answer.url
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
    assert "/webhooks/" not in page.http.get("/ui/").text


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "PNG")
    return out.getvalue()


def test_pictures_come_from_local_disk_by_id_and_only_as_pictures(setup) -> None:
    page, store, settings = setup
    backups = BackupStore(settings.backup_dir)
    good = backups.put(png((200, 30, 30)))
    not_a_picture = backups.put(b"<script>alert(1)</script>")
    shown = store.insert_image(
        media_id="gid://shopify/MediaImage/1",
        product_id="gid://shopify/Product/1",
        product_legacy_id="1",
        state=ImageState.DONE,
        backup_sha256=good,
    )
    hostile = store.insert_image(
        media_id="gid://shopify/MediaImage/2",
        product_id="gid://shopify/Product/1",
        product_legacy_id="1",
        state=ImageState.DONE,
        backup_sha256=not_a_picture,
    )
    assert page.http.get(f"/ui/picture/{shown.id}/before", follow_redirects=False).status_code == 303  # signed out
    page.login()
    answer = page.http.get(f"/ui/picture/{shown.id}/before")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.content == backups.get(good)  # byte for byte: not scrubbed as text on the way
    assert page.http.get(f"/ui/picture/{hostile.id}/before").status_code == 404
    assert page.http.get(f"/ui/picture/{shown.id}/elsewhere").status_code == 404
    assert page.http.get(f"/ui/picture/{shown.id + 100}/before").status_code == 404
    product = page.http.get("/ui/product/1")
    assert product.status_code == 200 and f"/ui/picture/{shown.id}/before" in product.text


def test_review_forms_decide_per_image_per_product_and_for_a_selection(setup) -> None:
    """The review page over the store as the review step leaves it (the pipeline itself: test_web_browser.py)."""
    page, store, settings = setup
    from retouch.sync.review import results_store

    backups = BackupStore(settings.backup_dir)
    ids = {}
    for n, (product, title) in enumerate([("1", "Blue Mug"), ("1", "Blue Mug"), ("2", "Red Scarf"), ("3", "Lamp")]):
        image = store.insert_image(
            media_id=f"gid://shopify/MediaImage/{n}",
            product_id=f"gid://shopify/Product/{product}",
            product_legacy_id=product,
            state="awaiting_review",
            product_title=title,
            filename=f"photo-{n}.jpg",
            backup_sha256=backups.put(png((n * 40, 10, 10))),
            result_sha256=results_store(settings).put(png((255, 255, 255 - n))),
        )
        ids[n] = image.id
    page.login()
    queue = page.http.get("/ui/review")
    assert queue.status_code == 200 and "Blue Mug" in queue.text and "Red Scarf" in queue.text
    for image_id in ids.values():
        for which in ("before", "after"):
            assert f"/ui/picture/{image_id}/{which}" in queue.text
            assert page.http.get(f"/ui/picture/{image_id}/{which}").headers["content-type"] == "image/png"
    token = page.csrf("/ui/review")
    # Per product: both of Blue Mug's; then a selection; then one image with a reason.
    answer = page.http.post("/ui/review/approve", data={"csrf": token, "product": "1"})
    assert answer.status_code == 303
    assert "2 image(s) approved" in page.http.get("/ui/review").text
    assert {store.image(ids[0]).state, store.image(ids[1]).state} == {"backed_up"}
    page.http.post("/ui/review/reject", data={"csrf": token, "image": [str(ids[2]), str(ids[3])], "reason": "too dark"})
    assert [store.image(ids[n]).state for n in (2, 3)] == ["rejected", "rejected"]
    assert store.image(ids[2]).review_note == "too dark"
    # A decision on an image no longer waiting is refused with the reason, not applied.
    again = page.http.post("/ui/review/approve", data={"csrf": token, "image": str(ids[2])}, follow_redirects=True)
    assert "0 image(s) approved" in again.text and store.image(ids[2]).state == "rejected"
    # Redo asks first (its cost), and only the confirmed form queues it again.
    asked = page.http.post("/ui/review/redo", data={"csrf": token, "image": str(ids[3])})
    assert asked.status_code == 200 and "redo 1 image(s)" in asked.text and store.image(ids[3]).state == "rejected"
    page.http.post("/ui/review/redo", data={"csrf": token, "image": str(ids[3]), "confirmed": "yes"})
    assert store.image(ids[3]).state == "discovered"


def test_the_session_cookie_is_secure_behind_an_https_public_url(shop, provider, tmp_path: Path) -> None:
    from retouch.sync.config import load_settings

    config = tmp_path / "public.toml"
    config.write_text(
        config_text(
            shop,
            provider,
            tmp_path,
            new_only=False,
            extra="""
[server]
listen = "0.0.0.0:8787"
public_url = "https://retouch.example.com"
""",
        )
    )
    settings = load_settings(config)
    store = Store(settings.database_url)
    store.set_meta(PASSWORD_META, hash_password(PASSWORD))
    page = Page(settings, store)
    try:
        # The session starts on the sign-in page (its CSRF token); over plain http the browser would
        # not even send a Secure cookie back, so the page is usable only through https.
        cookie = page.http.get("/ui/login").headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    finally:
        page.close()
        store.close()
