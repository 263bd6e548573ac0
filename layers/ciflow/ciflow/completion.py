"""Callback path: authenticate, confirm with GET /jobs, then apply the rule's actions.

The body is only a hint. Nothing is written until (1) the URL's token matches the claimed job's
bucket, key, rule and ETag, and (2) CI itself confirms that job id with the same bucket, object
and UserData. Forged, replayed or malformed requests get a 4xx and change nothing.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from . import tokens, userdata
from .applying import Completer
from .callbacks import JobClaim, job_claims, parse_body, parse_http_event
from .ci import CiJobs
from .errors import RequestRejected, RetryableError
from .log import bind, logger
from .ports import Ports
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
        token = req.query.get("t") or req.headers.get("x-ciflow-token", "")
        if not token:
            raise RequestRejected(401, "missing token")
        claims = job_claims(parse_body(req.body))
        # Authenticate every claim before acting on any of them.
        for claim in claims:
            self._authenticate(token, claim)
        return [self._complete(claim, token) for claim in claims]

    def _authenticate(self, token: str, claim: JobClaim) -> None:
        ud = userdata.decode(claim.user_data)
        if ud is None:
            raise RequestRejected(403, "UserData is not ours")
        if self.settings.buckets and claim.bucket not in self.settings.buckets:
            raise RequestRejected(403, "bucket is not served here")
        problem = tokens.verify(token, self.settings.callback_secret, claim.bucket, claim.key, ud.rule, ud.etag)
        if problem:
            raise RequestRejected(403, problem)

    def _complete(self, claim: JobClaim, token: str) -> dict[str, Any]:
        bind(bucket=claim.bucket, key=claim.key, job_id=claim.job_id)
        detail = self.ci.get(claim.bucket, claim.job_id)
        if detail is None:
            raise RequestRejected(403, "CI does not know this job in this bucket")
        inp = detail.get("Input") if isinstance(detail.get("Input"), dict) else {}
        op = detail.get("Operation") if isinstance(detail.get("Operation"), dict) else {}
        confirmed_bucket = str(inp.get("BucketId") or inp.get("Bucket") or claim.bucket)
        if (confirmed_bucket != claim.bucket or str(inp.get("Object", "")) != claim.key
                or str(op.get("UserData", "")) != (claim.user_data or "")):
            raise RequestRejected(403, "callback does not match the job CI reports")
        return self.completer.complete(claim.bucket, detail)


def handle_http(event: Any) -> dict[str, Any]:
    """Entry point for the callback function."""
    return CallbackHandler().handle(event)
