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

import re
import uuid
from collections.abc import Mapping
from typing import Any

import structlog
from pydantic import BaseModel, Field, field_validator

from .. import base
from ..base import Capabilities, DemoSandbox, ItemResult, JobStatus, ProviderConfig, ProviderPlugin, Ticket
from ..fetch import FetchError
from ..quota import QuotaLimits
from ..settings import DAY, Count, DurationBetween, Section
from . import contract, errors
from .client import ProductAIClient, parse_webhook

BASE_URL = "https://api.productai.photo/v1"
MODEL_TOKENS = contract.MODEL_TOKENS
UPSCALE_TOKENS = contract.UPSCALE_TOKENS
DEFAULT_PROMPT = (
    "Clean e-commerce product photo of this exact product on a pure white background, soft even "
    "studio lighting, sharp focus. Keep the product's shape, colours, label and text exactly as they are."
)
MIN_POLL_INTERVAL = 3.0  # [DOC] "poll no faster than every 3-5 s" (per minute of budget window)
SANDBOX_KEY = "pai_sandbox_key_0123456789"

log = structlog.get_logger(__name__)


class ProductAISettings(Section):
    # The documented models, or one the vendor added since (accepted with a warning: contract.py).
    model: str = "kontext-pro"
    prompt: str = Field(DEFAULT_PROMPT, min_length=1, max_length=4000)
    upscale: bool = False  # a second, upscale job (20 tokens) on each result
    requests_per_minute: Count = Field(15, ge=1, le=1000)  # generate + upscale + polls, together
    window: DurationBetween(1.0, DAY) = 60.0  # the budget's window: a minute (a sandbox may shorten it)
    active_jobs: Count = Field(8, ge=1, le=100)  # jobs running at once
    max_attempts: Count = Field(1, ge=1, le=5)  # paid jobs retouch starts for one image by itself

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if not re.fullmatch(contract.MODEL_PATTERN, value):
            raise ValueError(
                f"{value!r} is not a model name; use one of ProductAI's models, e.g. {', '.join(MODEL_TOKENS)}"
            )
        return value


def capabilities(settings: BaseModel) -> Capabilities:
    assert isinstance(settings, ProductAISettings)
    floor = MIN_POLL_INTERVAL * settings.window / 60.0
    return Capabilities(
        quota=QuotaLimits(
            window=settings.window, requests=settings.requests_per_minute, active_jobs=settings.active_jobs, max_batch=1
        ),
        source="url",
        source_formats=frozenset({"image/jpeg", "image/png", "image/webp"}),
        result="lasting_url",
        # The documented floor, scaled with a shortened window (sandboxes, benchmarks): 3 s a minute.
        completion=frozenset({"poll", "webhook"}),
        poll_interval=floor,
        min_poll_interval=floor,
        idempotent_submit=False,
        max_attempts=settings.max_attempts,
        credit_unit="tokens",
        credits_per_image=contract.model_tokens(settings.model) + (UPSCALE_TOKENS if settings.upscale else 0),
        max_job_age=contract.MAX_JOB_AGE_SECONDS,
    )


def unlisted_model_warning(settings: ProductAISettings) -> str | None:
    """The warning for a model outside the documented list (the vendor adds models): None when listed."""
    if contract.is_listed_model(settings.model):
        return None
    return (
        f"[productai] model: {settings.model!r} is not on ProductAI's documented list "
        f"({', '.join(MODEL_TOKENS)}); sent as is, budgeted at {contract.UNLISTED_MODEL_TOKENS} tokens an image"
    )


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
        warning = unlisted_model_warning(config.settings)
        if warning:
            log.warning("unlisted_model", model=config.settings.model, message=warning)

    def __repr__(self) -> str:
        return f"ProductAIProvider({self.client!r})"

    def request_options(self) -> dict[str, Any]:
        return {"model": self.settings.model, "prompt": self.settings.prompt, "upscale": self.settings.upscale}

    async def _counted(self, progress: base.Progress, call: Any) -> Any:
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
        job_id = await self._counted(
            progress,
            self.client.generate(
                model=ticket.options["model"], image_url=item.source_url, prompt=ticket.options["prompt"]
            ),
        )
        progress.save(generate_id=job_id)
        return str(job_id)

    async def poll(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        state = ticket.state
        if state.get("upscale_due") and ticket.final:
            # The job's deadline: no new paid upscale now; the generated image is the result.
            return self._generated_only(ticket, state, "COMPLETED (deadline reached before the upscale: not upscaled)")
        if state.get("upscale_due"):
            return await self._start_upscale(ticket, progress)
        assert ticket.provider_job_id is not None
        job = await self._counted(progress, self.client.job(int(ticket.provider_job_id)))
        if ticket.final and state.get("upscale_id") and not job.finished:
            return self._generated_only(ticket, state, "COMPLETED (upscale unfinished at the deadline: not upscaled)")
        if job.failed:  # ERROR [DOC], FAILED or TIMEOUT [DOC: vendor code]: final
            code = "productai_error" if job.status == "ERROR" else f"productai_{job.status.lower()}"
            return JobStatus(
                terminal=True,
                description=job.status,
                credits_used=self._tokens(ticket, state),
                items={
                    0: ItemResult(
                        "failed",
                        error_code=code,
                        error_message=job.message or f"ProductAI ended this job with {job.status}",
                    )
                },
            )
        if job.status != "COMPLETED":
            return JobStatus(terminal=False, items={}, description=job.status)
        if ticket.options.get("upscale") and not state.get("upscale_id"):
            # Sent on the next poll, so the budget paces it like any other request.
            progress.save(generated_url=job.image_url, upscale_due=True)
            return JobStatus(
                terminal=False,
                items={},
                description="generated; upscale next",
                expected_seconds=0.0,
                webhook_expected=False,
            )
        return JobStatus(
            terminal=True,
            description="COMPLETED",
            credits_used=self._tokens(ticket, state),
            items={0: ItemResult("completed", result_url=job.image_url)},
        )

    async def _start_upscale(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        state = ticket.state
        generated = state["generated_url"]
        if state.get("upscale_sent"):
            # We never heard whether the upscale started: do not pay for a second one.
            return JobStatus(
                terminal=True,
                description="COMPLETED (upscale answer lost: not upscaled)",
                credits_used=self._tokens(ticket, state),
                items={0: ItemResult("completed", result_url=generated)},
            )
        progress.save(upscale_sent=True)
        try:
            upscale_id = await self._counted(progress, self.client.upscale(image_url=generated))
        except (errors.InvalidRequest, errors.OutOfTokens, errors.RateLimited, errors.AuthenticationFailed):
            progress.save(upscale_sent=False)  # refused: it did not start; try again on a later poll
            raise
        # Any other failure (no answer, a 5xx, an unreadable body) may have started it: not resent.
        progress.save(upscale_id=upscale_id, upscale_due=False, upscale_sent=False)
        return JobStatus(terminal=False, items={}, description="upscaling", provider_job_id=str(upscale_id))

    def _generated_only(self, ticket: Ticket, state: Mapping[str, Any], description: str) -> JobStatus:
        return JobStatus(
            terminal=True,
            description=description,
            credits_used=self._tokens(ticket, state),
            items={0: ItemResult("completed", result_url=state["generated_url"])},
        )

    def _tokens(self, ticket: Ticket, state: Mapping[str, Any]) -> int:
        return contract.model_tokens(str(ticket.options.get("model"))) + (
            UPSCALE_TOKENS if state.get("upscale_id") else 0
        )

    async def fresh_results(self, ticket: Ticket, progress: base.Progress) -> dict[int, str]:
        return {}  # result URLs last

    def result_link_expired(self, failure: FetchError) -> bool:
        return False  # result URLs last: a refused one is a failure, not an expiry

    def webhook_url(self, public_url: str) -> str | None:
        # One URL per account, set on ProductAI's dashboard (`retouch check` prints it).
        return f"{public_url.rstrip('/')}/webhooks/productai/{base.webhook_token(self._api_key)}"

    def verify_webhook(
        self, token: str | None, headers: Mapping[str, str], body: bytes, now: float, skew: float
    ) -> base.WebhookEvent:
        # Unsigned [DOC]: the secret token in the URL path is the proof.
        if not base.token_matches(self._api_key, token):
            raise base.WebhookRefused(401, "bad_token")
        try:
            event = parse_webhook(body)
        except ValueError:
            raise base.WebhookRefused(400, "malformed") from None
        if event.job_id is None:  # {"status": "error"} names no job: every running job is polled soon
            return base.WebhookEvent(event_id=f"anonymous:{uuid.uuid4().hex}", provider_job_id=None, kind=event.status)
        return base.WebhookEvent(
            event_id=f"{event.job_id}:{event.status}", provider_job_id=str(event.job_id), kind=event.status
        )

    async def describe(self) -> list[tuple[bool, str]]:
        try:
            await self.client.job(0)  # no such job: 404 proves the key is accepted; one request of the budget
        except errors.NotFound:
            pass
        lines = [
            (
                True,
                f"provider: ok — ProductAI key accepted; model {self.settings.model} "
                f"({contract.model_tokens(self.settings.model)} tokens"
                f"{' + 20 for the upscale' if self.settings.upscale else ''} per image)",
            )
        ]
        warning = unlisted_model_warning(self.settings)
        if warning:
            lines.append((True, f"provider: warning — {warning}"))
        if self._public_url:
            lines.append(
                (
                    True,
                    "provider: set this as the account's webhook on ProductAI's dashboard: "
                    + (self.webhook_url(self._public_url) or ""),
                )
            )
        return lines

    async def aclose(self) -> None:
        await self.client.aclose()


def start_sandbox(*, fast: bool = False, port: int = 0, profile: str = "default") -> DemoSandbox:
    from .sandbox import ProductAISandbox

    window = 6.0 if fast else 60.0
    sandbox = ProductAISandbox(
        keys={SANDBOX_KEY: 100_000},
        job_seconds=(0.5, 1.5) if fast else (20.0, 40.0),
        window_seconds=window,
        rate_limit_scope="key",
        profile=profile,
    )
    server = sandbox.start(port)
    return DemoSandbox(
        base_url=sandbox.base_url,
        api_key=SANDBOX_KEY,
        stop=server.stop,
        charges=lambda: sum(sum(k["jobs_started"].values()) for k in sandbox.stats()["keys"].values()),
        settings_lines=('model = "kontext-pro"', "requests_per_minute = 15", f'window = "{window:g}s"'),
    )


PLUGIN = ProviderPlugin(
    name="productai",
    title="ProductAI",
    settings_model=ProductAISettings,
    capabilities=capabilities,
    create=ProductAIProvider,
    default_base_url=BASE_URL,
    check_key=lambda key: None if len(key) >= 8 else "too short to be a ProductAI API key",
    is_sandbox=lambda key, base_url: base.is_loopback_url(base_url),
    start_sandbox=start_sandbox,
)
