"""The CI emulator: `/jobs` over HTTP as the Cloud Infinite API pages describe it.

- Verifies COS request signatures against the configured credentials (temporary token included).
- Validates `POST /jobs` bodies against the documented fields and limits.
- Runs each job asynchronously on real media read from the object store, then POSTs the callback
  (XML by default, JSON when asked) to the job's `CallBack` URL.
- `GET /jobs/<ids>`, `GET /jobs?...` (list, with `inputObject`) and `PUT /jobs/<id>?cancel`.

Everything it received and sent is kept for inspection under `/_emulator/` (loopback only).
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, quote, urlsplit

from .cossign import Credential, SignatureError, verify
from .xmlutil import element_to_dict, to_xml

CST = timezone(timedelta(hours=8))
TIME_FMT = "%Y-%m-%dT%H:%M:%S%z"
REQUEST_FIELDS = ("Tag", "Input", "Operation", "CallBack", "CallBackFormat", "CallBackType",
                  "CallBackMqConfig", "QueueId")


def now_str() -> str:
    return datetime.now(CST).strftime(TIME_FMT)


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class Job:
    job_id: str
    bucket: str
    region: str
    tag: str
    request: dict[str, Any]
    detail: dict[str, Any]
    created: float = field(default_factory=time.time)
    callbacks: list[dict[str, Any]] = field(default_factory=list)


# A processor runs one job: (emulator, job) → (result key, result dict) or raises ApiError for Failed.
Processor = Callable[["CiEmulator", Job], tuple[str, dict[str, Any]]]
Validator = Callable[[dict[str, Any]], None]


def _printable_ascii(text: str) -> bool:
    return all(32 <= ord(c) < 127 for c in text)


class CiEmulator:
    """State and behaviour; `serve()` puts it behind HTTP."""

    def __init__(self, region: str, credentials: list[Credential], s3_endpoint: str,
                 workers: int = 2, host: str = "127.0.0.1", port: int = 0):
        self.region = region
        self.credentials = {c.secret_id: c for c in credentials}
        self.s3_endpoint = s3_endpoint
        self.host = host
        self.port = port
        self.jobs: dict[str, Job] = {}
        self.requests: list[dict[str, Any]] = []
        self.lost_jobs: list[dict[str, str]] = []
        self.config: dict[str, Any] = {
            "job_delay": 0.0,            # seconds before a job starts
            "json_jobs_detail": "object",  # object | array (shape of JobsDetail in JSON callbacks)
            "json_numbers": "int",       # int | str (how numbers are typed in JSON callbacks)
            "callback_retries": 2,
            "fail_next_creates": 0,      # answer the next N POST /jobs with 503 and create nothing
            # Fault injection (shares are probabilities per request / job / callback):
            "throttle_rate": 0.0,        # answer signed API requests with 429 or 503 before doing anything
            "accept_then_fail_rate": 0.0,  # create the job, then answer POST /jobs with 503
            "lose_job_rate": 0.0,        # accept a job that then vanishes (never runs, unknown to GET)
            "callback_drop_rate": 0.0,   # never send the callback
            "callback_duplicate_rate": 0.0,  # send the callback twice
            "callback_delay": 0.0,       # seconds added before every callback
            "callback_jitter": 0.0,      # up to this many random seconds more, which reorders callbacks
        }
        self.processors: dict[str, Processor] = {}
        self.validators: dict[str, Validator] = {}
        self._lock = threading.RLock()
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, name=f"ci-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._s3 = None
        from .jobtypes import register_all

        register_all(self)

    # ----- plumbing -------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def s3(self) -> Any:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            # CI reads and writes COS through its service role; locally any key works with moto.
            self._s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=self.region,
                                    aws_access_key_id="ci-service-role", aws_secret_access_key="ci",
                                    config=Config(s3={"addressing_style": "path"},
                                                  request_checksum_calculation="when_required",
                                                  response_checksum_validation="when_required"))
        return self._s3

    def start(self) -> None:
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="ci-emulator", daemon=True)
        self._thread.start()
        for w in self._workers:
            w.start()

    def stop(self) -> None:
        for _ in self._workers:
            self._queue.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # ----- the API --------------------------------------------------------------------------
    def create_job(self, bucket: str, region: str, doc: dict[str, Any]) -> Job:
        self.validate(doc)
        tag = doc["Tag"]
        op = doc.get("Operation") if isinstance(doc.get("Operation"), dict) else {}
        job_id = "c" + uuid.uuid4().hex
        operation: dict[str, Any] = {}
        for k, v in op.items():
            operation[k] = v
        operation.setdefault("JobLevel", "0")
        detail: dict[str, Any] = {
            "Code": "Success", "Message": "", "JobId": job_id, "State": "Submitted",
            "CreationTime": now_str(), "StartTime": "-", "EndTime": "-",
            "QueueId": "p" + uuid.uuid5(uuid.NAMESPACE_DNS, bucket).hex, "Tag": tag,
            "Input": {"BucketId": bucket, "Object": doc["Input"]["Object"], "Region": region},
            "Operation": operation,
        }
        job = Job(job_id, bucket, region, tag, doc, detail)
        if random.random() < float(self.config.get("lose_job_rate") or 0):
            # Answered as created, then forgotten: never runs, never found.
            self.lost_jobs.append({"job_id": job_id, "bucket": bucket, "object": doc["Input"]["Object"],
                                   "user_data": operation.get("UserData", "")})
            return job
        with self._lock:
            self.jobs[job_id] = job
        self._queue.put(job_id)
        return job

    def validate(self, doc: dict[str, Any]) -> None:
        for k in doc:
            if k not in REQUEST_FIELDS:
                raise ApiError("InvalidArgument", f"Request.{k} is not a recognised element")
        tag = doc.get("Tag")
        if not tag:
            raise ApiError("MissingContent", "Request.Tag is required")
        if tag not in self.processors:
            raise ApiError("InvalidArgument", f"Request.Tag {tag!r} is not supported")
        inp = doc.get("Input")
        if not isinstance(inp, dict) or not inp.get("Object"):
            raise ApiError("MissingContent", "Request.Input.Object is required")
        op = doc.get("Operation", {})
        if op == "":
            op = {}
        if not isinstance(op, dict):
            raise ApiError("InvalidArgument", "Request.Operation must be a container")
        level = op.get("JobLevel", "0")
        if level not in ("0", "1", "2"):
            raise ApiError("InvalidArgument", f"Request.Operation.JobLevel must be 0, 1 or 2, got {level!r}")
        ud = op.get("UserData")
        if ud is not None and (not isinstance(ud, str) or len(ud) > 1024 or not _printable_ascii(ud)):
            raise ApiError("InvalidArgument",
                           "Request.Operation.UserData must be printable ASCII of at most 1024 characters")
        fmt = doc.get("CallBackFormat")
        if fmt is not None and fmt not in ("XML", "JSON"):
            raise ApiError("InvalidArgument", f"Request.CallBackFormat must be XML or JSON, got {fmt!r}")
        ctype = doc.get("CallBackType")
        if ctype is not None and ctype not in ("Url", "TDMQ"):
            raise ApiError("InvalidArgument", f"Request.CallBackType must be Url or TDMQ, got {ctype!r}")
        if ctype == "TDMQ":
            mq = doc.get("CallBackMqConfig")
            if not isinstance(mq, dict):
                raise ApiError("MissingContent", "Request.CallBackMqConfig is required when CallBackType is TDMQ")
            if mq.get("MqRegion") not in ("sh", "bj", "gz", "cd", "hk"):
                raise ApiError("InvalidArgument", "Request.CallBackMqConfig.MqRegion must be sh|bj|gz|cd|hk")
            if mq.get("MqMode") not in ("Queue", "Topic"):
                raise ApiError("InvalidArgument", "Request.CallBackMqConfig.MqMode must be Queue or Topic")
            if not mq.get("MqName"):
                raise ApiError("MissingContent", "Request.CallBackMqConfig.MqName is required")
        cb = doc.get("CallBack")
        if cb is not None and cb != "no":
            parts = urlsplit(cb) if isinstance(cb, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                raise ApiError("InvalidArgument", "Request.CallBack must be an http(s) URL or 'no'")
        validator = self.validators.get(tag)
        if validator is not None:
            validator(doc)

    def get_jobs(self, bucket: str, ids: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        found, missing = [], []
        with self._lock:
            for jid in ids:
                job = self.jobs.get(jid)
                if job is not None and job.bucket == bucket:
                    found.append(json.loads(json.dumps(job.detail)))
                else:
                    missing.append(jid)
        return found, missing

    def list_jobs(self, bucket: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
        tag = params.get("tag", "")
        if not tag:
            raise ApiError("MissingContent", "tag is required")
        states = params.get("states", "All") or "All"
        wanted = None if states == "All" else set(states.split(","))
        size = int(params.get("size", "10") or 10)
        if not 1 <= size <= 100:
            raise ApiError("InvalidArgument", "size must be 1-100")
        input_object = params.get("inputObject")
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.bucket == bucket and j.tag == tag
                    and (wanted is None or j.detail["State"] in wanted)
                    and (input_object is None or j.detail["Input"]["Object"] == input_object)]
        jobs.sort(key=lambda j: j.created, reverse=params.get("orderByTime", "Desc") != "Asc")
        start = int(params.get("nextToken") or 0)
        page = jobs[start:start + size]
        next_token = str(start + size) if start + size < len(jobs) else ""
        return [json.loads(json.dumps(j.detail)) for j in page], next_token

    def cancel(self, bucket: str, job_id: str) -> None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None or job.bucket != bucket:
                raise ApiError("ResourceNotFound", f"job {job_id} does not exist", 404)
            if job.detail["State"] != "Submitted":
                raise ApiError("InvalidArgument", f"job {job_id} is {job.detail['State']}; only queued jobs cancel")
            job.detail["State"] = "Cancel"
            job.detail["EndTime"] = now_str()

    # ----- running jobs ---------------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            try:
                self._run(job_id)
            except Exception as exc:  # noqa: BLE001 - a broken job must not kill the worker
                print(f"[ci-emulator] job {job_id} crashed: {exc!r}", flush=True)

    def _run(self, job_id: str) -> None:
        delay = float(self.config.get("job_delay") or 0)
        if delay:
            time.sleep(delay)
        with self._lock:
            job = self.jobs[job_id]
            if job.detail["State"] != "Submitted":
                return
            job.detail["State"] = "Running"
            job.detail["StartTime"] = now_str()
        processor = self.processors[job.tag]
        try:
            result_key, result = processor(self, job)
            with self._lock:
                job.detail["Operation"][result_key] = result
                job.detail["State"] = "Success"
        except ApiError as err:
            with self._lock:
                job.detail["State"] = "Failed"
                job.detail["Code"] = err.code
                job.detail["Message"] = err.message
                failed = getattr(err, "result", None)
                if failed:
                    job.detail["Operation"][failed[0]] = failed[1]
        with self._lock:
            job.detail["EndTime"] = now_str()
        self._callback(job)

    def _callback(self, job: Job) -> None:
        url = job.request.get("CallBack")
        if not url or url == "no" or job.request.get("CallBackType") == "TDMQ":
            return
        cfg = self.config
        if random.random() < float(cfg.get("callback_drop_rate") or 0):
            job.callbacks.append({"attempt": 0, "status": None, "error": "dropped (injected)", "time": time.time()})
            return
        copies = 2 if random.random() < float(cfg.get("callback_duplicate_rate") or 0) else 1
        for n in range(copies):
            delay = float(cfg.get("callback_delay") or 0) + random.uniform(0, float(cfg.get("callback_jitter") or 0))
            if delay or n:
                t = threading.Timer(delay + 0.05 * n, self._deliver, args=(job,))
                t.daemon = True
                t.start()
            else:
                self._deliver(job)

    def _deliver(self, job: Job) -> None:
        url = job.request["CallBack"]
        fmt = job.request.get("CallBackFormat", "XML")
        body, ctype = self.callback_body(job, fmt)
        attempts = 1 + int(self.config.get("callback_retries", 2))
        for attempt in range(attempts):
            status, error = self.post(url, body, ctype)
            job.callbacks.append({"attempt": attempt + 1, "status": status, "error": error,
                                  "format": fmt, "time": time.time()})
            if status and status < 500:
                return
            time.sleep(0.2 * (attempt + 1))

    def callback_body(self, job: Job, fmt: str) -> tuple[bytes, str]:
        with self._lock:
            detail = json.loads(json.dumps(job.detail))
        if fmt == "JSON":
            if self.config.get("json_numbers") == "str":
                detail = _stringify(detail)
            jd: Any = [detail] if self.config.get("json_jobs_detail") == "array" else detail
            return json.dumps({"EventName": "TaskFinish", "JobsDetail": jd}).encode(), "application/json"
        xml = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": detail})
        return xml.encode("utf-8"), "application/xml"

    @staticmethod
    def post(url: str, body: bytes, ctype: str) -> tuple[int, str]:
        req = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": ctype, "User-Agent": "tencent-ci-emulator"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                resp.read()
                return resp.status, ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.reason if isinstance(exc.reason, str) else ""
        except OSError as exc:
            return 0, str(exc)

    def input_url(self, job: Job) -> str:
        key = job.detail["Input"]["Object"]
        return f"http://{job.bucket}.cos.{job.region}.myqcloud.com/{quote(key, safe='/')}"


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value


def error_xml(code: str, message: str, resource: str = "") -> bytes:
    # COS/CI errors carry Resource too; the SDK's error parser gives up without it.
    return to_xml("Error", {"Code": code, "Message": message, "Resource": resource or "-",
                            "RequestId": uuid.uuid4().hex, "TraceId": uuid.uuid4().hex}).encode()


class _Handler(BaseHTTPRequestHandler):
    emu: CiEmulator
    protocol_version = "HTTP/1.1"
    server_version = "tencent-ci"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _send(self, status: int, body: bytes, ctype: str = "application/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-ci-request-id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
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
        body = self._body()
        if parts.path.startswith("/_emulator/"):
            return self._admin(method, parts.path, body)
        entry: dict[str, Any] = {"method": method, "path": parts.path, "query": parts.query,
                                 "host": self.headers.get("Host", ""), "body": body.decode("utf-8", "replace"),
                                 "time": time.time()}
        status, out = 500, b""
        try:
            try:
                verify(method, parts.path, parts.query, dict(self.headers.items()), self.emu.credentials)
            except SignatureError as err:
                raise ApiError(err.code, err.message, err.status) from None
            bucket, region = self._bucket_region()
            entry["bucket"] = bucket
            if not bucket:
                raise ApiError("InvalidArgument", "the Host header names no bucket")
            status, out = self._route(method, parts.path, parts.query, body, bucket, region, entry)
        except ApiError as err:
            status, out = err.status, error_xml(err.code, err.message, self.headers.get("Host", "") + parts.path)
            entry["error"] = err.code
        entry["status"] = status
        with self.emu._lock:
            self.emu.requests.append(entry)
        self._send(status, out)
        return None

    def _route(self, method: str, path: str, query: str, body: bytes, bucket: str, region: str,
               entry: dict[str, Any]) -> tuple[int, bytes]:
        params = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
        if random.random() < float(self.emu.config.get("throttle_rate") or 0):
            if random.random() < 0.5:
                raise ApiError("SlowDown", "injected fault: request rate too high", 429)
            raise ApiError("ServiceUnavailable", "injected fault: service unavailable", 503)
        if method == "POST" and path == "/jobs":
            with self.emu._lock:
                if self.emu.config.get("fail_next_creates", 0) > 0:
                    self.emu.config["fail_next_creates"] -= 1
                    raise ApiError("ServiceUnavailable", "injected fault: service unavailable", 503)
            if not body.strip():
                raise ApiError("MissingContent", "the request body is empty")
            from defusedxml import ElementTree

            try:
                root = ElementTree.fromstring(body, forbid_dtd=True)
            except Exception:  # noqa: BLE001 - any parse failure is the client's fault
                raise ApiError("InvalidContent", "the request body is not well-formed XML") from None
            if root.tag != "Request":
                raise ApiError("InvalidContent", "the root element must be Request")
            doc = element_to_dict(root)
            if not isinstance(doc, dict):
                raise ApiError("MissingContent", "Request is empty")
            entry["request"] = doc
            job = self.emu.create_job(bucket, region, doc)
            entry["job_id"] = job.job_id
            if random.random() < float(self.emu.config.get("accept_then_fail_rate") or 0):
                raise ApiError("InternalError", "injected fault: the job was accepted but the answer failed", 503)
            return 200, to_xml("Response", {"JobsDetail": job.detail}).encode()
        if method == "GET" and path.startswith("/jobs/"):
            ids = [i for i in path[len("/jobs/"):].split(",") if i]
            found, missing = self.emu.get_jobs(bucket, ids)
            out: dict[str, Any] = {"JobsDetail": found}
            if missing:
                out["NonExistJobIds"] = missing
            return 200, to_xml("Response", out).encode()
        if method == "GET" and path == "/jobs":
            jobs, next_token = self.emu.list_jobs(bucket, params)
            return 200, to_xml("Response", {"JobsDetail": jobs, "NextToken": next_token}).encode()
        if method == "PUT" and path.startswith("/jobs/") and "cancel" in params:
            self.emu.cancel(bucket, path[len("/jobs/"):])
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
                emu.config.update(json.loads(body or b"{}"))
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
