"""The shop's own metafields, read and written with optimistic locking (the store claim lives there).

Shopify's `metafieldsSet` is a compare-and-set when `compareDigest` is sent ([DOC]
https://shopify.dev/docs/api/admin-graphql/latest/mutations/metafieldsSet): the digest read before
must still match, and an explicit null means "the metafield must not exist yet". Either refusal is
a STALE_OBJECT user error (captures/2025-01/products/metafields-set-stale-digest-parity.json), so
two writers that read the same state can never both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import ShopifyClient
from .errors import ShopifyUserError

STALE = "STALE_OBJECT"


@dataclass(frozen=True)
class ShopMetafield:
    shop_id: str  # the Shop's gid: the ownerId to write with
    value: str | None  # None: the metafield does not exist
    digest: str | None


async def read_shop_metafield(client: ShopifyClient, namespace: str, key: str) -> ShopMetafield:
    data = await client.execute("ShopMetafield", {"namespace": namespace, "key": key})

    def build() -> ShopMetafield:
        shop = data["shop"]
        field = shop.get("metafield")
        if field is None:
            return ShopMetafield(shop_id=str(shop["id"]), value=None, digest=None)
        return ShopMetafield(shop_id=str(shop["id"]), value=str(field["value"]), digest=str(field["compareDigest"]))

    return client._parse("ShopMetafield", build)


async def write_shop_metafield(
    client: ShopifyClient, current: ShopMetafield, namespace: str, key: str, value: str, kind: str = "json"
) -> str | None:
    """Write `value` if the metafield is still as `current` read it; the new digest, or None when
    someone wrote it in between (STALE_OBJECT: read again and decide again)."""
    try:
        data = await client.execute(
            "MetafieldsSet",
            {
                "metafields": [
                    {
                        "ownerId": current.shop_id,
                        "namespace": namespace,
                        "key": key,
                        "type": kind,
                        "value": value,
                        "compareDigest": current.digest,
                    }
                ]
            },
        )
    except ShopifyUserError as exc:
        if STALE in exc.codes:
            return None
        raise
    return client._parse("MetafieldsSet", lambda: str(data["metafieldsSet"]["metafields"][0]["compareDigest"]))
