"""`retouch check`: would the services that call our webhooks accept `[server] public_url`?

Shopify's webhookSubscriptionCreate refuses loopback, internal and Shopify addresses ("Address
cannot be a Shopify or an internal domain"), and AI Gen Studio refuses a `webhook_url` on localhost
or private ranges (plugin/shopify/public_address.py names the sources). The daemon would meet that
refusal only when it subscribes or submits; the check says it first. A service on this machine (a
sandbox on loopback) is not judged: it calls back over loopback.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from retouch.plugin.shopify.public_address import address_problem, host_of

from ..config import Settings
from ..listen import is_loopback_host

Resolve = Callable[[str], list[str] | None]

WHAT_TO_DO = (
    "set [server] public_url to an https address the internet reaches (a reverse proxy or a tunnel "
    "in front of [server] listen)"
)


def resolve(host: str) -> list[str] | None:
    """The host's addresses (socket.getaddrinfo); None when it does not resolve."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})
    except (OSError, UnicodeError):
        return None


def _on_this_machine(url: str) -> bool:
    host = urlsplit(url).hostname
    return bool(host and is_loopback_host(host))


def public_url_findings(settings: Settings, resolve: Resolve = resolve) -> list[tuple[bool, str]]:
    """(ok, line) for each real service that would call `[server] public_url`, when it would refuse it."""
    url = settings.public_url
    if url is None:
        return []
    callers = []
    if settings.shopify_webhooks and not _on_this_machine(settings.shop.url):
        callers.append("Shopify")
    if settings.webhooks and not _on_this_machine(settings.provider_base_url):
        callers.append(settings.plugin.title)
    if not callers:
        return []
    host = host_of(url)
    problem = address_problem(url, resolve(host) if host else None)
    if problem is None:
        return []
    return [
        (
            False,
            f"[server] public_url: {url} cannot receive webhooks from {' and '.join(callers)}: {problem}; {WHAT_TO_DO}",
        )
    ]
