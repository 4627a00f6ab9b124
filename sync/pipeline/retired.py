"""Jobs in flight finish on the provider that took them, whatever a reload changed since.

A job is created for one provider (`Job.provider`) with the request options of its day
(`Job.options`); its status can only be asked of that provider, with that account's key. When a
reload switches `[provider] name` while jobs are in flight, the old provider's client is kept, with
the settings it ran with, as a "retired" view of the context: it tracks (and, for a job whose answer
never came, sends again under the same key) only its own jobs, and is closed once they are all
done. New images go to the new provider. Across a restart the old key is no longer known: such jobs
wait, and the daemon says so at start (`stranded_jobs`); `retouch status --json` names each job's provider.
"""

from __future__ import annotations

import dataclasses

from retouch.plugin.providers.base import Provider
from retouch.plugin.shopify.client import ShopifyClient
from retouch.storage.models import JobState

from .context import Context

IN_FLIGHT = (JobState.PENDING, JobState.SUBMITTED)


def retire(ctx: Context, new_provider: Provider) -> Provider | None:
    """Point the context at `new_provider`. Returns the old client when nothing needs it any more
    (the caller closes it); None when it was kept to finish its jobs."""
    old = ctx.provider
    ctx.provider = new_provider
    if old.name == new_provider.name or not any(
        job.provider == old.name for job in ctx.store.jobs_in_state(*IN_FLIGHT)
    ):
        return old
    ctx.retired = [view for view in ctx.retired if view.provider_name != old.name]
    ctx.retired.append(dataclasses.replace(ctx, provider=old, retired=[]))
    ctx.log.warning(
        "provider_retired",
        provider=old.name,
        now=new_provider.name,
        note="its jobs in flight finish on it; new images go to the new provider",
    )
    return None


def use_shopify(ctx: Context, client: ShopifyClient) -> ShopifyClient:
    """Point the context and every retired view at a new Shopify client (a reload changed the shop's
    credentials); returns the old one for the caller to close. A view keeps its own copy of the
    context's fields, so without this it would go on with the closed client."""
    old, ctx.shopify = ctx.shopify, client
    for view in ctx.retired:
        view.shopify = client
    return old


async def finish_retired(ctx: Context) -> int:
    """One round for every retired provider: send again a job whose answer never came, poll those
    that are due. A provider with nothing left in flight is closed."""
    from .submit import send_pending  # (submit and track import this module's callers)
    from .track import track

    moved = 0
    for view in list(ctx.retired):
        if not view.jobs(*IN_FLIGHT):
            ctx.retired.remove(view)
            await view.provider.aclose()
            ctx.log.info("provider_retired_done", provider=view.provider_name)
            continue
        moved += await send_pending(view) + await track(view)
    return moved


def stranded(ctx: Context) -> dict[str, int]:
    """Jobs in flight of a provider neither configured nor retired: provider -> how many."""
    known = {ctx.provider_name, *(view.provider_name for view in ctx.retired)}
    counts: dict[str, int] = {}
    for job in ctx.store.jobs_in_state(*IN_FLIGHT):
        if job.provider not in known:
            counts[job.provider] = counts.get(job.provider, 0) + 1
    return counts
