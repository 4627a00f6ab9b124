"""A job as the provider sees it (a Ticket), and the pipeline's side of it (JobProgress)."""

from __future__ import annotations

import json
from typing import Any

from retouch.plugin.providers.base import Ticket, TicketItem
from retouch.storage.models import Image, Job

from .. import imaging
from .context import Context

# Pillow's name of each MIME type a provider may take as it is.
_PILLOW_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}


def ticket_for(ctx: Context, job: Job, images: list[Image]) -> Ticket:
    # The options the job was created with (a job from before they were stored: today's).
    options = json.loads(job.options) if job.options else ctx.provider.request_options()
    items = [TicketItem(index=i.item_index if i.item_index is not None else n, product_id=i.product_id,
                        product_legacy_id=i.product_legacy_id, media_id=i.media_id, source_url=i.source_url or "",
                        filename=i.filename, mime_type=i.mime_type)
             for n, i in enumerate(images)]
    return Ticket(key=job.idempotency_key, items=items, options=options, provider_job_id=job.provider_job_id,
                  state=json.loads(job.provider_state) if job.provider_state else {})


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
        data, _ = await self.ctx.shopify.download(item.source_url)
        fmt = imaging.sniff_format(data)  # ImageDataError for bytes that are no image
        accepted = {_PILLOW_FORMATS[m] for m in self.ctx.capabilities.source_formats if m in _PILLOW_FORMATS}
        if fmt in accepted:
            return data, next(m for m, f in _PILLOW_FORMATS.items() if f == fmt)
        return imaging.convert(data, "JPEG"), "image/jpeg"
