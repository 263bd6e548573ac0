"""One object at a time, as the submit function would examine it: skip, duplicate or submit."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Optional

from ..errors import PermanentError, RetryableError
from ..records import RecordId, Records, in_flight
from ..rules import Rule
from ..storage import ListedObject, ObjectInfo
from ..submission import Submitter, skip_reason
from ..userdata import normalize_etag
from .context import Context
from .parallel import TokenBucket

# Reasons the CLI adds to the submit function's own (`skip_reason`, "no rule matches", ...).
SKIP_SINCE = "modified before --since"
SKIP_GONE = "object not found"
SKIP_NO_RULE = "no rule matches"
SKIP_DONE = "already has a result for this ETag"
DUP_LIVE = "a job is already in flight for this ETag"


@dataclass
class Outcome:
    key: str
    status: str                    # submitted | duplicate | skipped | failed | error
    reason: str = ""
    jobs: list[dict[str, str]] = field(default_factory=list)
    listed: bool = True            # False for keys given by name or retried from a checkpoint


@dataclass
class Counts:
    seen: int = 0
    submitted: int = 0
    duplicate: int = 0
    skipped: int = 0
    failed: int = 0
    errors: int = 0
    jobs: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    duplicate_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)

    def add(self, o: Outcome) -> None:
        self.seen += 1
        if o.status == "submitted":
            self.submitted += 1
            self.jobs += len(o.jobs)
        elif o.status == "duplicate":
            self.duplicate += 1
            _bump(self.duplicate_by_reason, o.reason or "the claim for this ETag exists")
        elif o.status == "skipped":
            self.skipped += 1
            _bump(self.skipped_by_reason, o.reason or "?")
        elif o.status == "failed":
            self.failed += 1
            _bump(self.failed_by_reason, o.reason or "?")
        else:
            self.errors += 1

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, doc: Any) -> Counts:
        c = cls()
        if isinstance(doc, dict):
            for k, v in doc.items():
                if k.endswith("_by_reason") and isinstance(v, dict):
                    setattr(c, k, {str(r): int(n) for r, n in v.items() if isinstance(n, int)})
                elif hasattr(c, k) and isinstance(v, int):
                    setattr(c, k, v)
        return c

    def merged(self, other: Counts) -> Counts:
        out = Counts.from_dict(self.as_dict())
        for k, v in other.__dict__.items():
            if isinstance(v, dict):
                for r, n in v.items():
                    _bump(getattr(out, k), r, n)
            else:
                setattr(out, k, getattr(out, k) + v)
        return out


def _bump(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


class Walker:
    """Examines objects one at a time as the submit function would, and submits the ones that need it."""

    def __init__(self, ctx: Context, *, force: bool = False, dry_run: bool = False,
                 since: Optional[datetime] = None, limiter: Optional[TokenBucket] = None, workers: int = 4,
                 now: Callable[[], float] = time.time):
        self.ctx = ctx
        self.force = force
        self.dry_run = dry_run
        self.since = since
        self.limiter = limiter
        self.workers = max(1, workers)
        self.now = now
        self.submitter = Submitter(ctx.storage, ctx.ci, ctx.settings, ctx.rules)
        self.records = Records.of(ctx.storage, ctx.bucket, ctx.settings)

    def record_state(self, info: ObjectInfo, rule: Rule) -> str:
        """`done` (a result exists), `live` (a job is in flight), `stale` (a takeover is due) or `new`."""
        rid = RecordId(info.key, normalize_etag(info.etag), rule.name)
        if self.records.read_result(rid) is not None:
            return "done"
        found = self.records.read_claim_record(rid)
        if found is None:
            return "new"
        return "live" if in_flight(*found) else "stale"

    def _may_match(self, key: str) -> bool:
        """False when no rule can match `key` whatever its content type (saves a HEAD)."""
        rules = self.ctx.rules
        return bool(rules.matching(key)) or any(
            r.content_types and any(key.startswith(p) for p in r.prefixes) for r in rules.rules)

    def examine(self, key: str, listed: Optional[ListedObject] = None) -> Outcome:
        try:
            out = self._examine(key, listed)
        except (RetryableError, PermanentError) as exc:
            out = Outcome(key, "error", str(exc))
        out.listed = listed is not None
        return out

    def _examine(self, key: str, listed: Optional[ListedObject]) -> Outcome:
        ctx = self.ctx
        if (listed is not None and self.since is not None and listed.last_modified is not None
                and listed.last_modified < self.since):
            return Outcome(key, "skipped", SKIP_SINCE)
        reason = skip_reason(key, ctx.rules, ctx.settings)
        if reason:
            return Outcome(key, "skipped", reason)
        if not self._may_match(key):
            return Outcome(key, "skipped", SKIP_NO_RULE)
        info = ctx.storage.head(ctx.bucket, key)
        if info is None:
            return Outcome(key, "skipped", SKIP_GONE)
        matching = ctx.rules.matching(info.key, info.content_type)
        if not matching:
            return Outcome(key, "skipped", SKIP_NO_RULE)
        todo = matching
        if not self.force:
            states = [self.record_state(info, r) for r in matching]
            if all(s == "done" for s in states):
                return Outcome(key, "skipped", SKIP_DONE)
            if all(s in ("done", "live") for s in states):
                return Outcome(key, "duplicate", DUP_LIVE)
            todo = [r for r, s in zip(matching, states) if s in ("new", "stale")]
        if self.dry_run:
            return Outcome(key, "submitted", "dry run", [{"rule": r.name, "job_id": ""} for r in todo])
        if self.limiter is not None:
            self.limiter.acquire(len(todo))
        res = self.submitter.submit_object(ctx.bucket, info, force=self.force)
        return Outcome(key, res.status, res.reason, list(res.jobs))


