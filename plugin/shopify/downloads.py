"""Downloads of Shopify's own files (product images on its CDN) on the transport's connections and
retries, without the Shopify token. Provider results have their own seam (providers/fetch.py)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx

from .errors import ShopifyResponseError
from .transport import GraphQLTransport, Transient


async def download(gql: GraphQLTransport, url: str, *, max_bytes: int = 50 * 2**20) -> tuple[bytes, str]:
    """GET a CDN or result URL (without the Shopify token); returns (bytes, media type).

    The media type is the Content-Type without parameters ("image/jpeg"); redirects are followed.

    Retries 429/5xx, timeouts and connection errors; other non-2xx statuses and bodies over
    `max_bytes` raise ShopifyResponseError.
    """
    host = urlsplit(url).hostname or "?"

    try:
        request = gql.build_request("GET", url)
    except httpx.InvalidURL:
        request = None
    if request is None or request.url.scheme not in ("http", "https"):
        raise ShopifyResponseError(f"not an http(s) download URL (host {host})", operation="download")

    async def once() -> tuple[bytes, str]:
        response = await gql.send(request, stream=True, follow_redirects=True)
        try:
            if not response.is_success:
                raise ShopifyResponseError(
                    f"download from {host} failed: HTTP {response.status_code}",
                    operation="download",
                    status=response.status_code,
                )
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ShopifyResponseError(f"download from {host} exceeds {max_bytes} bytes", operation="download")
            chunks: list[bytes] = []
            size = 0
            try:
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ShopifyResponseError(
                            f"download from {host} exceeds {max_bytes} bytes", operation="download"
                        )
                    chunks.append(chunk)
            except httpx.TimeoutException as exc:
                raise Transient(f"timeout ({type(exc).__name__})", maybe_executed=True) from None
            except httpx.TransportError as exc:
                raise Transient(f"connection_error ({type(exc).__name__})", maybe_executed=True) from None
            except httpx.RequestError as exc:
                raise ShopifyResponseError(
                    f"download from {host} failed: {type(exc).__name__}", operation="download"
                ) from None
            content_type = response.headers.get("Content-Type", "application/octet-stream")
            return b"".join(chunks), content_type.split(";", 1)[0].strip()
        finally:
            await response.aclose()

    return await gql.with_retries("download", once, retry_when_maybe_executed=True)
