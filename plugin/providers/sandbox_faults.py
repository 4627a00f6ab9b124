"""Injected faults for the provider sandboxes: "the next N requests to ENDPOINT go wrong like this".

One fault book serves every provider sandbox, so a test speaks the same fault language to each:
- `status` 5xx: answer that error instead of handling the request;
- `mode="hang"`: wait `seconds`, then handle the request normally (a slow service);
- `mode="html"`: a proxy's 502 HTML page instead of JSON;
- `mode="drop_response"`: do the work (and charge for it), then lose the answer (a 500);
- `mode="fail"`: accept the request, then let the job end failed.

Each sandbox says which endpoints it has and which endpoints each mode applies to.

A fault plan is a list of such faults. Each fires at most `count` times; `skip` lets that many
matching requests through first (an exact schedule: "the 3rd status request fails"), and
`probability` makes each later request fail with that chance (a rate: "10% of creates answer
503"), drawn from the book's seeded generator so a run can be repeated exactly.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection, Mapping
from typing import Any
from dataclasses import dataclass


@dataclass
class Fault:
    endpoint: str
    count: int = 1
    status: int | None = None  # answer with this 5xx
    mode: str | None = None    # one of the sandbox's modes
    seconds: float = 0.0       # for "hang"
    skip: int = 0              # let this many matching requests through first
    probability: float = 1.0   # then fail each matching request with this chance


class FaultBook:
    """Pending faults, thread-safe (sandbox handlers and job threads take from it)."""

    def __init__(self, endpoints: Collection[str], modes: Mapping[str, Collection[str]], *, seed: int = 0) -> None:
        """`modes` maps each offered mode to the endpoints it applies to; `seed` makes the chances
        of probabilistic faults repeatable."""
        self.endpoints = tuple(endpoints)
        self.modes = {mode: tuple(applies_to) for mode, applies_to in modes.items()}
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    def reseed(self, seed: int) -> None:
        with self._lock:
            self._random.seed(seed)

    def check(self, fault: Fault) -> None:
        """ValueError naming what is wrong with `fault`."""
        if fault.endpoint not in self.endpoints:
            raise ValueError(f"endpoint must be one of {', '.join(self.endpoints)}")
        if not isinstance(fault.count, int) or fault.count < 1:
            raise ValueError("count must be at least 1")
        if (fault.status is None) == (fault.mode is None):
            raise ValueError("give either a status (5xx) or a mode")
        if fault.status is not None and not (isinstance(fault.status, int) and 500 <= fault.status <= 599):
            raise ValueError("status must be a 5xx code")
        if fault.mode is not None:
            if fault.mode not in self.modes:
                raise ValueError(f"mode must be one of {', '.join(self.modes)}")
            if fault.endpoint not in self.modes[fault.mode]:
                raise ValueError(f"{fault.mode} applies to {', '.join(self.modes[fault.mode])} only")
        if fault.mode == "hang" and fault.seconds <= 0:
            raise ValueError("hang needs seconds > 0")
        if not isinstance(fault.skip, int) or fault.skip < 0:
            raise ValueError("skip must be 0 or more")
        if not 0 < fault.probability <= 1:
            raise ValueError("probability must be above 0 and at most 1")

    def add(self, fault: Fault) -> None:
        self.check(fault)
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, endpoint: str) -> Fault | None:
        """The fault this request to `endpoint` meets, if any (each fault's count used up by one)."""
        with self._lock:
            for fault in self._faults:
                if fault.endpoint != endpoint:
                    continue
                if fault.skip > 0:
                    fault.skip -= 1
                    continue
                if fault.probability < 1 and self._random.random() >= fault.probability:
                    continue
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> int:
        with self._lock:
            return sum(fault.count for fault in self._faults)


def fault_from_body(body: Mapping[str, Any]) -> Fault:
    """A fault from a `POST /_sandbox/faults` body; ValueError/TypeError for values of the wrong type."""
    return Fault(endpoint=str(body.get("endpoint")), count=int(body.get("count", 1)), status=body.get("status"),
                 mode=body.get("mode"), seconds=float(body.get("seconds", 0.0)), skip=int(body.get("skip", 0)),
                 probability=float(body.get("probability", 1.0)))


class SandboxFaults:
    """`add_fault` / `clear_faults` for a sandbox whose fault book is `self.faults`."""

    faults: FaultBook

    def add_fault(self, endpoint: str, *, status: int | None = None, mode: str | None = None, count: int = 1,
                  seconds: float = 0.0, skip: int = 0, probability: float = 1.0) -> None:
        """Answer `count` requests to `endpoint` with a 5xx `status`, or per `mode`: the next ones, or
        after `skip` requests went through, each with `probability`."""
        self.faults.add(Fault(endpoint=endpoint, count=count, status=status, mode=mode, seconds=seconds, skip=skip,
                              probability=probability))

    def clear_faults(self) -> None:
        self.faults.clear()
