"""`make dev` speaks to a person: one line per thing that happens to a file.

    12:01:03  uploads/cat.png      → ImageInspect job c1f0a2b3…  (rule images)
    12:01:04  uploads/cat.png      ← CLEAN                       tags ci-status=CLEAN
    12:01:09  uploads/invoice.jpg  ← SUSPICIOUS (ZIP)            → quarantine/uploads/invoice.jpg

Lines come from the functions' own results, as the runner records each invocation: submit says what
it submitted or why it skipped, the callback what verdict it applied and where the object ended, and
reconcile speaks only when it did something. ciflow's own writes (records, quarantine copies) fire
events on the local stack too; those skips are not news and stay quiet. The functions' JSON logs go
to a file instead (or, with `--json`, to the terminal).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, Optional, TextIO

KEY_WIDTH = 34
QUIET_SKIPS = ("in the state prefix", "in the quarantine prefix", "written by the jobs of rule")
OUTCOME_WORDS = {"reapplied": "same bytes again: known verdict applied"}


def _clock(started: Optional[float] = None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(started or time.time()))


def _short(job_id: str) -> str:
    return f"{job_id[:9]}…" if len(job_id) > 10 else job_id


class Narrator:
    """Turns invocation records into human lines on `out`."""

    def __init__(self, out: TextIO = sys.stdout, rules: Any = None):
        self.out = out
        self.rules = rules
        self._lock = threading.Lock()

    def line(self, when: float, key: str, text: str) -> None:
        with self._lock:
            print(f"{_clock(when)}  {key:<{KEY_WIDTH}} {text}", file=self.out, flush=True)

    def __call__(self, entry: dict[str, Any]) -> None:
        name, when = entry.get("function"), entry.get("started")
        if not entry.get("ok"):
            self.line(when, f"({name})", f"failed, will be retried: {str(entry.get('error', ''))[:120]}")
            return
        result = entry.get("result")
        if name == "submit":
            self._submit(when, result or {})
        elif name == "callback":
            self._callback(when, result or {})
        elif name == "reconcile":
            self._reconcile(when, result or {})

    def _job_name(self, rule: str) -> str:
        if self.rules is not None:
            found = self.rules.by_name(rule)
            if found is not None:
                return found.job
        return "CI"

    def _submit(self, when: float, result: dict[str, Any]) -> None:
        for problem in result.get("problems") or []:
            self.line(when, "(event)", f"dropped: {problem}")
        for r in result.get("results") or []:
            key, status, reason = r.get("key", "?"), r.get("status"), r.get("reason", "")
            if status == "submitted":
                for job in r.get("jobs") or []:
                    what = f"→ {self._job_name(job['rule'])} job {_short(job['job_id'])}"
                    self.line(when, key, f"{what:<30}(rule {job['rule']})")
            elif status == "skipped" and not any(reason.startswith(q) for q in QUIET_SKIPS):
                self.line(when, key, f"skipped: {reason}")
            elif status == "failed":
                self.line(when, key, f"FAILED to submit: {reason}")
            elif status == "retry":
                self.line(when, key, f"submit will be retried: {reason}")

    def _callback(self, when: float, result: dict[str, Any]) -> None:
        via = ""
        if "statusCode" in result:     # the Function URL's answer
            try:
                body = json.loads(result.get("body") or "{}")
            except ValueError:
                body = {}
            if result.get("statusCode") != 200:
                self.line(when, "(callback)", f"refused {result.get('statusCode')}: {body.get('error', '')}")
                return
            items = body.get("results") or []
        else:                          # the CMQ topic trigger's
            items, via = result.get("results") or [], "  (via TDMQ)"
        for r in items:
            self._verdict(when, r, via)

    def _verdict(self, when: float, r: dict[str, Any], via: str = "") -> None:
        status = r.get("status")
        if status == "dropped":
            self.line(when, "(queue message)", f"dropped: {r.get('reason', '')}{via}")
            return
        if status in ("superseded", "not-final", "not-ours") or not r.get("key"):
            return
        outcome = r.get("outcome", "?")
        detail = r.get("suspicious_type") or r.get("reason") or ""
        verdict = f"← {outcome}" + (f" ({detail})" if detail else "")
        final = r.get("final_key")
        if status == "stale":
            after = "not applied: the object changed since it was inspected"
        elif status == "object-missing":
            after = "recorded: the object is gone"
        elif final and final != r.get("key"):
            after = f"→ {final}"
        elif final is None and status in ("applied", "already-applied"):
            after = "deleted"
        else:
            after = f"tags ci-status={outcome}"
        self.line(when, r["key"], f"{verdict:<30}{after}{via}")

    def _reconcile(self, when: float, result: dict[str, Any]) -> None:
        words = {"applied": "reconcile applied the verdict (its callback never came)",
                 "resubmitted": "reconcile resubmitted the job (lost, or its submitter died)",
                 "failed": "reconcile gave up: FAILED", "gone": "reconcile: the object is gone or changed"}
        for d in result.get("details") or []:
            text = words.get(d.get("outcome", ""))
            if text:
                self.line(when, d.get("key", "?"), text)


def log_to_file(path: str) -> TextIO:
    """Send the functions' JSON logs (ciflow's logger, which writes to stdout) to `path` instead."""
    import logging

    fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the stack's lifetime
    from ciflow.log import logger

    handler = logger.registered_handler
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(fh)
    return fh
