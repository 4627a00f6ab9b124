"""Media writes over the GraphQL transport: replace a picture in place, add one, move it, delete
media, and the retouch marker metafield."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import structlog

from . import catalog
from .errors import ShopifyResponseError, ShopifyUnavailable
from .file_update import FileRow, alt_for_shopify, file_rows
from .models import MARKER_KEY, MARKER_NAMESPACE, MARKER_TYPE, marker_value
from .reading import MAX_PAGE as _MAX_PAGE
from .reading import parsed
from .transport import GraphQLTransport

log = structlog.get_logger("retouch.plugin.shopify.client")


async def replace_media_source(
    gql: GraphQLTransport, media_id: str, original_source: str, alt: str | None = None
) -> None:
    """Replace a READY MediaImage's bytes in place (fileUpdate); the media id, position and links stay.

    `alt=None` keeps the current alt text. The media goes through processing again: poll
    `get_media` until READY. The new source's extension must match the original's.
    """
    file: dict[str, Any] = {"id": media_id, "originalSource": original_source}
    if alt is not None:
        file["alt"] = alt_for_shopify(alt)
    await gql.execute("FileUpdate", {"files": [file]})


async def replace_media_sources(gql: GraphQLTransport, sources: Sequence[tuple[str, str]]) -> list[FileRow]:
    """`replace_media_source` for several `(media_id, original_source)` pairs: one fileUpdate per
    250. Shopify applies the valid rows and names each bad one (file_update.py): this answers
    what became of each pair, in order, instead of raising for the whole call."""
    rows: list[FileRow] = []
    for start in range(0, len(sources), _MAX_PAGE):
        chunk = sources[start : start + _MAX_PAGE]
        data = await gql.execute(
            "FileUpdate",
            {"files": [{"id": media_id, "originalSource": source} for media_id, source in chunk]},
            raise_user_errors=False,
        )
        payload = data.get("fileUpdate")
        if not isinstance(payload, dict):
            raise ShopifyResponseError("no fileUpdate payload", operation="FileUpdate")
        rows += file_rows(
            [media_id for media_id, _ in chunk], payload.get("files"), gql.user_errors("FileUpdate", data)
        )
    return rows


async def add_media(gql: GraphQLTransport, product_id: str, original_source: str, alt: str | None) -> str:
    """Append an image to the product (productUpdate with media); returns the new media's id.

    productUpdate's payload has no list of created media, so the new id is found by difference:
    the media ids in the response's `product.media` minus those of a fresh read taken just
    before. Assumption: nobody else adds media to this product in between. Should several new
    ids appear anyway, the last one with our alt text is taken (new media are appended in order),
    and a warning is logged.

    After a timeout or 5xx this raises `ShopifyUnavailable(ambiguous=True)`: the image may have
    been added; read the product back before trying again.
    """
    before = await catalog.get_product(gql, product_id)
    before_ids = {media.id for media in before.media} if before else set()
    # Enough room for every existing media plus ours (and a few concurrent ones); at most 250.
    media_first = min(_MAX_PAGE, len(before_ids) + 10)
    data = await gql.execute(
        "ProductAddMedia",
        {
            "product": {"id": product_id},
            "media": [{"originalSource": original_source, "alt": alt_for_shopify(alt), "mediaContentType": "IMAGE"}],
            "mediaFirst": media_first,
        },
    )

    def new_nodes() -> list[dict[str, Any]]:
        nodes = data["productUpdate"]["product"]["media"]["nodes"]
        return [node for node in nodes if node["id"] not in before_ids]

    created = parsed("ProductAddMedia", new_nodes)
    if not created:
        raise ShopifyResponseError("no new media in the productUpdate response", operation="ProductAddMedia")
    if len(created) > 1:
        log.warning("add_media_ambiguous", product_id=product_id, new_media=len(created))
        same_alt = [node for node in created if node.get("alt") == alt_for_shopify(alt)]
        created = same_alt or created
    return str(created[-1]["id"])


async def move_media(
    gql: GraphQLTransport, product_id: str, media_id: str, new_position: int, *, timeout: float = 30
) -> None:
    """Move one media to `new_position` (zero-based) and wait until Shopify's job is done."""
    data = await gql.execute(
        "ProductReorderMedia",
        {"id": product_id, "moves": [{"id": media_id, "newPosition": str(new_position)}]},
    )
    job = parsed("ProductReorderMedia", lambda: data["productReorderMedia"]["job"])
    if not job:
        return
    if not isinstance(job, dict) or not isinstance(job.get("id"), str):
        raise ShopifyResponseError("reorder job without an id", operation="ProductReorderMedia")
    if job.get("done"):
        return
    deadline = gql.now() + timeout
    delay = 0.1
    while True:
        await gql.sleep(delay)
        delay = min(delay * 2, 1.0)
        polled = (await gql.execute("Job", {"id": job["id"]})).get("job")
        # A job Shopify no longer knows has finished long ago (jobs expire after completion).
        if polled is not None and not isinstance(polled, dict):
            raise ShopifyResponseError("job is not an object", operation="Job")
        if polled is None or polled.get("done"):
            return
        if gql.now() >= deadline:
            raise ShopifyUnavailable(
                f"reorder job {job['id']} not done after {timeout:g}s", operation="ProductReorderMedia"
            )


async def set_marker(
    gql: GraphQLTransport, product_id: str, media_ids: Iterable[str], compare_digest: str | None
) -> str:
    """Write the retouch marker (the product's media ids that are our output); returns the new digest.

    Optimistic locking: `compare_digest` is the marker's digest as last read
    (`Product.marker_digest`); None means "the marker must not exist yet". If someone changed it
    since (or a timed-out attempt of this very call did go through), Shopify refuses with
    STALE_OBJECT → ShopifyUserError: read the product again, merge, call again.
    """
    data = await gql.execute(
        "MetafieldsSet",
        {
            "metafields": [
                {
                    "ownerId": product_id,
                    "namespace": MARKER_NAMESPACE,
                    "key": MARKER_KEY,
                    "type": MARKER_TYPE,
                    "value": marker_value(media_ids),
                    "compareDigest": compare_digest,
                }
            ]
        },
    )
    return str(parsed("MetafieldsSet", lambda: data["metafieldsSet"]["metafields"][0]["compareDigest"]))


async def delete_media(gql: GraphQLTransport, media_ids: list[str]) -> None:
    """Delete media (fileDelete). Ids that no longer exist come back as a ShopifyUserError."""
    if not media_ids:
        return
    await gql.execute("FileDelete", {"fileIds": list(media_ids)})
