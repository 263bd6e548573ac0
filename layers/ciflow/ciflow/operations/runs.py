"""`backfill` and `rescan`: a prefix listed in key order with a checkpoint to resume from, or named keys."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from ..errors import CiflowError
from ..storage import ListedObject
from .context import Context, OperatorError
from .parallel import ordered_map
from .walker import Counts, Outcome, Walker

CHECKPOINT_VERSION = 1
MAX_RECORDED_ERRORS = 10000


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


# --- backfill and rescan --------------------------------------------------------------------------

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


