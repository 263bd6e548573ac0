"""Callback path: authenticate, confirm with GET /jobs, then apply the rule's actions.

The body is only a hint, and CI's documented callback carries no UserData. Nothing is written until
CI itself (`GET /jobs/<JobId>`) confirms the job in the same bucket and object, and the URL's token
matches the bucket, key, rule and ETag that CI's copy of the job's UserData names. Forged, replayed
or malformed requests get a 4xx and change nothing.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from . import tokens, userdata
from .actions import ActionRunner, Seen
from .applying import Completer
from .callbacks import MAX_JOBS_PER_CALLBACK, JobClaim, job_claims, parse_body, parse_http_event
from .ci import CiJobs
from .concurrency import Timed, together
from .errors import RequestRejected, RetryableError
from .log import bind, logger
from .ports import Ports
from .records import RecordId, Records
from .results import verdict
from .rules import RuleSet
from .settings import Settings
from .storage import Storage


def http_response(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"isBase64Encoded": False, "statusCode": status,
            "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


class CallbackHandler(Ports):
    def __init__(self, storage: Optional[Storage] = None, ci: Optional[CiJobs] = None,
                 settings: Optional[Settings] = None, rules: Optional[RuleSet] = None):
        super().__init__(storage, ci, settings, rules)
        self.completer = Completer(self.storage, self.ci, self.settings, self.rules)

    def handle(self, event: Any) -> dict[str, Any]:
        try:
            results = self._handle(event)
        except RequestRejected as exc:
            logger.warning("callback rejected", extra={"status": exc.status, "reason": exc.reason})
            return http_response(exc.status, {"error": exc.reason})
        except RetryableError as exc:
            # CI (or a caller) may retry; nothing half-done is left that a retry cannot finish.
            logger.warning("callback failed transiently", extra={"error": str(exc)})
            return http_response(503, {"error": "temporarily unavailable"})
        return http_response(200, {"results": results})

    def _handle(self, event: Any) -> list[dict[str, Any]]:
        req = parse_http_event(event, self.settings.max_callback_bytes)
        if req.method not in ("POST", ""):
            raise RequestRejected(405, "only POST is accepted")
        token = req.query.get("t") or req.headers.get("x-ciflow-token", "") or token_in_path(req.path)
        if not token:
            raise RequestRejected(401, "missing token")
        problem = tokens.precheck(token)
        if problem:
            raise RequestRejected(403, problem)
        claims = job_claims(parse_body(req.body), MAX_JOBS_PER_CALLBACK)
        rule_name, etag = req.query.get("r", ""), req.query.get("e", "")
        if rule_name and etag and len(claims) == 1:
            # The URL names the rule and ETag its token was minted for: the token is checked before any
            # request, and the object is read while CI confirms the job (one round trip less).
            claim = claims[0]
            self._authenticate(token, claim.bucket, claim.key, userdata.UserData(rule_name, etag).encode())
            return [self._complete_named(claim, token, rule_name, etag)]
        # A body's UserData, when CI echoes it, rejects a forgery before any request to CI.
        for claim in claims:
            if claim.user_data is not None:
                self._authenticate(token, claim.bucket, claim.key, claim.user_data)
        # CI's own answer is the authority: its UserData binds the job to a rule and an ETag, and the
        # token must match those. Every job is confirmed before acting on any of them.
        details = [self._confirm(claim, token) for claim in claims]
        return [self.completer.complete(claim.bucket, detail) for claim, detail in zip(claims, details)]

    def _complete_named(self, claim: JobClaim, token: str, rule_name: str, etag: str) -> dict[str, Any]:
        bind(bucket=claim.bucket, key=claim.key, job_id=claim.job_id)
        rule = self.rules.by_name(rule_name)
        if rule is None:
            detail = self._confirm(claim, token)
            return self.completer.complete(claim.bucket, detail)
        records = Records.of(self.storage, claim.bucket, self.settings)
        rid = RecordId(claim.key, etag, rule.name)
        dests = possible_destinations(rule, self.rules.quarantine_prefix, claim.key)
        head = Timed(lambda: self.storage.head(claim.bucket, claim.key))
        reads = together(lambda: self.ci.get(claim.bucket, claim.job_id),
                         lambda: records.read_claim(rid),
                         head,
                         lambda: self.storage.get_tags(claim.bucket, claim.key),
                         *[(lambda d=d: self.storage.head(claim.bucket, d)) for d in dests])
        detail, found_claim, info, tags = reads[:4]
        heads = dict(zip(dests, reads[4:]))
        self._check(claim, detail)
        ud = userdata.decode(str(detail["Operation"].get("UserData", "")))
        if ud is None or ud.rule != rule_name or ud.etag != etag:
            raise RequestRejected(403, "callback does not match the job CI reports")
        v = verdict(detail, rule)
        dest_key = None
        if v is not None:
            runner = ActionRunner(self.storage, claim.bucket, self.rules.quarantine_prefix)
            _, prefix = runner.destination(rule, v)
            dest_key = prefix + claim.key if prefix is not None else None
        seen = Seen(info, tags, dest_key, heads.get(dest_key) if dest_key else None, head_seconds=head.seconds)
        return self.completer.complete(claim.bucket, detail, claim=found_claim, seen=seen)

    def _authenticate(self, token: str, bucket: str, key: str, user_data: Optional[str]) -> None:
        ud = userdata.decode(user_data)
        if ud is None:
            raise RequestRejected(403, "UserData is not ours")
        if self.settings.buckets and bucket not in self.settings.buckets:
            raise RequestRejected(403, "bucket is not served here")
        problem = tokens.verify(token, self.settings.callback_secret, bucket, key, ud.rule, ud.etag)
        if problem:
            raise RequestRejected(403, problem)

    def _confirm(self, claim: JobClaim, token: str) -> dict[str, Any]:
        bind(bucket=claim.bucket, key=claim.key, job_id=claim.job_id)
        if self.settings.buckets and claim.bucket not in self.settings.buckets:
            raise RequestRejected(403, "bucket is not served here")
        detail = self.ci.get(claim.bucket, claim.job_id)
        self._check(claim, detail)
        self._authenticate(token, claim.bucket, claim.key, str(detail["Operation"].get("UserData", "")))
        return detail

    @staticmethod
    def _check(claim: JobClaim, detail: Optional[dict[str, Any]]) -> None:
        """CI must know the job in this bucket, for this object (and with the body's UserData, if any)."""
        if detail is None:
            raise RequestRejected(403, "CI does not know this job in this bucket")
        inp = detail.get("Input") if isinstance(detail.get("Input"), dict) else {}
        if not isinstance(detail.get("Operation"), dict):
            detail["Operation"] = {}
        confirmed_bucket = str(inp.get("BucketId") or inp.get("Bucket") or claim.bucket)
        confirmed_ud = str(detail["Operation"].get("UserData", ""))
        if (confirmed_bucket != claim.bucket or str(inp.get("Object", "")) != claim.key
                or (claim.user_data is not None and confirmed_ud != claim.user_data)):
            raise RequestRejected(403, "callback does not match the job CI reports")


def possible_destinations(rule: Any, quarantine_prefix: str, key: str) -> list[str]:
    """Where any outcome of `rule` could move `key` (HEADed before the verdict is known)."""
    out: list[str] = []
    for outcome in rule.outcomes.values():
        for action in outcome.actions:
            prefix = quarantine_prefix if action == "quarantine" else outcome.move_to if action == "move" else None
            if prefix is not None and prefix + key not in out:
                out.append(prefix + key)
    return out


def token_in_path(path: str) -> str:
    """A token carried in the URL path (`…/cb/<token>`) survives a sender that drops the query."""
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return last if last.startswith(tokens.VERSION + ".") else ""


def handle_http(event: Any) -> dict[str, Any]:
    """Entry point for the callback function."""
    return CallbackHandler().handle(event)
