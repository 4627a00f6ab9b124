"""Imagen AI as a retouch provider: its `[imagen]` table, capabilities and adapter (CONTRACTS.md §2).

One project per job. The flow, and what is saved (job provider state) before each next step:

    create project          -> save project          (free)
    upload every original   -> save uploaded         (as JPEG: a project is all-JPEG; 5 at a time)
    start the edit          -> save edit_started     (the edit is what Imagen charges for)
    poll the edit           -> Completed: start the export -> save export_started
    poll the export         -> Completed: temporary download links, one per file name

A re-run after a crash resumes from the saved step: a project whose uploads finished is edited,
never uploaded to again; an edit that was started is only polled, never started twice (the
status endpoint says whether it reached Imagen). Before the uploads finished nothing was paid, so
a fresh project is simply made. Items map back by file name, derived from the product and media
ids. Results are temporary links: the pipeline fetches them again when they expire.

We use a thin httpx client of our own rather than the official `imagen-ai-sdk`: the SDK blocks
while it polls, has no retries, and cannot resume a half-done project after a crash.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from .. import base
from ..base import Capabilities, DemoSandbox, ItemResult, JobStatus, ProviderConfig, ProviderPlugin, Ticket
from ..fetch import FetchError
from ..quota import QuotaLimits
from ..settings import HOUR, Count, DurationBetween, Section
from . import contract, errors
from .client import ImagenClient, match_exports

BASE_URL = "https://api.imagen-ai.com/v1"
SANDBOX_PROFILE = 5700  # the sandbox's default JPG profile
PHOTOGRAPHY_TYPES = (
    "NO_TYPE",
    "OTHER",
    "PORTRAITS",
    "WEDDING",
    "REAL_ESTATE",
    "LANDSCAPE_NATURE",
    "EVENTS",
    "FAMILY_NEWBORN",
    "BOUDOIR",
    "SPORTS",
    "SCHOOL",
)
# Polling advice [DOC]: start at 10 s, x1.2 per poll, at most 60 s.
FIRST_POLL, POLL_GROWTH, LONGEST_POLL = 10.0, 1.2, 60.0
EDIT_OPTIONS = (
    "crop",
    "straighten",
    "perspective_correction",
    "subject_mask",
    "hdr_merge",
    "portrait_crop",
    "headshot_crop",
    "smooth_skin",
    "sky_replacement",
    "sky_replacement_template_id",
    "window_pull",
    "crop_aspect_ratio",
    "hdr_output_compression",
)


class ImagenSettings(Section):
    profile_key: Count = Field(ge=1, le=2**53 - 1)  # required: `retouch check` lists the account's profiles
    photography_type: Literal[PHOTOGRAPHY_TYPES] | None = None
    crop: bool | None = None
    portrait_crop: bool | None = None
    headshot_crop: bool | None = None
    straighten: bool | None = None
    perspective_correction: bool | None = None
    subject_mask: bool | None = None
    smooth_skin: bool | None = None
    hdr_merge: bool | None = None
    sky_replacement: bool | None = None
    sky_replacement_template_id: Count | None = Field(None, ge=1, le=2**53 - 1)
    window_pull: bool | None = None
    crop_aspect_ratio: Literal["2X3", "4X5", "5X7"] | None = None
    hdr_output_compression: Literal["LOSSY", "LOSSLESS"] | None = None
    batch_size: Count = Field(20, ge=1, le=500)  # images per project
    upload_concurrency: Count = Field(5, ge=1, le=20)  # the SDK's 5 at a time
    first_poll: DurationBetween(0.001, HOUR) = FIRST_POLL  # the documented advice: 10 s, then x1.2 up to 60 s

    # The documented exclusions [DOC: SDK], checked on the later field so the error names it.
    @field_validator("portrait_crop", "headshot_crop")
    @classmethod
    def _one_crop(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value:
            others = [name for name in ("crop", "portrait_crop") if name != info.field_name and info.data.get(name)]
            if others:
                raise ValueError(f"cannot be used with {others[0]} (at most one of crop, portrait_crop, headshot_crop)")
        return value

    @field_validator("perspective_correction")
    @classmethod
    def _straight_or_perspective(cls, value: bool | None, info: ValidationInfo) -> bool | None:
        if value and info.data.get("straighten"):
            raise ValueError("cannot be used with straighten (choose one)")
        return value

    @field_validator("crop_aspect_ratio")
    @classmethod
    def _ratio_needs_crop(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value and not any(info.data.get(name) for name in ("crop", "portrait_crop", "headshot_crop")):
            raise ValueError("needs crop = true (it is the crop's aspect ratio)")
        return value

    @field_validator("sky_replacement_template_id")
    @classmethod
    def _template_needs_sky(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("sky_replacement"):
            raise ValueError("needs sky_replacement = true")
        return value

    def edit_options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EDIT_OPTIONS if getattr(self, name) is not None}


def capabilities(settings: BaseModel) -> Capabilities:
    assert isinstance(settings, ImagenSettings)
    return Capabilities(
        # No rate limits are documented: only the project size is ours to choose.
        quota=QuotaLimits(window=3600.0, max_batch=settings.batch_size),
        source="upload",
        source_formats=frozenset({"image/jpeg"}),
        result="temporary_link",
        completion=frozenset({"poll", "webhook"}),
        poll_interval=settings.first_poll,
        min_poll_interval=0.0,
        idempotent_submit=True,
        credits_per_image=1,
        credit_unit="edited images",  # [ASSUME] billed per image
        max_job_age=contract.MAX_JOB_AGE_SECONDS,
    )


def file_name(item: base.TicketItem) -> str:
    """Unique per project and the map back to the image: `<product id>_<media id>.jpg`."""
    return f"{item.product_legacy_id}_{item.media_id.rsplit('/', 1)[-1]}.jpg"


class ImagenProvider:
    name = "imagen"

    def __init__(self, config: ProviderConfig, client: ImagenClient | None = None) -> None:
        assert isinstance(config.settings, ImagenSettings)
        self.settings = config.settings
        self.capabilities = capabilities(config.settings)
        self._api_key = config.api_key
        self._public_url = config.public_url
        self.client = client or ImagenClient(config.api_key, config.base_url or BASE_URL, timeout=config.timeout)
        self.stats = self.client.stats

    def __repr__(self) -> str:
        return f"ImagenProvider({self.client!r})"

    def request_options(self) -> dict[str, Any]:
        # The callback URL holds a secret token: added when the edit is sent, never stored.
        return {
            "profile_key": self.settings.profile_key,
            "photography_type": self.settings.photography_type,
            "options": self.settings.edit_options(),
        }

    # --- submit ------------------------------------------------------------------------------------

    async def submit(self, ticket: Ticket, progress: base.Progress) -> str:
        state = ticket.state
        project = state.get("project")
        if project and state.get("edit_started") and await self._edit_known(project):
            return project  # the edit reached Imagen before we stopped: only poll it
        if not (project and state.get("uploaded")):
            # An upload cut short starts again in a new project (nothing is charged before the
            # edit; a project's file names cannot be asked for twice). Project names must be unique,
            # and an earlier attempt's project may exist even if its answer was lost: each attempt
            # gets its own name, counted before the request.
            attempt = int(state.get("project_attempts", 0)) + 1
            progress.save(project_attempts=attempt)
            name = f"retouch {ticket.key}" + (f" #{attempt}" if attempt > 1 else "")
            project = await self.client.create_project(name)
            progress.save(project=project, uploaded=False, edit_started=False)
            await self._upload(project, ticket, progress)
            progress.save(uploaded=True)
        progress.save(edit_started=True)  # before the request: a lost answer is checked, not resent blindly
        options = ticket.options
        await self.client.start_edit(
            project,
            profile_key=options["profile_key"],
            photography_type=options.get("photography_type"),
            callback_url=self.webhook_url(self._public_url) if self._public_url else None,
            options=options.get("options", {}),
        )
        return project

    async def _edit_known(self, project: str) -> bool:
        try:
            await self.client.edit_status(project)
        except errors.NotFound:
            return False  # no edit was started for this project (or the project is gone)
        return True

    async def _upload(self, project: str, ticket: Ticket, progress: base.Progress) -> None:
        names = {file_name(item): item for item in ticket.items}
        links = await self.client.upload_links(project, list(names))
        gate = asyncio.Semaphore(self.settings.upload_concurrency)

        async def one(name: str) -> None:
            async with gate:
                data, _ = await progress.source_bytes(names[name])  # JPEG: a project is all-JPEG
                await self.client.upload(links[name], data)

        await asyncio.gather(*(one(name) for name in names))

    # --- poll --------------------------------------------------------------------------------------

    async def poll(self, ticket: Ticket, progress: base.Progress) -> JobStatus:
        project = ticket.provider_job_id
        assert project is not None
        state = ticket.state
        polls = int(state.get("polls", 0))
        progress.save(polls=polls + 1)
        first = self.settings.first_poll
        advice = min(max(LONGEST_POLL, first), first * POLL_GROWTH**polls)
        if not state.get("export_started"):
            status = await self.client.edit_status(project)
            if status == "Failed":
                return self._failed(ticket, "imagen_edit_failed", "Imagen could not edit this project")
            if status != "Completed":
                return JobStatus(terminal=False, items={}, description=f"edit {status}", expected_seconds=advice)
            await self._start_export(project)
            progress.save(export_started=True, polls=0)
            # Imagen documents callbacks for edits: an export is polled on the advice's schedule.
            return JobStatus(
                terminal=False, items={}, description="export started", expected_seconds=first, webhook_expected=False
            )
        status = await self.client.export_status(project)
        if status == "Failed":
            return self._failed(ticket, "imagen_export_failed", "Imagen could not export this project")
        if status != "Completed":
            return JobStatus(
                terminal=False,
                items={},
                description=f"export {status}",
                expected_seconds=advice,
                webhook_expected=False,
            )
        links = match_exports(await self.client.export_links(project), [file_name(item) for item in ticket.items])
        items = {
            item.index: ItemResult("completed", result_url=links[file_name(item)])
            for item in ticket.items
            if file_name(item) in links
        }
        return JobStatus(terminal=True, items=items, credits_used=len(items), description="exported")

    async def _start_export(self, project: str) -> None:
        try:
            await self.client.start_export(project)
        except errors.InvalidRequest:
            # Our answer to an earlier start was lost (a crash, a timeout) and one is already running.
            await self.client.export_status(project)

    def _failed(self, ticket: Ticket, code: str, message: str) -> JobStatus:
        return JobStatus(
            terminal=True,
            description=code,
            items={item.index: ItemResult("failed", error_code=code, error_message=message) for item in ticket.items},
        )

    async def fresh_results(self, ticket: Ticket, progress: base.Progress) -> dict[int, str]:
        assert ticket.provider_job_id is not None
        links = match_exports(
            await self.client.export_links(ticket.provider_job_id), [file_name(item) for item in ticket.items]
        )
        return {item.index: links[file_name(item)] for item in ticket.items if file_name(item) in links}

    def result_link_expired(self, failure: FetchError) -> bool:
        # Export links are presigned S3 URLs: past their lifetime S3 refuses them (contract).
        return failure.status in contract.EXPIRED_LINK_STATUSES

    # --- webhooks ----------------------------------------------------------------------------------

    def webhook_url(self, public_url: str) -> str | None:
        return f"{public_url.rstrip('/')}/webhooks/imagen/{base.webhook_token(self._api_key)}"

    def verify_webhook(
        self, token: str | None, headers: Mapping[str, str], body: bytes, now: float, skew: float
    ) -> base.WebhookEvent:
        # Imagen's callbacks are unsigned [DOC]: the secret token in the URL path is the proof.
        if not base.token_matches(self._api_key, token):
            raise base.WebhookRefused(401, "bad_token")
        try:
            event = json.loads(body)
        except ValueError:
            raise base.WebhookRefused(400, "malformed") from None
        if not (
            isinstance(event, dict)
            and isinstance(event.get("project_uuid"), str)
            and event["project_uuid"]
            and isinstance(event.get("status"), str)
        ):
            raise base.WebhookRefused(400, "malformed")
        action = event.get("action") if isinstance(event.get("action"), str) else "edit"
        return base.WebhookEvent(
            event_id=f"{event['project_uuid']}:{action}:{event['status']}",
            provider_job_id=event["project_uuid"],
            kind=f"{action}.{event['status']}",
        )

    async def describe(self) -> list[tuple[bool, str]]:
        profiles = await self.client.list_profiles()
        listing = ", ".join(f"{p.profile_key} {p.profile_name} ({p.image_type})" for p in profiles) or "none"
        chosen = next((p for p in profiles if p.profile_key == self.settings.profile_key), None)
        if chosen is None:
            return [
                (
                    False,
                    f"provider: profile_key {self.settings.profile_key} is not one of the account's "
                    f"profiles: {listing}",
                )
            ]
        if chosen.image_type != "JPG":
            return [
                (
                    False,
                    f"provider: profile {chosen.profile_key} edits {chosen.image_type} files; product "
                    f"photos need a JPG profile ({listing})",
                )
            ]
        return [
            (
                True,
                f"provider: ok — Imagen AI key accepted, profile {chosen.profile_key} "
                f"{chosen.profile_name!r}; the account's profiles: {listing}",
            )
        ]

    async def aclose(self) -> None:
        await self.client.aclose()


def start_sandbox(*, fast: bool = False, port: int = 0, profile: str = "default") -> DemoSandbox:
    from .sandbox import DEFAULT_API_KEY, ImagenSandbox

    sandbox = (
        ImagenSandbox(edit_pending_seconds=0.2, edit_seconds=1.0, export_seconds=0.5, profile=profile)
        if fast
        else ImagenSandbox(profile=profile)
    )
    server = sandbox.start(port)
    return DemoSandbox(
        base_url=sandbox.api_url,
        api_key=DEFAULT_API_KEY,
        stop=server.stop,
        charges=lambda: sandbox.stats()["charges"],
        settings_lines=(
            f"profile_key = {SANDBOX_PROFILE}",
            'photography_type = "OTHER"',
            "crop = true",
            'crop_aspect_ratio = "4X5"',
            "straighten = true",
            *(['first_poll = "1s"'] if fast else []),
        ),
    )


PLUGIN = ProviderPlugin(
    name="imagen",
    title="Imagen AI",
    settings_model=ImagenSettings,
    capabilities=capabilities,
    create=ImagenProvider,
    default_base_url=BASE_URL,
    check_key=lambda key: None if len(key) >= 8 else "too short to be an Imagen API key",
    # No test keys: a sandbox is a service on this machine.
    is_sandbox=lambda key, base_url: base.is_loopback_url(base_url),
    start_sandbox=start_sandbox,
)
