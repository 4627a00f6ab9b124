"""Webhook signatures, exactly as AI Gen Studio documents them (CONTRACTS.md §1, Webhooks).

    X-Aigen-Signature: v1=<hex HMAC-SHA256 over "{timestamp}.{event_id}.{raw_body}">

keyed with the HEX STRING `sha256(full_api_key).hexdigest()` (not its raw bytes). The sandbox
signs with `sign`; a receiver checks with `verify`. Remembering already-seen event ids is the
receiver's job (it needs storage); `verify` checks the signature and the clock skew only.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from . import contract


def signing_key(api_key: str) -> bytes:
    """The HMAC key: the hex digest of sha256(api_key), as text encoded in ASCII."""
    return hashlib.sha256(api_key.encode()).hexdigest().encode("ascii")


def sign(api_key: str, timestamp: str, event_id: str, raw_body: bytes) -> str:
    """The `X-Aigen-Signature` header value for one delivery."""
    message = timestamp.encode() + b"." + event_id.encode() + b"." + raw_body
    digest = hmac.new(signing_key(api_key), message, hashlib.sha256).hexdigest()
    return f"{contract.SIGNATURE_VERSION}={digest}"


def verify(
    api_key: str,
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    now: float,
    tolerance: float = contract.WEBHOOK_TOLERANCE_SECONDS,
) -> bool:
    """True when the delivery is signed with `api_key` and its timestamp is within `tolerance` of `now`."""
    lowered = {name.lower(): value for name, value in headers.items()}  # header names are case-insensitive
    signature = lowered.get(contract.SIGNATURE_HEADER.lower())
    timestamp = lowered.get(contract.TIMESTAMP_HEADER.lower())
    event_id = lowered.get(contract.EVENT_ID_HEADER.lower())
    if not signature or not timestamp or not event_id:
        return False
    try:
        sent_at = float(timestamp)
    except ValueError:
        return False
    if abs(now - sent_at) > tolerance:
        return False
    expected = sign(api_key, timestamp, event_id, raw_body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
