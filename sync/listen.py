"""`[server] listen` values: "host:port", "[v6]:port"; parsed once, for the config and the server."""

from __future__ import annotations

import ipaddress


def parse_listen(value: str) -> tuple[str, int]:
    """("127.0.0.1", 8787) from "127.0.0.1:8787"; IPv6 in brackets: "[::1]:8787" → ("::1", 8787)."""
    text = value.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"listen {value!r}: an IPv6 address is written [address]:port, e.g. '[::1]:8787'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"listen {value!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"listen {value!r} is not host:port, e.g. '127.0.0.1:8787'")
        if ":" in host:
            raise ValueError(f"listen {value!r}: put an IPv6 address in brackets, e.g. '[::1]:8787'")
        if any(ch.isspace() or ch in "/[]" for ch in host):
            raise ValueError(f"listen {value!r}: {host!r} is not a host name or address")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"listen {value!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def is_loopback_listen(value: str) -> bool:
    """True for a loopback address or "localhost"; any other host name counts as public (not resolved).
    Raises ValueError like `parse_listen` for a malformed value."""
    host, _ = parse_listen(value)
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
