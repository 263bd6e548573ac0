"""What `python -m ciflow` does: backfill, rescan, status, explain and check-config.

Everything goes through the library paths the functions use: `skip_reason`, the bucket allow-list
and a HEAD (the checks `Submitter.process` makes) and then `Submitter.submit_object` for
submissions, `Records` for idempotency, `jobs.build_job` for requests, `actions.status_tags` for
tags. `cli.py` parses arguments and renders what these functions return; nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TypeVar

from . import tagging, tokens
from .actions import planned_actions, status_tags
from .ci import CiJobs
from .errors import CiflowError, ConfigError, PermanentError, RetryableError
from .jobs import build_job, callback_url
from .records import RecordId, Records, in_flight
from .regions import SHORT_TO_FULL
from .results import RECOGNITIONS, Label, Verdict, verdict_from_result
from .rules import OUTCOMES, Rule, RuleSet, parse_rules
from .settings import Settings, current_credentials, load_settings
from .storage import ListedObject, ObjectInfo, Storage
from .submission import Submitter, skip_reason
from .userdata import UserData, normalize_etag

T = TypeVar("T")
R = TypeVar("R")

# Reasons the CLI adds to the submit function's own (`skip_reason`, "no rule matches", ...).
SKIP_SINCE = "modified before --since"
SKIP_GONE = "object not found"
SKIP_NO_RULE = "no rule matches"
SKIP_DONE = "already has a result for this ETag"
DUP_LIVE = "a job is already in flight for this ETag"
CHECKPOINT_VERSION = 1
MAX_RECORDED_ERRORS = 10000


class OperatorError(CiflowError):
    """An expected problem with what the operator asked for (no bucket, bad --rate, ...)."""


@dataclass
class Context:
    """What every command works with: the functions' settings and rules, the ports, one bucket."""

    settings: Settings
    rules: RuleSet
    storage: Storage
    ci: CiJobs
    bucket: str


def pick_bucket(settings: Settings, bucket: Optional[str]) -> str:
    if bucket:
        return bucket
    if settings.buckets:
        return settings.buckets[0]
    raise OperatorError("no bucket: pass --bucket or set CIFLOW_BUCKETS")


def check_bucket_allowed(settings: Settings, bucket: str) -> None:
    """The submit function ignores buckets outside CIFLOW_BUCKETS, and the callback refuses them."""
    if settings.buckets and bucket not in settings.buckets:
        raise OperatorError(f"bucket {bucket!r} is not in CIFLOW_BUCKETS ({', '.join(settings.buckets)}); "
                            "the functions would not act on it")


def load_rules_file(path: str, state_prefix: str) -> RuleSet:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, path, state_prefix)


# --- argument values ------------------------------------------------------------------------------

_RATE_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """`20`, `20/s`, `300/min`, `5000/h` → submissions per second."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(?:/\s*([a-z]*))?\s*", text or "")
    unit = (m.group(2) or "") if m else ""
    if not m or unit not in _RATE_UNITS or float(m.group(1)) <= 0:
        raise OperatorError(f"--rate: expected a positive number per second, e.g. 20/s or 300/min, got {text!r}")
    return float(m.group(1)) / _RATE_UNITS[unit]


def parse_since(text: Optional[str]) -> Optional[datetime]:
    """An ISO-8601 date or date-time; without a zone it is UTC."""
    if not text:
        return None
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise OperatorError(f"--since: expected an ISO date or date-time, e.g. 2024-05-01 or "
                            f"2024-05-01T08:00:00+08:00, got {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


# --- rate limit and ordered parallel map ----------------------------------------------------------

class TokenBucket:
    """At most `rate` tokens per second on average, bursts up to `burst` (default: one second's worth).

    Thread-safe. A caller reserves its tokens at once and sleeps off any deficit outside the lock,
    so concurrent callers are served in the order they asked.
    """

    def __init__(self, rate: float, burst: Optional[float] = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.capacity = max(1.0, burst if burst is not None else rate)
        self.clock = clock
        self.sleep = sleep
        self.tokens = self.capacity
        self.updated = clock()
        self._lock = threading.Lock()

    def acquire(self, n: float = 1.0) -> float:
        """Take `n` tokens, waiting until they are available. Returns the seconds waited."""
        with self._lock:
            now = self.clock()
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
            self.tokens -= n
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[tuple[T, R]]:
    """`fn` over `items` on `workers` threads; results in input order, at most 2×workers in flight.

    Closing the iterator early (an error, Ctrl-C) cancels what has not started and waits for the rest.
    """
    if workers <= 1:
        for item in items:
            yield item, fn(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ciflow-cli") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(fn, item)))
                if len(pending) >= 2 * workers:
                    first, fut = pending.popleft()
                    yield first, fut.result()
            while pending:
                first, fut = pending.popleft()
                yield first, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


# --- backfill and rescan --------------------------------------------------------------------------

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
        self.records = Records(ctx.storage, ctx.bucket, ctx.settings.state_prefix)

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


class Aborted(CiflowError):
    """A run stopped early (too many errors in a row); the checkpoint lets the next run resume."""


@dataclass
class RunReport:
    command: str
    bucket: str
    prefix: Optional[str]
    dry_run: bool
    counts: Counts
    elapsed: float
    listing: list[str] = field(default_factory=list)
    checkpoint: Optional[str] = None         # s3://bucket/key of the checkpoint object
    resumed_after: Optional[str] = None
    retried: int = 0
    complete: bool = True
    errors: dict[str, str] = field(default_factory=dict)   # key → error, still to retry
    total: Optional[Counts] = None           # every run of this backfill together (from the checkpoint)
    stopped: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["counts"] = self.counts.as_dict()
        out["total"] = self.total.as_dict() if self.total else None
        out["errors"] = [{"key": k, "error": v} for k, v in self.errors.items()]
        return out


class ProgressSink:
    """What a run reports while it works (the CLI draws it); every method is optional to override."""

    def counting(self, listed: int) -> None: ...

    def start(self, total: Optional[int]) -> None: ...

    def update(self, counts: Counts) -> None: ...

    def finish(self, counts: Counts) -> None: ...


def listing_prefixes(prefix: str, watched: Iterable[str]) -> list[str]:
    """The prefixes to list for `prefix`: only what a rule watches, without overlaps, in key order."""
    found = set()
    for w in watched:
        if w.startswith(prefix):
            found.add(w)
        elif prefix.startswith(w):
            found.add(prefix)
    return sorted(p for p in found if not any(p != q and p.startswith(q) for q in found))


def checkpoint_key(state_prefix: str, command: str, bucket: str, prefix: str, since: Optional[datetime]) -> str:
    ident = json.dumps([command, bucket, prefix, since.isoformat() if since else ""])
    return f"{state_prefix}{command}/{hashlib.sha256(ident.encode('utf-8')).hexdigest()[:16]}.json"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PrefixRun:
    """`backfill --prefix` / `rescan --prefix`: list, examine in key order, checkpoint, resume.

    The checkpoint is a JSON object in the bucket under the state prefix (never watched, so writing
    it triggers nothing). It records the last key finished, in listing order, and the keys whose
    examination failed transiently; an unfinished run, or one that ended with errors, is resumed
    by running the same command again: errors are retried first, then listing continues after the
    last key. A run that finished cleanly leaves its checkpoint as a record, and the next run
    starts over (idempotency makes that cheap: done objects are skipped).
    """

    def __init__(self, ctx: Context, walker: Walker, command: str, prefix: str, *,
                 since: Optional[datetime] = None, restart: bool = False, save_every: float = 2.0,
                 max_consecutive_errors: int = 10, clock: Callable[[], float] = time.monotonic):
        self.ctx = ctx
        self.walker = walker
        self.command = command
        self.prefix = prefix
        self.since = since
        self.restart = restart
        self.save_every = save_every
        self.max_consecutive_errors = max_consecutive_errors
        self.clock = clock
        self.key = checkpoint_key(ctx.settings.state_prefix, command, ctx.bucket, prefix, since)
        self.listing = listing_prefixes(prefix, ctx.rules.watched_prefixes)
        self.report: Optional[RunReport] = None   # set once the run starts, for callers catching its error

    @property
    def location(self) -> str:
        return f"s3://{self.ctx.bucket}/{self.key}"

    def load(self) -> Optional[dict[str, Any]]:
        raw = self.ctx.storage.get(self.ctx.bucket, self.key)
        try:
            doc = json.loads(raw) if raw is not None else None
        except ValueError:
            return None
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION:
            return None
        if (doc.get("bucket"), doc.get("prefix"), doc.get("command")) != (self.ctx.bucket, self.prefix, self.command):
            return None
        return doc

    def _items(self, start_after: Optional[str], retry: list[str]) -> Iterator[tuple[str, Optional[ListedObject]]]:
        for key in retry:
            yield key, None
        for p in self.listing:
            after = start_after if start_after and start_after >= p else None
            for obj in self.ctx.storage.list_objects(self.ctx.bucket, p, after):
                yield obj.key, obj

    def count(self, start_after: Optional[str], progress: ProgressSink) -> int:
        n = 0
        for p in self.listing:
            after = start_after if start_after and start_after >= p else None
            for _ in self.ctx.storage.list_objects(self.ctx.bucket, p, after):
                n += 1
                if n % 1000 == 0:
                    progress.counting(n)
        return n

    def execute(self, progress: Optional[ProgressSink] = None) -> RunReport:
        progress = progress or ProgressSink()
        if not self.listing:
            raise OperatorError(f"no rule watches keys under {self.prefix!r} "
                                f"(watched prefixes: {', '.join(self.ctx.rules.watched_prefixes)})")
        dry = self.walker.dry_run
        doc = None if self.restart else self.load()
        resume = doc is not None and (not doc.get("complete") or bool(doc.get("errors")))
        now = time.time()
        if resume and doc is not None:
            last_key = doc.get("last_key") or None
            errors = {str(e["key"]): str(e.get("error", "")) for e in doc.get("errors", [])
                      if isinstance(e, dict) and e.get("key")}
            prior = Counts.from_dict(doc.get("counts"))
            started_at, runs = doc.get("started_at") or _iso(now), int(doc.get("runs") or 0)
        else:
            last_key, errors, prior, started_at, runs = None, {}, Counts(), _iso(now), 0
        retry = list(errors)
        report = RunReport(self.command, self.ctx.bucket, self.prefix, dry, Counts(), 0.0, listing=self.listing,
                           checkpoint=self.location, resumed_after=last_key if resume else None,
                           retried=len(retry), complete=False)
        progress.counting(0)
        total = len(retry) + self.count(last_key, progress)
        progress.start(total)
        t0 = self.clock()
        good = Counts()              # outcomes other than errors, for the checkpoint's running total
        state = {"last_key": last_key, "saved": t0, "consecutive": 0}

        def save(complete: bool) -> None:
            if dry:
                return
            cp = {"version": CHECKPOINT_VERSION, "command": self.command, "bucket": self.ctx.bucket,
                  "prefix": self.prefix, "since": self.since.isoformat() if self.since else None,
                  "listing": self.listing, "started_at": started_at, "updated_at": _iso(time.time()),
                  "runs": runs + 1, "last_key": state["last_key"], "complete": complete,
                  "counts": prior.merged(good).as_dict(),
                  "errors": [{"key": k, "error": v} for k, v in list(errors.items())[:MAX_RECORDED_ERRORS]]}
            self.ctx.storage.put(self.ctx.bucket, self.key, json.dumps(cp, indent=1).encode("utf-8"))
            state["saved"] = self.clock()

        def finish(complete: bool) -> None:
            report.complete = complete
            report.elapsed = self.clock() - t0
            report.errors = dict(errors)
            report.total = prior.merged(good)
            progress.finish(report.counts)
            save(complete)

        self.report = report
        stream = ordered_map(lambda item: self.walker.examine(item[0], item[1]),
                             self._items(last_key, retry), self.walker.workers)
        try:
            for (key, _listed), out in stream:
                report.counts.add(out)
                if out.status == "error":
                    errors[key] = out.reason
                    state["consecutive"] += 1
                else:
                    errors.pop(key, None)
                    good.add(out)
                    state["consecutive"] = 0
                if out.listed:
                    state["last_key"] = key
                progress.update(report.counts)
                if self.clock() - state["saved"] >= self.save_every:
                    save(False)
                if state["consecutive"] >= self.max_consecutive_errors:
                    raise Aborted(f"stopped after {state['consecutive']} errors in a row; last: {out.reason}")
        except Aborted as exc:
            stream.close()
            report.stopped = str(exc)
            finish(False)
            return report
        except BaseException:
            # Ctrl-C or a failed listing: keep what is finished, then let the caller report the error.
            stream.close()
            try:
                finish(False)
            except CiflowError:
                pass
            raise
        finish(True)
        return report


def run_keys(walker: Walker, keys: list[str], progress: Optional[ProgressSink] = None,
             clock: Callable[[], float] = time.monotonic) -> tuple[RunReport, list[Outcome]]:
    """`rescan KEY...`: examine the named keys (no listing, no checkpoint)."""
    progress = progress or ProgressSink()
    unique = list(dict.fromkeys(keys))
    report = RunReport("rescan" if walker.force else "backfill", walker.ctx.bucket, None, walker.dry_run,
                       Counts(), 0.0, complete=False)
    outcomes: list[Outcome] = []
    progress.start(len(unique))
    t0 = clock()
    try:
        for key, out in ordered_map(walker.examine, unique, walker.workers):
            outcomes.append(out)
            report.counts.add(out)
            if out.status == "error":
                report.errors[key] = out.reason
            progress.update(report.counts)
        report.complete = True
    finally:
        report.elapsed = clock() - t0
        progress.finish(report.counts)
    return report, outcomes


# --- status ---------------------------------------------------------------------------------------

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
        _bump(found, status)
        if status == "PENDING" and on_pending is not None:
            on_pending(obj, tags)
    return _ordered_counts(found), total


def status(ctx: Context, prefix: str, older_than: float = 0, include_quarantine: bool = False,
           workers: int = 8, now: Optional[float] = None) -> StatusReport:
    """Objects under `prefix` counted by `ci-status`, and those PENDING for at least `older_than` s."""
    now = time.time() if now is None else now
    qp, sp = ctx.rules.quarantine_prefix, ctx.settings.state_prefix
    asked_for_quarantine = prefix.startswith(qp)
    records = Records(ctx.storage, ctx.bucket, sp)
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


# --- explain --------------------------------------------------------------------------------------

ETAG_PLACEHOLDER = "<etag>"
_TOKEN_RE = re.compile(r"([?&]t=)[^&#]*")


def redact_token(url: str) -> str:
    return _TOKEN_RE.sub(r"\1REDACTED", url)


def why_rule(rule: Rule, key: str, content_type: Optional[str]) -> tuple[bool, str]:
    """Whether `rule` matches, and why, in words (the verdict is `Rule.matches`)."""
    matches = rule.matches(key, content_type)
    under = [p for p in rule.prefixes if key.startswith(p)]
    if not under:
        return matches, f"not under {' or '.join(repr(p) for p in rule.prefixes)}"
    where = f"under {under[0]!r}"
    if not rule.suffixes and not rule.content_types:
        return matches, f"{where}; the rule has no suffix or content-type filter"
    ctype = (content_type or "").split(";")[0].strip().lower()
    suffix = next((s for s in rule.suffixes if key.lower().endswith(s)), None)
    if suffix:
        return matches, f"{where}, suffix {suffix!r}"
    ct = next((c for c in rule.content_types if ctype and ctype.startswith(c)), None)
    if ct:
        return matches, f"{where}, content type {ctype!r} (rule: {ct!r})"
    parts = []
    if rule.suffixes:
        parts.append(f"the suffix is not one of {', '.join(rule.suffixes)}")
    if rule.content_types:
        parts.append(f"the content type {ctype or '(unknown)'!r} is not {' or '.join(rule.content_types)}")
    return matches, f"{where}, but " + " and ".join(parts)


def sample_verdict(rule: Rule, outcome: str) -> Verdict:
    """A representative verdict for one rule outcome, with placeholders for what only CI knows."""
    job_id = "<job id>"
    if outcome == "FAILED":
        return Verdict("FAILED", job_id, reason="<error code>")
    if rule.job == "ImageInspect":
        return Verdict(outcome, job_id, suspicious_type="<payload type>" if outcome == "SUSPICIOUS" else "")
    if rule.job == "VideoTargetRec":
        if outcome == "NONE":
            return Verdict("NONE", job_id, outcomes=("NONE",))
        name = {o: default for _, o, _, default in RECOGNITIONS}.get(outcome, outcome.lower())
        return Verdict("LABELLED", job_id, outcomes=(outcome,), labels=(Label(name, 0.0, 100.0),))
    if outcome == "SUCCESS":
        return Verdict("SUCCESS", job_id, output_key="<output key>")
    return Verdict(outcome, job_id)


def _effects(rule: Rule, v: Verdict, key: str, etag: str, quarantine_prefix: str) -> list[str]:
    """The rule's actions for `v`, in the order ActionRunner applies them, in words."""
    actions, move_prefix = planned_actions(rule, v)
    prefix = quarantine_prefix if "quarantine" in actions else move_prefix
    out = []
    for action in actions:
        if action == "make_private":
            out.append("set the object's ACL to private")
        elif action in ("quarantine", "move") and prefix is not None:
            out.append(f"{action}: copy to {prefix + key!r} (or {prefix}<job id>/{key} if another object is "
                       f"there) if the ETag is still {etag}, then delete the original")
        elif action == "delete":
            out.append("delete the object")
        else:
            out.append(action)
    if rule.job == "ImageInspect" and v.outcome == "SUSPICIOUS" and rule.auto_process:
        out.append(f"CI itself also applies AutoProcess {rule.auto_process}")
    return out


def explain(ctx: Context, key: str, content_type: Optional[str] = None, head: bool = True,
            now: Optional[float] = None) -> dict[str, Any]:
    """What the submit function would do with an upload of `key`, and what each verdict would do.

    Side-effect free: at most a HEAD, a GET of the tags and of the job records. No claim, no tag,
    no CI call.
    """
    now = time.time() if now is None else now
    s, rules = ctx.settings, ctx.rules
    info = ctx.storage.head(ctx.bucket, key) if head else None
    existing = ctx.storage.get_tags(ctx.bucket, key) if info is not None else None
    out: dict[str, Any] = {"bucket": ctx.bucket, "key": key, "rules_source": s.rules_source,
                           "object": None, "content_type": None, "content_type_from": None,
                           "skipped": None, "rules": [], "jobs": []}
    if head:
        out["object"] = {"exists": False} if info is None else {
            "exists": True, "etag": info.etag, "size": info.size, "content_type": info.content_type,
            "tags": existing or {}}
    if content_type:
        out["content_type"], out["content_type_from"] = content_type, "--content-type"
    elif info is not None and info.content_type:
        out["content_type"], out["content_type_from"] = info.content_type, "object"
    ctype = out["content_type"]
    if s.buckets and ctx.bucket not in s.buckets:
        out["skipped"] = "bucket is not in CIFLOW_BUCKETS"
    else:
        out["skipped"] = skip_reason(key, rules, s)
    if out["skipped"] == "outside the watched prefixes":
        out["skipped"] += f" ({', '.join(rules.watched_prefixes)})"
    for rule in rules.rules:
        matched, why = why_rule(rule, key, ctype)
        out["rules"].append({"name": rule.name, "job": rule.job, "matches": matched, "why": why})
    if out["skipped"]:
        return out
    if head and info is None:
        out["note"] = "the object does not exist: an upload event for it would be skipped (object not found); " \
                      "below is what an upload with this key would do"
    matching = rules.matching(key, ctype)
    if not matching:
        out["skipped"] = SKIP_NO_RULE
        return out
    etag = normalize_etag(info.etag) if info is not None else ETAG_PLACEHOLDER
    records = Records(ctx.storage, ctx.bucket, s.state_prefix)
    for rule in matching:
        rid = RecordId(key, etag, rule.name)
        result = records.read_result(rid) if info is not None else None
        record = records.read_claim_record(rid) if info is not None else None
        claim = record[0] if record is not None else None
        known = verdict_from_result(result)
        if known is not None:
            state = "done"
            on_upload = (f"no new job: the verdict known for this ETag ({known.outcome}, job {known.job_id or '-'}) "
                         "is applied again at once; `rescan` would submit a new job")
        elif claim is None or result is not None:
            state, on_upload = "new", "claim (key, ETag, rule), tag PENDING, submit this job"
        elif record is not None and in_flight(*record):
            state = "live"
            on_upload = (f"nothing (duplicate): job {claim.get('job_id') or '(being submitted)'} is in flight "
                         f"for this ETag; `rescan` would submit a new one")
        else:
            state = "stale"
            on_upload = ("take over the stale claim: adopt the job if CI already has it, "
                         "else submit this job")
        attempt = 1 if claim is None else int(claim.get("attempts") or 1) + 1
        user_data = UserData(rule=rule.name, etag=etag, attempt=attempt).encode()
        url = ""
        if s.callback_url:
            token = tokens.mint(s.callback_secret, ctx.bucket, key, rule.name, etag, s.token_ttl_seconds, now=now)
            url = callback_url(s.callback_url, token)
        request = build_job(rule, key, user_data, url, s.callback_format, ctx.bucket, s.region)
        if url:
            request["CallBack"] = redact_token(request["CallBack"])
        managed = [k for o in rule.outcomes.values() for k, _ in o.tags]
        outcomes: dict[str, Any] = {}
        for name in OUTCOMES.get(rule.job) or tuple(rule.outcomes):
            v = sample_verdict(rule, name)
            ours = [(k, "<seconds>" if k.startswith(tagging.FIRST_SEEN) else val) for k, val in status_tags(rule, v)]
            dropped = tagging.merge(existing or {}, ours, managed)[1]
            outcomes[name] = {"status": v.outcome, "tags": [list(t) for t in ours],
                              "actions": list(rule.outcome(name).actions),
                              "effects": _effects(rule, v, key, etag, rules.quarantine_prefix),
                              "tags_over_limit": dropped}
        out["jobs"].append({
            "rule": rule.name, "job": rule.job, "state": state, "on_upload": on_upload,
            "claim": claim, "result": result, "attempt": attempt,
            "request_for": "upload event or backfill" if state in ("new", "stale") else "rescan",
            "submit_tags": [[tagging.STATUS, "PENDING"], [tagging.RULE, rule.name]],
            "request": request, "outcomes": outcomes,
            "note": "several outcomes can apply to one video; their tags and actions combine (the first "
                    "that moves decides where)" if rule.job == "VideoTargetRec" else ""})
    return out


# --- check-config ---------------------------------------------------------------------------------

@dataclass
class Problem:
    where: str
    message: str
    severity: str = "error"      # error | warning | info

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ConfigReport:
    problems: list[Problem]
    settings: Optional[Settings]
    rules: Optional[RuleSet]
    rules_source: Optional[str]
    settings_checked: bool = True

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def as_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "ok": not self.errors,
            "problems": [dict(p.__dict__) for p in self.problems],
            "settings": None if s is None or not self.settings_checked else {
                "region": s.region, "buckets": list(s.buckets), "callback_url": s.callback_url,
                "callback_format": s.callback_format, "state_prefix": s.state_prefix, "s3_endpoint": s.s3_endpoint,
                "rules_source": s.rules_source},
            "rules_source": self.rules_source,
            "rules": None if self.rules is None else {
                "quarantine_prefix": self.rules.quarantine_prefix,
                "rules": [{"name": r.name, "job": r.job, "prefixes": list(r.prefixes), "suffixes": list(r.suffixes),
                           "content_types": list(r.content_types)} for r in self.rules.rules]},
        }


# Values that let validation continue past a missing required variable, to find every problem.
_STANDINS = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "x" * 16}
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]*-[0-9]+")


def _split(message: str) -> tuple[str, str]:
    where, sep, rest = message.partition(": ")
    return (where, rest) if sep else ("settings", message)


def check_settings(env: Mapping[str, str]) -> tuple[Optional[Settings], list[Problem]]:
    """Every settings problem (not just the first), each naming its variable."""
    work = dict(env)
    problems: list[Problem] = []
    settings: Optional[Settings] = None
    for _ in range(32):
        try:
            settings = load_settings(work)
            break
        except ConfigError as exc:
            where, message = _split(str(exc))
            problems.append(Problem(where, message))
            if where in _STANDINS and work.get(where) != _STANDINS[where]:
                work[where] = _STANDINS[where]
            elif where in work:
                del work[where]
            else:
                break
    if settings is None:
        return None, problems
    if not env.get("CIFLOW_CALLBACK_URL", "").strip():
        problems.append(Problem("CIFLOW_CALLBACK_URL", "not set: the submit function needs the callback "
                                "function's URL (without it CI never calls back)"))
    for b in settings.buckets:
        if not _BUCKET_RE.fullmatch(b):
            problems.append(Problem("CIFLOW_BUCKETS", f"{b!r} is not a bucket name of the form <name>-<appid>"))
    if settings.region not in SHORT_TO_FULL.values():
        problems.append(Problem("CIFLOW_REGION", f"{settings.region!r} is not a region ciflow knows "
                                "(check the spelling)", "warning"))
    if env.get("CIFLOW_RULES", "").strip() and env.get("CIFLOW_RULES_FILE", "").strip():
        problems.append(Problem("CIFLOW_RULES_FILE", "ignored: CIFLOW_RULES is set and wins", "warning"))
    if settings.reconcile_give_up_seconds <= settings.reconcile_after_seconds:
        problems.append(Problem("CIFLOW_RECONCILE_GIVE_UP_SECONDS",
                                f"{settings.reconcile_give_up_seconds} is not longer than "
                                f"CIFLOW_RECONCILE_AFTER_SECONDS ({settings.reconcile_after_seconds}): a job still "
                                "running at its first check fails with Timeout", "warning"))
    try:
        current_credentials(env)
    except ConfigError as exc:
        where, message = _split(str(exc))
        problems.append(Problem(where, message + "; the functions get them from their role, "
                                "but this CLI needs them for everything except check-config", "warning"))
    return settings, problems


def rules_problems(exc: ConfigError, source: str) -> list[Problem]:
    """Split a rules ConfigError into one problem per field path."""
    text = str(exc)
    body = text[len(source) + 2:] if text.startswith(source + ": ") else text
    head, sep, rest = body.partition("invalid rules:\n")
    if sep and not head:
        out = []
        for line in rest.splitlines():
            path, _, message = line.strip().partition(": ")
            out.append(Problem(f"{source}: {path}", message))
        return out
    return [Problem(source, body)]


def versioning_note(status: str) -> str:
    """What a bucket's versioning status means for ciflow's guarantees."""
    if status == "Enabled":
        return ("versioning Enabled: x-cos-forbid-overwrite has no effect, so claims are arbitrated by object "
                "versions (the oldest version wins); quarantine and delete remove every version holding the "
                "suspicious bytes")
    if status == "Suspended":
        return ("versioning Suspended: x-cos-forbid-overwrite has no effect and new writes share the null "
                "version, so a repeated event can start a second job (billed; its verdict is ignored as "
                "superseded, never applied twice); enable versioning again or keep the bucket unversioned")
    return "versioning never enabled: claims use x-cos-forbid-overwrite (409 FileAlreadyExists)"


def bucket_problems(storage: Any, buckets: Iterable[str]) -> list[Problem]:
    """Each bucket's versioning, read from COS, and what follows from it."""
    out = []
    for bucket in buckets:
        try:
            state = storage.versioning(bucket)
        except CiflowError as exc:
            out.append(Problem(f"bucket {bucket}", f"cannot read its versioning: {exc}", "warning"))
            continue
        out.append(Problem(f"bucket {bucket}", versioning_note(state),
                           "warning" if state == "Suspended" else "info"))
    return out


def check_config(env: Mapping[str, str], rules_file: Optional[str] = None,
                 rules_only: bool = False, storage: Any = None) -> ConfigReport:
    """Validate the settings (unless `rules_only`) and the rules: `rules_file`, else the configured ones."""
    problems: list[Problem] = []
    settings: Optional[Settings] = None
    if not rules_only:
        settings, problems = check_settings(env)
    state_prefix = settings.state_prefix if settings else ((env.get("CIFLOW_STATE_PREFIX") or "").strip() or
                                                            ".ciflow/")
    if not state_prefix.endswith("/"):
        state_prefix += "/"
    if rules_file:
        source: Optional[str] = rules_file
        try:
            with open(rules_file, encoding="utf-8") as fh:
                text: Optional[str] = fh.read()
        except OSError as exc:
            problems.append(Problem(rules_file, f"cannot read: {exc.strerror}"))
            text = None
    elif settings is not None and not any(p.where == "CIFLOW_RULES_FILE" and p.severity == "error"
                                          for p in problems):
        source, text = settings.rules_source, settings.rules_text
    elif rules_only:
        try:
            s = load_settings({**_STANDINS, **{k: env[k] for k in ("CIFLOW_RULES", "CIFLOW_RULES_FILE") if k in env}})
            source, text = s.rules_source, s.rules_text
        except ConfigError as exc:
            problems.append(Problem(*_split(str(exc))))
            source, text = None, None
    else:
        source, text = None, None
    if any(p.severity == "error" for p in problems):
        settings = None     # validated with stand-ins to find every problem; not a usable configuration
    rules = None
    if text is not None and source is not None:
        try:
            rules = parse_rules(text, source, state_prefix)
        except ConfigError as exc:
            problems.extend(rules_problems(exc, source))
    if storage is not None and settings is not None:
        problems.extend(bucket_problems(storage, settings.buckets))
    return ConfigReport(problems, settings, rules, source, settings_checked=not rules_only)
