"""The CI emulator: `/jobs` over HTTP as the Cloud Infinite API pages describe it.

- Verifies COS request signatures against the configured credentials (temporary token included).
- Validates `POST /jobs` bodies against the documented fields and limits.
- Runs each job asynchronously on real media read from the object store, then POSTs the callback
  (XML by default, JSON when asked) to the job's `CallBack` URL (`callbacks`, with its switches).
- `GET /jobs/<ids>`, `GET /jobs?...` (list, with `inputObject`) and `PUT /jobs/<id>?cancel`.

Everything it received and sent is kept for inspection under `/_emulator/` (loopback only).

`http_api` is the HTTP side, `request_xml` reads request bodies, `validation` holds the checks common to
every Tag, and each job type (`jobtypes.MODULES`) adds its processor, validator and create hook.
"""

from __future__ import annotations

import copy
import json
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import quote

from . import callbacks
from .cossign import Credential
from .errors import ApiError
from .http_api import ApiHandler
from .request_xml import MAX_BODY_BYTES
from .validation import ListQuery, validate_request

__all__ = ["ApiError", "CiEmulator", "Job", "now_str"]  # ApiError: job types raise it from here

CST = timezone(timedelta(hours=8))
TIME_FMT = "%Y-%m-%dT%H:%M:%S%z"
# Switches with a fixed set of values; configure() refuses anything else.
CHOICES: dict[str, tuple[str, ...]] = {**callbacks.CHOICES}


def now_str() -> str:
    return datetime.now(CST).strftime(TIME_FMT)


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
    answer: dict[str, Any] = field(default_factory=dict)  # JobsDetail as POST /jobs answered it


# A processor runs one job: (emulator, job) → (result key, result dict) or raises ApiError for Failed.
Processor = Callable[["CiEmulator", Job], tuple[str, dict[str, Any]]]
Validator = Callable[[dict[str, Any]], None]
# Runs when a job is created, before POST /jobs answers: adds what the create answer shows (TemplateName, ...).
OnCreate = Callable[["CiEmulator", Job], None]


class CiEmulator:
    """State and behaviour; `start()` puts it behind HTTP (`http_api.ApiHandler`)."""

    def __init__(self, region: str, credentials: list[Credential], s3_endpoint: str,
                 workers: int = 2, host: str = "127.0.0.1", port: int = 0,
                 config: Optional[dict[str, Any]] = None):
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
            "damaged_image": "clean",    # clean | failed: a damaged image with no payload (image_jobs.py)
            **callbacks.DEFAULTS,        # the callback's shape and faults (see callbacks.py)
            "fail_next_creates": 0,      # answer the next N POST /jobs with 503 and create nothing
            # Fault injection (shares are probabilities per request / job / callback):
            "throttle_rate": 0.0,        # answer signed API requests with 429 or 503 before doing anything
            "accept_then_fail_rate": 0.0,  # create the job, then answer POST /jobs with 503
            "lose_job_rate": 0.0,        # accept a job that then vanishes (never runs, unknown to GET)
            "max_request_bytes": MAX_BODY_BYTES,  # larger POST /jobs bodies get InvalidContent
        }
        # Where CallBackType=TDMQ results go: (region, mode, name, body, job id); the stack plugs in its broker.
        self.mq_publisher: Optional[Callable[[str, str, str, str, str], None]] = None
        self.processors: dict[str, Processor] = {}
        self.validators: dict[str, Validator] = {}
        self.on_create: dict[str, OnCreate] = {}
        self.create_answer_omits: dict[str, tuple[str, ...]] = {}  # JobsDetail elements a Tag's answer lacks
        self._lock = threading.RLock()
        self._queue: queue.Queue[Optional[str]] = queue.Queue()
        self._workers = [threading.Thread(target=self._work, name=f"ci-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._s3 = None
        from .jobtypes import register_all

        register_all(self)
        if config:
            self.configure(config)

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

        class Handler(ApiHandler):
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

    def configure(self, values: dict[str, Any]) -> None:
        """Set switches (`/_emulator/config` does this over HTTP); ValueError for unknown values."""
        if not isinstance(values, dict):
            raise ValueError("the configuration must be a JSON object")
        for key, value in values.items():
            allowed = CHOICES.get(key)
            if allowed is not None and value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
        with self._lock:
            self.config.update(values)

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
        hook = self.on_create.get(tag)
        if hook is not None:
            hook(self, job)
        omit = self.create_answer_omits.get(tag, ())
        job.answer = {k: copy.deepcopy(v) for k, v in detail.items() if k not in omit}
        if random.random() < float(self.config.get("lose_job_rate") or 0):
            # Answered as created, then forgotten: never runs, never found.
            self.lost_jobs.append({"job_id": job_id, "bucket": bucket, "object": doc["Input"]["Object"],
                                   "user_data": operation.get("UserData", "")})
            return job
        with self._lock:
            self.jobs[job_id] = job
        self._queue.put(job_id)
        return job

    def create_answer(self, job: Job) -> dict[str, Any]:
        """JobsDetail as the create answer shows it: the job as it was created, before it ran."""
        return job.answer

    def validate(self, doc: dict[str, Any]) -> None:
        validate_request(doc, self.processors)
        validator = self.validators.get(doc["Tag"])
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

    def list_jobs(self, bucket: str, q: ListQuery) -> tuple[list[dict[str, Any]], str]:
        with self._lock:
            jobs = [j for j in self.jobs.values() if j.bucket == bucket and j.tag == q.tag
                    and (q.states is None or j.detail["State"] in q.states)
                    and (q.input_object is None or j.detail["Input"]["Object"] == q.input_object)
                    and (q.created_from is None or j.created >= q.created_from)
                    and (q.created_to is None or j.created <= q.created_to)]
        jobs.sort(key=lambda j: j.created, reverse=not q.ascending)
        page = jobs[q.start:q.start + q.size]
        next_token = str(q.start + q.size) if q.start + q.size < len(jobs) else ""
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
        callbacks.send(self, job)

    def callback_body(self, job: Job, fmt: str) -> tuple[bytes, str]:
        """(body, content type) of the job's callback as it would be sent now."""
        with self._lock:
            return callbacks.callback_body(job.detail, fmt, self.config)

    def input_url(self, job: Job) -> str:
        key = job.detail["Input"]["Object"]
        return f"http://{job.bucket}.cos.{job.region}.myqcloud.com/{quote(key, safe='/')}"
