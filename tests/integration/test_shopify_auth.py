"""The Admin API token's life (plugin/shopify/auth.py) against the Shopify sandbox over HTTP: the
client credentials grant as documented, renewal ahead of expiry and once after a 401, one grant for
many waiting callers, bounded renewals, backoff after a refusal, and the refusals merchants meet.
A FakeClock drives both the sandbox's token expiry and the client's renewal: nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from conftest import FakeClock, run_async
from retouch.plugin.shopify.auth import ClientCredentials, StaticToken, _refusal, missing_scopes, oauth_url
from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyTokenError, ShopifyUnavailable
from retouch.plugin.shopify.sandbox import ShopifySandbox

CLIENT_ID = "retouch-test-client-id"
CLIENT_SECRET = "shpss_TESTSECRET_client_9e1d"
LIFETIME = 100.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app_shop(clock: FakeClock) -> Iterator[ShopifySandbox]:
    """A store with a Dev Dashboard app installed: no static token, tokens living LIFETIME seconds."""
    sandbox = ShopifySandbox(
        access_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, token_lifetime=LIFETIME, clock=clock
    )
    server = sandbox.start()
    yield sandbox
    server.stop()


def source(
    shop: ShopifySandbox, clock: FakeClock, *, secret: str = CLIENT_SECRET, issued: list[str] | None = None, **options
) -> ClientCredentials:
    return ClientCredentials(
        shop.shop_url,
        CLIENT_ID,
        secret,
        clock=clock,
        timeout=5,
        on_token=(issued.append if issued is not None else None),
        **options,
    )


def unauthorized(shop: ShopifySandbox) -> int:
    return shop.stats()["unauthorized"]


def test_the_grant_is_form_encoded_and_answers_token_scope_and_expiry(app_shop: ShopifySandbox) -> None:
    url = oauth_url(app_shop.shop_url)
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    as_json = httpx.post(url, json=form)  # Shopify wants a form body: JSON is not read
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    answer = httpx.post(url, data=form)
    assert answer.status_code == 200
    body = answer.json()
    assert set(body) == {"access_token", "scope", "expires_in"}
    assert body["expires_in"] == int(LIFETIME)
    assert body["scope"] == "read_products,write_products,write_files"
    assert oauth_url("https://my-store.myshopify.com/") == "https://my-store.myshopify.com/admin/oauth/access_token"


def test_a_token_is_renewed_ahead_of_its_expiry_so_no_call_meets_a_401(
    app_shop: ShopifySandbox, clock: FakeClock
) -> None:
    issued: list[str] = []

    async def scenario() -> None:
        tokens = source(app_shop, clock, issued=issued)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            for _ in range(50):  # five lifetimes, a call every tenth of one
                clock.advance(LIFETIME / 10)
                await client.shop()
            assert tokens.state().ok and tokens.state().scopes == ("read_products", "write_products", "write_files")

    run_async(scenario())
    expiries = 5
    assert unauthorized(app_shop) == 0
    assert 1 + expiries - 1 <= len(issued) <= expiries + 1
    assert len(set(issued)) == len(issued)
    assert app_shop.tokens.stats()["grants"] == len(issued)


def test_revoked_tokens_are_renewed_once_and_the_call_goes_through(app_shop: ShopifySandbox, clock: FakeClock) -> None:
    async def scenario() -> None:
        tokens = source(app_shop, clock)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            for round_ in range(3):
                app_shop.tokens.revoke()
                await client.shop()  # 401, one grant, the same call again
                await client.shop()
                assert tokens.grants == 2 + round_

    run_async(scenario())
    assert unauthorized(app_shop) == 3


def test_a_token_revoked_right_after_its_renewal_is_renewed_once_more(
    app_shop: ShopifySandbox, clock: FakeClock
) -> None:
    async def scenario() -> None:
        tokens = source(app_shop, clock)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            clock.advance(LIFETIME * 0.95)
            await tokens.token()  # renewed ahead of expiry; not used yet
            app_shop.tokens.revoke()
            await client.shop()  # its first use meets a 401: one grant, and the call goes through
            assert tokens.grants == 3

    run_async(scenario())


@pytest.mark.parametrize("how", ["expired", "revoked"])
def test_many_callers_with_a_stale_token_wait_for_one_grant(
    app_shop: ShopifySandbox, clock: FakeClock, how: str
) -> None:
    async def scenario() -> None:
        tokens = source(app_shop, clock)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            if how == "expired":
                clock.advance(LIFETIME + 1)
            else:
                app_shop.tokens.revoke()
            await asyncio.gather(*(client.shop() for _ in range(20)))
            assert tokens.grants == 2

    run_async(scenario())
    assert app_shop.tokens.stats()["grants"] == 2


def test_a_store_that_keeps_answering_401_gets_a_bounded_number_of_grants(
    app_shop: ShopifySandbox, clock: FakeClock
) -> None:
    interval, calls = 20.0, 120

    async def scenario() -> int:
        tokens = source(app_shop, clock, min_reactive_interval=interval)
        failures = 0
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            app_shop.tokens.configure(reject_tokens=True)
            for _ in range(calls):  # a call a second
                clock.advance(1)
                try:
                    await client.shop()
                except ShopifyAuthError:
                    failures += 1
        return failures

    failures = run_async(scenario())
    assert failures == calls  # every call reports the 401 ...
    # ... and the grants are the first, one 401-renewal per interval, and the renewals ahead of expiry.
    bound = 1 + (1 + calls / interval) + calls / (0.9 * LIFETIME)
    assert app_shop.tokens.stats()["grants"] <= bound


def test_a_refused_grant_waits_out_a_growing_backoff(app_shop: ShopifySandbox, clock: FakeClock) -> None:
    async def scenario() -> None:
        tokens = source(app_shop, clock, secret="shpss_TESTSECRET_wrong_0000", first_backoff=10, max_backoff=40)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            for _ in range(5):
                with pytest.raises(ShopifyTokenError) as refused:
                    await client.shop()
                assert refused.value.code == "invalid_client"
            assert tokens.requests == 1  # the same answer, without asking again
            state = tokens.state()
            assert not state.ok and state.code == "invalid_client" and "TESTSECRET" not in state.detail
            clock.advance(10)
            with pytest.raises(ShopifyTokenError):
                await client.shop()
            assert tokens.requests == 2
            clock.advance(10)  # the backoff doubled to 20
            with pytest.raises(ShopifyTokenError):
                await client.shop()
            assert tokens.requests == 2
            clock.advance(10)
            with pytest.raises(ShopifyTokenError):
                await client.shop()
            assert tokens.requests == 3

    run_async(scenario())
    assert app_shop.tokens.stats()["refused"] == 3


def test_an_early_renewal_that_fails_keeps_the_valid_token_in_use(app_shop: ShopifySandbox, clock: FakeClock) -> None:
    async def scenario() -> None:
        tokens = source(app_shop, clock, first_backoff=5)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            app_shop.tokens.configure(installed=False)  # the merchant uninstalled the app: no new token
            clock.advance(LIFETIME * 0.95)
            await client.shop()  # the renewal is refused; the current token still works
            assert tokens.state().ok and "the last renewal failed" in tokens.state().detail
            clock.advance(LIFETIME * 0.1)  # now expired
            with pytest.raises(ShopifyTokenError) as refused:
                await client.shop()
            assert refused.value.code == "app_not_installed"
            assert not tokens.state().ok
            app_shop.tokens.configure(installed=True)  # installed again: the daemon recovers by itself
            clock.advance(60)
            await client.shop()
            assert tokens.state().ok

    run_async(scenario())


@pytest.mark.parametrize(
    "setting, code", [({"installed": False}, "app_not_installed"), ({"permitted": False}, "shop_not_permitted")]
)
def test_the_refusals_merchants_meet_are_told_apart(
    app_shop: ShopifySandbox, clock: FakeClock, setting: dict, code: str
) -> None:
    app_shop.tokens.configure(**setting)

    async def scenario() -> None:
        async with ShopifyClient(app_shop.shop_url, source(app_shop, clock), timeout=5) as client:
            with pytest.raises(ShopifyTokenError) as refused:
                await client.shop()
            assert refused.value.code == code and refused.value.status == 400

    run_async(scenario())


@pytest.mark.parametrize(
    "status, body, code",
    [
        (
            400,
            '{"error":"app_not_installed","error_description":"The application is not installed on this shop."}',
            "app_not_installed",
        ),
        (
            400,
            "Oauth error shop_not_permitted: Client credentials cannot be performed on this shop.",
            "shop_not_permitted",
        ),
        (401, '{"errors":"Oauth error invalid_client: bad"}', "invalid_client"),
        (400, '{"errors":["something else"]}', None),
        (403, "<html>nope</html>", None),
    ],
)
def test_refusal_bodies_are_read_tolerantly(status: int, body: str, code: str | None) -> None:
    found, text = _refusal(httpx.Response(status, text=body))
    assert found == code
    assert text


def test_missing_scopes_count_a_write_scope_as_its_read_scope() -> None:
    assert missing_scopes(("write_products", "write_files")) == []
    assert missing_scopes(("read_products", "write_products")) == ["write_files"]
    assert missing_scopes(()) == ["read_products", "write_products", "write_files"]


def test_a_static_token_is_never_renewed(shop: ShopifySandbox) -> None:
    async def scenario() -> None:
        async with ShopifyClient(shop.shop_url, StaticToken("shpat_TESTSECRET_wrong_static"), timeout=5) as client:
            with pytest.raises(ShopifyAuthError):
                await client.shop()

    run_async(scenario())
    assert shop.tokens.stats()["grants"] == 0 and shop.stats()["unauthorized"] == 1


def test_no_token_or_secret_in_reprs_or_errors(app_shop: ShopifySandbox, clock: FakeClock) -> None:
    issued: list[str] = []

    async def scenario() -> str:
        tokens = source(app_shop, clock, issued=issued)
        async with ShopifyClient(app_shop.shop_url, tokens, timeout=5) as client:
            await client.shop()
            app_shop.tokens.configure(reject_tokens=True)
            with pytest.raises(ShopifyAuthError) as rejected:
                await client.shop()
            return f"{tokens!r} {client!r} {rejected.value} {tokens.state()}"

    text = run_async(scenario())
    assert issued and not any(token in text for token in issued) and CLIENT_SECRET not in text


def test_a_token_endpoint_that_is_down_is_asked_again_after_a_backoff(clock: FakeClock) -> None:
    answers = [
        httpx.Response(503, text="down"),
        httpx.Response(
            200, json={"access_token": "shpat_TESTSECRET_x1", "scope": "write_products", "expires_in": "not a number"}
        ),
    ]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answers.pop(0)

    tokens = ClientCredentials(
        "https://my-store.myshopify.com",
        CLIENT_ID,
        CLIENT_SECRET,
        clock=clock,
        transport=httpx.MockTransport(answer),
        first_backoff=5,
    )

    async def scenario() -> None:
        with pytest.raises(ShopifyUnavailable):
            await tokens.token()
        with pytest.raises(ShopifyUnavailable):
            await tokens.token()  # within the backoff: not asked again
        assert len(seen) == 1 and not tokens.state().ok
        clock.advance(5)
        assert await tokens.token() == "shpat_TESTSECRET_x1"

    run_async(scenario())
    assert len(seen) == 2
    assert seen[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(seen[0].content.decode())) == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    assert tokens.state().lifetime == 86399.0  # an unusable expires_in: the documented 24 hours


def test_over_three_days_of_24_hour_tokens_the_grants_are_the_expiries_plus_one(clock: FakeClock) -> None:
    """Shopify's real lifetime: renewed 5 minutes ahead, so three days of calls (three expiries) cost
    four grants, and no call meets a 401."""
    sandbox = ShopifySandbox(access_token=None, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, clock=clock)
    server = sandbox.start()
    try:

        async def scenario() -> None:
            tokens = source(sandbox, clock)
            async with ShopifyClient(sandbox.shop_url, tokens, timeout=5) as client:
                for _ in range(3 * 24 + 1):  # a call an hour for three days (each day's last one at 86400 s,
                    await client.shop()  # past the first token's 86399: it must have been renewed ahead)
                    clock.advance(3600)

        run_async(scenario())
        assert sandbox.tokens.stats()["grants"] == 3 + 1
        assert sandbox.stats()["unauthorized"] == 0
    finally:
        server.stop()
