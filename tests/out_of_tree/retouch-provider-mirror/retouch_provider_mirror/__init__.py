"""The "mirror" provider: uploads each original to its service, which flips it; results are polled.

Everything a provider needs comes from retouch's public plugin API (retouch.plugin.providers.base,
.settings, .quota, .errors); the service itself is a small starlette app, also its sandbox.
"""

from __future__ import annotations

import io
import threading
from typing import Any, Literal

import httpx
from PIL import Image, ImageOps
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from retouch.plugin.providers import base, errors
from retouch.plugin.providers.quota import QuotaLimits
from retouch.plugin.providers.settings import Section
from retouch.plugin.serve import serve_in_thread

KEY = "mirror_sandbox_key"


class MirrorSettings(Section):
    direction: Literal["horizontal", "vertical"] = "horizontal"


def capabilities(settings: Any) -> base.Capabilities:
    return base.Capabilities(
        quota=QuotaLimits(window=60.0, max_batch=4),
        source="upload",
        source_formats=frozenset({"image/jpeg", "image/png"}),
        result="lasting_url",
        completion=frozenset({"poll"}),
        poll_interval=0.2,
        min_poll_interval=0.0,
        idempotent_submit=True,
    )


class MirrorProvider:
    name = "mirror"

    def __init__(self, config: base.ProviderConfig) -> None:
        self.settings = config.settings
        self.capabilities = capabilities(config.settings)
        self.stats: dict[str, int] = {}
        self.http = httpx.AsyncClient(
            base_url=config.base_url or "", headers={"x-key": config.api_key}, timeout=config.timeout
        )

    def request_options(self) -> dict[str, Any]:
        return {"direction": self.settings.direction}

    async def submit(self, ticket: base.Ticket, progress: base.Progress) -> str:
        for item in ticket.items:  # PUT is idempotent: a resend after a crash costs nothing
            data, _ = await progress.source_bytes(item)
            await self._call(
                "PUT",
                f"/jobs/{ticket.key}/{item.index}",
                params={"direction": ticket.options["direction"]},
                content=data,
            )
        return ticket.key

    async def poll(self, ticket: base.Ticket, progress: base.Progress) -> base.JobStatus:
        done = (await self._call("GET", f"/jobs/{ticket.key}")).json()["done"]
        items = {
            int(i): base.ItemResult("completed", result_url=f"{self.http.base_url}/results/{ticket.key}/{i}.png")
            for i in done
        }
        return base.JobStatus(terminal=len(items) == len(ticket.items), items=items, description="mirrored")

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise errors.Unavailable(None, f"{method} {path}: {type(exc).__name__}") from None
        if response.status_code == 401:
            raise errors.AuthenticationFailed("unauthorized", "the mirror service refused the key", status=401)
        if not response.is_success:
            raise errors.Unavailable(None, f"{method} {path}: HTTP {response.status_code}", status=response.status_code)
        return response

    async def fresh_results(self, ticket: base.Ticket, progress: base.Progress) -> dict[int, str]:
        return {}

    def webhook_url(self, public_url: str) -> str | None:
        return None

    def verify_webhook(self, token, headers, body, now, skew) -> base.WebhookEvent:
        raise base.WebhookRefused(404, "no webhooks")

    async def describe(self) -> list[tuple[bool, str]]:
        await self._call("GET", "/jobs/none")
        return [(True, "provider: ok — the mirror service answers")]

    async def aclose(self) -> None:
        await self.http.aclose()


def service() -> Starlette:
    results: dict[tuple[str, str], bytes] = {}
    lock = threading.Lock()

    def authorized(request: Request) -> bool:
        return request.headers.get("x-key") == KEY

    async def put(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        with Image.open(io.BytesIO(await request.body())) as img:
            flipped = (
                ImageOps.mirror(img) if request.query_params.get("direction") != "vertical" else ImageOps.flip(img)
            )
            out = io.BytesIO()
            flipped.convert("RGB").save(out, "PNG")
        with lock:
            results[(request.path_params["key"], request.path_params["index"])] = out.getvalue()
        return JSONResponse({"ok": True})

    async def status(request: Request) -> Response:
        if not authorized(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        with lock:
            done = sorted(i for k, i in results if k == request.path_params["key"])
        return JSONResponse({"done": done})

    async def result(request: Request) -> Response:
        with lock:
            data = results.get((request.path_params["key"], request.path_params["index"]))
        return Response(data, media_type="image/png") if data else Response(status_code=404)

    return Starlette(
        routes=[
            Route("/jobs/{key}/{index}", put, methods=["PUT"]),
            Route("/jobs/{key}", status, methods=["GET"]),
            Route("/results/{key}/{index}.png", result, methods=["GET"]),
        ]
    )


def start_sandbox(*, fast: bool = False, port: int = 0) -> base.DemoSandbox:
    server = serve_in_thread(service(), port=port)
    return base.DemoSandbox(
        base_url=server.url, api_key=KEY, settings_lines=('direction = "horizontal"',), stop=server.stop
    )


PLUGIN = base.ProviderPlugin(
    name="mirror",
    title="Mirror",
    settings_model=MirrorSettings,
    capabilities=capabilities,
    create=MirrorProvider,
    default_base_url="http://127.0.0.1:9",
    is_sandbox=lambda key, url: True,
    start_sandbox=start_sandbox,
)
