"""The review page: a Starlette app the daemon mounts at /ui/ (server.py).

    GET  /ui/login, POST /ui/login, POST /ui/logout
    GET  /ui/                          overview: counts, quota, budget, spend, ETA, recent results, failures
    GET  /ui/review[?product=<id>]     the queue of results waiting for the owner
    POST /ui/review/approve|reject|redo   per image, per product or a selection (redo asks first)
    GET  /ui/product/<legacy id>       every image of a product with its history
    POST /ui/product/<legacy id>/revert   puts the originals back (asks first)
    POST /ui/retry                     requeues a failed product's images
    GET  /ui/picture/<image id>/before|after   the bytes, from this machine's disk only

Every page but the login needs the owner's session; every POST needs the session's CSRF token (403
without); logins are rate-limited per client (429 + Retry-After); every answer carries strict
security headers (security.py). Database work runs in a worker thread, like the rest of server.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from . import auth
from .pictures import picture_sha, read_picture
from .security import SecurityHeaders

log = structlog.get_logger(__name__)

HERE = Path(__file__).parent
SESSION_COOKIE = "retouch_ui"
SESSION_AGE = 12 * 3600  # seconds a login lasts
MAX_FORM = 64 * 1024  # bytes of a form post (a selection of a few hundred ids)
REASON_MAX = 300  # characters of a reject reason or redo prompt kept


@dataclass
class UiDeps:
    context: Callable[[], Any]  # the daemon's current pipeline Context (settings, store, shopify)
    clock: Callable[[], float] = time.time
    limiter: auth.LoginLimiter = field(default_factory=auth.LoginLimiter)


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    return env


def _when(ts: float | datetime | None) -> str:
    if ts is None:
        return ""
    if isinstance(ts, datetime):
        ts = ts.timestamp() if ts.tzinfo else ts.replace(tzinfo=timezone.utc).timestamp()
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float | None) -> str:
    from ..costs import duration_words

    return "" if seconds is None else duration_words(max(0.0, float(seconds)))


def legacy_id(gid: str) -> str:
    return gid.rsplit("/", 1)[-1]


def product_gid(legacy: str) -> str:
    return f"gid://shopify/Product/{legacy}"


def build_ui(deps: UiDeps) -> Starlette:
    env = _templates()

    def settings():
        return deps.context().settings

    def store():
        return deps.context().store

    def signed_in(request: Request) -> bool:
        stored = store().get_meta(auth.PASSWORD_META)
        return bool(stored) and request.session.get("owner") == auth.password_version(stored)

    def csrf(request: Request) -> str:
        token = request.session.get("csrf")
        if not token:
            token = request.session["csrf"] = auth.new_csrf_token()
        return token

    def render(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        flash = request.session.pop("flash", None)
        html = env.get_template(name).render(
            base=request.scope.get("root_path", ""),
            csrf=csrf(request),
            flash=flash,
            page=name.removesuffix(".html"),
            **values,
        )
        return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})

    def redirect(request: Request, where: str, flash: str | None = None) -> RedirectResponse:
        if flash:
            request.session["flash"] = flash
        return RedirectResponse(request.scope.get("root_path", "") + where, status_code=303)

    async def form_of(request: Request) -> Any | None:
        """The posted form when its CSRF token is the session's; None otherwise."""
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_FORM):
            return None
        form = await request.form(max_files=0, max_fields=2000)
        token = form.get("csrf")  # a str, or an UploadFile for a file part (refused: max_files=0)
        return form if auth.csrf_ok(request.session.get("csrf"), token if isinstance(token, str) else None) else None

    def owner_only(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if not await run_in_threadpool(signed_in, request):
                if request.method == "GET":
                    return redirect(request, "/login")
                return PlainTextResponse("sign in first", status_code=403)
            if request.method == "POST":
                form = await form_of(request)
                if form is None:
                    return PlainTextResponse(
                        "refused: this form is stale or not from this page; reload it", status_code=403
                    )
                request.state.form = form
            return await handler(request)

        return guarded

    # ----- login ---------------------------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        password_set = bool(await run_in_threadpool(store().get_meta, auth.PASSWORD_META))
        return render(request, "login.html", password_set=password_set)

    async def login(request: Request) -> Response:
        client = request.client.host if request.client else "unknown"
        wait = deps.limiter.wait(client, deps.clock())
        if wait > 0:
            log.warning("ui_login_rate_limited", client=client)
            return PlainTextResponse(
                "too many sign-in attempts; wait a minute",
                status_code=429,
                headers={"Retry-After": str(max(1, int(wait + 0.999)))},
            )
        form = await form_of(request)
        if form is None:
            return PlainTextResponse("refused: this form is stale; reload the sign-in page", status_code=403)
        stored = await run_in_threadpool(store().get_meta, auth.PASSWORD_META)
        password = str(form.get("password") or "")
        if not await run_in_threadpool(auth.check_password, stored, password):
            log.warning("ui_login_failed", client=client)
            return render(
                request,
                "login.html",
                status=401,
                password_set=bool(stored),
                error="wrong password" if stored else "no password is set yet: run `retouch password`",
            )
        request.session.clear()  # a fresh session (and CSRF token) for the signed-in owner
        request.session["owner"] = auth.password_version(stored)
        log.info("ui_login", client=client)
        return redirect(request, "/")

    @owner_only
    async def logout(request: Request) -> Response:
        request.session.clear()
        return redirect(request, "/login")

    # ----- overview ------------------------------------------------------------------------------

    @owner_only
    async def overview(request: Request) -> Response:
        from . import views

        data = await run_in_threadpool(views.overview, deps.context(), deps.clock())
        return render(request, "overview.html", **data)

    @owner_only
    async def retry(request: Request) -> Response:
        from ..pipeline.retry import requeue_failed

        product = str(request.state.form.get("product") or "")
        requeued, refused = await run_in_threadpool(requeue_failed, store(), [product] if product else None)
        message = f"{len(requeued)} image(s) requeued"
        if refused:
            message += f"; {len(refused)} retried too often already (use `retouch resync --force`)"
        return redirect(request, "/", message)

    # ----- review --------------------------------------------------------------------------------

    @owner_only
    async def review_page(request: Request) -> Response:
        from . import views

        product = request.query_params.get("product")
        data = await run_in_threadpool(views.review_queue, deps.context(), product_gid(product) if product else None)
        return render(request, "review.html", product=product, **data)

    def chosen_ids(form: Any) -> list[int]:
        """The images a review form names: `image` fields, or every waiting image of `product`."""
        ids = [int(value) for value in form.getlist("image") if str(value).isdigit()]
        product = form.get("product")
        if product and str(product).isdigit():
            from .. import review

            ids += [item.image_id for item in review.waiting_for_review(store(), product_id=product_gid(str(product)))]
        return sorted(set(ids))

    def back(request: Request) -> str:
        product = request.state.form.get("back_product")
        return f"/review?product={product}" if product and str(product).isdigit() else "/review"

    @owner_only
    async def approve(request: Request) -> Response:
        from .. import review

        ids = await run_in_threadpool(chosen_ids, request.state.form)
        outcome = await run_in_threadpool(lambda: review.approve(store(), ids, now=deps.clock()))
        return redirect(request, back(request), _outcome_words("approved", outcome))

    @owner_only
    async def reject(request: Request) -> Response:
        from .. import review

        ids = await run_in_threadpool(chosen_ids, request.state.form)
        reason = str(request.state.form.get("reason") or "").strip()[:REASON_MAX] or "rejected on the review page"
        outcome = await run_in_threadpool(lambda: review.reject(store(), ids, reason=reason, now=deps.clock()))
        return redirect(request, back(request), _outcome_words("rejected", outcome))

    @owner_only
    async def redo(request: Request) -> Response:
        from .. import review

        form = request.state.form
        ids = await run_in_threadpool(chosen_ids, form)
        preset = str(form.get("preset") or "").strip()[:REASON_MAX] or None
        prompt = str(form.get("prompt") or "").strip()[:REASON_MAX] or None
        if form.get("confirmed") != "yes":
            try:
                quote = await run_in_threadpool(
                    lambda: review.redo_quote(settings(), store(), ids, preset=preset, prompt=prompt)
                )
            except ValueError as exc:  # an option the provider would refuse, in the owner's words
                return redirect(request, back(request), f"not redone: {exc}")
            return render(
                request,
                "confirm.html",
                action="review/redo",
                title="Redo these results?",
                quote=quote,
                ids=ids,
                preset=preset or "",
                prompt=prompt or "",
                back_product=form.get("back_product") or "",
                button="Redo (a new paid attempt)",
            )
        outcome = await run_in_threadpool(
            lambda: review.redo(store(), ids, preset=preset, prompt=prompt, now=deps.clock())
        )
        return redirect(request, back(request), _outcome_words("sent again", outcome))

    # ----- product -------------------------------------------------------------------------------

    @owner_only
    async def product_page(request: Request) -> Response:
        from . import views

        legacy = request.path_params["legacy"]
        data = await run_in_threadpool(views.product, deps.context(), product_gid(legacy))
        if data is None:
            return render(request, "missing.html", status=404, what="This product is not in retouch's database.")
        return render(request, "product.html", legacy=legacy, **data)

    @owner_only
    async def revert(request: Request) -> Response:
        from ..pipeline.revert import REVERTIBLE_BESIDE_DAEMON, revertible
        from ..pipeline.revert import revert as revert_products

        legacy = request.path_params["legacy"]
        gid = product_gid(legacy)
        ctx = deps.context()
        if request.state.form.get("confirmed") != "yes":
            images = await run_in_threadpool(revertible, ctx, [gid], states=REVERTIBLE_BESIDE_DAEMON)
            quote = (
                (
                    f"Put back the original of {len(images)} image(s) in Shopify? The enhanced pictures leave "
                    "the product; this costs no credits."
                )
                if images
                else "Nothing of this product can be reverted now."
            )
            return render(
                request,
                "confirm.html",
                action=f"product/{legacy}/revert",
                title="Revert this product?",
                quote=quote,
                ids=[],
                preset="",
                prompt="",
                back_product="",
                button="Revert" if images else None,
                cancel=f"/product/{legacy}",
            )
        reverted, failures = await revert_products(ctx, [gid], states=REVERTIBLE_BESIDE_DAEMON)
        message = f"reverted {reverted} image(s)" + (f"; failed: {'; '.join(failures)}" if failures else "")
        return redirect(request, f"/product/{legacy}", message)

    # ----- pictures ------------------------------------------------------------------------------

    @owner_only
    async def picture(request: Request) -> Response:
        which = request.path_params["which"]
        image = await run_in_threadpool(store().image, request.path_params["image_id"])
        sha = picture_sha(image, which) if image is not None else None
        found = await run_in_threadpool(read_picture, settings(), sha) if sha else None
        if found is None:
            return PlainTextResponse("no such picture", status_code=404)
        data, mime = found
        return Response(
            data, media_type=mime, headers={"Cache-Control": "private, max-age=3600", "Content-Disposition": "inline"}
        )

    routes = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", overview, methods=["GET"]),
        Route("/retry", retry, methods=["POST"]),
        Route("/review", review_page, methods=["GET"]),
        Route("/review/approve", approve, methods=["POST"]),
        Route("/review/reject", reject, methods=["POST"]),
        Route("/review/redo", redo, methods=["POST"]),
        Route("/product/{legacy:int}", product_page, methods=["GET"]),
        Route("/product/{legacy:int}/revert", revert, methods=["POST"]),
        Route("/picture/{image_id:int}/{which}", picture, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    public = str(settings().public_url or "").startswith("https://")
    key = auth.session_key(Path(settings().database_path))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(
                SessionMiddleware,
                secret_key=key,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_AGE,
                path="/ui",
                same_site="strict",
                https_only=public,
            ),
        ],
    )


def _outcome_words(verb: str, outcome: Any) -> str:
    moved = list(getattr(outcome, "moved", []) or [])
    refused = list(getattr(outcome, "refused", []) or [])
    words = f"{len(moved)} image(s) {verb}"
    if refused:
        words += "; not changed: " + "; ".join(f"#{image_id}: {reason}" for image_id, reason in refused[:5])
    return words
