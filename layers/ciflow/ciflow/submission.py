"""Submit path: COS event → rule match → one CI job per (object ETag, rule) → PENDING tag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from . import tagging, tokens
from .actions import ActionRunner, managed_tags, pending_tags, settle_pending, settle_tags
from .applying import Completer
from .concurrency import Failed, settled, started, together
from .errors import BadEventError, ConfigError, PermanentError, RetryableError
from .events import CosRecord, parse_event
from .jobs import build_job, callback_url
from .log import bind, context_value, logger
from .ports import Ports
from .records import (
    OTHER_CONTENT,
    STALE_CLAIM_SECONDS,
    RecordId,
    Records,
    claim_lease,
    concludes,
    in_flight,
    replaced_jobs,
    rewritten_since,
)
from .results import Verdict, verdict_from_result
from .rules import Rule, RuleSet
from .settings import Settings
from .storage import ObjectInfo
from .userdata import UserData, normalize_etag


@dataclass
class RecordResult:
    key: str
    status: str                    # submitted | duplicate | skipped | failed
    reason: str = ""
    jobs: list[dict[str, str]] = field(default_factory=list)


def skip_reason(key: str, rules: RuleSet, settings: Settings) -> Optional[str]:
    """Why a key is ignored before any I/O, or None when it may be processed."""
    if key.endswith("/"):
        return "folder placeholder"
    if key.startswith(rules.quarantine_prefix):
        return "in the quarantine prefix"
    if key.startswith(settings.state_prefix):
        return "in the state prefix"
    if not any(key.startswith(p) for p in rules.watched_prefixes):
        return "outside the watched prefixes"
    producer = rules.written_by(key)
    if producer is not None:
        return f"written by the jobs of rule {producer.name!r}"
    return None


def checked(other: Optional[bool]) -> dict[str, Any]:
    """What a release says of the check of the key after POST /jobs: whether it found other bytes there (the
    job may read them), or nothing when the check did not finish (`Records.adopt` then sets the verdict aside)."""
    return {} if other is None else {"checked": True, OTHER_CONTENT: other}


class Submitter(Ports):
    """Processes COS events. Ports are injectable; defaults are the cached real clients."""

    lease: float = STALE_CLAIM_SECONDS  # seconds a claim this submitter makes keeps others away

    def handle(self, event: Any) -> dict[str, Any]:
        """Process every record; raise RetryableError at the end if any record needs a retry."""
        try:
            records, problems = parse_event(event)
        except BadEventError as exc:
            # A malformed event will never parse; retrying it would only loop.
            logger.error("dropping malformed event", extra={"problem": str(exc)})
            return {"records": 0, "results": [], "problems": [str(exc)]}
        for p in problems:
            logger.error("dropping malformed record", extra={"problem": p})
        results: list[RecordResult] = []
        retry: list[str] = []
        for rec in records:
            try:
                results.append(self.process(rec))
            except RetryableError as exc:
                logger.warning("record will be retried", extra={"key": rec.key, "error": str(exc)})
                retry.append(f"{rec.key}: {exc}")
                results.append(RecordResult(rec.key, "retry", str(exc)))
        summary = {"records": len(records), "results": [r.__dict__ for r in results], "problems": problems}
        if retry:
            raise RetryableError(f"{len(retry)} record(s) failed transiently: " + "; ".join(retry))
        return summary

    def process(self, rec: CosRecord) -> RecordResult:
        bind(bucket=rec.bucket, key=rec.key)
        if not rec.is_create:
            return self._skip(rec.key, f"event {rec.event_name or '?'} is not an object create")
        if self.settings.buckets and rec.bucket not in self.settings.buckets:
            return self._skip(rec.key, "bucket is not in CIFLOW_BUCKETS")
        reasons = [skip_reason(k, self.rules, self.settings) for k in rec.key_candidates]
        if all(reasons):
            return self._skip(rec.key, reasons[0] or "")
        keys = [k for k, r in zip(rec.key_candidates, reasons) if not r]
        if rec.etag and len(rec.key_candidates) == 1:
            # The event names the content (logged COS events carry meta.ETag): no HEAD needed. A later
            # overwrite is caught by the tag check after submitting, and by the ETag check before acting.
            info: Optional[ObjectInfo] = ObjectInfo(keys[0], rec.etag, rec.size or 0, rec.content_type or "",
                                                    {}, rec.version_id, rec.event_time)
        else:
            info = self.storage.resolve(rec.bucket, keys)
        if info is None:
            logger.warning("object not found; nothing to inspect", extra={"candidates": list(rec.key_candidates)})
            return RecordResult(rec.key, "skipped", "object not found")
        return self.submit_object(rec.bucket, info, rec.content_type)

    def submit_object(self, bucket: str, info: ObjectInfo, content_type: Optional[str] = None,
                      force: bool = False) -> RecordResult:
        """Submit every matching rule's job for one existing object (the path events, backfill
        and rescan share). `force` submits again even when a job or result exists."""
        bind(key=info.key, etag=info.etag)
        matching = self.rules.matching(info.key, info.content_type or content_type)
        if not matching:
            return self._skip(info.key, "no rule matches")
        result = RecordResult(info.key, "duplicate")
        for rule in matching:
            try:
                job = self.submit(bucket, info, rule, force=force)
            except PermanentError as exc:
                logger.error("submission failed permanently", extra={"rule": rule.name, "code": exc.code})
                self._mark(bucket, info, [(tagging.STATUS, "FAILED"), (tagging.RULE, rule.name),
                                          (tagging.REASON, exc.code)])
                result.status, result.reason = "failed", exc.code
                continue
            if job is not None:
                result.status = "submitted"
                result.jobs.append({"rule": rule.name, "job_id": job})
        return result

    def submit(self, bucket: str, info: ObjectInfo, rule: Rule, force: bool = False,
               takeover: bool = False, lost: bool = False,
               based_on: Optional[tuple[int, str]] = None) -> Optional[str]:
        """Submit one job unless (key, ETag, rule) is already claimed. Returns the job id, or None.

        Round trips: {claim ∥ pending marker ∥ GET tags} → {POST /jobs ∥ PENDING tags} →
        {claim update ∥ tag check}. A claim that exists means a repeated event or the same bytes
        uploaded again: a known verdict is re-applied at once, a job in flight is left alone.
        `force` (rescan) submits a new job even when one exists, and supersedes its result.
        `takeover` (reconcile) replaces a claim whose job was lost (`lost`) or never recorded; an
        accepted job is still adopted rather than duplicated. `based_on` is the (attempt, job id) of the
        claim that decision was read from ((0, "") for no claim): a claim that has moved on since (another
        taker-over started a newer attempt, or a job was recorded) is left alone.
        """
        etag = normalize_etag(info.etag)
        rid = RecordId(info.key, etag, rule.name)
        records = Records.of(self.storage, bucket, self.settings)
        fresh = records.new_claim(rid, info.version_id, info.size, self.lease)
        created, marked, tags = settled(lambda: records.create_claim(rid, fresh),
                                        lambda: records.mark_pending(rid, info.version_id),
                                        lambda: self.storage.get_tags(bucket, info.key))
        for outcome in (created, marked, tags):
            if isinstance(outcome, Failed):
                if created is True:
                    # Ours, but the marker (or the tag read) failed: let the platform's retry (or
                    # reconcile) take over at once. Should the release fail too, the claim's lease runs
                    # out first.
                    self._release(records, rid, fresh)
                raise outcome.error
        if created:
            claim = fresh
        else:
            claim_record, result = together(lambda: records.read_claim_record(rid),
                                            lambda: records.read_result(rid))
            claim, age = claim_record if claim_record is not None else (records.new_claim(rid), 0.0)
            attempt = int(claim.get("attempts") or 1)
            holds = (attempt, str(claim.get("job_id") or ""))
            if based_on is not None and claim_record is not None and based_on != holds:
                # Decided on an older read: the attempt it meant to replace is over, and the one now in the
                # claim has a live job or submitter of its own.
                logger.info("the claim moved on since it was read; left to its current attempt",
                            extra={"rule": rule.name, "attempt": attempt, "read_attempt": based_on[0]})
                return None
            stored = result
            if result is not None and claim_record is not None and not concludes(result, claim):
                # The completion of an attempt a takeover replaced, landed late: it says nothing about this one.
                logger.warning("a result of a replaced attempt is ignored",
                               extra={"rule": rule.name, "attempt": attempt, "job_id": result.get("job_id", "")})
                result = None
            if not force:
                known = verdict_from_result(result)
                if known is not None:
                    self._reapply(records, rid, rule, info, known)
                    return None
                again = rewritten_since(info.last_modified, claim)
                if again:
                    # Written again after its job started: CI may read other bytes in between (A-B-A), so
                    # the job in flight cannot vouch for these; a new attempt supersedes it.
                    logger.warning("the same bytes were written again while their job ran; a new job checks them",
                                   extra={"rule": rule.name, "job_id": claim.get("job_id", "")})
                elif result is None and in_flight(claim, age) and not takeover:
                    logger.info("duplicate event; job already claimed",
                                extra={"rule": rule.name, "job_id": claim.get("job_id", "")})
                    # The retry of a submission whose tag check failed or was cut short checks again: its
                    # PENDING write may have landed on newer content, which would keep it for good.
                    if settle_pending(self.storage, records, info.key, rule, etag) and claim.get("job_id") \
                            and not claim.get(OTHER_CONTENT):
                        # Other bytes at the key while the job may not have run yet: CI may read them. (Only once
                        # the job is recorded: its submitter writes the claim no more, but for this same flag.)
                        records.update_claim(rid, None, **{OTHER_CONTENT: True})
                    return None
                if not claim.get("job_id") and not again:
                    # The submitter died between claiming and recording, or let go: CI may have the job
                    # already, even when a result without verdict was recorded meanwhile (reconcile found the
                    # claim without a job, and the object changed or gone).
                    found = self.ci.find(bucket, rule.job, info.key,
                                         UserData(rule.name, etag, attempt=attempt).encode())
                    if found is not None:
                        if stored is not None:
                            records.clear_result(rid)   # the job it adopts is the work for these bytes
                        # The interrupted submitter's PENDING write may have landed on newer content, and its
                        # check never ran: checked here, which also says whether the job may read other bytes.
                        other = settle_pending(self.storage, records, info.key, rule, etag)
                        if records.adopt(rid, claim, str(found["JobId"]), self.lease,
                                         **({OTHER_CONTENT: True} if other else {})) is None:
                            logger.info("the job was adopted, or the claim moved on, meanwhile",
                                        extra={"rule": rule.name, "job_id": found["JobId"]})
                            return None
                        logger.warning("adopted the job of an interrupted submission",
                                       extra={"job_id": found["JobId"]})
                        return str(found["JobId"])
                logger.warning("taking over a stale, lost or finished submission", extra={"rule": rule.name})
            if not records.take_over(rid, attempt + 1, self.lease):
                logger.info("another taker-over won this attempt", extra={"rule": rule.name, "attempt": attempt + 1})
                return None
            # The new attempt's own marker first, then the attempt in the claim: a crash in between leaves a
            # marker reconcile finds (of an attempt the claim does not hold yet), and a late completion of the
            # replaced attempt drops that attempt's marker only.
            for outcome in settled(lambda: records.mark_pending(rid, info.version_id, attempt + 1),
                                   (lambda: records.clear_result(rid)) if stored is not None else None):
                if isinstance(outcome, Failed):
                    raise outcome.error
            # A new attempt number makes callbacks of the jobs it replaces recognisably superseded, and the
            # jobs it replaces tell their late results apart. Only a job CI really lost counts against the
            # give-up limit.
            recorded, tags = settled(lambda: records.update_claim(
                rid, claim, attempts=attempt + 1, job_id="", status="CLAIMED",
                lost=int(claim.get("lost") or 0) + (1 if lost else 0), claimed_at=int(time.time()),
                version_id=info.version_id, size=info.size, lease=self.lease, replaced=replaced_jobs(claim),
                adopted=False, checked=False, **{OTHER_CONTENT: False}),
                lambda: self.storage.get_tags(bucket, info.key))
            if isinstance(recorded, Failed):
                raise recorded.error
            claim = recorded
            if isinstance(tags, Failed):
                self._release(records, rid, claim)
                raise tags.error
        if tags is None:
            # The object vanished before its job was submitted: nothing to inspect.
            records.write_result(rid, int(claim["attempts"]), applied="object-missing",
                                 attempt=int(claim["attempts"]), job_id="")
            logger.warning("object not found; nothing to inspect", extra={"rule": rule.name})
            return None
        attempt = int(claim["attempts"])
        user_data = UserData(rule=rule.name, etag=etag, attempt=attempt).encode()
        url = ""
        delivery = rule.delivery or self.settings.delivery
        if self.settings.callback_url and not delivery.is_queue:
            token = tokens.mint(self.settings.callback_secret, bucket, info.key, rule.name, etag,
                                self.settings.token_ttl_seconds)
            url = callback_url(self.settings.callback_url, token, rule.name, etag)
        request = build_job(rule, info.key, user_data, url, self.settings.callback_format, bucket,
                            self.settings.region, delivery)
        pending, dropped = tagging.merge(tags, pending_tags(rule), managed_tags(rule))
        if dropped:
            logger.warning("tag budget exhausted; status tags dropped", extra={"dropped": dropped})
        # The PENDING write goes beside POST /jobs. Only the check of the key waits for it: the job is recorded as
        # soon as CI accepted it (a result that comes first waits for that record), even while the write is retried.
        tag_write = started(lambda: self.storage.put_tags(bucket, info.key, pending)) if pending != tags else None
        detail = settled(lambda: self.ci.create(bucket, request))[0]

        def tagged() -> Any:
            return tag_write.outcome() if tag_write is not None else None

        if isinstance(detail, Failed):
            tagged()
            if isinstance(detail.error, PermanentError):
                records.update_claim(rid, claim, status="FAILED", reason=detail.error.code)
                records.write_result(rid, attempt, outcome="FAILED", reason=detail.error.code, applied="submit-failed",
                                     attempt=attempt, job_id="")
            elif isinstance(detail.error, RetryableError):
                # Release the claim so the platform's retry of this event takes over at once (it looks
                # for a job CI may have accepted before submitting again). The marker stays: if the
                # release fails too, reconcile still finds the claim. CI may have accepted the job all the
                # same: the key is checked first, as after an accepted POST, and the release says what the
                # check found, so that whoever adopts that job knows whether it may read other bytes.
                try:
                    other: Optional[bool] = settle_pending(self.storage, records, info.key, rule, etag)
                except (RetryableError, PermanentError) as exc:
                    logger.warning("could not check the key after POST /jobs failed", extra={"error": str(exc)})
                    other = None
                self._release(records, rid, claim, **checked(other))
                raise detail.error
            if pending != tags:
                self._check_tags(records, info.key, rule, etag)
            raise detail.error
        job_id = str(detail["JobId"])

        def check() -> bool:
            written = tagged()
            if isinstance(written, Failed):
                # CI accepted the job: it is recorded all the same (a released claim would be submitted again
                # while it runs). The verdict writes the tags; the check repairs a write that landed.
                logger.warning("the PENDING tag write failed; the job is recorded all the same",
                               extra={"rule": rule.name, "job_id": job_id, "error": str(written.error)})
            return settle_pending(self.storage, records, info.key, rule, etag)

        recorded, other = settled(lambda: self._record_job(records, rid, claim, job_id), check)
        if isinstance(recorded, Failed):
            # CI has the job, but the claim does not say so. Released with what the check of the key found,
            # the claim is adopted at once (by the platform's retry, reconcile or the result itself), and the
            # job's verdict counts as it would have; left CLAIMED, nobody could adopt it before the lease ran out.
            self._release(records, rid, claim, **checked(None if isinstance(other, Failed) else bool(other)))
            raise recorded.error
        unchecked = other.error if isinstance(other, Failed) else None
        if unchecked is not None:
            # The check of the key after POST /jobs did not finish: nothing vouches that CI reads these bytes.
            # Said in the claim, then the error is raised: the platform's retry checks the key again (its
            # tags too: this PENDING write may have landed on other content).
            logger.warning("could not check the key after submitting; the job's verdict will not count",
                           extra={"rule": rule.name, "job_id": job_id, "error": str(unchecked)})
            other = True
        if other:
            # Other bytes were at the key just after POST /jobs (an overwrite, or an event that named older
            # content): CI reads the object when the job runs, so its verdict cannot vouch for these bytes.
            # Should they come back, the verdict is set aside and a new job checks them.
            logger.warning("other content at the key as the job was submitted; its verdict will not count",
                           extra={"rule": rule.name, "job_id": job_id})
            records.update_claim(rid, claim, job_id=job_id, status="SUBMITTED", submitted_at=int(time.time()),
                                 **{OTHER_CONTENT: True})
        written = tagged()
        if isinstance(written, Failed) and not isinstance(written.error, (RetryableError, PermanentError)):
            raise written.error
        if isinstance(unchecked, RetryableError):
            raise unchecked
        logger.info("job submitted", extra={"rule": rule.name, "job_id": job_id, "tag": rule.job})
        return job_id

    @staticmethod
    def _record_job(records: Records, rid: RecordId, claim: dict[str, Any], job_id: str, tries: int = 3) -> None:
        """Record the job in the claim, outlasting a 5xx burst: until it is recorded, others must wait out
        the claim's lease or find the job through CI."""
        for attempt in range(1, tries + 1):
            try:
                records.update_claim(rid, claim, job_id=job_id, status="SUBMITTED", submitted_at=int(time.time()))
                return
            except RetryableError:
                if attempt == tries:
                    raise
                time.sleep(0.25 * attempt)

    def _check_tags(self, records: Records, key: str, rule: Rule, etag: str) -> None:
        """After POST /jobs failed: the PENDING write beside it may have landed on newer content, which has
        no job of ours coming to overwrite it. Best effort; the error of POST /jobs is what is raised."""
        try:
            settle_tags(self.storage, records, key, rule, etag)
        except (RetryableError, PermanentError) as exc:
            logger.warning("could not check the PENDING write after POST /jobs failed", extra={"error": str(exc)})

    @staticmethod
    def _release(records: Records, rid: RecordId, claim: dict[str, Any], tries: int = 3, **fields: Any) -> None:
        """Mark the claim released, trying a little harder than one request: a released claim is taken
        over at once, a claim left CLAIMED only after its lease."""
        for attempt in range(1, tries + 1):
            try:
                records.update_claim(rid, claim, status="RELEASED", **fields)
                return
            except RetryableError:
                if attempt == tries:
                    logger.warning("could not release the claim; it is taken over after its lease")
                    return
                time.sleep(0.2 * attempt)

    def _reapply(self, records: Records, rid: RecordId, rule: Rule, info: ObjectInfo, known: Verdict) -> None:
        """The same bytes again (re-upload, delete and re-upload, A-B-A): the verdict known for this
        ETag is applied to the new object at once, without a new job."""
        logger.info("verdict known for this content; re-applied",
                    extra={"rule": rule.name, "outcome": known.outcome, "job_id": known.job_id})
        runner = ActionRunner(self.storage, records.bucket, self.rules.quarantine_prefix)
        # The marker to drop is the one this submit wrote (attempt 1's); the attempt whose verdict this is
        # dropped its own when it concluded.
        Completer(self.storage, self.ci, self.settings, self.rules).apply(
            records, rid, rule, known, lambda alongside: runner.apply(rule, info.key, rid.etag, known,
                                                                     alongside=alongside,
                                                                     job_version=info.version_id, known=True), 1)

    def _mark(self, bucket: str, info: ObjectInfo, ours: list[Any]) -> None:
        existing = self.storage.get_tags(bucket, info.key)
        if existing is None:
            return
        merged, dropped = tagging.merge(existing, ours)
        if dropped:
            logger.warning("tag budget exhausted; status tags dropped", extra={"dropped": dropped})
        self.storage.put_tags(bucket, info.key, merged)

    @staticmethod
    def _skip(key: str, reason: str) -> RecordResult:
        logger.info("skipped", extra={"key": key, "reason": reason})
        return RecordResult(key, "skipped", reason)


def handle_event(event: Any, context: Any = None) -> dict[str, Any]:
    """Entry point for the submit function."""
    try:
        submitter = Submitter()
    except ConfigError:
        logger.exception("invalid configuration")
        raise
    submitter.lease = claim_lease(context_value(context, "time_limit_in_ms"))
    return submitter.handle(event)

