"""Evidence that a clean upload `make chaos` found missing was lost to a documented platform limit.

"Delete against a concurrent upload" (docs/reliability.md, Known limits): a move reads the suspicious content
at the key (its copy, or a HEAD), then sends a DELETE, and COS has no conditional DELETE on a bucket without
versioning. An upload that lands between the two goes with it. The audit counts a vanished clean upload as
that limit only where the object store's history of the key (`devstack/objectstore/history.py`) shows it.
"""

from __future__ import annotations

from typing import Any

LIMIT_WINDOW = 1.5      # seconds from the read that decided a move to its DELETE, at most, for a platform limit
VANISHED = "clean image vanished"


def concurrent_upload_deleted(entries: list[dict[str, Any]], etag: str, suspicious_etags: set[str],
                              window: float = LIMIT_WINDOW) -> str:
    """Whether a key's history (`History.snapshot` entries) shows `etag` removed by the documented limit:
    the last read before `etag` was written showed suspicious content, nothing else was written after that
    read, and the DELETE that removed `etag` came within `window` seconds of it. The reason, or ""."""
    entries = sorted(entries, key=lambda e: e["at"])
    delete = next((e for e in reversed(entries) if e["kind"] == "delete" and e["etag"] == etag), None)
    if delete is None:
        return ""
    before = [e for e in entries if e["at"] <= delete["at"] and e is not delete]
    write = next((e for e in reversed(before) if e["kind"] == "write" and e["etag"] == etag), None)
    if write is None:
        return ""
    read = next((e for e in reversed(before) if e["kind"] == "read" and e["at"] < write["at"]), None)
    if read is None or read["etag"] not in suspicious_etags:
        return ""
    others = [e for e in before if e["at"] > read["at"] and e["kind"] != "read" and e is not write]
    if others or delete["at"] - read["at"] > window:
        return ""
    ms = lambda seconds: f"{1000 * seconds:.0f} ms"  # noqa: E731
    return (f"delete against a concurrent upload: {etag[:8]} was written {ms(write['at'] - read['at'])} after a "
            f"read showed the suspicious {read['etag'][:8]} and removed by a DELETE {ms(delete['at'] - write['at'])} "
            "later (docs/reliability.md, Known limits)")
