"""COS's rules on top of moto's S3, as WSGI middleware.

moto speaks S3. COS differs where it matters to a conditional create, a guarded move and a copy:

- `x-cos-forbid-overwrite: true` on PUT Object and Complete Multipart Upload answers 409 `FileAlreadyExists`
  when the key exists, on buckets whose versioning was never turned on; with versioning Enabled or Suspended
  it has no effect.
- S3's `If-None-Match: *` on PUT is honoured, ignored or rejected (`Switches.if_none_match`).
- Copy preconditions (`x-cos-copy-source-If-Match` / `-If-None-Match`, and the S3 spelling
  `x-amz-copy-source-if-(none-)match` unless `Switches.s3_copy_conditions` is `ignore`) answer 412
  `PreconditionFailed` and write nothing; moto ignores the If-Match ones.
- PUT Object - Copy refuses sources above `Switches.copy_limit_bytes` (5 GB) with 400 `EntityTooLarge`;
  Upload Part - Copy has no such limit.
- S3's `If-Match` on DELETE Object is honoured (412 `PreconditionFailed` when the current ETag differs, 404
  `NoSuchKey` when nothing is there), ignored or rejected with 400 (`Switches.delete_if_match`).

Every write to a key runs under that key's lock, so a condition and the write it guards are atomic, as on
COS. Injected faults (`Faults`) are applied before the lock: a stalled write is applied late, on whatever
the key holds by then, as a request delayed in the network would be.
"""

from __future__ import annotations

import io
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, unquote, urlsplit

from .events import Created
from .history import History
from .switches import Faults, Switches

# Sub-resources whose PUT/POST does not create an object.
NON_CREATE_QUERY = {"tagging", "acl", "retention", "legal-hold", "uploads", "partNumber", "restore",
                    "select", "torrent", "attributes", "delete"}
# Query parameters of a GET or HEAD that still reads the object itself (not a sub-resource).
OBJECT_READ_QUERY = {"versionId", "response-content-type", "response-content-disposition",
                     "response-cache-control", "response-content-encoding", "response-content-language",
                     "response-expires"}
CREATE_KINDS = ("Put", "Copy", "CompleteMultipartUpload", "Post")

OnCreate = Callable[[str, str, str, Created, dict[str, Any]], None]


def moto_backend() -> Any:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def current_object(bucket: str, key: str, version_id: Optional[str] = None) -> Any:
    """moto's object (latest version unless `version_id`), or None when absent or a delete marker."""
    try:
        return moto_backend().get_object(bucket, key, version_id=version_id)
    except Exception:  # noqa: BLE001 - a missing bucket or version is simply "absent"
        return None


def versioning_status(bucket: str) -> Optional[str]:
    """Enabled | Suspended | None (never turned on)."""
    try:
        return moto_backend().get_bucket(bucket).versioning_status
    except Exception:  # noqa: BLE001 - no such bucket
        return None


def created(bucket: str, key: str) -> Created:
    """The object just written at `key`, for its event."""
    obj = current_object(bucket, key)
    if obj is None:
        return Created()
    meta = {"x-cos-request-id": uuid.uuid4().hex}
    for k, v in (obj.metadata or {}).items():
        lk = k.lower()
        if lk == "content-type":
            meta["Content-Type"] = v
        elif lk.startswith("x-amz-meta-"):
            meta["x-cos-meta-" + lk[len("x-amz-meta-"):]] = v
    meta.setdefault("Content-Type", "")
    version = str(obj.version_id or "")
    if versioning_status(bucket) is None:
        version = ""
    return Created(size=int(obj.size), meta=meta, etag=str(obj.etag), version_id=version,
                   storage_class=str(obj.storage_class or "STANDARD"))


def etag_matches(condition: str, etag: str) -> bool:
    """An If-Match style condition (one ETag, quoted or not, or `*`) against a quoted ETag."""
    wanted = condition.strip()
    return wanted == "*" or wanted.strip('"') == etag.strip('"')


class KeyLocks:
    """Striped locks by (bucket, key): enough to serialise writes to one key without a lock per key."""

    def __init__(self, stripes: int = 128):
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def hold(self, *keys: tuple[str, str]) -> Iterator[None]:
        stripes = sorted({hash(k) % len(self._locks) for k in keys})
        for s in stripes:
            self._locks[s].acquire()
        try:
            yield
        finally:
            for s in reversed(stripes):
                self._locks[s].release()


class CosError(Exception):
    def __init__(self, status: str, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str, resource: str) -> bytes:
    # COS's error document: Code, Message, Resource, RequestId, TraceId.
    from xml.sax.saxutils import escape

    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message><Resource>{escape(resource)}</Resource>"
            f"<RequestId>{uuid.uuid4().hex}</RequestId><TraceId>{uuid.uuid4().hex}</TraceId></Error>").encode()


class Request:
    """The parts of one S3 request (path-style) the COS rules look at."""

    def __init__(self, environ: dict[str, Any]):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "")
        self.query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        parts = environ.get("PATH_INFO", "").lstrip("/").split("/", 1)
        self.bucket = parts[0]
        # PATH_INFO is already percent-decoded, as latin-1 text of the UTF-8 bytes (PEP 3333).
        self.key = parts[1].encode("latin-1").decode("utf-8", "replace") if len(parts) > 1 else ""
        self.kind = self._kind()

    def header(self, name: str) -> Optional[str]:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def drop_header(self, name: str) -> None:
        self.environ.pop("HTTP_" + name.upper().replace("-", "_"), None)

    def _kind(self) -> str:
        q, key, method = set(self.query), self.key, self.method
        copying = self.header("x-amz-copy-source") is not None
        if method == "PUT" and key and "tagging" in q:
            return "tagging"
        if method == "PUT" and key and copying and {"partNumber", "uploadId"} <= q:
            return "part-copy"
        if method == "PUT" and key and not (NON_CREATE_QUERY & q):
            return "Copy" if copying else "Put"
        if method == "POST" and key and "uploadId" in q:
            return "CompleteMultipartUpload"
        if method == "POST" and not key and "multipart/form-data" in self.environ.get("CONTENT_TYPE", ""):
            return "Post"
        if method == "DELETE" and key:
            return "delete"
        if method in ("GET", "HEAD") and key and set(q) <= OBJECT_READ_QUERY:
            return "read"
        return ""

    @property
    def writes(self) -> bool:
        return self.kind in (*CREATE_KINDS, "part-copy", "tagging", "delete")

    def copy_source(self) -> tuple[str, str, Optional[str]]:
        value = self.header("x-amz-copy-source") or ""
        parsed = urlsplit(value)
        bucket, _, key = unquote(parsed.path).lstrip("/").partition("/")
        version = parse_qs(parsed.query).get("versionId", [None])[0]
        return bucket, key, version


def _form_key(environ: dict[str, Any], body: bytes) -> str:
    from werkzeug.formparser import parse_form_data

    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(body)
    _, form, files = parse_form_data(env)
    key = form.get("key") or ""
    if "${filename}" in key:
        f = next(iter(files.values()), None)
        key = key.replace("${filename}", f.filename if f is not None and f.filename else "")
    return key


@dataclass
class Hold:
    """Hold the next tag write of one key whose body matches `match` (a regex; "" matches any) for `seconds`."""

    bucket: str
    key: str
    seconds: float
    match: str = ""

    def wants(self, req: Request, body: bytes) -> bool:
        return (req.bucket, req.key) == (self.bucket, self.key) and (
            not self.match or re.search(self.match, body.decode("utf-8", "replace")) is not None)


class CosLayer:
    """WSGI middleware around moto: COS's rules, injected faults, and a COS event for every create."""

    def __init__(self, app: Callable[..., Any], on_create: OnCreate, switches: Switches, faults: Faults,
                 state_prefix: str = ".ciflow/"):
        self.app = app
        self.on_create = on_create
        self.switches = switches
        self.faults = faults
        self.state_prefix = state_prefix
        self.locks = KeyLocks()
        self._bursts: dict[tuple[str, str], int] = {}
        self._faults_lock = threading.Lock()
        self.stalled: dict[tuple[str, str, str], int] = {}   # (kind, bucket, key) -> writes held right now
        self.holds: list[Hold] = []                          # one-shot holds of particular tag writes
        self.history = History(skip_prefix=state_prefix)     # reads, writes and deletes per key, for audits

    # --- faults -----------------------------------------------------------------------------------
    def _stall(self, what: str, req: Request, seconds: float) -> None:
        entry = (what, req.bucket, req.key)
        with self._faults_lock:
            self.stalled[entry] = self.stalled.get(entry, 0) + 1
        try:
            time.sleep(seconds)
        finally:
            with self._faults_lock:
                self.stalled[entry] -= 1
                if not self.stalled[entry]:
                    del self.stalled[entry]

    def _state_write_fails(self, req: Request) -> bool:
        f = self.faults
        with self._faults_lock:
            left = self._bursts.get((req.bucket, req.key), 0)
            if left > 0:
                self._bursts[(req.bucket, req.key)] = left - 1
                return True
            if f.state_fail_rate and random.random() < f.state_fail_rate:
                self._bursts[(req.bucket, req.key)] = max(0, int(f.state_fail_burst) - 1)
                return True
        return False

    def _take_hold(self, req: Request) -> Optional[Hold]:
        length = int(req.environ.get("CONTENT_LENGTH") or 0)
        body = req.environ["wsgi.input"].read(length) if length else b""
        req.environ["wsgi.input"] = io.BytesIO(body)
        with self._faults_lock:
            for hold in self.holds:
                if hold.wants(req, body):
                    self.holds.remove(hold)
                    return hold
        return None

    def _inject(self, req: Request) -> Optional[CosError]:
        """The fault this request meets, if any (after any stall it is held for)."""
        f = self.faults
        if req.writes and req.key.startswith(self.state_prefix) and self.state_prefix:
            if self._state_write_fails(req):
                return random.choice([CosError("503 Service Unavailable", "SlowDown", "injected fault"),
                                      CosError("500 Internal Server Error", "InternalError", "injected fault")])
            if f.state_stall_seconds > 0 and random.random() < f.state_stall_rate:
                self._stall("state", req, f.state_stall_seconds)
        if req.kind == "tagging":
            hold = self._take_hold(req) if self.holds else None
            if hold is not None:
                self._stall("tagging", req, hold.seconds)
            elif random.random() < f.tagging_fail_rate:
                return CosError("503 Service Unavailable", "SlowDown", "injected fault")
            elif f.tagging_stall_seconds > 0 and random.random() < f.tagging_stall_rate:
                self._stall("tagging", req, f.tagging_stall_seconds)
        if req.kind == "delete" and f.delete_stall_seconds > 0 and not (
                self.state_prefix and req.key.startswith(self.state_prefix)):
            self._stall("delete", req, f.delete_stall_seconds)
        if req.kind == "Copy" and random.random() < f.copy_fail_rate:
            # COS can answer a failed copy with 200 and an <Error> body; half the faults do that.
            status = "200 OK" if random.random() < 0.5 else "500 Internal Server Error"
            return CosError(status, "InternalError", "injected fault")
        return None

    # --- COS's rules -----------------------------------------------------------------------------
    def _check_put(self, req: Request) -> None:
        if req.header("If-None-Match") is not None:
            mode = self.switches.if_none_match
            if mode == "reject":
                raise CosError("400 Bad Request", "InvalidArgument",
                               "If-None-Match is not supported on PUT Object; use x-cos-forbid-overwrite")
            if mode == "ignore":
                req.drop_header("If-None-Match")
            # honour: moto answers 412 PreconditionFailed when the key exists (under our lock: atomic)
        self._check_forbid_overwrite(req)

    def _check_forbid_overwrite(self, req: Request) -> None:
        if (req.header("x-cos-forbid-overwrite") or "").strip().lower() != "true":
            return
        if versioning_status(req.bucket) is not None:
            return  # no effect where versioning is (or ever was) on
        if current_object(req.bucket, req.key) is not None:
            raise CosError("409 Conflict", "FileAlreadyExists", "the object already exists and may not be overwritten")

    def _check_copy(self, req: Request, limited: bool) -> None:
        s3 = self.switches.s3_copy_conditions == "honour"
        if_match = [req.header("x-cos-copy-source-If-Match")]
        if_none = [req.header("x-cos-copy-source-If-None-Match")]
        if s3:
            if_match.append(req.header("x-amz-copy-source-if-match"))
            if_none.append(req.header("x-amz-copy-source-if-none-match"))
        # moto applies the S3 If-None-Match itself; the checks here stand for both spellings.
        req.drop_header("x-amz-copy-source-if-none-match")
        src_bucket, src_key, version = req.copy_source()
        src = current_object(src_bucket, src_key, version)
        if src is None:
            return  # moto answers NoSuchKey / NoSuchVersion
        self.history.add(src_bucket, src_key, "read", src.etag, version or "")
        for cond in if_match:
            if cond is not None and not etag_matches(cond, src.etag):
                raise CosError("412 Precondition Failed", "PreconditionFailed",
                               "the copy source's ETag does not match x-cos-copy-source-If-Match")
        for cond in if_none:
            if cond is not None and etag_matches(cond, src.etag):
                raise CosError("412 Precondition Failed", "PreconditionFailed",
                               "the copy source's ETag matches x-cos-copy-source-If-None-Match")
        if limited and int(src.size) > self.switches.copy_limit_bytes:
            raise CosError("400 Bad Request", "EntityTooLarge",
                           f"the copy source is larger than {self.switches.copy_limit_bytes} bytes, the most "
                           "PUT Object - Copy takes; copy it with Upload Part - Copy")

    def _check_delete(self, req: Request) -> None:
        condition = req.header("If-Match")
        if condition is None:
            return
        mode = self.switches.delete_if_match
        if mode == "reject":
            raise CosError("400 Bad Request", "InvalidArgument", "If-Match is not supported on DELETE Object")
        req.drop_header("If-Match")  # decided here, under the key's lock; moto never sees it
        if mode == "ignore":
            return
        current = current_object(req.bucket, req.key)
        if current is None:
            raise CosError("404 Not Found", "NoSuchKey", "The specified key does not exist.")
        if not etag_matches(condition, current.etag):
            raise CosError("412 Precondition Failed", "PreconditionFailed",
                           "the object's ETag does not match If-Match")

    def _locked_keys(self, req: Request) -> list[tuple[str, str]]:
        keys = []
        if req.kind != "part-copy":
            keys.append((req.bucket, req.key))
        if req.kind in ("Copy", "part-copy"):
            src_bucket, src_key, _ = req.copy_source()
            keys.append((src_bucket, src_key))
        return keys

    # --- WSGI ------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # moto reads the undecoded path from RAW_URI (werkzeug's and gunicorn's name); cheroot calls it
        # REQUEST_URI. Without it moto would decode the path a second time ("%2520" → " ").
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        req = Request(environ)
        if req.kind == "Post":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            req.key = _form_key(environ, body)
        resource = f"{req.bucket}/{req.key}"
        fault = self._inject(req)
        if fault is not None:
            return self._error(start_response, fault, resource)
        if req.kind == "read":
            # Under the key's lock, so the history orders it exactly against the writes (COS reads are
            # strongly consistent: a read sees a write that finished before it, never half of one).
            with self.locks.hold((req.bucket, req.key)):
                body, ok, etag = self._call_moto(environ, start_response)
                if ok and etag:
                    self.history.add(req.bucket, req.key, "read", etag, self._version(req))
            return body
        if not req.writes or not req.key:
            return self._call_moto(environ, start_response)[0]
        with self.locks.hold(*self._locked_keys(req)):
            try:
                if req.kind == "Put":
                    self._check_put(req)
                elif req.kind == "CompleteMultipartUpload":
                    self._check_forbid_overwrite(req)
                elif req.kind in ("Copy", "part-copy"):
                    self._check_copy(req, limited=req.kind == "Copy")
                elif req.kind == "delete":
                    self._check_delete(req)
            except CosError as err:
                return self._error(start_response, err, resource)
            removed = self._removed_by(req) if req.kind == "delete" else ""
            body, ok, _ = self._call_moto(environ, start_response)
            made = created(req.bucket, req.key) if ok and req.kind in CREATE_KINDS else None
            if made is not None:
                self.history.add(req.bucket, req.key, "write", made.etag, made.version_id)
            elif ok and req.kind == "delete":
                self.history.add(req.bucket, req.key, "delete", removed, self._version(req))
        if made is not None:
            info = {"source_ip": environ.get("REMOTE_ADDR", "127.0.0.1"),
                    "auth": environ.get("HTTP_AUTHORIZATION", "")[:64]}
            self.on_create(req.bucket, req.key, f"cos:ObjectCreated:{req.kind}", made, info)
        return body

    @staticmethod
    def _version(req: Request) -> str:
        return (req.query.get("versionId") or [""])[0]

    @staticmethod
    def _removed_by(req: Request) -> str:
        """The ETag of the content a DELETE is about to remove: the named version, or the current object on a
        bucket without versioning; "" when it removes nothing or only adds a delete marker."""
        version = CosLayer._version(req)
        if not version and versioning_status(req.bucket) is not None:
            return ""
        obj = current_object(req.bucket, req.key, version or None)
        return str(obj.etag) if obj is not None else ""

    def _call_moto(self, environ: dict[str, Any],
                   start_response: Callable[..., Any]) -> tuple[list[bytes], bool, str]:
        """moto's answer: (body, whether it succeeded, the ETag header it carried or "")."""
        status_box: dict[str, str] = {}

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_box["status"] = status
            headers = list(headers)
            status_box["etag"] = next((v for k, v in headers if k.lower() == "etag"), "")
            if not any(k.lower() == "x-cos-request-id" for k, _ in headers):
                headers.append(("x-cos-request-id", uuid.uuid4().hex))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = b"".join(self.app(environ, capture))
        ok = status_box.get("status", "500")[:1] == "2" and b"<Error>" not in body[:512]
        return [body], ok, status_box.get("etag", "")

    @staticmethod
    def _error(start_response: Callable[..., Any], err: CosError, resource: str) -> list[bytes]:
        body = error_body(err.code, err.message, resource)
        start_response(err.status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body))),
                                    ("x-cos-request-id", uuid.uuid4().hex)])
        return [body]
