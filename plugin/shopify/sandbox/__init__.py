"""A loopback emulator of the parts of Shopify's Admin GraphQL API (2026-07) that retouch uses.

    sandbox = ShopifySandbox(processing_seconds=0.3)
    sandbox.seed(products=5)
    server = sandbox.start()          # http://127.0.0.1:<port>; sandbox.shop_url
    ...                               # POST {shop_url}/admin/api/2026-07/graphql.json
    server.stop()

Modules: `schema.graphql` (the schema subset), `graphql_api` (the endpoint), `store` (state and
rules), `lifecycle` (media processing), `cost` (query cost, bucket), `search` (product search
syntax), `paging` (cursors), `faults` (injected failures), `bulk` (bulk operations and their
lifecycle), `bulk_query` (bulk validators, the query's plan), `bulk_export` (the snapshot and the
streamed JSONL), `imaging`/`sources` (image bytes),
`photos` (generated product photos), `app` (HTTP routes, documented there).
"""

from .photos import product_photo
from .sandbox import ShopifySandbox
from .store import SandboxError

__all__ = ["SandboxError", "ShopifySandbox", "product_photo"]
