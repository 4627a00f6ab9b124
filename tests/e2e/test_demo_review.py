"""`retouch demo --review`: the demo's results wait on the daemon's live review page; the owner signs in
with the printed password, approves one and rejects the other; Ctrl-C ends the demo with what was decided."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

DEADLINE = 120.0  # seconds for the demo to get both results to the review page on a loaded machine


def read_until(proc: subprocess.Popen, pattern: str, seen: list[str]) -> re.Match:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "the demo ended early:\n" + "".join(seen)
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r} in time:\n" + "".join(seen))


def test_demo_review_waits_for_the_owners_decisions(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "retouch.sync", "demo", "--review", "--products", "2", "--out", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    seen: list[str] = []
    try:
        url = read_until(proc, r"review page: (http://127\.0\.0\.1:\d+/ui/)", seen).group(1)
        password = read_until(proc, r"sign in with the password (\S+) ", seen).group(1)
        read_until(proc, r"2 of 2 result\(s\) waiting for your review", seen)
        base = url.removesuffix("/ui/")
        with httpx.Client(base_url=base, timeout=30) as http:

            def csrf(path: str) -> str:
                return re.search(r'name="csrf" value="([^"]+)"', http.get(path).text).group(1)

            assert http.get("/ui/review").status_code in (302, 303, 307, 401)  # not without signing in
            signed_in = http.post("/ui/login", data={"csrf": csrf("/ui/login"), "password": password})
            assert signed_in.status_code == 303, signed_in.text
            queue = http.get("/ui/review").text
            # Both results wait, each with its before and after picture.
            first, second = dict.fromkeys(re.findall(r'name="image" value="(\d+)"', queue))
            for image_id in (first, second):
                for which in ("before", "after"):
                    picture = http.get(f"/ui/picture/{image_id}/{which}")
                    assert picture.status_code == 200 and picture.headers["content-type"].startswith("image/")
            token = csrf("/ui/review")
            assert http.post("/ui/review/approve", data={"csrf": token, "image": first}).status_code == 303
            assert (
                http.post(
                    "/ui/review/reject", data={"csrf": token, "image": second, "reason": "not my colour"}
                ).status_code
                == 303
            )
        read_until(proc, r"0 of 2 result\(s\) waiting for your review at \S+; 1 approved and written", seen)
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    seen.append(rest)
    output = "".join(seen)
    assert proc.returncode == 0, output
    assert "demo ended: 0 waiting for review, 1 approved and written to the store, 1 rejected" in output, output
    assert password not in rest  # shown once, at the start
