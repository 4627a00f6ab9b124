"""ProductAI as a retouch provider: its `[productai]` table, capabilities and adapter (CONTRACTS.md §3).

One job per image: `POST /api/generate` with the Shopify CDN URL as `image_url`; the job id maps
back to the image. Generate, upscale and every status poll share one budget of 15 requests a
minute, which the pipeline's quota ledger paces (`requests`). Tokens are spent when a job
starts and there is no idempotency key, so a send whose answer was lost counts as a paid attempt
(the pipeline's `max_attempts` rule).

With `upscale = true` a COMPLETED generate job is followed by an upscale job on its result, sent
on the next poll (so it is paced like any request). If the answer to that upscale is lost, it is
not sent again: the generated image is used as it is, never paid for twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from .. import base
from ..base import Capabilities, DemoSandbox, ItemResult, JobStatus, ProviderConfig, ProviderPlugin, Ticket
from ..quota import QuotaLimits
from ..settings import DAY, Count, DurationBetween, Section
from . import errors
from .client import ProductAIClient, parse_webhook

BASE_URL = "https://api.productai.photo/v1"
MODEL_TOKENS = {"gpt-low": 2, "gpt-medium": 3, "gpt-high": 8, "kontext-pro": 3, "nanobanana": 3,
                "nanobananapro": 8, "seedream": 3}
UPSCALE_TOKENS = 20
DEFAULT_PROMPT = ("Clean e-commerce product photo of this exact product on a pure white background, soft even "
                  "studio lighting, sharp focus. Keep the product's shape, colours, label and text exactly as they are.")
MIN_POLL_INTERVAL = 3.0  # [DOC] "poll no faster than every 3-5 s" (per minute of budget window)
SANDBOX_KEY = "pai_sandbox_key_0123456789"


class ProductAISettings(Section):
    model: Literal["gpt-low", "gpt-medium", "gpt-high", "kontext-pro", "nanobanana", "nanobananapro",
                   "seedream"] = "kontext-pro"
    prompt: str = Field(DEFAULT_PROMPT, min_length=1, max_length=4000)
    upscale: bool = False                                # a second, upscale job (20 tokens) on each result
    requests_per_minute: Count = Field(15, ge=1, le=1000)  # generate + upscale + polls, together
    window: DurationBetween(1.0, DAY) = 60.0               # the budget's window: a minute (a sandbox may shorten it)
    active_jobs: Count = Field(8, ge=1, le=100)            # jobs running at once
    max_attempts: Count = Field(1, ge=1, le=5)             # paid jobs retouch starts for one image by itself


def capabilities(settings: BaseModel) -> Capabilities:
    assert isinstance(settings, ProductAISettings)
    floor = MIN_POLL_INTERVAL * settings.window / 60.0
    return Capabilities(
        quota=QuotaLimits(window=settings.window, requests=settings.requests_per_minute,
                          active_jobs=settings.active_jobs, max_batch=1),
        source="url", source_formats=frozenset({"image/jpeg", "image/png", "image/webp"}), result="lasting_url",
        # The documented floor, scaled with a shortened window (sandboxes, benchmarks): 3 s a minute.
        completion=frozenset({"poll", "webhook"}), poll_interval=floor, min_poll_interval=floor,
        idempotent_submit=False, max_attempts=settings.max_attempts, credit_unit="tokens",
        credits_per_image=MODEL_TOKENS[settings.model] + (UPSCALE_TOKENS if settings.upscale else 0))


class ProductAIProvider:
    name = "productai"

    def __init__(self, config: ProviderConfig, client: ProductAIClient | None = None) -> None:
        assert isinstance(config.settings, ProductAISettings)
        self.settings = config.settings
        self.capabilities = capabilities(config.settings)
        self._api_key = config.api_key
        self._public_url = config.public_url
        self.client = client or ProductAIClient(config.api_key, config.base_url or BASE_URL, timeout=config.timeout)
        self.stats = self.client.stats

    def __repr__(self) -> str:
        return f"ProductAIProvider({self.client!r})"

    def request_options(self) -> dict[str, Any]:
        return {"model": self.settings.model, "prompt": self.settings.prompt, "upscale": self.settings.upscale}

    async def _counted(self, progress: base.Progress, call):
        """One request of the shared budget: every answer but a 429 counts (and a lost one may have)."""
        try:
            result = await call
        except errors.RateLimited:
            raise
        except errors.ProductAIError:
            progress.spend("request")
            raise
        progress.spend("request")
        return result

    async def submit(self, ticket: Ticket, progress: base.Progress) -> str:
        (item,) = ticket.items
        job_id = await self._counted(progress, self.client.generate(
            model=ticket.options["model"], image_url=item.source_url, prompt=ticket.options["prompt"]))
        progress.save(generate_id=job_id)
        return str(job_id)

    async def poll(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        state = ticket.state
        if state.get("upscale_due"):
            return await self._start_upscale(ticket, progress)
        assert ticket.provider_job_id is not None
        job = await self._counted(progress, self.client.job(int(ticket.provider_job_id)))
        if job.status == "ERROR":
            return JobStatus(terminal=True, description="ERROR", credits_used=self._tokens(ticket, state),
                             items={0: ItemResult("failed", error_code="productai_error",
                                                  error_message=job.message or "ProductAI reported an error for this job")})
        if job.status != "COMPLETED":
            return JobStatus(terminal=False, items={}, description=job.status)
        if ticket.options.get("upscale") and not state.get("upscale_id"):
            # Sent on the next poll, so the budget paces it like any other request.
            progress.save(generated_url=job.image_url, upscale_due=True)
            return JobStatus(terminal=False, items={}, description="generated; upscale next", expected_seconds=0.0,
                             webhook_expected=False)
        return JobStatus(terminal=True, description="COMPLETED", credits_used=self._tokens(ticket, state),
                         items={0: ItemResult("completed", result_url=job.image_url)})

    async def _start_upscale(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        state = ticket.state
        generated = state["generated_url"]
        if state.get("upscale_sent"):
            # We never heard whether the upscale started: do not pay for a second one.
            return JobStatus(terminal=True, description="COMPLETED (upscale answer lost: not upscaled)",
                             credits_used=self._tokens(ticket, state),
                             items={0: ItemResult("completed", result_url=generated)})
        progress.save(upscale_sent=True)
        try:
            upscale_id = await self._counted(progress, self.client.upscale(image_url=generated))
        except (errors.InvalidRequest, errors.OutOfTokens, errors.RateLimited, errors.AuthenticationFailed):
            progress.save(upscale_sent=False)  # refused: it did not start; try again on a later poll
            raise
        # Any other failure (no answer, a 5xx, an unreadable body) may have started it: not resent.
        progress.save(upscale_id=upscale_id, upscale_due=False, upscale_sent=False)
        return JobStatus(terminal=False, items={}, description="upscaling", provider_job_id=str(upscale_id))

    def _tokens(self, ticket: Ticket, state: Mapping[str, Any]) -> int:
        return MODEL_TOKENS.get(str(ticket.options.get("model")), 0) + (UPSCALE_TOKENS if state.get("upscale_id") else 0)

    async def fresh_results(self, ticket: Ticket, progress: base.Progress) -> dict[int, str]:
        return {}  # result URLs last

    def webhook_url(self, public_url: str) -> str | None:
        # One URL per account, set on ProductAI's dashboard (`retouch check` prints it).
        return f"{public_url.rstrip('/')}/webhooks/productai/{base.webhook_token(self._api_key)}"

    def verify_webhook(self, token: str | None, headers: Mapping[str, str], body: bytes,
                       now: float, skew: float) -> base.WebhookEvent:
        # Unsigned [DOC]: the secret token in the URL path is the proof.
        if not base.token_matches(self._api_key, token):
            raise base.WebhookRefused(401, "bad_token")
        try:
            event = parse_webhook(body)
        except ValueError:
            raise base.WebhookRefused(400, "malformed") from None
        if event.job_id is None:  # {"status": "error"} names no job: every running job is polled soon
            return base.WebhookEvent(event_id=f"anonymous:{uuid.uuid4().hex}", provider_job_id=None, kind=event.status)
        return base.WebhookEvent(event_id=f"{event.job_id}:{event.status}", provider_job_id=str(event.job_id),
                                 kind=event.status)

    async def describe(self) -> list[tuple[bool, str]]:
        try:
            await self.client.job(0)  # no such job: 404 proves the key is accepted; one request of the budget
        except errors.NotFound:
            pass
        lines = [(True, f"provider: ok — ProductAI key accepted; model {self.settings.model} "
                        f"({MODEL_TOKENS[self.settings.model]} tokens{' + 20 for the upscale' if self.settings.upscale else ''}"
                        " per image)")]
        if self._public_url:
            lines.append((True, "provider: set this as the account's webhook on ProductAI's dashboard: "
                                + (self.webhook_url(self._public_url) or "")))
        return lines

    async def aclose(self) -> None:
        await self.client.aclose()


def start_sandbox(*, fast: bool = False, port: int = 0) -> DemoSandbox:
    from .sandbox import ProductAISandbox

    window = 6.0 if fast else 60.0
    sandbox = ProductAISandbox(keys={SANDBOX_KEY: 100_000}, job_seconds=(0.5, 1.5) if fast else (20.0, 40.0),
                               window_seconds=window, rate_limit_scope="key")
    server = sandbox.start(port)
    return DemoSandbox(base_url=sandbox.base_url, api_key=SANDBOX_KEY, stop=server.stop,
                       charges=lambda: sum(sum(k["jobs_started"].values()) for k in sandbox.stats()["keys"].values()),
                       settings_lines=('model = "kontext-pro"', "requests_per_minute = 15", f'window = "{window:g}s"'))


PLUGIN = ProviderPlugin(
    name="productai", title="ProductAI", settings_model=ProductAISettings, capabilities=capabilities,
    create=ProductAIProvider, default_base_url=BASE_URL,
    check_key=lambda key: None if len(key) >= 8 else "too short to be a ProductAI API key",
    is_sandbox=lambda key, base_url: base.is_loopback_url(base_url), start_sandbox=start_sandbox)
