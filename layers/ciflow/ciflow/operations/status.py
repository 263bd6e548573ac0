"""`status`: objects under a prefix counted by `ci-status`, and the ones PENDING for too long."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .. import tagging
from ..records import RecordId, Records
from ..storage import ListedObject
from ..userdata import normalize_etag
from .context import Context, versioning_note
from .parallel import ordered_map

STANDARD_STATUSES = ("PENDING", "CLEAN", "SUSPICIOUS", "FAILED")
UNTAGGED = "untagged"


@dataclass
class PendingEntry:
    key: str
    etag: str
    rule: str
    job_id: str
    since: Optional[float]       # epoch seconds the claim was made (None: no claim found)
    age: Optional[float]
    attempts: int = 0
    note: str = ""


@dataclass
class StatusReport:
    bucket: str
    prefix: str
    counts: dict[str, int]
    total: int
    older_than: float
    pending: list[PendingEntry]
    quarantine_prefix: Optional[str] = None
    quarantine_counts: Optional[dict[str, int]] = None
    quarantine_total: int = 0
    versioning: str = ""
    versioning_note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["pending"] = [dict(p.__dict__) for p in self.pending]
        return out


def _ordered_counts(found: dict[str, int]) -> dict[str, int]:
    out = {s: found.get(s, 0) for s in STANDARD_STATUSES}
    for s in sorted(k for k in found if k not in STANDARD_STATUSES and k != UNTAGGED):
        out[s] = found[s]
    out[UNTAGGED] = found.get(UNTAGGED, 0)
    return out


def _tag_statuses(ctx: Context, objs: Iterable[ListedObject], workers: int,
                  on_pending: Optional[Callable[[ListedObject, dict[str, str]], None]] = None) -> tuple[dict, int]:
    found: dict[str, int] = {}
    total = 0

    def tags_of(obj: ListedObject) -> Optional[dict[str, str]]:
        return ctx.storage.get_tags(ctx.bucket, obj.key)

    for obj, tags in ordered_map(tags_of, objs, workers):
        if tags is None:        # deleted since it was listed
            continue
        total += 1
        status = tags.get(tagging.STATUS) or UNTAGGED
        found[status] = found.get(status, 0) + 1
        if status == "PENDING" and on_pending is not None:
            on_pending(obj, tags)
    return _ordered_counts(found), total


def status(ctx: Context, prefix: str, older_than: float = 0, include_quarantine: bool = False,
           workers: int = 8, now: Optional[float] = None) -> StatusReport:
    """Objects under `prefix` counted by `ci-status`, and those PENDING for at least `older_than` s."""
    now = time.time() if now is None else now
    qp, sp = ctx.rules.quarantine_prefix, ctx.settings.state_prefix
    asked_for_quarantine = prefix.startswith(qp)
    records = Records.of(ctx.storage, ctx.bucket, ctx.settings)
    pending: list[PendingEntry] = []

    def keep(obj: ListedObject) -> bool:
        k = obj.key
        return not k.endswith("/") and not k.startswith(sp) and (asked_for_quarantine or not k.startswith(qp))

    def on_pending(obj: ListedObject, tags: dict[str, str]) -> None:
        etag = normalize_etag(obj.etag)
        names = [n for n in [tags.get(tagging.RULE, "")] if n]
        names += [r.name for r in ctx.rules.rules
                  if r.name not in names and any(obj.key.startswith(p) for p in r.prefixes)]
        found = []
        for name in names:
            rid = RecordId(obj.key, etag, name)
            record = records.read_claim_record(rid)
            if record is None or records.read_result(rid) is not None:
                continue
            claim, age = record  # the age by COS's clock (Last-Modified against Date), never ours
            since = float(claim.get("claimed_at") or claim.get("submitted_at") or 0) or None
            found.append(PendingEntry(obj.key, etag, name, str(claim.get("job_id") or ""), since,
                                      max(0.0, age),
                                      int(claim.get("attempts") or 0),
                                      "" if claim.get("job_id") else "claimed, no job id recorded yet"))
        if not found:
            found.append(PendingEntry(obj.key, etag, tags.get(tagging.RULE, ""), "", None, None, 0,
                                      "no unfinished claim for this ETag"))
        pending.extend(p for p in found if p.age is None or p.age >= older_than)

    objs = (o for o in ctx.storage.list_objects(ctx.bucket, prefix) if keep(o))
    counts, total = _tag_statuses(ctx, objs, workers, on_pending)
    report = StatusReport(ctx.bucket, prefix, counts, total, older_than,
                          sorted(pending, key=lambda p: (p.age is not None, -(p.age or 0), p.key)))
    report.versioning = ctx.storage.versioning(ctx.bucket)
    report.versioning_note = versioning_note(report.versioning)
    if include_quarantine and not asked_for_quarantine:
        qprefix = qp + prefix
        qobjs = (o for o in ctx.storage.list_objects(ctx.bucket, qprefix) if not o.key.endswith("/"))
        report.quarantine_prefix = qprefix
        report.quarantine_counts, report.quarantine_total = _tag_statuses(ctx, qobjs, workers)
    return report


