"""Presigned storage links, S3 style: stateless, signed, expiring — and S3's XML errors.

A link is `{base}/s3/{bucket}/{project_uuid}/{file_name}?X-Amz-Date=…&X-Amz-Expires=…&X-Amz-Signature=…`.
The signature (HMAC-SHA256 with a per-sandbox secret) covers the method, the path, the date and
the lifetime, so a link cannot be stretched or pointed elsewhere; like S3, nothing is stored per
link, so fetching links again simply signs fresh ones. The file name is the last path segment,
as the SDK expects when it names downloaded files.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from starlette.responses import Response

UPLOADS = "uploads"  # the bucket of the originals
EDITS = "edits"  # JPEG with embedded XMP
EXPORTS = "exports"  # the rendered JPEGs
BUCKETS = (UPLOADS, EDITS, EXPORTS)

_DATE_FORMAT = "%Y%m%dT%H%M%SZ"  # SigV4's X-Amz-Date


@dataclass(frozen=True)
class LinkTarget:
    bucket: str
    project_uuid: str
    file_name: str


class LinkError(Exception):
    """A refused link: S3's HTTP status, error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LinkSigner:
    def __init__(self, lifetime_seconds: float, clock: Callable[[], float] = time.time) -> None:
        self.lifetime_seconds = lifetime_seconds
        self._clock = clock
        self._secret = secrets.token_bytes(32)

    def _signature(self, method: str, path: str, date: str, expires: str) -> str:
        message = f"{method}\n{path}\n{date}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def sign(self, base_url: str, method: str, target: LinkTarget) -> str:
        path = f"/s3/{target.bucket}/{target.project_uuid}/{quote(target.file_name, safe='')}"
        date = datetime.fromtimestamp(self._clock(), UTC).strftime(_DATE_FORMAT)
        expires = str(max(1, round(self.lifetime_seconds)))
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Date": date,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self._signature(method, path, date, expires),
        }
        return f"{base_url.rstrip('/')}{path}?{urlencode(query)}"

    def verify(self, method: str, raw_path: str, query: dict[str, str]) -> None:
        """Raise LinkError unless `method raw_path?query` is a link this signer made that is still valid."""
        date, expires, signature = query.get("X-Amz-Date"), query.get("X-Amz-Expires"), query.get("X-Amz-Signature")
        if not (date and expires and signature):
            raise LinkError(403, "AccessDenied", "Access Denied")
        expected = self._signature(method, raw_path, date, expires)
        if not hmac.compare_digest(expected, signature):
            raise LinkError(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        signed_at = datetime.strptime(date, _DATE_FORMAT).replace(tzinfo=UTC).timestamp()
        if self._clock() > signed_at + int(expires):
            raise LinkError(403, "AccessDenied", "Request has expired")


def s3_error(error: LinkError) -> Response:
    """The XML body S3 answers with."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{error.code}</Code><Message>{error.message}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return Response(body, status_code=error.status, media_type="application/xml")
