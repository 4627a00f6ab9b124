"""`retouch backups` and `retouch backups prune`: the originals kept for `revert`, and the [backup] keep policy.

Safe beside a running daemon: each original is marked pruned by one statement that re-checks the
policy against the rows at that moment (storage/backups.py), then deleted."""

from __future__ import annotations

import time

import typer

from retouch.storage.backups import BackupStore, disk_usage, inventory, prune
from retouch.storage.kept_results import prunable_results, prune_results
from retouch.storage.store import Store

from ..config import Settings
from ..review import results_store


def human_size(size: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def describe_keep(keep: float | None) -> str:
    if keep is None:
        return "forever"
    days, rest = divmod(keep, 86400)
    return f"{days:.0f}d" if not rest else f"{keep:.0f}s"


def backups_summary(settings: Settings, now: float | None = None) -> dict:
    """What `retouch backups` shows (and `--json` prints)."""
    now = time.time() if now is None else now
    store = Store(settings.database_url)
    try:
        found = inventory(store, settings.backup_dir, settings.backup.keep, now)
    finally:
        store.close()
    _used, free = disk_usage(settings.backup_dir)
    return {
        "directory": str(settings.backup_dir),
        "keep": describe_keep(settings.backup.keep),
        "count": found.count,
        "bytes": found.size,
        "free_bytes": free,
        "prunable": len(found.prunable),
        "prunable_bytes": found.prunable_size,
    }


def print_summary(summary: dict) -> None:
    typer.echo(
        f"backups: {summary['count']} original(s), {summary['bytes']} bytes "
        f"({human_size(summary['bytes'])}) in {summary['directory']}; "
        f"{human_size(summary['free_bytes'])} free on that filesystem"
    )
    if summary["keep"] == "forever":
        typer.echo("[backup] keep = forever: no original is ever pruned")
    else:
        typer.echo(
            f"[backup] keep = {summary['keep']}: {summary['prunable']} original(s), "
            f"{summary['prunable_bytes']} bytes ({human_size(summary['prunable_bytes'])}) may be pruned "
            "(retouch backups prune)"
        )


def prune_command(settings: Settings, dry_run: bool, now: float | None = None) -> int:
    now = time.time() if now is None else now
    keep = settings.backup.keep
    if keep is None:
        typer.echo("[backup] keep = forever: nothing to prune (set keep = \"90d\" to let old originals go)")
        return 0
    store = Store(settings.database_url)
    try:
        if dry_run:
            found = inventory(store, settings.backup_dir, keep, now)
            typer.echo(
                f"would delete {len(found.prunable)} original(s), {found.prunable_size} bytes "
                f"({human_size(found.prunable_size)}); images done more than {describe_keep(keep)} ago:"
            )
            for sha, size in found.prunable.items():
                typer.echo(f"  {sha[:12]}  {size} bytes  {', '.join(found.media.get(sha, []))}")
            results = prunable_results(store, results_store(settings), keep, now)
            if results:
                typer.echo(f"would delete {len(results)} reviewed result(s), {sum(results.values())} bytes")
            return 0
        count, size, _deleted = prune(store, BackupStore(settings.backup_dir), keep, now)
        kept_count, kept_size = prune_results(store, results_store(settings), keep, now)
    finally:
        store.close()
    typer.echo(
        f"deleted {count} original(s), {size} bytes ({human_size(size)}); "
        "a revert of their images will say the original was pruned"
    )
    if kept_count:
        typer.echo(
            f"deleted {kept_count} reviewed result(s) of images done before then, {kept_size} bytes "
            f"({human_size(kept_size)}); none waiting for review"
        )
    return 0
