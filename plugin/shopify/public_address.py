"""Would Shopify (and AI Gen Studio) accept this URL as a webhook address? Pure code: the caller
resolves the host (socket.getaddrinfo) and passes the addresses in.

Shopify's `webhookSubscriptionCreate` refuses localhost, internal addresses and Shopify's own
domains with "Address cannot be a Shopify or an internal domain" ([DOC] ../shared/reference/shopify/NOTES.md,
"Where the sandbox must not be kinder than Shopify"); AI Gen Studio rejects a `webhook_url` on
localhost, private ranges or metadata addresses ([DOC] ../shared/reference/providers/CONTRACTS.md). [ASSUME] Both judge
the host's addresses the way Python's `ipaddress` does: private, loopback, link-local, reserved,
multicast and unspecified addresses are internal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

# Host names Shopify refuses whatever they resolve to: its own domains, and the local ones.
SHOPIFY_DOMAINS = ("myshopify.com", "shopify.com", "shopifycloud.com", "shopifycdn.com")
LOCAL_NAMES = ("localhost",)
LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa")


def host_of(url: str) -> str | None:
    """The URL's host name, lower-case, without brackets; None when it has none."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host.lower().rstrip(".") if host else None


def _internal_reason(address: str) -> str | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 scope ("fe80::1%eth0") is not part of it
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    # The most telling name first: 127.0.0.1 and 0.0.0.0 are also "private" to ipaddress.
    for reason, flag in (
        ("a loopback", ip.is_loopback),
        ("an unspecified", ip.is_unspecified),
        ("a link-local", ip.is_link_local),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
        ("a multicast", ip.is_multicast),
    ):
        if flag:
            return f"{reason} address ({ip})"
    return None


def name_problem(host: str) -> str | None:
    """Why Shopify refuses this host by its name alone (no lookup), else None."""
    if host == "" or host in LOCAL_NAMES or host.endswith(LOCAL_SUFFIXES):
        return f"{host or 'an empty host'} is a local name"
    if any(host == domain or host.endswith("." + domain) for domain in SHOPIFY_DOMAINS):
        return f"{host} is a Shopify domain"
    return _internal_reason(host.strip("[]"))


def address_problem(url: str, addresses: Iterable[str] | None) -> str | None:
    """Why a webhook to `url` would be refused ("… is a private address (10.0.0.5)"), else None.
    `addresses`: what the host resolves to (None: not looked up, only the name is judged). A host
    with any internal address is refused: the service cannot tell which one it would reach."""
    host = host_of(url)
    if host is None:
        return "it has no host"
    problem = name_problem(host)
    if problem is not None:
        return problem
    for address in addresses or ():
        reason = _internal_reason(address)
        if reason is not None:
            return f"{host} resolves to {reason}"
    return None
