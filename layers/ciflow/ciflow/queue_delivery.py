"""TDMQ (CMQ) delivery: SCF's topic-trigger event → the jobs it names → confirmed with GET /jobs → applied.

A queue message carries no token, so nothing in it is trusted: the body (XML or JSON, the callback
body itself or that body wrapped in a JSON envelope; what CI publishes is unverified) only names job
ids. CI's own answer is the authority, and its UserData ties each job to a rule and an ETag. Every
record of a merged batch is handled; a malformed one is logged and dropped, and a transient failure
raises at the end so SCF redelivers the batch (applying again is idempotent).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

from . import userdata
from .applying import Completer
from .callbacks import MAX_JOBS_PER_CALLBACK, JobClaim, job_claims, parse_body
from .ci import CiJobs
from .errors import RequestRejected, RetryableError
from .log import bind, logger
from .ports import Ports
from .rules import RuleSet
from .settings import Settings
from .storage import Storage

MAX_UNWRAP = 4  # envelopes inside envelopes: more than this is not CI's


def is_queue_event(event: Any) -> bool:
    """SCF's CMQ topic-trigger event: `{"Records": [{"CMQ": {...}}]}`."""
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list) or not event["Records"]:
        return False
    first = event["Records"][0]
    return isinstance(first, dict) and isinstance(first.get("CMQ"), dict)


def _unwrap(text: str, depth: int = 0) -> dict[str, Any]:
    """The callback document in a message body: as is, or inside a JSON envelope (a string field
    holding the body, e.g. {"msgBody": "<Response>…"}; base64 accepted)."""
    doc = parse_body(text.encode("utf-8"))
    if "JobsDetail" in doc or depth >= MAX_UNWRAP:
        return doc
    for value in doc.values():
        inner: Optional[str] = None
        if isinstance(value, str) and value.lstrip()[:1] in ("<", "{", "["):
            inner = value
        elif isinstance(value, str) and len(value) > 16:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                decoded = ""
            if decoded.lstrip()[:1] in ("<", "{", "["):
                inner = decoded
        elif isinstance(value, dict) and "JobsDetail" in value:
            return value
        if inner is not None:
            try:
                return _unwrap(inner, depth + 1)
            except RequestRejected:
                continue
    return doc


def message_claims(body: Any, max_bytes: int) -> list[JobClaim]:
    """The jobs one message names (untrusted hints). Raises RequestRejected when it names none."""
    if not isinstance(body, str):
        raise RequestRejected(400, "msgBody is not a string")
    if len(body.encode("utf-8", "surrogatepass")) > max_bytes:
        raise RequestRejected(413, f"message larger than {max_bytes} bytes")
    return job_claims(_unwrap(body), MAX_JOBS_PER_CALLBACK)


class QueueDeliveryHandler(Ports):
    def __init__(self, storage: Optional[Storage] = None, ci: Optional[CiJobs] = None,
                 settings: Optional[Settings] = None, rules: Optional[RuleSet] = None):
        super().__init__(storage, ci, settings, rules)
        self.completer = Completer(self.storage, self.ci, self.settings, self.rules)

    def handle(self, event: Any) -> dict[str, Any]:
        results: list[dict[str, Any]] = []
        retry: list[str] = []
        for i, record in enumerate(event.get("Records") or []):
            cmq = record.get("CMQ") if isinstance(record, dict) else None
            msg_id = str(cmq.get("msgId", "")) if isinstance(cmq, dict) else ""
            bind(msg_id=msg_id)
            try:
                if not isinstance(cmq, dict):
                    raise RequestRejected(400, "record has no CMQ object")
                claims = message_claims(cmq.get("msgBody"), self.settings.max_callback_bytes)
                for claim in claims:
                    results.append(self._complete(claim, msg_id))
            except RequestRejected as exc:
                logger.warning("queue message dropped", extra={"record": i, "reason": exc.reason})
                results.append({"msg_id": msg_id, "status": "dropped", "reason": exc.reason})
            except RetryableError as exc:
                logger.warning("queue message failed transiently", extra={"record": i, "error": str(exc)})
                retry.append(f"{msg_id or i}: {exc}")
                results.append({"msg_id": msg_id, "status": "retry"})
        if retry:
            # SCF redelivers the batch; the records already applied converge to the same state.
            raise RetryableError(f"{len(retry)} message(s) failed transiently: " + "; ".join(retry))
        return {"records": len(event.get("Records") or []), "results": results}

    def _complete(self, claim: JobClaim, msg_id: str) -> dict[str, Any]:
        bind(bucket=claim.bucket, key=claim.key, job_id=claim.job_id)
        if self.settings.buckets and claim.bucket not in self.settings.buckets:
            raise RequestRejected(403, "bucket is not served here")
        detail = self.ci.get(claim.bucket, claim.job_id)
        if detail is None:
            raise RequestRejected(403, "CI does not know this job in this bucket")
        inp = detail.get("Input") if isinstance(detail.get("Input"), dict) else {}
        op = detail.get("Operation") if isinstance(detail.get("Operation"), dict) else {}
        if str(inp.get("BucketId") or inp.get("Bucket") or claim.bucket) != claim.bucket or \
                str(inp.get("Object", "")) != claim.key:
            raise RequestRejected(403, "message does not match the job CI reports")
        if userdata.decode(op.get("UserData")) is None:
            raise RequestRejected(403, "not a ciflow job")
        out = self.completer.complete(claim.bucket, detail)
        out["msg_id"] = msg_id
        return out


def handle_queue(event: Any) -> dict[str, Any]:
    """Entry point for the callback function's CMQ topic trigger."""
    return QueueDeliveryHandler().handle(event)
