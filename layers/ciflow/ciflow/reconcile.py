"""Reconcile: the timer that makes sure no upload stays PENDING forever.

Ages come from COS's own clock (the listing's Last-Modified against its Date header), never from the
function's. For every pending marker older than `reconcile_after_seconds`, oldest first, it reads the
claim next to it and asks CI about all their jobs in a few batched queries:
- finished → the verdict is applied exactly as a callback would apply it (the callback was lost);
- unknown to CI (lost) → resubmitted; after `max_submit_attempts` lost jobs, FAILED with reason
  `JobLost` (a throttled or crashed submission is taken over without counting against that limit);
- never recorded (the submitter died) → taken over once its lease has run out;
- still queued or running after `reconcile_give_up_seconds` → FAILED with reason `Timeout`;
- the object is gone or was overwritten → recorded, nothing else to do.
A marker of another attempt than the claim's current one (a replaced attempt's, or one named before markers
had attempts) is dropped when the current attempt's marker exists or that attempt concluded with a verdict;
otherwise the current attempt's marker takes its place and the claim is acted on as above.
"""

from __future__ import annotations

from typing import Any, Optional

from .actions import ActionRunner, settle_tags
from .applying import Completer
from .ci import CiJobs
from .concurrency import Failed, settled, together
from .errors import PermanentError, RetryableError
from .log import bind, context_value, logger
from .ports import Ports
from .records import (
    STALE_CLAIM_SECONDS,
    RecordId,
    Records,
    claim_lease,
    doubtful,
    in_flight,
    marker_attempt,
    superseded_marker_needed,
)
from .results import Verdict, is_final
from .rules import RuleSet
from .settings import Settings
from .storage import Storage


def read_attempt(claim: dict[str, Any]) -> dict[str, Any]:
    """The attempt and job of a claim as read ({} when there was none: attempt 0)."""
    return {"attempt": int(claim.get("attempts") or 1) if claim else 0, "job_id": str(claim.get("job_id") or "")}


class Summary:
    """Counts of one reconcile run by what happened to each pending record (a plain class: the
    timer's cold start pays for every dataclass it imports)."""

    def __init__(self) -> None:
        self.checked = self.young = self.applied = self.resubmitted = 0
        self.failed = self.gone = self.waiting = self.errors = 0
        self.deferred = 0  # old enough, but past this run's cap: the next run takes them, oldest first
        self.superseded = 0  # markers of a replaced attempt, dropped (the current attempt has its own, or is done)
        self.details: list[dict[str, Any]] = []


PARALLEL_CHECKS = 8


class Reconciler(Ports):
    def __init__(self, storage: Optional[Storage] = None, ci: Optional[CiJobs] = None,
                 settings: Optional[Settings] = None, rules: Optional[RuleSet] = None):
        super().__init__(storage, ci, settings, rules)
        self.completer = Completer(self.storage, self.ci, self.settings, self.rules)
        self._submitter: Any = None
        self.lease = STALE_CLAIM_SECONDS  # how long the claims it takes over keep others away

    @property
    def submitter(self) -> Any:
        """Built on first use: most runs resubmit nothing, and the timer's cold start stays lean."""
        if self._submitter is None:
            from .submission import Submitter

            self._submitter = Submitter(self.storage, self.ci, self.settings, self.rules)
            self._submitter.lease = self.lease
        return self._submitter

    def run(self, buckets: Optional[list[str]] = None, limit: int = 500) -> Summary:
        """One pass: list the pending markers (ages come from the listing, by COS's clock), then
        check at most `limit` of those older than `reconcile_after_seconds`, oldest first."""
        summary = Summary()
        for bucket in buckets or list(self.settings.buckets):
            records = Records.of(self.storage, bucket, self.settings)
            listed: set[str] = set()
            markers, young, deferred = records.pending_markers(self.settings.reconcile_after_seconds, limit, listed)
            summary.young += young
            summary.deferred += deferred
            claims = together(*[(lambda m=m, r=records: self._claim_for(r, m)) for m in markers])
            job_ids = [str(c[0].get("job_id")) for c in claims if c is not None and c[0].get("job_id")]
            details = self.ci.get_many(bucket, job_ids) if job_ids else {}
            # Jobs are checked (and their verdicts applied) a few at a time: each takes several round trips.
            for start in range(0, len(markers), PARALLEL_CHECKS):
                chunk = list(zip(markers, claims))[start:start + PARALLEL_CHECKS]
                outcomes = settled(*[(lambda m=m, f=f, r=records, b=bucket, d=details, ls=listed:
                                      self.check(b, r, m, f, d, ls)) for m, f in chunk])
                for out in outcomes:
                    summary.checked += 1
                    if isinstance(out, Failed):
                        if not isinstance(out.error, (RetryableError, PermanentError)):
                            raise out.error
                        logger.warning("reconcile could not finish a record; next run retries",
                                       extra={"error": str(out.error)})
                        rid, outcome = None, "errors"
                    else:
                        rid, outcome = out
                    setattr(summary, outcome, getattr(summary, outcome) + 1)
                    if outcome not in ("young", "waiting") and rid is not None:
                        summary.details.append({"bucket": bucket, "key": rid.key, "rule": rid.rule,
                                                "outcome": outcome})
        if summary.checked or summary.errors:
            logger.info("reconcile finished", extra={k: v for k, v in summary.__dict__.items() if k != "details"})
        return summary

    @staticmethod
    def _claim_for(records: Records, marker: str) -> Optional[tuple[dict[str, Any], float]]:
        return records.read_claim_at(records.claim_key(marker))

    def check(self, bucket: str, records: Records, marker: str, found: Optional[tuple[dict[str, Any], float]],
              details: dict[str, dict[str, Any]], listed: Any = frozenset()) -> tuple[Optional[RecordId], str]:
        if found is None:
            # A marker whose claim was never written (the submitter died between the two).
            rid = records.read_pending(marker)
            if rid is None:
                return None, "gone"
            claim: dict[str, Any] = {}
            age = STALE_CLAIM_SECONDS
        else:
            claim, age = found
            rid = RecordId(str(claim.get("key", "")), str(claim.get("etag", "")), str(claim.get("rule", "")))
        bind(bucket=bucket, key=rid.key, etag=rid.etag, rule=rid.rule)
        current = int(claim.get("attempts") or 1) if claim else 1
        if marker_attempt(marker) != current and not self._take_marker(records, rid, marker, claim, current, listed):
            return rid, "superseded"
        rule = self.rules.by_name(rid.rule)
        if rule is None:
            records.write_result(rid, current, applied="unknown-rule", **read_attempt(claim))
            return rid, "gone"
        job_id = str(claim.get("job_id") or "")
        if not job_id:
            if in_flight(claim, age):
                # A submitter may still be at work: never race it, nor adopt the job it may yet record (it
                # would write the claim after the adopter). A released claim, or one whose lease ran out, is
                # taken over (which adopts a job CI has: Submitter.submit; a takeover is exclusive).
                return rid, "waiting"
            return rid, self._resubmit(bucket, records, rid, rule, lost=False, claim=claim)
        detail = details.get(job_id)
        if detail is None:
            if int(claim.get("lost") or 0) + 1 >= self.settings.max_submit_attempts:
                return rid, self._fail(bucket, records, rid, rule, job_id, "JobLost", current)
            logger.warning("CI lost the job; resubmitting", extra={"job_id": job_id, "lost": claim.get("lost", 0)})
            return rid, self._resubmit(bucket, records, rid, rule, lost=True, claim=claim)
        if is_final(detail):
            result = self.completer.complete(bucket, detail, claim=claim)
            if result.get("status") in ("superseded", "not-ours"):
                # The claim moved on to a newer attempt, which shares this marker: leave it to that one.
                return rid, "gone"
            if result.get("status") == "stale":
                return rid, self._resubmit_set_aside(bucket, records, rid, rule, claim)
            return rid, "applied"
        if age > self.settings.reconcile_give_up_seconds:
            return rid, self._fail(bucket, records, rid, rule, job_id, "Timeout", current)
        return rid, "waiting"

    @staticmethod
    def _take_marker(records: Records, rid: RecordId, marker: str, claim: dict[str, Any], current: int,
                     listed: Any) -> bool:
        """A marker of another attempt than the claim's current one: a replaced attempt's (whose completion
        did not drop it), one a submit wrote before finding the claim, one named before markers had attempts,
        or a newer attempt's whose taker-over died before recording it. It is dropped when the current
        attempt has its own marker, or (an older one) when that attempt concluded with a verdict. Otherwise
        it still stands for work: the current attempt's marker takes its place (written first, so a crash
        leaves one), and the claim is acted on. True when it is acted on."""
        older = marker_attempt(marker) is None or int(marker_attempt(marker) or 0) < current
        if rid.marker(records.prefix, current) in listed or (
                older and claim and not superseded_marker_needed(claim, records.read_result(rid))):
            records.drop_marker(marker)
            return False
        logger.info("a marker of another attempt stands for the current one",
                    extra={"marker": marker.rsplit("/", 1)[-1], "attempt": current})
        records.mark_pending(rid, str(claim.get("version_id") or ""), current)
        records.drop_marker(marker)
        return True

    def _resubmit(self, bucket: str, records: Records, rid: RecordId, rule: Any, lost: bool,
                  claim: dict[str, Any]) -> str:
        info = self.storage.head(bucket, rid.key)
        if info is None or info.etag != rid.etag:
            # The object is gone or holds other content (which has its own claim and marker).
            # (About the attempt read: should a newer one have started meanwhile, the result does not conclude it.)
            records.write_result(rid, read_attempt(claim)["attempt"] or 1,
                                 applied="object-missing" if info is None else "stale", **read_attempt(claim))
            if info is not None:
                # This job's PENDING write may have landed on that content, whose own event may never come.
                settle_tags(self.storage, records, rid.key, rule, rid.etag)
            return "gone"
        # The takeover replaces the attempt read here only: by the time it runs, another taker-over (an
        # overlapping run, the platform's retry) may have started a newer one, whose job must not get a twin.
        read = read_attempt(claim)
        job = self.submitter.submit(bucket, info, rule, takeover=True, lost=lost,
                                    based_on=(read["attempt"], read["job_id"]))
        return "resubmitted" if job else "waiting"

    def _resubmit_set_aside(self, bucket: str, records: Records, rid: RecordId, rule: Any,
                            claim: dict[str, Any]) -> str:
        """The job's verdict was set aside because the key was written again after the job was recorded
        (A-B-A). While the key still holds these bytes, they need a job of their own: the rewrite's event
        normally starts it, and this takes over should that event never have come (or its takeover died)."""
        info = self.storage.head(bucket, rid.key)
        if info is None or info.etag != rid.etag or not doubtful(info.last_modified, claim, info.version_id):
            return "applied"
        logger.warning("a verdict set aside for a rewrite; the current bytes get a new job")
        read = read_attempt(claim)
        job = self.submitter.submit(bucket, info, rule, takeover=True, based_on=(read["attempt"], read["job_id"]))
        return "resubmitted" if job else "waiting"

    def _fail(self, bucket: str, records: Records, rid: RecordId, rule: Any, job_id: str, reason: str,
              attempt: int) -> str:
        logger.error("giving up on a job", extra={"job_id": job_id, "reason": reason})
        v = Verdict("FAILED", job_id, reason=reason)
        runner = ActionRunner(self.storage, bucket, self.rules.quarantine_prefix)
        self.completer.apply(records, rid, rule, v,
                             lambda alongside: runner.apply(rule, rid.key, rid.etag, v, alongside=alongside), attempt)
        return "failed"


def handle_timer(event: Any, context: Any = None) -> dict[str, Any]:
    """Entry point for the reconcile function (timer trigger; the event's content is not needed)."""
    reconciler = Reconciler()
    reconciler.lease = claim_lease(context_value(context, "time_limit_in_ms"))
    summary = reconciler.run()
    out = {k: v for k, v in summary.__dict__.items() if k != "details"}
    out["details"] = summary.details[:50]
    return out
