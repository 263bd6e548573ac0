"""Submit path: COS event → rule match → one CI job per (object ETag, rule) → PENDING tag."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Optional

from . import tagging, tokens
from .errors import BadEventError, ConfigError, PermanentError, RetryableError
from .events import CosRecord, parse_event
from .jobs import build_job, callback_url
from .log import bind, logger
from .ports import Ports
from .records import STALE_CLAIM_SECONDS, RecordId, Records
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


class Submitter(Ports):
    """Processes COS events. Ports are injectable; defaults are the cached real clients."""

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
        info = self.storage.resolve(rec.bucket, [k for k, r in zip(rec.key_candidates, reasons) if not r])
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
               takeover: bool = False) -> Optional[str]:
        """Submit one job unless (key, ETag, rule) is already claimed. Returns the job id, or None.

        `force` (rescan) submits a new job even when one exists, and supersedes its result.
        `takeover` (reconcile) replaces a claim whose job was lost or never recorded; an accepted
        job is still adopted rather than duplicated.
        """
        etag = normalize_etag(info.etag)
        rid = RecordId(info.key, etag, rule.name)
        records = Records(self.storage, bucket, self.settings.state_prefix)
        claim = records.claim(rid)
        if claim is None:
            claim = records.read_claim(rid) or {}
            attempt = int(claim.get("attempts") or 1)
            if not force:
                age = time.time() - float(claim.get("claimed_at") or 0)
                in_flight = bool(claim.get("job_id")) or age < STALE_CLAIM_SECONDS
                if claim.get("status") == "FAILED" or (in_flight and not takeover):
                    logger.info("duplicate event; job already claimed",
                                extra={"rule": rule.name, "job_id": claim.get("job_id", "")})
                    return None
                if not claim.get("job_id"):
                    # The submitter died between claiming and recording: CI may have the job already.
                    found = self.ci.find(bucket, rule.job, info.key,
                                         UserData(rule.name, etag, attempt=attempt).encode())
                    if found is not None:
                        records.update_claim(rid, claim, job_id=str(found["JobId"]), status="SUBMITTED")
                        records.mark_pending(rid, int(claim.get("claimed_at") or 0))
                        logger.warning("adopted the job of an interrupted submission",
                                       extra={"job_id": found["JobId"]})
                        return str(found["JobId"])
                logger.warning("taking over a stale or lost submission", extra={"rule": rule.name})
            else:
                records.clear_result(rid)
            # A new attempt number makes callbacks of the jobs it replaces recognisably superseded.
            claim = records.update_claim(rid, claim, attempts=attempt + 1, job_id="", status="CLAIMED",
                                         claimed_at=int(time.time()))
            records.mark_pending(rid, claim["claimed_at"])
        attempt = int(claim["attempts"])
        user_data = UserData(rule=rule.name, etag=etag, attempt=attempt).encode()
        url = ""
        if self.settings.callback_url:
            token = tokens.mint(self.settings.callback_secret, bucket, info.key, rule.name, etag,
                                self.settings.token_ttl_seconds)
            url = callback_url(self.settings.callback_url, token)
        request = build_job(rule, info.key, user_data, url, self.settings.callback_format, bucket,
                            self.settings.region)
        try:
            self._mark(bucket, info, [(tagging.STATUS, "PENDING"), (tagging.RULE, rule.name)])
            detail = self.ci.create(bucket, request)
        except PermanentError as exc:
            records.update_claim(rid, claim, status="FAILED", reason=exc.code)
            records.write_result(rid, outcome="FAILED", reason=exc.code, applied="submit-failed")
            raise
        except RetryableError:
            # Release the claim so the platform's retry of this event takes over at once (it looks
            # for a job CI may have accepted before submitting again).
            records.update_claim(rid, claim, claimed_at=0)
            raise
        job_id = str(detail["JobId"])
        records.update_claim(rid, claim, job_id=job_id, status="SUBMITTED", submitted_at=int(time.time()))
        logger.info("job submitted", extra={"rule": rule.name, "job_id": job_id, "tag": rule.job})
        return job_id

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


def handle_event(event: Any) -> dict[str, Any]:
    """Entry point for the submit function."""
    try:
        submitter = Submitter()
    except ConfigError:
        logger.exception("invalid configuration")
        raise
    return submitter.handle(event)
