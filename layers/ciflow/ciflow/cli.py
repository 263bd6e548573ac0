"""`python -m ciflow`: the operator's command line (backfill, rescan, status, explain, check-config).

It reads the same settings as the functions (the environment: `CIFLOW_*`, `TENCENTCLOUD_*`), so
the same command works against the local stack (`source .devstack.env`) and against COS and CI.
Output goes to stdout; the progress bar and errors go to stderr. Expected problems (bad
configuration, a missing bucket, network errors) print one line and exit non-zero, without a
traceback. Exit codes: 0 done, 1 problems or errors (re-run to retry), 2 bad usage or
configuration, 130 interrupted.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable, Optional, TextIO

from . import __version__
from .ci import CiJobs
from .errors import ConfigError, PermanentError, RetryableError
from .operations.check_config import ConfigReport, check_config
from .operations.context import Context, OperatorError, check_bucket_allowed, load_rules_file, pick_bucket
from .operations.explain import explain
from .operations.parallel import TokenBucket
from .operations.runs import PrefixRun, ProgressSink, RunReport, parse_rate, parse_since, run_keys
from .operations.status import StatusReport, status
from .operations.walker import Counts, Outcome, Walker
from .rules import get_rules
from .settings import current_credentials, get_settings
from .storage import Storage

PROG = "python -m ciflow"


class IO:
    def __init__(self, out: TextIO, err: TextIO):
        self.out = out
        self.err = err
        self.bucket: Optional[str] = None

    def print(self, *parts: Any) -> None:
        print(*parts, file=self.out)

    def json(self, value: Any) -> None:
        json.dump(value, self.out, indent=2, default=str, ensure_ascii=False)
        self.out.write("\n")


# --- progress bar ---------------------------------------------------------------------------------

def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress(ProgressSink):
    """A progress bar on stderr: redrawn in place (`\\r`) on a terminal, a plain line every
    `every` seconds otherwise (logs, CI), and always a final line."""

    WIDTH = 24

    def __init__(self, stream: TextIO, label: str, *, tty: Optional[bool] = None, every: float = 5.0,
                 submitted_label: str = "submitted", clock: Callable[[], float] = time.monotonic):
        self.stream = stream
        self.label = label
        self.tty = _isatty(stream) if tty is None else tty
        self.every = 0.1 if self.tty else every
        self.submitted_label = submitted_label
        self.clock = clock
        self.total: Optional[int] = None
        self.t0 = clock()
        self.last = float("-inf")
        self.open_line = False
        self.shown = ""

    def _columns(self) -> int:
        try:
            return int(os.environ.get("COLUMNS") or os.get_terminal_size(self.stream.fileno()).columns)
        except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
            return shutil.get_terminal_size((120, 24)).columns

    def _emit(self, text: str) -> None:
        self.shown = text
        if self.tty:
            cols = self._columns()
            if len(text) >= cols and text.startswith(self.label + " "):
                text = text[len(self.label) + 1:]       # the counts matter more than the label
            self.stream.write("\r" + text[: max(20, cols - 1)] + "\x1b[K")
            self.open_line = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def render(self, c: Counts) -> str:
        done = c.seen
        total = max(self.total, done) if self.total is not None else None
        frac = (done / total) if total else 1.0
        filled = int(round(frac * self.WIDTH))
        elapsed = max(1e-9, self.clock() - self.t0)
        rate = done / elapsed
        parts = [f"{self.label} [{'#' * filled}{'-' * (self.WIDTH - filled)}] {frac * 100:3.0f}% "
                 f"{done}/{total if total is not None else '?'}",
                 f"{self.submitted_label} {c.submitted}", f"duplicate {c.duplicate}", f"skipped {c.skipped}",
                 f"failed {c.failed}", f"errors {c.errors}", f"{rate:.1f}/s"]
        if total and done < total and rate > 0:
            parts[-1] += f" ETA {_duration((total - done) / rate)}"
        return " | ".join(parts)

    def counting(self, listed: int) -> None:
        if self.tty:
            self._emit(f"{self.label}: counting objects... {listed}")

    def start(self, total: Optional[int]) -> None:
        self.total = total
        self.t0 = self.clock()
        self.last = self.t0
        if self.tty:
            self._emit(self.render(Counts()))
        else:
            self._emit(f"{self.label}: {total} object(s) to examine")

    def update(self, counts: Counts) -> None:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self._emit(self.render(counts))

    def finish(self, counts: Counts) -> None:
        text = self.render(counts)
        if self.tty or text != self.shown:
            self._emit(text)
        if self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False


# --- context --------------------------------------------------------------------------------------

def make_context(ns: argparse.Namespace, io: IO, write: bool) -> Context:
    settings = get_settings()
    rules_file = getattr(ns, "rules", None)
    rules = load_rules_file(rules_file, settings.state_prefix) if rules_file else get_rules()
    bucket = pick_bucket(settings, ns.bucket)
    io.bucket = bucket
    if write:
        check_bucket_allowed(settings, bucket)
    current_credentials()  # a clear message now rather than a failed request later
    return Context(settings, rules, Storage(), CiJobs(), bucket)


# --- backfill / rescan ----------------------------------------------------------------------------

def _table(io: IO, rows: list[tuple[str, Any, str]]) -> None:
    for name, value, note in rows:
        io.print(f"  {name:<14}{value:>7}{('  ' + note) if note else ''}")


def _reasons(reasons: dict[str, int]) -> str:
    items = sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))
    return "; ".join(f"{reason}: {n}" for reason, n in items)


def render_run(io: IO, r: RunReport, outcomes: Optional[list[Outcome]] = None) -> None:
    c = r.counts
    what = f"{r.bucket}/{r.prefix}" if r.prefix is not None else f"{c.seen} key(s) in {r.bucket}"
    if r.complete:
        state = "finished"
    elif r.stopped:
        state = r.stopped
    else:
        state = "interrupted"
    io.print(f"{r.command} of {what}: {state} in {r.elapsed:.1f}s"
             + (" (dry run: nothing was submitted or written)" if r.dry_run else ""))
    if r.listing and r.prefix is not None and r.listing != [r.prefix]:
        io.print(f"  listed {', '.join(r.listing)} (the watched prefixes under {r.prefix!r})")
    if r.resumed_after is not None or r.retried:
        io.print(f"  resumed after {r.resumed_after!r}" + (f", retrying {r.retried} earlier error(s)"
                                                            if r.retried else ""))
    _table(io, [("seen", c.seen, ""),
                ("would submit" if r.dry_run else "submitted", c.submitted, f"({c.jobs} job(s))" if c.jobs else ""),
                ("duplicate", c.duplicate, _reasons(c.duplicate_by_reason)),
                ("skipped", c.skipped, _reasons(c.skipped_by_reason)),
                ("failed", c.failed, _reasons(c.failed_by_reason)
                 + (" (CI refused the job; tagged FAILED)" if c.failed else "")),
                ("errors", c.errors, "(transient; run the same command again to retry)" if c.errors else "")])
    for key, error in list(r.errors.items())[:20]:
        io.print(f"      {key}: {error}")
    if len(r.errors) > 20:
        io.print(f"      ... and {len(r.errors) - 20} more (see the checkpoint)")
    if outcomes:
        io.print("objects:")
        for o in outcomes:
            jobs = ", ".join(f"{j['rule']} job {j['job_id'] or '(dry run)'}" for j in o.jobs)
            io.print(f"  {o.key}: {o.status}" + (f" ({o.reason})" if o.reason and o.reason != "dry run" else "")
                     + (f": {jobs}" if jobs else ""))
    if r.checkpoint:
        if r.dry_run:
            io.print(f"checkpoint: {r.checkpoint} (not written: dry run)")
        elif r.complete and not r.errors:
            io.print(f"checkpoint: {r.checkpoint} (complete; the next run starts over)")
        else:
            io.print(f"checkpoint: {r.checkpoint} (run the same command again to resume)")


def _walker(ns: argparse.Namespace, ctx: Context, force: bool, since: Any) -> Walker:
    limiter = TokenBucket(parse_rate(ns.rate))
    return Walker(ctx, force=force, dry_run=ns.dry_run, since=since, limiter=limiter, workers=ns.workers)


def _run_prefix(ns: argparse.Namespace, io: IO, command: str, force: bool) -> int:
    since = parse_since(getattr(ns, "since", None))
    if ns.workers < 1:
        raise OperatorError("--workers: must be at least 1")
    ctx = make_context(ns, io, write=True)
    walker = _walker(ns, ctx, force, since)
    run = PrefixRun(ctx, walker, command, ns.prefix, since=since, restart=ns.restart)
    label = f"{command}{' (dry run)' if ns.dry_run else ''} {ns.prefix or '(whole bucket)'}"
    progress = Progress(io.err, label, every=ns.progress_every,
                        submitted_label="would submit" if ns.dry_run else "submitted")
    try:
        report = run.execute(progress)
    except KeyboardInterrupt:
        if run.report is not None:
            run.report.complete = False
            (io.json(run.report.as_dict()) if ns.json else render_run(io, run.report))
        io.err.write(f"{PROG} {command}: interrupted; run the same command again to resume\n")
        return 130
    if ns.json:
        io.json(report.as_dict())
    else:
        render_run(io, report)
    return 0 if report.complete and not report.errors else 1


def cmd_backfill(ns: argparse.Namespace, io: IO) -> int:
    return _run_prefix(ns, io, "backfill", force=False)


def cmd_rescan(ns: argparse.Namespace, io: IO) -> int:
    if bool(ns.keys) == (ns.prefix is not None):
        raise OperatorError("give either KEY... or --prefix P")
    if ns.prefix is not None:
        return _run_prefix(ns, io, "rescan", force=True)
    ctx = make_context(ns, io, write=True)
    walker = _walker(ns, ctx, True, None)
    progress = Progress(io.err, f"rescan{' (dry run)' if ns.dry_run else ''}", every=ns.progress_every,
                        submitted_label="would submit" if ns.dry_run else "submitted")
    report, outcomes = run_keys(walker, ns.keys, progress)
    if ns.json:
        io.json({**report.as_dict(), "objects": [dict(o.__dict__) for o in outcomes]})
    else:
        render_run(io, report, outcomes)
    return 0 if all(o.status == "submitted" for o in outcomes) else 1


# --- status ---------------------------------------------------------------------------------------

def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s"
    return _duration(seconds)


def render_status(io: IO, r: StatusReport) -> None:
    io.print(f"status of {r.bucket}/{r.prefix}: {r.total} object(s)")
    if r.versioning_note:
        io.print(f"  bucket {r.versioning_note}")
    for name, n in r.counts.items():
        io.print(f"  {name:<14}{n:>7}")
    if r.quarantine_prefix is not None and r.quarantine_counts is not None:
        io.print(f"quarantine {r.bucket}/{r.quarantine_prefix}: {r.quarantine_total} object(s)")
        for name, n in r.quarantine_counts.items():
            io.print(f"  {name:<14}{n:>7}")
    if not r.pending:
        io.print(f"no object PENDING for at least {r.older_than:g}s")
        return
    io.print(f"PENDING for at least {r.older_than:g}s: {len(r.pending)}")
    rows = [("KEY", "RULE", "JOB ID", "PENDING FOR", "NOTE")]
    rows += [(p.key, p.rule or "-", p.job_id or "-", _age(p.age), p.note) for p in r.pending]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        io.print("  " + "  ".join(v.ljust(widths[i]) for i, v in enumerate(row[:4])) + "  " + row[4])


def cmd_status(ns: argparse.Namespace, io: IO) -> int:
    if ns.older_than < 0:
        raise OperatorError("--older-than: must be 0 or more seconds")
    ctx = make_context(ns, io, write=False)
    report = status(ctx, ns.prefix, older_than=ns.older_than, include_quarantine=ns.include_quarantine,
                    workers=max(1, ns.workers))
    if ns.json:
        io.json(report.as_dict())
    else:
        render_status(io, report)
    return 0


# --- explain --------------------------------------------------------------------------------------

def _tags(pairs: Any) -> str:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return ", ".join(f"{k}={v}" for k, v in items) or "(none)"


def render_explain(io: IO, e: dict[str, Any]) -> None:
    io.print(f"explain {e['bucket']}/{e['key']}")
    obj = e["object"]
    if obj is None:
        io.print("  object        not read (--no-head)")
    elif not obj["exists"]:
        io.print("  object        does not exist")
    else:
        io.print(f"  object        ETag {obj['etag']}, {obj['size']} bytes, content type "
                 f"{obj['content_type'] or '(none)'}")
        io.print(f"  tags          {_tags(obj['tags'])}")
    io.print(f"  content type  {e['content_type'] or '(unknown)'}"
             + (f" (from {e['content_type_from']})" if e["content_type_from"] else ""))
    io.print(f"  rules         {e['rules_source']}")
    width = max([len(r["name"]) for r in e["rules"]] + [4])
    for r in e["rules"]:
        io.print(f"    {r['name']:<{width}}  {r['job']:<13} {'MATCHES ' if r['matches'] else 'no match'}  {r['why']}")
    if e.get("note"):
        io.print(f"  note          {e['note']}")
    if e["skipped"]:
        io.print(f"result: an upload event is skipped: {e['skipped']} (no claim, no tag, no job)")
        return
    for j in e["jobs"]:
        io.print("")
        io.print(f"rule {j['rule']} ({j['job']})")
        claim, result = j["claim"], j["result"]
        if result is not None:
            io.print(f"  records       result {result.get('outcome') or result.get('applied')} "
                     f"(job {result.get('job_id') or '-'})")
        elif claim is not None:
            io.print(f"  records       claim {claim.get('status')} (job {claim.get('job_id') or '-'}, "
                     f"attempt {claim.get('attempts')})")
        elif obj is None or not obj["exists"]:
            io.print("  records       none read (no object, so no ETag)")
        else:
            io.print("  records       no claim for this ETag")
        io.print(f"  upload event  {j['on_upload']}")
        io.print(f"  on submit     tags {_tags(j['submit_tags'])}")
        io.print(f"  request       POST /jobs, sent by {'an ' if j['request_for'].startswith('upload') else ''}"
                 f"{j['request_for']} (callback token redacted):")
        for line in json.dumps(j["request"], indent=2, ensure_ascii=False).splitlines():
            io.print("    " + line)
        io.print("  outcomes" + (f" ({j['note']})" if j.get("note") else ""))
        for name, o in j["outcomes"].items():
            io.print(f"    {name:<11} tags    {_tags(o['tags'])}")
            for effect in o["effects"] or ["none (tags only)"]:
                io.print(f"    {'':<11} action  {effect}")
            if o["tags_over_limit"]:
                io.print(f"    {'':<11} note    over the 10-tag limit, not set: {', '.join(o['tags_over_limit'])}")


def cmd_explain(ns: argparse.Namespace, io: IO) -> int:
    ctx = make_context(ns, io, write=False)
    result = explain(ctx, ns.key, content_type=ns.content_type, head=not ns.no_head)
    if ns.json:
        io.json(result)
    else:
        render_explain(io, result)
    return 0


# --- check-config ---------------------------------------------------------------------------------

def render_check(io: IO, r: ConfigReport) -> None:
    s = r.settings
    if r.settings_checked and s is not None:
        io.print(f"settings  region {s.region}; buckets {', '.join(s.buckets) or '(any)'}; callback "
                 f"{s.callback_url or '(none)'} ({s.callback_format}); state prefix {s.state_prefix}; "
                 f"COS {s.s3_endpoint}")
    if r.rules is not None:
        io.print(f"rules     {r.rules_source}: {len(r.rules.rules)} rule(s), quarantine prefix "
                 f"{r.rules.quarantine_prefix}")
        for rule in r.rules.rules:
            io.print(f"  {rule.name}: {rule.job} on {' '.join(rule.prefixes)}"
                     + (f" suffixes {' '.join(rule.suffixes)}" if rule.suffixes else "")
                     + (f" content types {' '.join(rule.content_types)}" if rule.content_types else ""))
    errors = r.errors
    warnings = [p for p in r.problems if p.severity == "warning"]
    for p in r.problems:
        if p.severity == "info":
            io.print(f"note: {p}")
    for p in errors:
        io.print(f"error: {p}")
    for p in warnings:
        io.print(f"warning: {p}")
    if errors:
        io.print(f"{len(errors)} problem(s)" + (f", {len(warnings)} warning(s)" if warnings else ""))
    else:
        io.print("configuration OK" + (f" ({len(warnings)} warning(s))" if warnings else ""))


def cmd_check_config(ns: argparse.Namespace, io: IO) -> int:
    storage = None
    if ns.online and not ns.rules_only:
        from .storage import Storage

        storage = Storage()
    report = check_config(os.environ, rules_file=ns.rules, rules_only=ns.rules_only, storage=storage)
    if ns.json:
        io.json(report.as_dict())
    else:
        render_check(io, report)
    return 1 if report.errors else 0


# --- argument parsing and main --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bucket", help="bucket (<name>-<appid>); default: the first of CIFLOW_BUCKETS")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="the library's JSON logs on stderr")

    runs = argparse.ArgumentParser(add_help=False)
    runs.add_argument("--dry-run", action="store_true", help="submit nothing and write nothing")
    runs.add_argument("--rate", default="20/s", help="CI job submissions per second (token bucket; default 20/s)")
    runs.add_argument("--workers", type=int, default=4, help="objects examined in parallel (default 4)")
    runs.add_argument("--restart", action="store_true", help="ignore an unfinished checkpoint and start over")
    runs.add_argument("--progress-every", type=float, default=5.0, metavar="SECONDS",
                      help="when stderr is not a terminal, a progress line every SECONDS (default 5)")

    p = argparse.ArgumentParser(prog=PROG, description="Operate ciflow: submit existing objects, rescan, "
                                "report status, explain decisions, check the configuration. Settings come "
                                "from the environment, as for the functions (CIFLOW_*, TENCENTCLOUD_*).")
    p.add_argument("--version", action="version", version=f"ciflow {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("backfill", parents=[common, runs], help="submit existing objects under a prefix",
                       description="Submit every existing object under --prefix exactly as the submit function "
                       "would for its upload event. Objects with a result for their current ETag are skipped, "
                       "objects with a job in flight are duplicates. Resumable: a checkpoint is kept under "
                       "<state prefix>backfill/ in the bucket.")
    b.add_argument("--prefix", required=True, help="key prefix to list ('' for the whole bucket)")
    b.add_argument("--since", metavar="DATE", help="only objects modified at or after DATE (ISO 8601; UTC "
                   "unless it has a zone)")
    b.set_defaults(func=cmd_backfill)

    r = sub.add_parser("rescan", parents=[common, runs], help="force a new job even when a result exists",
                       description="Submit a new job for each KEY (or every object under --prefix) even when "
                       "a result or a job in flight exists; the new job's verdict replaces the old one.")
    r.add_argument("keys", nargs="*", metavar="KEY")
    r.add_argument("--prefix", help="rescan every object under this prefix instead of KEYs")
    r.add_argument("--since", metavar="DATE", help="with --prefix: only objects modified at or after DATE")
    r.set_defaults(func=cmd_rescan)

    s = sub.add_parser("status", parents=[common], help="count objects by ci-status; list long PENDING ones")
    s.add_argument("--prefix", required=True, help="key prefix ('' for the whole bucket)")
    s.add_argument("--older-than", type=float, default=0, metavar="SECONDS",
                   help="list objects PENDING for at least this long (default 0: all)")
    s.add_argument("--include-quarantine", action="store_true",
                   help="also count <quarantine prefix><prefix>")
    s.add_argument("--workers", type=int, default=8, help="parallel tag reads (default 8)")
    s.set_defaults(func=cmd_status)

    e = sub.add_parser("explain", parents=[common], help="what would happen to a key, without side effects")
    e.add_argument("key", metavar="KEY")
    e.add_argument("--content-type", help="content type to assume (wins over the object's)")
    e.add_argument("--no-head", action="store_true", help="do not read the object (explain a future upload)")
    e.add_argument("--rules", metavar="FILE", help="explain with this rules file instead of the configured rules")
    e.set_defaults(func=cmd_explain)

    c = sub.add_parser("check-config", parents=[common], help="validate the settings and the rules")
    c.add_argument("--rules", metavar="FILE", help="check this rules file instead of the configured rules")
    c.add_argument("--rules-only", action="store_true", help="check only the rules, not the environment")
    c.add_argument("--online", action="store_true",
                   help="also read each bucket's versioning from COS and say what follows from it")
    c.set_defaults(func=cmd_check_config)
    return p


@contextmanager
def _library_logs(verbose: bool, err: TextIO) -> Iterator[None]:
    """The library logs JSON to stdout for SCF; here it is silent, or on stderr with --verbose."""
    from .log import logger

    handler = logger.registered_handler
    level, handler_level, stream = logger.log_level, handler.level, handler.stream
    if verbose:
        logger.setLevel(logging.INFO)
        handler.setStream(err)
    else:
        handler.setLevel(logging.CRITICAL + 10)
    try:
        yield
    finally:
        logger.setLevel(level)
        handler.setLevel(handler_level)
        handler.setStream(stream)


def main(argv: Optional[list[str]] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    io = IO(stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser()
    try:
        ns = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    where = f"{PROG} {ns.command}"
    try:
        with _library_logs(ns.verbose, io.err):
            return int(ns.func(ns, io))
    except OperatorError as exc:
        io.err.write(f"{where}: {exc}\n")
        return 2
    except ConfigError as exc:
        lines = [line.strip() for line in str(exc).splitlines()] or [str(exc)]
        first = " ".join(lines[:2])
        more = f" (and {len(lines) - 2} more; `{PROG} check-config` lists them all)" if len(lines) > 2 else ""
        io.err.write(f"{where}: configuration error: {first}{more}\n")
        return 2
    except (RetryableError, PermanentError) as exc:
        bucket = f" (bucket {io.bucket})" if io.bucket else ""
        io.err.write(f"{where}: error: {exc}{bucket}\n")
        return 1
    except KeyboardInterrupt:
        io.err.write(f"{where}: interrupted\n")
        return 130
    except BrokenPipeError:
        return 1
