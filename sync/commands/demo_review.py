"""`retouch demo --review`: the demo's results wait for the owner on the daemon's live review page
(/ui/, sync/web/) instead of going to the store, until Ctrl-C.

The demo's config gets `[review] mode = "all"` and `[server] listen` on a free loopback port; the page's
password is made up for the demo (only its Argon2 hash is stored, as `retouch password` does) and shown
once. The daemon runs as `retouch run` does, with its HTTP server; the owner approves, rejects or redoes
each result on the page (or with `retouch review …` on the demo's config), and the daemon writes what
was approved. Ctrl-C (or SIGTERM) stops it and says what the owner decided.
"""

from __future__ import annotations

import asyncio
import signal
import socket

import typer

from retouch.storage.models import ImageState

from ..logs import REDACTOR
from ..pipeline import Context
from ..scheduler import Daemon
from ..web import auth
from .run import _server

PROGRESS_EVERY = 1.0  # seconds between looks at the queue


def free_loopback_socket() -> socket.socket:
    """A listening socket on 127.0.0.1 and a free port, bound now so no other program takes it."""
    return socket.create_server(("127.0.0.1", 0))


def review_lines(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f'\n[review]\nmode = "all"\n\n[server]\nlisten = "{host}:{port}"\n'


def _decisions(counts: dict[str, int]) -> str:
    return (
        f"{counts.get(ImageState.AWAITING_REVIEW.value, 0)} waiting for review, "
        f"{counts.get(ImageState.DONE.value, 0)} approved and written to the store, "
        f"{counts.get(ImageState.REJECTED.value, 0)} rejected (originals kept), "
        f"{counts.get(ImageState.FAILED.value, 0)} failed"
    )


async def review_live(ctx: Context, sock: socket.socket, *, expected: int) -> int:
    """Run the daemon with its review page until Ctrl-C; 0 when it stopped as asked."""
    password = auth.generated_password()
    ctx.store.set_meta(auth.PASSWORD_META, auth.hash_password(password))
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}/ui/"
    daemon = Daemon(ctx)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, daemon.stopping.set)
    try:
        runner = asyncio.create_task(daemon.run(_server(ctx.settings, ctx, daemon, sock)))
        typer.echo(f"review page: {url}")
        typer.echo(
            f"sign in with the password {password} (made up for this demo, shown once); approve, "
            "reject or redo each result there. Nothing reaches the store before you approve it. "
            "Ctrl-C ends the demo."
        )
        REDACTOR.add([password])  # shown once above (the CLI's output passes the scrubber too); never again
        said = (-1, -1)
        while not daemon.stopping.is_set():
            try:
                await asyncio.wait_for(daemon.stopping.wait(), PROGRESS_EVERY)
            except TimeoutError:
                pass
            counts = await asyncio.to_thread(ctx.store.counts_by_state)
            now = (counts.get(ImageState.AWAITING_REVIEW.value, 0), counts.get(ImageState.DONE.value, 0))
            if now != said:
                typer.echo(
                    f"{now[0]} of {expected} result(s) waiting for your review at {url}; "
                    f"{now[1]} approved and written to the store"
                )
                said = now
        await runner
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    typer.echo(f"demo ended: {_decisions(ctx.store.counts_by_state())}")
    if daemon.server_failure is not None:
        typer.echo(f"the review page stopped: {daemon.server_failure}", err=True)
        return 1
    return 0
