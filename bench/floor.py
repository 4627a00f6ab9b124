"""The library floor of one image (not a test): the CPU that the work no pipeline can skip costs in
the mandated libraries, measured on the bench's own images, for bench/overhead.py to set beside
the daemon's CPU per image.

What every image needs, whatever the code around it:
  - Pillow: the original checked before anything is paid for (`imaging.check_source`), and the
    provider's result converted to the original's format (`imaging.convert`: Shopify keeps a
    media's file extension).
  - httpx: three transfers: the original downloaded (pre-flight; those bytes are the backup), the
    result downloaded, and the result uploaded to a staged target (multipart POST).
Nothing else is in it: no GraphQL, no database, no logging, no scheduling. Those are the daemon's
own bookkeeping, the difference between its figure and this one.

How: the Pillow part in this thread, over the first `samples` images of the run's store (their
real mix of JPEG, PNG and WebP) with the run's canned results; the transfers with one plain
`httpx.AsyncClient` against the same Shopify sandbox, in a thread of its own whose CPU alone is
counted (`time.thread_time`): the sandbox's server threads are not in it. The form is handed to
httpx whole, as the daemon's client does (one write, not four per field).
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from dataclasses import dataclass

import httpx

from retouch.plugin.shopify.client import DEFAULT_API_VERSION, admin_api_url
from retouch.plugin.shopify.operations import operation
from retouch.plugin.shopify.sandbox import ShopifySandbox
from retouch.sync import imaging
from retouch.sync.decisions import extension_of, pillow_format


@dataclass
class Floor:
    samples: int
    pillow_ms: float  # check_source + convert, per image
    transfers_ms: float  # two downloads and one upload, per image

    @property
    def ms(self) -> float:
        return self.pillow_ms + self.transfers_ms


def measure(shop: ShopifySandbox, token: str, media: list[dict], results: list[bytes], *, samples: int = 200) -> Floor:
    """`media`: the seeded media (product JSON's), `results`: the canned full-size results."""
    chosen = media[:samples]
    originals = [(m, shop.media_bytes(m["id"].rsplit("/", 1)[-1])) for m in chosen]
    pillow_ms = _pillow_ms(originals, results)
    transfers_ms = _in_own_thread(lambda: asyncio.run(_transfers_ms(shop, token, chosen, results)))
    return Floor(len(chosen), pillow_ms, transfers_ms)


def _pillow_ms(originals: list[tuple[dict, bytes]], results: list[bytes]) -> float:
    start = time.thread_time()
    for n, (media, data) in enumerate(originals):
        imaging.check_source(data)
        imaging.convert(results[n % len(results)], pillow_format(extension_of(media["filename"], media["mime_type"])))
    return 1000 * (time.thread_time() - start) / len(originals)


def _in_own_thread(work):
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="floor")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


async def _transfers_ms(shop: ShopifySandbox, token: str, media: list[dict], results: list[bytes]) -> float:
    # The results are served by the sandbox's CDN as well: one product holding each canned result.
    served = shop.add_product(
        "Floor results",
        images=[
            {"filename": f"floor-result-{n}.png", "data_base64": base64.b64encode(data).decode()}
            for n, data in enumerate(results)
        ],
    )
    result_urls = [m["url"] for m in served["media"]]
    async with httpx.AsyncClient(timeout=30) as http:
        graphql = admin_api_url(shop.shop_url, DEFAULT_API_VERSION)
        answer = await http.post(
            graphql,
            headers={"X-Shopify-Access-Token": token},
            json={
                "query": operation("StagedUploadsCreate"),
                "variables": {
                    "input": [
                        {
                            "resource": "IMAGE",
                            "filename": f"floor-{n}.png",
                            "mimeType": "image/png",
                            "httpMethod": "POST",
                            "fileSize": str(len(results[n % len(results)])),
                        }
                        for n in range(len(media) + 1)
                    ]
                },
            },
        )
        targets = answer.json()["data"]["stagedUploadsCreate"]["stagedTargets"]
        warm = targets.pop()  # a target of its own: each is uploaded to once
        await _three_transfers(http, media[0]["url"], result_urls[0], warm, results[0], len(media))  # connections warm
        start = time.thread_time()
        for n, (item, target) in enumerate(zip(media, targets, strict=True)):
            result = results[n % len(results)]
            await _three_transfers(http, item["url"], result_urls[n % len(result_urls)], target, result, n)
        return 1000 * (time.thread_time() - start) / len(media)


async def _three_transfers(
    http: httpx.AsyncClient, original_url: str, result_url: str, target: dict, result: bytes, n: int
) -> None:
    for url in (original_url, result_url):
        async with http.stream("GET", url) as response:
            response.raise_for_status()
            b"".join([chunk async for chunk in response.aiter_bytes()])
    fields = {p["name"]: p["value"] for p in target["parameters"]}
    request = http.build_request(
        "POST", target["url"], data=fields, files={"file": (f"floor-{n}.png", result, "image/png")}
    )
    request.read()
    (await http.send(request)).raise_for_status()
