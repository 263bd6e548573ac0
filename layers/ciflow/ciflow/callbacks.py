"""Parse the callback HTTP request (Function URL or API Gateway event) and CI's body (XML or JSON).

Everything here is untrusted input: sizes are bounded before parsing, XML goes through defusedxml
(no entities, no external references), and any malformation becomes a RequestRejected 4xx.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Optional

from .errors import RequestRejected


@dataclass(frozen=True)
class HttpRequest:
    method: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes
    source_ip: str
    path: str = "/"


def _flat(mapping: Any) -> dict[str, str]:
    if not isinstance(mapping, dict):
        return {}
    out = {}
    for k, v in mapping.items():
        if isinstance(v, list):
            v = v[0] if v else ""
        out[str(k)] = "" if v is None else str(v)
    return out


def parse_http_event(event: Any, max_bytes: int) -> HttpRequest:
    """Accept the Function URL shape and the legacy API Gateway shape."""
    if not isinstance(event, dict):
        raise RequestRejected(400, "event is not an object")
    method = str(event.get("httpMethod") or event.get("method") or "").upper()
    ctx = event.get("requestContext") if isinstance(event.get("requestContext"), dict) else {}
    if not method:
        method = str(ctx.get("httpMethod") or "").upper()
    headers = {k.lower(): v for k, v in _flat(event.get("headers")).items()}
    for k, v in _flat(event.get("headerParameters")).items():
        headers.setdefault(k.lower(), v)
    query = _flat(event.get("queryString"))
    for k, v in _flat(event.get("queryStringParameters")).items():
        query.setdefault(k, v)
    raw = event.get("body")
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        raise RequestRejected(400, "body is not a string")
    # Cheap bound before decoding: base64 is 4/3 the size, UTF-8 at most 4 bytes per char.
    if len(raw) > max_bytes * 4 // 3 + 4:
        raise RequestRejected(413, f"body larger than {max_bytes} bytes")
    if event.get("isBase64Encoded") in (True, "true", "True"):
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise RequestRejected(400, "body is not valid base64") from None
    else:
        body = raw.encode("utf-8", "surrogatepass")
    if len(body) > max_bytes:
        raise RequestRejected(413, f"body larger than {max_bytes} bytes")
    source_ip = headers.get("x-scf-remote-addr") or str(ctx.get("sourceIp") or "")
    path = event.get("path") if isinstance(event.get("path"), str) else "/"
    return HttpRequest(method, headers, query, body, source_ip, path)


MAX_DEPTH = 32  # CI's documents nest about 8 deep; anything deeper is hostile


def _xml_to_obj(elem: Any, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise RequestRejected(400, "XML nested too deeply")
    children = list(elem)
    if not children:
        return (elem.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        tag = child.tag.split("}", 1)[-1]
        value = _xml_to_obj(child, depth + 1)
        if tag in out:
            if not isinstance(out[tag], list):
                out[tag] = [out[tag]]
            out[tag].append(value)
        else:
            out[tag] = value
    return out


def parse_body(body: bytes) -> dict[str, Any]:
    """CI's callback body → dict shaped like `<Response>`. XML or JSON, sniffed from the content."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRejected(400, "body is not UTF-8") from None
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise RequestRejected(400, "empty body")
    if stripped[0] == "<":
        from defusedxml import DefusedXmlException
        from defusedxml.ElementTree import fromstring

        try:
            root = fromstring(stripped, forbid_dtd=True)
        except DefusedXmlException:
            raise RequestRejected(400, "XML with DTD or entities is refused") from None
        except Exception:  # noqa: BLE001 - any parser failure is the sender's fault
            raise RequestRejected(400, "malformed XML") from None
        doc = _xml_to_obj(root)
        if not isinstance(doc, dict):
            raise RequestRejected(400, "XML body has no elements")
        return doc
    if stripped[0] in "{[":
        try:
            doc = json.loads(stripped)
        except (ValueError, RecursionError):
            raise RequestRejected(400, "malformed or too deeply nested JSON") from None
        if isinstance(doc, list):
            doc = {"JobsDetail": doc}
        if not isinstance(doc, dict):
            raise RequestRejected(400, "JSON body is not an object")
        if isinstance(doc.get("Response"), dict):
            doc = doc["Response"]
        return doc
    raise RequestRejected(415, "body is neither XML nor JSON")


@dataclass(frozen=True)
class JobClaim:
    """What a callback body *claims* about a job. Only a hint until confirmed with GET /jobs."""

    job_id: str
    bucket: str
    key: str
    user_data: Optional[str]


def _text(value: Any) -> str:
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


# CI reports one job per callback. A few more are tolerated; a body naming many is refused before any
# of them costs a request to CI (one valid token must not buy unbounded work).
MAX_JOBS_PER_CALLBACK = 10


def job_claims(doc: dict[str, Any], limit: int = MAX_JOBS_PER_CALLBACK) -> list[JobClaim]:
    """The distinct jobs a callback body is about; JobsDetail may be an object or an array.
    Repeated entries for one JobId count once; more than `limit` distinct jobs are refused."""
    details = doc.get("JobsDetail")
    if isinstance(details, dict):
        details = [details]
    if not isinstance(details, list) or not details:
        raise RequestRejected(400, "no JobsDetail")
    if len(details) > limit * 4:
        raise RequestRejected(413, f"more than {limit} jobs in one callback")
    claims: dict[str, JobClaim] = {}
    for d in details:
        if not isinstance(d, dict):
            raise RequestRejected(400, "JobsDetail entry is not an object")
        inp = d.get("Input") if isinstance(d.get("Input"), dict) else {}
        op = d.get("Operation") if isinstance(d.get("Operation"), dict) else {}
        job_id = _text(d.get("JobId"))
        bucket = _text(inp.get("BucketId") or inp.get("Bucket"))
        key = _text(inp.get("Object"))
        if not job_id or not bucket or not key:
            raise RequestRejected(400, "JobsDetail needs JobId, Input.BucketId and Input.Object")
        if len(job_id) > 128 or not job_id.isalnum():
            raise RequestRejected(400, "JobId is not a job id")
        ud = op.get("UserData")
        claim = JobClaim(job_id, bucket, key, ud if isinstance(ud, str) else None)
        seen = claims.setdefault(job_id, claim)
        if seen != claim:
            raise RequestRejected(400, "one JobId with different details")
        if len(claims) > limit:
            raise RequestRejected(413, f"more than {limit} jobs in one callback")
    return list(claims.values())
