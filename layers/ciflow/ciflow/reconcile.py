"""Reconcile: the timer that makes sure no upload stays PENDING forever.

For every pending record older than `reconcile_after_seconds` it asks CI about the job:
- finished → the verdict is applied exactly as a callback would apply it (the callback was lost);
- unknown to CI (lost) or never recorded (the submitter died) → resubmitted, at most
  `max_submit_attempts` times in all, then FAILED with reason `JobLost`;
- still queued or running after `reconcile_give_up_seconds` → FAILED with reason `Timeout`;
- the object is gone or was overwritten → recorded, nothing else to do.
"""

from __future__ import annotations

import time
from typing import Any, Optional

from .actions import ActionRunner
from .applying import Completer
from .ci import CiJobs
from .errors import PermanentError, RetryableError
from .log import bind, logger
from .ports import Ports
from .records import STALE_CLAIM_SECONDS, RecordId, Records
from .results import Verdict, is_final
from .rules import RuleSet
from .settings import Settings
from .storage import Storage


class Summary:
    """Counts of one reconcile run by what happened to each pending record (a plain class: the
    timer's cold start pays for every dataclass it imports)."""

    def __init__(self) -> None:
        self.checked = self.young = self.applied = self.resubmitted = 0
        self.failed = self.gone = self.waiting = self.errors = 0
        self.details: list[dict[str, Any]] = []


class Reconciler(Ports):
    def __init__(self, storage: Optional[Storage] = None, ci: Optional[CiJobs] = None,
                 settings: Optional[Settings] = None, rules: Optional[RuleSet] = None,
                 now: Optional[float] = None):
        super().__init__(storage, ci, settings, rules)
        self.now = now
        self.completer = Completer(self.storage, self.ci, self.settings, self.rules)
        self._submitter: Any = None

    @property
    def submitter(self) -> Any:
        """Built on first use: most runs resubmit nothing, and the timer's cold start stays lean."""
        if self._submitter is None:
            from .submission import Submitter

            self._submitter = Submitter(self.storage, self.ci, self.settings, self.rules)
        return self._submitter

    def run(self, buckets: Optional[list[str]] = None, limit: int = 500) -> Summary:
        summary = Summary()
        for bucket in buckets or list(self.settings.buckets):
            records = Records(self.storage, bucket, self.settings.state_prefix)
            for rid in records.pending(limit):
                summary.checked += 1
                bind(bucket=bucket, key=rid.key, etag=rid.etag, rule=rid.rule)
                try:
                    outcome = self.check(bucket, records, rid)
                except (RetryableError, PermanentError) as exc:
                    logger.warning("reconcile could not finish a record; next run retries", extra={"error": str(exc)})
                    outcome = "error"
                setattr(summary, outcome, getattr(summary, outcome) + 1)
                if outcome != "young":
                    summary.details.append({"bucket": bucket, "key": rid.key, "rule": rid.rule, "outcome": outcome})
        logger.info("reconcile finished", extra={k: v for k, v in summary.__dict__.items() if k != "details"})
        return summary

    def check(self, bucket: str, records: Records, rid: RecordId) -> str:
        if records.read_result(rid) is not None:
            records.drop_pending(rid)  # finished, but the marker outlived a crash
            return "applied"
        claim = records.read_claim(rid)
        now = self.now if self.now is not None else time.time()
        since = float((claim or {}).get("submitted_at") or (claim or {}).get("claimed_at") or 0)
        if claim is not None and now - since < self.settings.reconcile_after_seconds:
            return "young"
        info = self.storage.head(bucket, rid.key)
        if info is None:
            records.write_result(rid, job_id=(claim or {}).get("job_id", ""), applied="object-missing")
            return "gone"
        if info.etag != rid.etag:
            records.write_result(rid, job_id=(claim or {}).get("job_id", ""), applied="stale")
            return "gone"
        rule = self.rules.by_name(rid.rule)
        if rule is None:
            records.write_result(rid, applied="unknown-rule")
            return "gone"
        attempts = int((claim or {}).get("attempts") or 0)
        job_id = str((claim or {}).get("job_id") or "")
        if claim is not None and not job_id and now - float(claim.get("updated_at") or 0) < STALE_CLAIM_SECONDS:
            # A submitter (or the platform's retry of one) may still be at work: never race it.
            return "waiting"
        detail = self.ci.get(bucket, job_id) if job_id else None
        if detail is None:
            if attempts >= self.settings.max_submit_attempts:
                return self._fail(bucket, records, rid, rule, job_id, "JobLost")
            logger.warning("job lost or never recorded; resubmitting", extra={"job_id": job_id, "attempts": attempts})
            self.submitter.submit(bucket, info, rule, takeover=True)
            return "resubmitted"
        if is_final(detail):
            result = self.completer.complete(bucket, detail)
            return "applied" if result.get("status") not in ("superseded", "not-ours") else "gone"
        if now - since > self.settings.reconcile_give_up_seconds:
            return self._fail(bucket, records, rid, rule, job_id, "Timeout")
        return "waiting"

    def _fail(self, bucket: str, records: Records, rid: RecordId, rule: Any, job_id: str, reason: str) -> str:
        logger.error("giving up on a job", extra={"job_id": job_id, "reason": reason})
        v = Verdict("FAILED", job_id, reason=reason)
        applied = ActionRunner(self.storage, bucket, self.rules.quarantine_prefix).apply(rule, rid.key, rid.etag, v)
        records.write_result(rid, job_id=job_id, outcome="FAILED", reason=reason, applied=applied.status,
                             final_key=applied.final_key)
        return "failed"


def handle_timer(event: Any) -> dict[str, Any]:
    """Entry point for the reconcile function (timer trigger; the event's content is not needed)."""
    summary = Reconciler().run()
    out = {k: v for k, v in summary.__dict__.items() if k != "details"}
    out["details"] = summary.details[:50]
    return out
