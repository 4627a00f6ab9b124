"""One retouch per store, whatever its database (issue 19): the store claim on the Shop's metafield,
its compare-and-set in the sandbox as Shopify documents it, and two real daemons on one store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from conftest import PROVIDER_KEY, SHOP_TOKEN, cli, image_states, run_async, wait_for
from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.shop_metafield import read_shop_metafield, write_shop_metafield
from retouch.sync.claim import KEY, NAMESPACE, Claim, ClaimLost, ClaimRefused, StoreClaim, decide

NOW = 1_800_000_000.0


def claim(
    instance: str = "a",
    host: str = "web1",
    database: str = "/var/lib/retouch/retouch.db",
    heartbeat: float = NOW,
    lease: float = 120.0,
    released: bool = False,
) -> Claim:
    return Claim(
        instance=instance,
        host=host,
        database=database,
        pid=42,
        started=NOW - 600,
        heartbeat=heartbeat,
        lease=lease,
        released=released,
    )


# ----- the rules, pure ---------------------------------------------------------------------------------


def test_decide_who_may_take_the_store() -> None:
    me = claim("me", host="web2", database="/srv/b.db")
    other_live = claim("a", heartbeat=NOW - 30)
    other_lapsed = claim("a", heartbeat=NOW - 121)
    assert decide(None, me, NOW, take_over=False, lock_held=True) is None
    assert decide(claim("a", released=True), me, NOW, take_over=False, lock_held=True) is None
    assert decide(claim("me"), me, NOW, take_over=False, lock_held=False) is None
    refusal = decide(other_live, me, NOW, take_over=False, lock_held=True)
    assert refusal and "host web1, database /var/lib/retouch/retouch.db, pid 42" in refusal and "30 s ago" in refusal
    # A live claim is never taken, not even on purpose.
    assert "cannot be taken over" in (decide(other_live, me, NOW, take_over=True, lock_held=True) or "")
    # A lapsed claim of another installation: only on purpose.
    assert "--take-over" in (decide(other_lapsed, me, NOW, take_over=False, lock_held=True) or "")
    assert decide(other_lapsed, me, NOW, take_over=True, lock_held=True) is None
    # This installation restarting after a crash: lapsed, or live while we hold its database's lock.
    same = claim("old", host="web2", database="/srv/b.db", heartbeat=NOW - 5)
    assert decide(same, me, NOW, take_over=False, lock_held=True) is None
    assert decide(same, me, NOW, take_over=False, lock_held=False) is not None  # resync: it may still run
    assert (
        decide(
            claim("old", host="web2", database="/srv/b.db", heartbeat=NOW - 200),
            me,
            NOW,
            take_over=False,
            lock_held=False,
        )
        is None
    )


def test_a_claim_nobody_can_read_claims_nothing() -> None:
    assert Claim.parse(claim().to_json()) == claim()
    assert Claim.parse('{"instance": "x"}') is None
    assert Claim.parse("not json") is None
    assert Claim.parse(None) is None


# ----- the sandbox's shop metafields, as Shopify documents them ---------------------------------------------


def _client(shop) -> ShopifyClient:
    return ShopifyClient(shop.shop_url, SHOP_TOKEN, "2026-07", timeout=5)


def test_shop_metafield_compare_and_set(shop) -> None:
    async def scenario() -> None:
        client = _client(shop)
        try:
            empty = await read_shop_metafield(client, NAMESPACE, KEY)
            assert empty.value is None and empty.shop_id.startswith("gid://shopify/Shop/")
            first = await write_shop_metafield(client, empty, NAMESPACE, KEY, '{"n": 1}')
            assert first is not None
            # A null digest means "must not exist yet": a second creator loses.
            assert await write_shop_metafield(client, empty, NAMESPACE, KEY, '{"n": 2}') is None
            read = await read_shop_metafield(client, NAMESPACE, KEY)
            assert (read.value, read.digest) == ('{"n": 1}', first)
            second = await write_shop_metafield(client, read, NAMESPACE, KEY, '{"n": 3}')
            assert second is not None and second != first
            # The digest read before that write is stale now.
            assert await write_shop_metafield(client, read, NAMESPACE, KEY, '{"n": 4}') is None
            assert (await read_shop_metafield(client, NAMESPACE, KEY)).value == '{"n": 3}'
        finally:
            await client.aclose()

    run_async(scenario())


def test_two_starters_at_once_only_one_wins(shop) -> None:
    async def scenario() -> list[object]:
        clients = [_client(shop) for _ in range(4)]
        try:
            claims = [
                StoreClaim(c, claim(f"i{n}", host=f"web{n}", heartbeat=time.time())) for n, c in enumerate(clients)
            ]
            return await asyncio.gather(
                *(c.acquire(take_over=False, lock_held=True) for c in claims), return_exceptions=True
            )
        finally:
            for c in clients:
                await c.aclose()

    for _ in range(3):
        shop.reset()
        results = run_async(scenario())
        assert sum(r is None for r in results) == 1, results
        assert all(isinstance(r, ClaimRefused) for r in results if r is not None)


def test_renewal_finds_a_taken_claim_and_release_frees_the_store(shop) -> None:
    async def scenario() -> None:
        client = _client(shop)
        try:
            first = StoreClaim(client, claim("first", heartbeat=time.time(), lease=2.0))
            await first.acquire(take_over=False, lock_held=True)
            await first.renew()
            await asyncio.sleep(2.1)  # lapsed: another installation takes it on purpose
            second = StoreClaim(client, claim("second", host="web9", heartbeat=time.time()))
            await second.acquire(take_over=True, lock_held=True)
            with pytest.raises(ClaimLost, match="claimed by another retouch"):
                await first.renew()
            await second.release()
            third = StoreClaim(client, claim("third", host="web7", heartbeat=time.time()))
            await third.acquire(take_over=False, lock_held=True)  # released: no need to wait nor force
        finally:
            await client.aclose()

    run_async(scenario())


# ----- two real daemons on one store ------------------------------------------------------------------------


def _charged(provider) -> dict[str, int]:
    return provider.stats()["keys"].get(PROVIDER_KEY, {}).get("images_by_external_id", {})


def _claimed(run) -> bool:
    return any(e.get("event") == "store_claimed" for e in run.events())


LEASE = 20.0  # seconds; the test's own lease (the default is 120 s): short, with room for slow starts


def test_a_second_daemon_on_the_same_store_refuses_and_takes_over_only_after_the_lease(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    products = shop.seed(products=4)
    claim_table = f'[claim]\nlease = "{LEASE:g}s"\n'
    first_config = write_config("first.toml", new_only=False, db_name="first.db", extra=claim_table)
    second_config = write_config("second.toml", new_only=False, db_name="second.db", extra=claim_table)

    first = daemon(first_config)
    wait_for(lambda: _claimed(first), 30, what="the first daemon's claim")
    second = daemon(second_config)
    assert second.proc.wait(30) != 0
    said = second.output()
    assert "another retouch works on this store (host " in said and f"database {tmp_path / 'first.db'}" in said
    assert f"pid {first.proc.pid}" in said and "last heartbeat" in said
    assert not (tmp_path / "second.db").exists() or not image_states(tmp_path / "second.db")

    wait_for(
        lambda: (
            set(image_states(tmp_path / "first.db").values()) == {"done"}
            and len(image_states(tmp_path / "first.db")) == len(products)
        ),
        90,
        what="the first daemon's work",
    )
    first.kill()  # kill -9: no release, the claim stays until its lease runs out
    killed_at = time.time()

    early = daemon(second_config, args=("--take-over",))
    assert early.proc.wait(30) != 0
    assert "a live claim cannot be taken over" in early.output()
    assert time.time() - killed_at < LEASE, "the test machine was too slow to see the live claim"

    wait_for(lambda: time.time() > killed_at + LEASE + 1, LEASE + 5, what="the lease to run out")
    polite = daemon(second_config)
    assert polite.proc.wait(30) != 0
    assert "its claim has lapsed" in polite.output() and "--take-over" in polite.output()

    more = shop.seed(products=2, seed=7)
    taker = daemon(second_config, args=("--take-over",))
    wait_for(lambda: _claimed(taker), 30, what="the take-over")
    wait_for(
        lambda: {image_states(tmp_path / "second.db").get(p["media"][0]["id"]) for p in more} == {"done"},
        90,
        what="the new daemon's work",
    )
    assert taker.terminate() == 0
    charged = _charged(provider)
    assert all(count == 1 for count in charged.values()), charged
    assert set(charged) == {str(p["legacy_id"]) for p in [*products, *more]}
    # A clean stop releases the claim: the first installation may start again at once.
    value = json.loads(_shop_claim(shop))
    assert value["released"] is True and value["database"] == str(tmp_path / "second.db")


def test_resync_beside_another_installations_daemon_refuses(
    shop, provider, write_config, daemon, tmp_path: Path
) -> None:
    shop.seed(products=2)
    first = daemon(write_config("first.toml", new_only=False, db_name="first.db"))
    wait_for(lambda: _claimed(first), 30, what="the first daemon's claim")
    other = write_config("other.toml", new_only=False, db_name="other.db")
    done = cli("resync", "--yes", config=other)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "resync: another retouch works on this store" in done.stderr
    assert f"database {tmp_path / 'first.db'}" in done.stderr
    checked = cli("check", config=other)
    assert "store claim: live, held by ANOTHER installation: host " in checked.stdout, checked.stdout
    assert first.terminate() == 0
    assert "store claim: free" in cli("check", config=other).stdout  # released on a clean stop


def _shop_claim(shop) -> str:
    query = 'query { shop { metafield(namespace: "$app:retouch", key: "instance") { value } } }'
    answer = httpx.post(
        f"{shop.shop_url}/admin/api/2026-07/graphql.json",
        json={"query": query},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
        timeout=10,
    ).json()
    return answer["data"]["shop"]["metafield"]["value"]


def test_a_daemon_whose_claim_is_taken_stops(shop, provider, write_config, daemon) -> None:
    """Someone (another retouch that judged the claim lapsed, say after a long Shopify outage) wrote
    the claim: at its next renewal the daemon finds it and stops, exit 1, rather than work beside it."""
    run = daemon(write_config(extra='[claim]\nlease = "4s"\n'))
    wait_for(lambda: _claimed(run), 30, what="the claim")

    async def take() -> None:
        client = _client(shop)
        try:
            field = await read_shop_metafield(client, NAMESPACE, KEY)
            other = claim("intruder", host="elsewhere", heartbeat=time.time())
            assert await write_shop_metafield(client, field, NAMESPACE, KEY, other.to_json()) is not None
        finally:
            await client.aclose()

    run_async(take())
    assert run.proc.wait(30) == 1
    lost = [e for e in run.events() if e.get("event") == "store_claim_lost"]
    assert lost and "host elsewhere" in lost[0]["reason"]
    assert Claim.parse(_shop_claim(shop)).instance == "intruder"  # left as it is: not ours to release


def test_renewal_follows_the_client_a_reload_put_in_place(shop) -> None:
    """A reload that rotates the Shopify token closes the old client: the claim renews with the new one."""

    async def scenario() -> None:
        clients = [_client(shop)]
        holder = StoreClaim(lambda: clients[-1], claim("me", heartbeat=time.time()))
        await holder.acquire(take_over=False, lock_held=True)
        await clients[0].aclose()
        clients.append(_client(shop))
        try:
            await holder.renew()
        finally:
            await clients[-1].aclose()

    run_async(scenario())


def test_a_refused_claim_write_is_reported_not_waited_on(shop, monkeypatch) -> None:
    """Waiting does not change a refusal (a missing scope, say): the start fails with the reason."""
    from retouch.plugin.shopify.errors import ShopifyUserError, UserError
    from retouch.sync import claim as claim_module

    async def refused(*_args, **_kwargs):
        raise ShopifyUserError("MetafieldsSet", [UserError(code="ACCESS_DENIED", field=None, message="no access")])

    monkeypatch.setattr(claim_module, "write_shop_metafield", refused)

    async def scenario() -> None:
        client = _client(shop)
        try:
            holder = StoreClaim(client, claim("me", heartbeat=time.time()))
            with pytest.raises(ClaimRefused, match="cannot claim the store: .*ACCESS_DENIED"):
                await asyncio.wait_for(claim_module.claim_store(holder, take_over=False, lock_held=True), 10)
        finally:
            await client.aclose()

    run_async(scenario())
