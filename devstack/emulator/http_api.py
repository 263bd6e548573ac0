"""The emulator's HTTP face: `/jobs` as CI serves it, and `/_emulator/` for tests and tools.

Every answer is complete: a request the API refuses gets CI's XML `<Error>`, and so does one that breaks
HTTP itself (a bad request line, an unsupported method, an unreadable `Content-Length`) or that trips
an unexpected failure here (500 `InternalError`). Sockets run with TCP_NODELAY, so a kept-alive
connection never waits on Nagle's algorithm and the client's delayed ACK between a response's writes.
"""

from __future__ import annotations

import json
import random
import sys
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .cossign import SignatureError, verify
from .errors import ApiError, error_xml
from .request_xml import parse_request
from .validation import ListQuery, job_ids
from .xmlutil import to_xml

if TYPE_CHECKING:
    from .server import CiEmulator

# A body over the size limit is still read and dropped up to this size, so the connection stays usable.
DRAIN_LIMIT = 64 << 20


class _Close(ApiError):
    """An error after which the connection cannot be trusted (its body was not read)."""


class ApiHandler(BaseHTTPRequestHandler):
    emu: CiEmulator
    protocol_version = "HTTP/1.1"
    server_version = "tencent-ci"
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted connection

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    # ----- answers ---------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str = "application/xml") -> None:
        if self.command == "HEAD":
            body = b""
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ci-request-id", uuid.uuid4().hex)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: Optional[str] = None, explain: Optional[str] = None) -> None:
        """http.server's own refusals (bad request line, unsupported method, ...) as CI's XML error."""
        if self.request_version == "HTTP/0.9":  # the request line was unreadable; answer in HTTP/1.1
            self.request_version = "HTTP/1.1"
        self.close_connection = True
        if code in (405, 501):
            status, api_code = 405, "MethodNotAllowed"
        else:
            status, api_code = (code, "InvalidArgument") if 400 <= code < 500 else (code, "InternalError")
        self._send(status, error_xml(api_code, message or "the request cannot be read"))

    # ----- request plumbing ------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise _Close("InvalidArgument", "Transfer-Encoding is not supported: send the body with Content-Length")
        lengths = self.headers.get_all("Content-Length") or []
        if len(set(lengths)) > 1:
            raise _Close("InvalidArgument", "conflicting Content-Length headers")
        raw = (lengths[0] if lengths else "0").strip()
        if not raw.isdigit():
            raise _Close("InvalidArgument", f"Content-Length must be a non-negative integer, got {raw!r}")
        n = int(raw)
        limit = int(self.emu.config.get("max_request_bytes") or 0)
        if limit and n > limit:
            if n > DRAIN_LIMIT:
                raise _Close("InvalidContent", f"the request body is larger than {limit} bytes")
            left = n
            while left:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
            raise ApiError("InvalidContent", f"the request body is larger than {limit} bytes")
        return self.rfile.read(n) if n else b""

    def _bucket_region(self) -> tuple[str, str]:
        host = (self.headers.get("Host") or "").split(":")[0]
        labels = host.split(".")
        bucket = labels[0] if len(labels) > 1 else ""
        region = self.emu.region
        for i, label in enumerate(labels[1:], start=1):
            if label in ("ci", "cos", "pic") and i + 1 < len(labels):
                region = labels[i + 1]
                break
        return bucket, region

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        entry: dict[str, Any] = {"method": method, "path": path, "raw_path": parts.path, "query": parts.query,
                                 "host": self.headers.get("Host", ""), "body": "", "time": time.time()}
        status, out = 500, b""
        try:
            body = self._read_body()
            entry["body"] = body.decode("utf-8", "replace")
            if path.startswith("/_emulator/"):
                return self._admin(method, path, body)
            try:
                verify(method, parts.path, parts.query, dict(self.headers.items()), self.emu.credentials)
            except SignatureError as err:
                raise ApiError(err.code, err.message, err.status) from None
            bucket, region = self._bucket_region()
            entry["bucket"] = bucket
            if not bucket:
                raise ApiError("InvalidArgument", "the Host header names no bucket")
            status, out = self._route(method, path, parts.query, body, bucket, region, entry)
        except ApiError as err:
            if isinstance(err, _Close):
                self.close_connection = True
            status, out = err.status, error_xml(err.code, err.message, self.headers.get("Host", "") + path)
            entry["error"] = err.code
        except Exception as exc:  # noqa: BLE001 - a bug here still gets an answer, and is reported
            print(f"[ci-emulator] {method} {self.path} failed: {exc!r}\n{traceback.format_exc()}",
                  file=sys.stderr, flush=True)
            status, out = 500, error_xml("InternalError", f"the emulator failed: {type(exc).__name__}")
            entry["error"] = "InternalError"
        entry["status"] = status
        with self.emu._lock:
            self.emu.requests.append(entry)
        self._send(status, out)
        return None

    def _route(self, method: str, path: str, query: str, body: bytes, bucket: str, region: str,
               entry: dict[str, Any]) -> tuple[int, bytes]:
        emu = self.emu
        if random.random() < float(emu.config.get("throttle_rate") or 0):
            if random.random() < 0.5:
                raise ApiError("SlowDown", "injected fault: request rate too high", 429)
            raise ApiError("ServiceUnavailable", "injected fault: service unavailable", 503)
        if method == "POST" and path == "/jobs":
            with emu._lock:
                if emu.config.get("fail_next_creates", 0) > 0:
                    emu.config["fail_next_creates"] -= 1
                    raise ApiError("ServiceUnavailable", "injected fault: service unavailable", 503)
            doc = parse_request(body, max_bytes=int(emu.config.get("max_request_bytes") or len(body)))
            entry["request"] = doc
            job = emu.create_job(bucket, region, doc)
            entry["job_id"] = job.job_id
            if random.random() < float(emu.config.get("accept_then_fail_rate") or 0):
                raise ApiError("InternalError", "injected fault: the job was accepted but the answer failed", 503)
            return 200, to_xml("Response", {"JobsDetail": emu.create_answer(job)}).encode()
        if method == "GET" and path.startswith("/jobs/"):
            found, missing = emu.get_jobs(bucket, job_ids(path[len("/jobs/"):]))
            out: dict[str, Any] = {"JobsDetail": found}
            if missing:
                out["NonExistJobIds"] = missing
            return 200, to_xml("Response", out).encode()
        if method == "GET" and path == "/jobs":
            jobs, next_token = emu.list_jobs(bucket, ListQuery.parse(query))
            return 200, to_xml("Response", {"JobsDetail": jobs, "NextToken": next_token}).encode()
        if method == "PUT" and path.startswith("/jobs/") and "cancel" in parse_qs(query, keep_blank_values=True):
            ids = job_ids(path[len("/jobs/"):])
            if len(ids) != 1:
                raise ApiError("InvalidArgument", "cancel takes exactly one JobId")
            emu.cancel(bucket, ids[0])
            return 200, b"<Response/>"
        raise ApiError("InvalidArgument", f"{method} {path} is not part of the emulated API", 404)

    def _admin(self, method: str, path: str, body: bytes) -> None:
        emu = self.emu
        with emu._lock:
            if path == "/_emulator/requests":
                data: Any = emu.requests
            elif path == "/_emulator/jobs":
                data = {jid: {"detail": j.detail, "request": j.request, "callbacks": j.callbacks}
                        for jid, j in emu.jobs.items()}
            elif path == "/_emulator/config" and method == "POST":
                try:
                    emu.configure(json.loads(body or b"{}"))
                except (ValueError, TypeError) as exc:
                    return self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")
                data = emu.config
            elif path == "/_emulator/config":
                data = emu.config
            elif path == "/_emulator/lost":
                data = emu.lost_jobs
            elif path == "/_emulator/health":
                data = {"ok": True}
            else:
                return self._send(404, b'{"error": "unknown admin path"}', "application/json")
            out = json.dumps(data, default=str).encode()
        self._send(200, out, "application/json")
        return None
