"""Results kept for review ([review] mode = "all"): pruned by the originals' rule, [backup] keep.

A kept result lives in `<backup_dir>/results/` (content-addressed, like the originals). It goes
when every image that holds it is done before the cutoff and was never reverted — the policy of
`prunable_digests`, so a result waiting for review (or approved and not yet written, or rejected)
is never deleted. A file touched in the last hour may be on its way to a new row: left for later.
"""

from __future__ import annotations

from typing import Any

from .backups import RECENT_GRACE, BackupStore, files_on_disk, prunable_digests


def prunable_results(store: Any, results: BackupStore, keep: float | None, now: float) -> dict[str, int]:
    """sha256 -> size of the kept results `keep` (seconds; None = forever) lets go."""
    if keep is None:
        return {}
    shas = prunable_digests(store.result_holders(before=now - keep))
    return {
        sha: st.st_size
        for sha, st in files_on_disk(results.directory).items()
        if sha in shas and now - st.st_mtime >= RECENT_GRACE
    }


def prune_results(store: Any, results: BackupStore, keep: float, now: float) -> tuple[int, int]:
    """Delete the kept results the policy lets go; returns (count, bytes). Each is checked again
    just before it goes (the rows may have moved since the listing)."""
    count = size = 0
    for sha, bytes_ in prunable_results(store, results, keep, now).items():
        if sha not in prunable_digests(h for h in store.result_holders(before=now - keep) if h.sha256 == sha):
            continue
        try:
            results.path_for(sha).unlink()
        except FileNotFoundError:
            continue
        count, size = count + 1, size + bytes_
    return count, size
