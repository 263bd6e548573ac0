"""The table `make chaos` prints: one row per scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .chaos import Row

HEADER = ("scenario", "uploads", "events", "jobs", "callbacks", "correct", "lost", "dup jobs", "wrong", "audit",
          "limit")


def table(rows: list[Row]) -> str:
    data: list[tuple[Any, ...]] = [HEADER]
    for r in rows:
        if r.skipped:
            data.append((r.name, "-", "-", "-", "-", "skipped", "-", "-", "-", "-", "-"))
            continue
        data.append((r.name, r.uploads, r.events, r.jobs, r.callbacks, f"{r.correct}/{r.keys}", r.lost,
                     r.duplicate_jobs, r.wrong_actions, r.audited, r.limits))
    widths = [max(len(str(row[i])) for row in data) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(data):
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
