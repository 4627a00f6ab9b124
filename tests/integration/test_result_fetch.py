"""The fetch seam for provider results (plugin/providers/fetch.py) against a real loopback server: each way a
download fails arrives as its own FetchError (never a Shopify error, never an httpx one), transient answers are
retried, and the provider-blind rule of old still serves a plugin without its own `result_link_expired`."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from conftest import run_async
from retouch.plugin.providers import errors as generic
from retouch.plugin.providers.base import result_link_expired
from retouch.plugin.providers.fetch import (
    FetchError,
    FetchRefused,
    FetchTimeout,
    FetchTooLarge,
    FetchUnavailable,
    LinkGone,
    ResultFetcher,
)
from retouch.plugin.serve import serve_in_thread
from retouch.plugin.shopify.errors import ShopifyError

PICTURE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # 2,056 bytes
SIGNATURE = "X-Amz-Signature=SIGNATURESECRET"


class Storage:
    """A result store on loopback: what each path answers, and how often each was asked."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            name = request.path_params["name"]
            self.hits[name] += 1
            self.headers.append(dict(request.headers))
            if name == "ok.png":
                return Response(PICTURE, media_type="image/png; charset=binary")
            if name == "moved.png":
                return RedirectResponse("/r/ok.png", status_code=302)
            if name in ("gone", "missing"):
                return Response(b"", status_code=410 if name == "gone" else 404)
            if name == "expired":
                return Response(
                    b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
                    status_code=403,
                    media_type="application/xml",
                )
            if name == "flaky.png":  # two refusals, then the picture
                if self.hits[name] <= 2:
                    return Response(
                        b"busy", status_code=503 if self.hits[name] == 1 else 429, headers={"Retry-After": "0"}
                    )
                return Response(PICTURE, media_type="image/png")
            if name == "down":
                return Response(b"down", status_code=502)
            if name == "slow.png":
                await asyncio.sleep(3)
                return Response(PICTURE, media_type="image/png")
            if name == "big-declared.png":
                return Response(PICTURE * 10, media_type="image/png")
            if name == "big-streamed.png":  # no Content-Length: counted while read

                async def chunks():
                    for _ in range(10):
                        yield PICTURE

                return StreamingResponse(chunks(), media_type="image/png")
            return Response(b"?", status_code=500)

        return Starlette(routes=[Route("/r/{name}", answer)])


@pytest.fixture(scope="module")
def storage() -> Iterator[tuple[Storage, str]]:
    store = Storage()
    server = serve_in_thread(store.app())
    yield store, server.url
    server.stop()


def fetch(url: str, **options) -> object:
    async def go():
        async with ResultFetcher(retry_base=0.001, **options) as fetcher:
            return await fetcher.fetch(url)

    return run_async(go(), timeout=60)


def failure(url: str, **options) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(url, **options)
    error = caught.value
    # The seam's own tree, inside the providers' (the pipeline records it on the image); never Shopify's.
    assert isinstance(error, generic.ProviderError) and not isinstance(error, ShopifyError)
    assert SIGNATURE not in str(error) + repr(error)  # a presigned link's signature is its credential
    return error


def test_a_result_arrives_with_its_media_type_after_redirects_and_without_our_credentials(storage) -> None:
    store, base = storage
    fetched = fetch(f"{base}/r/moved.png?{SIGNATURE}")
    assert (fetched.data, fetched.media_type) == (PICTURE, "image/png")
    assert store.hits["moved.png"] == 1 and store.hits["ok.png"] >= 1
    sent = store.headers[-1]
    assert not {"authorization", "x-api-key", "x-shopify-access-token", "cookie"} & set(sent)


@pytest.mark.parametrize("name, status", [("gone", 410), ("missing", 404)])
def test_a_gone_link_is_link_gone_at_once(storage, name: str, status: int) -> None:
    store, base = storage
    before = store.hits[name]
    error = failure(f"{base}/r/{name}?{SIGNATURE}")
    assert type(error) is LinkGone and error.status == status and error.host == "127.0.0.1"
    assert store.hits[name] == before + 1  # not retried: it will not come back


def test_a_refused_link_is_fetch_refused_with_its_status(storage) -> None:
    store, base = storage
    error = failure(f"{base}/r/expired?{SIGNATURE}")
    assert type(error) is FetchRefused and error.status == 403
    assert type(failure("ftp://files.example/a.png")) is FetchRefused


def test_a_stalled_answer_is_fetch_timeout_after_the_retries(storage) -> None:
    store, base = storage
    before = store.hits["slow.png"]
    error = failure(f"{base}/r/slow.png", timeout=0.3, attempts=2)
    assert type(error) is FetchTimeout and error.status is None
    assert store.hits["slow.png"] == before + 2


@pytest.mark.parametrize("name", ["big-declared.png", "big-streamed.png"])
def test_a_result_over_the_cap_is_fetch_too_large(storage, name: str) -> None:
    _, base = storage
    assert type(failure(f"{base}/r/{name}", max_bytes=len(PICTURE) * 5)) is FetchTooLarge
    assert fetch(f"{base}/r/{name}", max_bytes=len(PICTURE) * 10).data == PICTURE * 10


def test_busy_answers_are_retried_and_a_host_that_stays_down_is_fetch_unavailable(storage) -> None:
    store, base = storage
    assert fetch(f"{base}/r/flaky.png", attempts=3).data == PICTURE
    assert store.hits["flaky.png"] == 3
    error = failure(f"{base}/r/down", attempts=2)
    assert type(error) is FetchUnavailable and error.status == 502 and store.hits["down"] == 2


def test_a_provider_without_its_own_rule_keeps_the_general_one() -> None:
    """Out-of-tree plugins written before `result_link_expired` existed: a declared temporary link that is
    refused or gone is renewed, a lasting one never; a timeout is never an expiry."""
    refused = FetchRefused("http_403", "refused", host="h", status=403)
    timeout = FetchTimeout("timeout", "slow", host="h")
    temporary = SimpleNamespace(capabilities=SimpleNamespace(result="temporary_link"))
    lasting = SimpleNamespace(capabilities=SimpleNamespace(result="lasting_url"))
    assert result_link_expired(temporary, refused) and not result_link_expired(temporary, timeout)
    assert not result_link_expired(lasting, refused)
    own = SimpleNamespace(capabilities=temporary.capabilities, result_link_expired=lambda failure: False)
    assert not result_link_expired(own, refused)  # the provider's own rule wins
