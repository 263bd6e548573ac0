"""Apply a job's verdict once CI has confirmed it: shared by the callback and the reconcile timer."""

from __future__ import annotations

import time
from typing import Any, Optional

from . import userdata
from .actions import ActionRunner, Applied, Seen, expected_final_key, removes_content, settle_tags
from .ci import CiJobs
from .concurrency import together
from .errors import PermanentError
from .log import bind, logger
from .records import OTHER_CONTENT, RecordId, Records, doubtful, in_flight, job_window_start
from .results import INPUT_ABSENT, Verdict, verdict, verdict_from_result
from .rules import Rule, RuleSet
from .settings import Settings
from .storage import Storage, is_version
from .userdata import normalize_etag


def result_fields(v: Verdict, applied: Applied) -> dict[str, Any]:
    """What a result record keeps: enough to re-apply the verdict to the same bytes without a new job."""
    return {"job_id": v.job_id, "outcome": v.outcome, "applied": applied.status, "final_key": applied.final_key,
            "suspicious_type": v.suspicious_type, "reason": v.reason, "outcomes": list(v.applied_outcomes),
            "output_key": v.output_key, "labels": [lb.__dict__ for lb in v.labels]}


_UNREAD: Any = object()
DEFERRED = "_deferred"   # in a claim `Completer.recorded` returns: the result is left to reconcile


def not_about(info: Any, claim: dict[str, Any], v: Verdict) -> bool:
    """Whether `v` may be about other bytes than the object now holds: it was written again after the
    job was recorded, or ImageInspect measured a file of another size than the one submitted."""
    if doubtful(info.last_modified, claim, info.version_id):
        return True
    measured = v.details.get("PicSize") if isinstance(v.details, dict) else None
    submitted = int(claim.get("size") or 0)
    try:
        return bool(measured) and submitted > 0 and int(measured) != submitted
    except (TypeError, ValueError):
        return False


def removed_since_job(records: Records, rid: RecordId, claim: dict[str, Any]) -> bool:
    """Whether a verdict removed other bytes from the key since the claim's job was submitted (COS's clock)."""
    return records.other_content_removed(rid, job_window_start(claim))


def vouched(records: Records, rid: RecordId, claim: dict[str, Any]) -> bool:
    """Whether nothing recorded puts in doubt that the job of `claim` read the version it was submitted for:
    its submitter saw no other content at the key, and no verdict removed other bytes from it since."""
    return not claim.get(OTHER_CONTENT) and not removed_since_job(records, rid, claim)


class Completer:
    """Apply a job's verdict once it is confirmed by CI. Shared by the callback and reconcile."""

    # Seconds to wait, one after another, for a submitter to record the job whose result came first.
    RECORD_WAITS: tuple[float, ...] = (0.2, 0.4, 0.8, 1.6)

    def __init__(self, storage: Storage, ci: CiJobs, settings: Settings, rules: RuleSet):
        self.storage = storage
        self.ci = ci
        self.settings = settings
        self.rules = rules

    def complete(self, bucket: str, detail: dict[str, Any], claim: Any = _UNREAD,
                 seen: Optional[Seen] = None) -> dict[str, Any]:
        """`detail` is a JobsDetail as CI reports it (never a callback body). `claim` and `seen` are
        passed when the caller has read them already (the claim, and the object as `observe` reads it)."""
        job_id = str(detail.get("JobId", ""))
        inp = detail.get("Input") if isinstance(detail.get("Input"), dict) else {}
        op = detail.get("Operation") if isinstance(detail.get("Operation"), dict) else {}
        key = str(inp.get("Object", ""))
        ud = userdata.decode(op.get("UserData"))
        if ud is None:
            return {"job_id": job_id, "status": "not-ours"}
        rule = self.rules.by_name(ud.rule)
        if rule is None:
            logger.error("rule no longer exists; result not applied", extra={"rule": ud.rule})
            return {"job_id": job_id, "status": "unknown-rule"}
        bind(rule=rule.name, etag=ud.etag, key=key, job_id=job_id)
        v = verdict(detail, rule)
        if v is None:
            logger.info("job not finished yet; nothing to apply", extra={"state": detail.get("State")})
            return {"job_id": job_id, "status": "not-final", "state": detail.get("State")}
        rid = RecordId(key, ud.etag, rule.name)
        records = Records.of(self.storage, bucket, self.settings)
        runner = ActionRunner(self.storage, bucket, self.rules.quarantine_prefix)
        if seen is None:
            # The claim (to tell a superseded job) and the object's state are read in one round trip.
            seen = runner.observe(rule, key, v, *([lambda: records.read_claim(rid)] if claim is _UNREAD else []))
            if claim is _UNREAD:
                claim = seen.extra[0]
        claim = claim or {}
        current = int(claim.get("attempts") or 1)
        if ud.attempt < current or (ud.attempt == current and claim.get("job_id") not in (None, "", job_id)):
            # A job that a later submission replaced, or a second job for the same submission:
            # never act twice on one upload.
            logger.warning("callback for a superseded job; ignored",
                           extra={"current_job_id": claim.get("job_id"), "attempt": ud.attempt})
            return {"job_id": job_id, "status": "superseded"}
        if claim and ud.attempt == current and not claim.get("job_id"):
            claim = self.recorded(records, rid, claim, job_id)
            if claim.get(DEFERRED):
                return {"job_id": job_id, "key": key, "status": "deferred", "outcome": v.outcome}
        holds_them = seen.info is not None and seen.info.etag == ud.etag
        if holds_them:
            absent = v.outcome == "FAILED" and v.reason == INPUT_ABSENT
            if (absent or (seen.info.versioned and removed_since_job(records, rid, claim))) \
                    and not self.concluded(records, rid, job_id):
                # The job found nothing at the key, yet these bytes are there now (written again); or other bytes
                # were at the key while the job could run and a verdict removed them since, which made these
                # current again (CI may have read them). As for a rewrite, nothing is applied or kept, and a
                # marker of the attempt stays (written again: reconcile may have given the job up and dropped it
                # meanwhile), so that reconcile submits these bytes again.
                logger.warning("the job may not have read these bytes; they get a new job",
                               extra={"outcome": v.outcome, "reason": v.reason or "OtherContentRemoved"})
                together(lambda: records.mark_pending(rid, seen.info.version_id, int(claim.get("attempts") or 1)),
                         lambda: records.update_claim(rid, None, **{OTHER_CONTENT: True}))
                records.write_result(rid, None, job_id=job_id, outcome=v.outcome, applied="stale",
                                     reason=v.reason if absent else "OtherContentRemoved")
                return {"job_id": job_id, "key": key, "status": "stale", "outcome": v.outcome}
        if holds_them and not_about(seen.info, claim, v) and not self.concluded(records, rid, job_id):
            # The key holds these bytes again, but was rewritten while the job ran (A-B-A), or CI's result
            # is about a file of another size: CI may have read other bytes. Nothing is applied and no
            # verdict is kept for these bytes; the rewrite's own event gets them a new job. Should that
            # event not come (or its takeover die), the marker kept for a rewrite has reconcile submit it.
            logger.warning("the object was rewritten while its job ran; the verdict may be about other bytes",
                           extra={"outcome": v.outcome})
            kept = doubtful(seen.info.last_modified, claim, seen.info.version_id)
            records.write_result(rid, None if kept else ud.attempt, job_id=job_id, outcome=v.outcome,
                                 applied="stale", reason="RewrittenWhileInspected")
            return {"job_id": job_id, "key": key, "status": "stale", "outcome": v.outcome}
        job_version = str(claim.get("version_id") or "")
        # A repeated result of a job that concluded already (its verdict applied once, when the key held these
        # bytes), whose removal was cut short: the inspected version is hidden now, perhaps behind other bytes
        # written since. The verdict is known to be about these bytes, so the removal is finished.
        known = (not holds_them and is_version(job_version) and removes_content(rule, v)
                 and self.concluded(records, rid, job_id))
        return self.apply(records, rid, rule, v,
                          lambda alongside: runner.apply(rule, key, ud.etag, v, seen, alongside,
                                                         job_version=job_version, known=known,
                                                         vouched=lambda: vouched(records, rid, claim)),
                          ud.attempt)

    def recorded(self, records: Records, rid: RecordId, claim: dict[str, Any], job_id: str) -> dict[str, Any]:
        """The claim with this job recorded in it. A result can come before its submitter records the job, one
        round trip after POST /jobs: the claim is read again a few times. Should the job still be missing, its
        submitter died (or let go) before recording it, and before its check of the key: the job is adopted,
        and (unless the submitter's release said the key was checked) its verdict will not count."""
        age = 0.0
        for wait in self.RECORD_WAITS:
            time.sleep(wait)
            found = records.read_claim_record(rid)
            if found is None:
                return claim
            again, age = found
            if again.get("job_id") or int(again.get("attempts") or 1) != int(claim.get("attempts") or 1):
                return again
            claim = again
        if in_flight(claim, age):
            # Its submitter may still be at work (and would write the claim after an adopter): the result is
            # left to reconcile, which finds the marker once the job is recorded or the lease ran out.
            logger.warning("the job is not recorded yet and its submitter may be at work; left to reconcile",
                           extra={"job_id": job_id})
            return {**claim, DEFERRED: True}
        adopted = records.adopt(rid, claim, job_id)
        if adopted is not None:
            logger.warning("the job was never recorded by its submitter; adopted", extra={"job_id": job_id})
            return adopted
        again = records.read_claim(rid) or claim
        if again.get("job_id") == job_id:
            return again
        # Another adopter is at work (or died at it), or a takeover came first: nothing records this job yet, so
        # nothing could tell whether the key was written again since it ran. Left to reconcile, as above.
        logger.warning("the job is being adopted by another, or was replaced; left to reconcile",
                       extra={"job_id": job_id})
        return {**again, DEFERRED: True}

    @staticmethod
    def concluded(records: Records, rid: RecordId, job_id: str) -> bool:
        """Whether this job's verdict was applied already (a repeated callback, or reconcile before it): then a
        doubt raised by what happened since (a rewrite, a removal) is for the new bytes' own handling, and must
        not overwrite the verdict recorded when the job concluded. One GET, on the doubtful paths only."""
        done = records.read_result(rid)
        return bool(done) and done.get("job_id") == job_id and verdict_from_result(done) is not None

    def apply(self, records: Records, rid: RecordId, rule: Rule, v: Verdict, act: Any,
              marker: Optional[int]) -> dict[str, Any]:
        """Run the actions, recording the result together with their first write; then check our tag
        write and drop the pending marker of attempt `marker` (None: none to drop). The marker is what says
        "done": it goes only after every action finished, so a crash anywhere leaves work that reconcile
        finds and redoes."""
        expected = Applied("applied", expected_final_key(rule, v, rid.key, self.rules.quarantine_prefix))
        # With the first write, before any content goes: a removal may make an older version current, whose job
        # may have read these bytes (`vouched`, Records.other_content_removed).
        def first() -> Any:
            return together(lambda: records.put_result(rid, **result_fields(v, expected)),
                            (lambda: records.note_removal(rid)) if removes_content(rule, v) else None)

        try:
            applied = act(first)
        except PermanentError as exc:
            logger.error("could not apply the verdict", extra={"code": exc.code})
            records.write_result(rid, marker, job_id=v.job_id, outcome=v.outcome, applied="error", reason=exc.code)
            return {"job_id": v.job_id, "status": "error", "code": exc.code}
        fields = result_fields(v, applied)
        if fields != result_fields(v, expected):
            records.put_result(rid, **fields)   # the object was moved, gone or changed: say so
        if applied.status == "stale":
            # Other content is at the key, and CI reads the object when the job runs: should these bytes come
            # back (that content removed on a versioned bucket, or written again), this job's verdict must not
            # count for them. Said in the claim before the marker goes.
            records.update_claim(rid, None, **{OTHER_CONTENT: True})
        elif removes_content(rule, v) and not applied.nothing_revealed:
            # Before the marker goes: should this fail, the work is redone, and this with it. (Content removed
            # here without a version id made no older version current: nothing to look for.)
            self.inspect_current(records, rid)
        # A stale verdict writes no tags, but this job's PENDING write may have landed on the content now at the
        # key, whose own event may never come: its tags are rewritten from its own records.
        together((lambda: settle_tags(self.storage, records, rid.key, rule, rid.etag))
                 if applied.tagged_in_place or applied.status == "stale" else None,
                 (lambda: records.drop_pending(rid, marker)) if marker is not None else None)
        logger.info("verdict applied", extra={"outcome": v.outcome, "applied": applied.status,
                                              "final_key": applied.final_key, "steps": applied.steps})
        return {"job_id": v.job_id, "key": rid.key, "rule": rule.name, "outcome": v.outcome, "status": applied.status,
                "final_key": applied.final_key, "suspicious_type": v.suspicious_type, "reason": v.reason}

    def inspect_current(self, records: Records, rid: RecordId) -> None:
        """On a versioned bucket, removing the inspected version makes the version before it current again,
        and no event announces it. The verdict known for its ETag is applied at once; otherwise it gets a
        pending marker, and reconcile submits it as an upload whose submitter died after marking it."""
        info = self.storage.head(records.bucket, rid.key)
        if info is None or not info.versioned or normalize_etag(info.etag) == rid.etag:
            return
        for rule in self.rules.matching(info.key, info.content_type):
            current = RecordId(info.key, normalize_etag(info.etag), rule.name)
            known = verdict_from_result(records.read_result(current))
            bind(key=current.key, etag=current.etag, rule=rule.name)
            if known is not None:
                logger.info("content became current again; its known verdict is applied",
                            extra={"outcome": known.outcome, "version_id": info.version_id})
                self.reapply(records, current, rule, known)
            else:
                logger.warning("content became current again; marked for inspection",
                               extra={"version_id": info.version_id})
                # The marker of attempt 1: should these bytes have a claim of a later attempt, reconcile acts on
                # it all the same, as that attempt did not conclude with a verdict (`superseded_marker_needed`).
                records.mark_pending(current, info.version_id)
        bind(key=rid.key, etag=rid.etag, rule=rid.rule)

    def reapply(self, records: Records, rid: RecordId, rule: Rule, known: Verdict) -> None:
        """Apply the verdict known for these bytes to the object holding them now, without a new job (and
        without a marker to drop: none was written for this)."""
        runner = ActionRunner(self.storage, records.bucket, self.rules.quarantine_prefix)
        self.apply(records, rid, rule, known, lambda alongside: runner.apply(
            rule, rid.key, rid.etag, known, alongside=alongside), None)
