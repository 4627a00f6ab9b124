"""Staged uploads over the GraphQL transport: a target per file (stagedUploadsCreate), then the bytes
to each target, without the Shopify token."""

from __future__ import annotations

from typing import Sequence

import httpx

from .errors import ShopifyResponseError
from .reading import MAX_PAGE as _MAX_PAGE
from .reading import parsed
from .transport import GraphQLTransport


async def staged_upload(
    gql: GraphQLTransport, filename: str, mime_type: str, data: bytes, *, http_method: str = "POST"
) -> str:
    """Upload bytes to a staged target; returns the `resourceUrl` to use as `originalSource`.

    POST (default): multipart form with the target's parameters, then `file`.
    PUT: the raw bytes as the body, the target's parameters as headers.
    """
    (resource_url,) = await staged_uploads(gql, [(filename, mime_type, data)], http_method=http_method)
    return resource_url


async def staged_uploads(
    gql: GraphQLTransport, files: Sequence[tuple[str, str, bytes]], *, http_method: str = "POST"
) -> list[str]:
    """Upload several files, each `(filename, mime_type, data)`: one stagedUploadsCreate for up
    to 250 of them (a mutation costs the same for one input as for 250), then one upload each.
    Returns their `resourceUrl`s in order. A user error on any input refuses the whole call."""
    if http_method not in ("POST", "PUT"):
        raise ValueError("http_method must be POST or PUT")
    resource_urls: list[str] = []
    for start in range(0, len(files), _MAX_PAGE):
        chunk = files[start : start + _MAX_PAGE]
        targets = await _staged_targets(gql, chunk, http_method)
        for (filename, mime_type, data), (url, resource_url, parameters) in zip(chunk, targets, strict=True):
            await _upload_to_target(gql, url, parameters, filename, mime_type, data, http_method)
            resource_urls.append(resource_url)
    return resource_urls


async def _staged_targets(
    gql: GraphQLTransport, files: Sequence[tuple[str, str, bytes]], http_method: str
) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """`(url, resourceUrl, parameters)` of one staged target per file, in order."""
    result = await gql.execute(
        "StagedUploadsCreate",
        {
            "input": [
                {
                    "resource": "IMAGE",
                    "filename": filename,
                    "mimeType": mime_type,
                    "httpMethod": http_method,
                    "fileSize": str(len(data)),
                }
                for filename, mime_type, data in files
            ]
        },
    )

    def target_fields() -> list[tuple[str, str, list[tuple[str, str]]]]:
        targets = result["stagedUploadsCreate"]["stagedTargets"]
        return [
            (target["url"], target["resourceUrl"], [(p["name"], p["value"]) for p in target["parameters"]])
            for target in targets
        ]

    targets = parsed("StagedUploadsCreate", target_fields)
    if len(targets) != len(files):
        raise ShopifyResponseError(
            f"{len(targets)} staged targets for {len(files)} files", operation="StagedUploadsCreate"
        )
    for url, resource_url, parameters in targets:
        if not (
            isinstance(url, str)
            and isinstance(resource_url, str)
            and all(isinstance(name, str) and isinstance(value, str) for name, value in parameters)
        ):
            raise ShopifyResponseError("staged target fields are not strings", operation="StagedUploadsCreate")
        if not url or not resource_url:
            raise ShopifyResponseError("staged target without url/resourceUrl", operation="StagedUploadsCreate")
    return targets


async def _upload_to_target(
    gql: GraphQLTransport,
    url: str,
    parameters: list[tuple[str, str]],
    filename: str,
    mime_type: str,
    data: bytes,
    http_method: str,
) -> None:
    def build() -> httpx.Request:
        if http_method == "PUT":
            return gql.build_request("PUT", url, content=data, headers=dict(parameters))
        request = gql.build_request("POST", url, data=dict(parameters), files={"file": (filename, data, mime_type)})
        # httpx streams a multipart form in four pieces per field, and each piece costs a trip
        # through the connection's send path (~40 µs of CPU): ten fields made 41 writes per
        # upload. Read into one body, it goes out in one write.
        request.read()
        return request

    async def once() -> None:
        response = await gql.send(build())
        if not response.is_success:
            raise ShopifyResponseError(
                f"staged upload refused: HTTP {response.status_code}",
                operation="staged_upload",
                status=response.status_code,
            )

    # Uploading the same bytes to the same signed key twice leaves the same object: retry freely.
    await gql.with_retries("staged_upload", once, retry_when_maybe_executed=True)
