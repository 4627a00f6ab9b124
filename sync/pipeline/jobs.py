"""A job as the provider sees it (a Ticket), and the pipeline's side of it (JobProgress)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from retouch.plugin.providers import errors as provider_errors
from retouch.plugin.providers.base import Ticket, TicketItem
from retouch.plugin.shopify.errors import ShopifyError, ShopifyResponseError
from retouch.storage.models import Image, Job

from .. import imaging
from .context import Context

# Pillow's name of each MIME type a provider may take as it is.
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def ticket_for(ctx: Context, job: Job, images: list[Image], final: bool = False) -> Ticket:
    # The options the job was created with (a job from before they were stored: today's).
    options = json.loads(job.options) if job.options else ctx.provider.request_options()
    items = [
        TicketItem(
            index=i.item_index if i.item_index is not None else n,
            product_id=i.product_id,
            product_legacy_id=i.product_legacy_id,
            media_id=i.media_id,
            source_url=i.source_url or "",
            filename=i.filename,
            mime_type=i.mime_type,
        )
        for n, i in enumerate(images)
    ]
    return Ticket(
        key=job.idempotency_key,
        items=items,
        options=options,
        provider_job_id=job.provider_job_id,
        state=json.loads(job.provider_state) if job.provider_state else {},
        final=final,
    )


class JobProgress:
    """What a provider records while it works on one job: its own state, and the quota it used."""

    def __init__(self, ctx: Context, job: Job) -> None:
        self.ctx = ctx
        self.job_id = job.id
        self.state: dict[str, Any] = json.loads(job.provider_state) if job.provider_state else {}

    def save(self, **state: Any) -> None:
        self.state.update(state)
        self.ctx.store.update_job(self.job_id, provider_state=json.dumps(self.state, sort_keys=True))

    def spend(self, kind: str, count: int = 1) -> None:
        self.ctx.store.add_quota_event(self.ctx.provider_name, kind, self.ctx.clock(), count)

    async def source_bytes(self, item: TicketItem) -> tuple[bytes, str]:
        """The original from Shopify's CDN, as JPEG unless the provider takes its format as it is."""
        # Raised as provider errors, which submit acts on: anything else would leave the job pending,
        # sent again every tick, ahead of every other image. (Pre-flight looked at these bytes already;
        # this is the CDN changing them in between.)
        try:
            data, _ = await self.ctx.shopify.download(item.source_url)
        except ShopifyResponseError as exc:
            # Refused for good (a 4xx, too big): retrying the job would only meet it again, forever,
            # and the job is first in line. The job fails with the reason; `retouch retry` requeues.
            raise provider_errors.Rejected(
                "source_refused", f"the original could not be downloaded: {str(exc)[:300]}"
            ) from None
        except ShopifyError as exc:  # for now (CDN down): the job is sent again later
            raise provider_errors.Unavailable(
                "source_unavailable", f"the original could not be downloaded: {str(exc)[:300]}"
            ) from None
        try:
            # Decoding and re-encoding a big photo takes a while: not on the event loop.
            return await asyncio.to_thread(self._as_accepted, data)
        except imaging.ImageDataError as exc:
            raise provider_errors.Rejected(f"source_{exc.code}", f"the original is {exc}") from None

    def _as_accepted(self, data: bytes) -> tuple[bytes, str]:
        fmt = imaging.sniff_format(data)
        accepted = {_PILLOW_FORMATS[m] for m in self.ctx.capabilities.source_formats if m in _PILLOW_FORMATS}
        # A CMYK JPEG is a JPEG, but few services read CMYK right: we send it as sRGB.
        if fmt in accepted and imaging.mode_of(data) != "CMYK":
            return data, next(m for m, f in _PILLOW_FORMATS.items() if f == fmt)
        return imaging.rgb_jpeg(data), "image/jpeg"
