"""One retouch per store, whatever its database: the store claim.

The local lock (`<database>.lock`, sync/systemd.py) keeps two daemons off one database; it cannot
see a second installation (another machine, another config folder, another database) working on
the same store, and two of those pay twice for the same images (issue 19). So the daemon that works
on a store holds a claim on the store itself: an app-owned JSON metafield on the Shop
(`$app:retouch` / `instance`) naming the instance, its host, database and pid, when it started and
its last heartbeat. It is written with `metafieldsSet` and `compareDigest` (plugin/shopify/
shop_metafield.py), so of two starters that read the same state only one write succeeds.

The rules (`decide`, pure):
- no claim, a released one, or our own: take it;
- a live claim (heartbeat + lease in the future) of another instance: refuse, naming it. It cannot be
  taken over either: a live claim means that retouch renewed it within the lease, so it runs; stop
  it there first. Exception: a live claim of this very installation (same host and database) while
  we hold the database's local lock: its process is gone (the kernel released its lock), e.g. a
  crash restarted by systemd a few seconds later;
- a lapsed claim (no heartbeat for a whole lease: its daemon died or lost Shopify) of this
  installation: take it; of another installation: only with `retouch run --take-over`, because
  moving a store to another database is the owner's decision (the other one's database still has
  its jobs in flight).

A running daemon renews its claim every lease/4 and stops (exit 1) when it finds the claim taken or
could not renew it for lease - lease/4: past that, another instance may rightly take the store.
[ASSUME] the machines' clocks agree within a few seconds (NTP): liveness compares the writer's
heartbeat with the reader's clock, and a lease of 120 s leaves that margin many times over.
[ASSUME] an app may read and write metafields in its own reserved `$app:` namespace on the Shop with
the scopes retouch already asks for ([DOC] shopify.dev, metafields: a `$app:` namespace is reserved
to the app that writes it); a refusal is reported, never waited on, so a missing scope shows at the
first start.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

import structlog

from retouch.plugin.shopify.client import ShopifyClient
from retouch.plugin.shopify.errors import ShopifyAuthError, ShopifyError, ShopifyResponseError, ShopifyUserError
from retouch.plugin.shopify.shop_metafield import ShopMetafield, read_shop_metafield, write_shop_metafield

from .config import Settings

log = structlog.get_logger("retouch")

NAMESPACE = "$app:retouch"
KEY = "instance"
# Renewals per lease: one every 30 s of the default 120 s, so three renewals in a row may fail (a
# minute of Shopify trouble) before the claim could lapse under a running daemon.
RENEWALS_PER_LEASE = 4
# Compare-and-set rounds before giving up when other writers keep changing the claim under us.
CAS_ROUNDS = 5


@dataclass(frozen=True)
class Claim:
    instance: str  # random per process start
    host: str
    database: str
    pid: int
    started: float  # wall clock, seconds
    heartbeat: float
    lease: float
    released: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def parse(cls, text: str | None) -> Claim | None:
        """The claim in a metafield value; None when there is none or it cannot be read (a value
        someone edited by hand claims nothing: it is treated like a lapsed one)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            return cls(
                instance=str(data["instance"]),
                host=str(data["host"]),
                database=str(data["database"]),
                pid=int(data["pid"]),
                started=float(data["started"]),
                heartbeat=float(data["heartbeat"]),
                lease=float(data["lease"]),
                released=bool(data.get("released", False)),
            )
        except (ValueError, TypeError, KeyError):
            return None

    def live(self, now: float) -> bool:
        return not self.released and now < self.heartbeat + self.lease

    def same_installation(self, other: Claim) -> bool:
        return (self.host, self.database) == (other.host, other.database)

    def describe(self, now: float) -> str:
        beat = datetime.fromtimestamp(self.heartbeat, timezone.utc).isoformat(timespec="seconds")
        return (
            f"host {self.host}, database {self.database}, pid {self.pid}, "
            f"last heartbeat {beat} ({max(0.0, now - self.heartbeat):.0f} s ago)"
        )


def new_claim(settings: Settings, now: float) -> Claim:
    return Claim(
        instance=uuid.uuid4().hex,
        host=socket.gethostname(),
        database=str(settings.database_path),
        pid=os.getpid(),
        started=now,
        heartbeat=now,
        lease=settings.claim.lease,
    )


def decide(current: Claim | None, me: Claim, now: float, *, take_over: bool, lock_held: bool) -> str | None:
    """None: take the store; else the one line saying why not. `lock_held`: we hold this
    database's local lock, so no other process of this installation runs."""
    if current is None or current.released or current.instance == me.instance:
        return None
    mine = current.same_installation(me)
    if current.live(now):
        if mine and lock_held:
            return None
        return (
            f"another retouch works on this store ({current.describe(now)}); stop it first "
            f"(a live claim cannot be taken over: it lapses {current.lease:g} s after its last heartbeat)"
        )
    if mine or take_over:
        return None
    return (
        f"this store was last worked on by another retouch ({current.describe(now)}); its claim has lapsed. "
        "If that one is gone for good, start with `retouch run --take-over`"
    )


class ClaimRefused(Exception):
    """The store is another instance's; the message names it."""


class ClaimLost(Exception):
    """Our claim was taken (or could not be renewed in time): stop working on the store."""


class StoreClaim:
    """Holds the claim: acquire, renew (keep), release. Every write is a compare-and-set."""

    def __init__(
        self, shopify: ShopifyClient | Callable[[], ShopifyClient], me: Claim, clock: Callable[[], float] = time.time
    ) -> None:
        # A callable: the client in use now (a reload that rotates the token replaces it).
        self._shopify = shopify
        self.me = me
        self.clock = clock
        self.current: ShopMetafield | None = None  # as last read or written by us
        self.held = False

    @property
    def shopify(self) -> ShopifyClient:
        return self._shopify if isinstance(self._shopify, ShopifyClient) else self._shopify()

    async def _read(self) -> tuple[ShopMetafield, Claim | None]:
        field = await read_shop_metafield(self.shopify, NAMESPACE, KEY)
        return field, Claim.parse(field.value)

    async def _write(self, field: ShopMetafield, claim: Claim) -> bool:
        digest = await write_shop_metafield(self.shopify, field, NAMESPACE, KEY, claim.to_json())
        if digest is None:
            return False
        self.me = claim
        self.current = ShopMetafield(shop_id=field.shop_id, value=claim.to_json(), digest=digest)
        return True

    async def acquire(self, *, take_over: bool, lock_held: bool) -> None:
        """Take the store, or raise ClaimRefused naming who has it."""
        for _ in range(CAS_ROUNDS):
            field, current = await self._read()
            now = self.clock()
            refusal = decide(current, self.me, now, take_over=take_over, lock_held=lock_held)
            if refusal:
                raise ClaimRefused(refusal)
            if await self._write(field, replace(self.me, heartbeat=now, released=False)):
                self.held = True
                log.info(
                    "store_claimed",
                    instance=self.me.instance,
                    lease=self.me.lease,
                    took_from=current.describe(now)
                    if current and current.instance != self.me.instance and not current.released
                    else None,
                )
                return
        raise ClaimRefused("the store claim kept changing while we tried to take it; is another retouch starting?")

    async def renew(self) -> None:
        """Write a new heartbeat; ClaimLost when someone else holds the claim now."""
        assert self.current is not None
        fresh = replace(self.me, heartbeat=self.clock())
        if await self._write(self.current, fresh):
            return
        # STALE: someone wrote it since, or an earlier write of ours went through without its answer.
        field, current = await self._read()
        if current is None or current.instance != self.me.instance or current.released:
            self.held = False
            raise ClaimLost(
                "the store was claimed by another retouch" + (f" ({current.describe(self.clock())})" if current else "")
            )
        if not await self._write(field, fresh):
            self.held = False
            raise ClaimLost("the store claim kept changing under this retouch")

    async def keep(self, stop: asyncio.Event, on_lost: Callable[[str], None]) -> None:
        """Renew every lease/RENEWALS_PER_LEASE until `stop`; call `on_lost` (once) and return when
        the claim is taken, or when renewals failed for so long that it could lapse."""
        every = self.me.lease / RENEWALS_PER_LEASE
        last_ok = self.clock()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=every)
                return
            except TimeoutError:
                pass
            try:
                await self.renew()
                last_ok = self.clock()
            except ClaimLost as exc:
                on_lost(str(exc))
                return
            except Exception as exc:  # Shopify, or anything else: the lease decides, never a dead renewer
                log.warning("store_claim_renewal_failed", reason=str(exc)[:300] or type(exc).__name__)
                if self.clock() - last_ok >= self.me.lease - every:
                    self.held = False
                    on_lost(
                        f"the store claim could not be renewed for {self.clock() - last_ok:.0f} s "
                        f"(lease {self.me.lease:g} s): another retouch may take the store now"
                    )
                    return

    async def release(self) -> None:
        """Mark the claim released (a clean stop), so the next start anywhere need not wait for the lease."""
        if not self.held or self.current is None:
            return
        try:
            if await self._write(self.current, replace(self.me, heartbeat=self.clock(), released=True)):
                log.info("store_claim_released", instance=self.me.instance)
            self.held = False
        except ShopifyError as exc:
            log.warning("store_claim_release_failed", reason=str(exc)[:300], note="it lapses with its lease")


async def describe_claim(shopify: ShopifyClient, settings: Settings, now: float | None = None) -> str:
    """One line for `retouch check`: who works on this store now, if anyone (read only)."""
    now = time.time() if now is None else now
    try:
        current = Claim.parse((await read_shop_metafield(shopify, NAMESPACE, KEY)).value)
    except ShopifyError as exc:
        return f"store claim: cannot read it ({str(exc)[:200]})"
    if current is None or current.released:
        return "store claim: free (no retouch works on this store now)"
    ours = (current.host, current.database) == (socket.gethostname(), str(settings.database_path))
    who = "this installation" if ours else "ANOTHER installation"
    state = "live" if current.live(now) else f"lapsed (lease {current.lease:g} s)"
    return f"store claim: {state}, held by {who}: {current.describe(now)}"


async def claim_store(claim: StoreClaim, *, take_over: bool, lock_held: bool, patience: float | None = None) -> None:
    """acquire, waiting through Shopify being unreachable (like the daemon's first connection);
    `patience` seconds at most (None: until it answers). Auth errors and refusals are raised; so is
    any other answer that waiting will not change (a refused write, an unreadable answer), as a
    ClaimRefused saying so."""
    delay, waited = 1.0, 0.0
    while True:
        try:
            await claim.acquire(take_over=take_over, lock_held=lock_held)
            return
        except (ClaimRefused, ShopifyAuthError):
            raise
        except (ShopifyUserError, ShopifyResponseError) as exc:
            raise ClaimRefused(
                f"cannot claim the store: Shopify refused the claim metafield on the shop "
                f"({str(exc)[:300]}); check the app's access"
            ) from None
        except ShopifyError as exc:
            if patience is not None and waited >= patience:
                raise
            log.error("store_claim_waiting", reason=str(exc)[:300], retry_in=delay)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 60.0)
