"""retouch's outer room: the services it talks to. `shopify` (the store's Admin API) and `providers`
(the enhancement services, found by plugin name); their sandboxes and the kit they share
(`sandbox_kit`) are imported only where a sandbox runs, never from here. Nothing here imports `sync`."""

from . import providers, shopify

__all__ = ["providers", "shopify"]
