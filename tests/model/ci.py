"""Cloud Infinite's `/jobs` in memory, with the semantics of the CI emulator (devstack/emulator).

`CiModel` implements the port `ciflow.ci.CiJobs` offers (`create`, `get`, `get_many`, `find`) and the
CI side of a job's life: a job stays `Submitted` until `finish` reads its input object from the COS model
*at that moment* (CI reads the object when it runs, not when the job is created; `reads="create"` is a
weaker world where CI reads the bytes current when it accepted the job), or until `lose` makes it
vanish (accepted, never run, unknown to every query). The verdict follows the bytes read:
`b"EVIL"` in them → `Suspicious`, `b"BROKEN"` → the job fails `InvalidImage`, an absent object → the job
fails `InputObjectNotExist` (as the emulator answers); anything else is clean.

A finished job with a `CallBack` URL produces the callback CI would send: the documented body (no
`UserData`; platform.md §2) in the job's `CallBackFormat`, with the URL's query (the `?t=` token).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from ciflow.errors import PermanentError

from .cos import CosModel

# When CI reads a job's input object. "run" (CI's behaviour: it fetches the object when the job runs, so
# an overwrite in between changes what it inspects) or "create" (the bytes current when the job was
# accepted: a weaker world, for exploring past a known open defect of the "run" world).
READS = ("run", "create")
EVIL = b"EVIL"
BROKEN = b"BROKEN"


def truth(body: Optional[bytes]) -> str:
    """What CI concludes about these bytes: CLEAN, SUSPICIOUS or FAILED (None: nothing to read)."""
    if body is None:
        return "FAILED"
    if EVIL in body:
        return "SUSPICIOUS"
    if BROKEN in body:
        return "FAILED"
    return "CLEAN"


@dataclass
class CiJob:
    job_id: str
    bucket: str
    tag: str
    key: str
    request: dict[str, Any]
    created: float
    detail: dict[str, Any]
    lost: bool = False
    finished: bool = False
    read_etag: Optional[str] = None      # the ETag of the bytes CI read (None: object absent, or not run)
    read_body: Optional[bytes] = None
    snapshot: Any = None                 # reads="create": the version CI read when it accepted the job
    notes: list[str] = field(default_factory=list)

    @property
    def user_data(self) -> str:
        return str(self.request.get("Operation", {}).get("UserData", ""))

    @property
    def callback_url(self) -> str:
        cb = self.request.get("CallBack")
        return "" if not cb or cb == "no" else str(cb)

    @property
    def state(self) -> str:
        return str(self.detail["State"])


def _xml(tag: str, value: Any) -> str:
    if isinstance(value, list):
        return "".join(_xml(tag, v) for v in value)
    if isinstance(value, dict):
        return f"<{tag}>" + "".join(_xml(k, v) for k, v in value.items()) + f"</{tag}>"
    if value is None or value == "":
        return f"<{tag}/>"
    return f"<{tag}>{escape(str(value))}</{tag}>"


class CiModel:
    def __init__(self, cos: CosModel, region: str = "ap-guangzhou", reads: str = "run"):
        if reads not in READS:
            raise ValueError(f"reads: expected one of {READS}, got {reads!r}")
        self.cos = cos
        self.region = region
        self.reads = reads
        self.jobs: dict[str, CiJob] = {}
        self._n = 0

    # --- the port (ciflow.ci.CiJobs) ------------------------------------------------------------
    def create(self, bucket: str, job: dict[str, Any]) -> dict[str, Any]:
        self._validate(job)
        self._n += 1
        job_id = f"j{self._n:04d}" + "0" * 27   # CI's ids are 32 alphanumerics
        op = dict(job.get("Operation") or {})
        op.setdefault("JobLevel", "0")
        detail = {"Code": "Success", "Message": "", "JobId": job_id, "State": "Submitted",
                  "CreationTime": str(int(self.cos.clock.now)), "StartTime": "-", "EndTime": "-",
                  "QueueId": "pmodelqueue", "Tag": job["Tag"],
                  "Input": {"BucketId": bucket, "Object": job["Input"]["Object"], "Region": self.region},
                  "Operation": op}
        j = self.jobs[job_id] = CiJob(job_id, bucket, job["Tag"], job["Input"]["Object"], copy.deepcopy(job),
                                      self.cos.clock.now, detail)
        if self.reads == "create":
            j.snapshot = self.cos.current(bucket, j.key)
        return copy.deepcopy(detail)

    def get(self, bucket: str, job_id: str) -> Optional[dict[str, Any]]:
        j = self.jobs.get(job_id)
        if j is None or j.lost or j.bucket != bucket:
            return None
        return copy.deepcopy(j.detail)

    def get_many(self, bucket: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for jid in dict.fromkeys(job_ids):
            d = self.get(bucket, jid)
            if d is not None:
                out[jid] = d
        return out

    def find(self, bucket: str, tag: str, key: str, user_data: str) -> Optional[dict[str, Any]]:
        """`GET /jobs?tag=&inputObject=key&orderByTime=Desc`, then the first whose UserData matches."""
        for j in sorted(self.jobs.values(), key=lambda j: (j.created, j.job_id), reverse=True):
            if (not j.lost and j.bucket == bucket and j.tag == tag and j.key == key
                    and j.user_data == user_data):
                return copy.deepcopy(j.detail)
        return None

    def _validate(self, job: dict[str, Any]) -> None:
        if not isinstance(job, dict) or job.get("Tag") != "ImageInspect":
            raise PermanentError("InvalidArgument", "the model runs ImageInspect jobs only")
        inp = job.get("Input")
        if not isinstance(inp, dict) or not inp.get("Object"):
            raise PermanentError("MissingContent", "Request.Input.Object is required")
        ud = (job.get("Operation") or {}).get("UserData")
        if ud is not None and (len(ud) > 1024 or not all(32 <= ord(c) < 127 for c in ud)):
            raise PermanentError("InvalidArgument", "UserData must be printable ASCII of at most 1024 characters")
        cb = job.get("CallBack")
        if cb is not None and cb != "no":
            parts = urlsplit(cb)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise PermanentError("InvalidArgument", "Request.CallBack must be an http(s) URL or 'no'")

    # --- CI's side --------------------------------------------------------------------------------
    def unfinished(self) -> list[CiJob]:
        return [j for j in self.jobs.values() if not j.lost and not j.finished]

    def lose(self, job_id: str) -> None:
        self.jobs[job_id].lost = True

    def finish(self, job_id: str) -> CiJob:
        """Run the job now: read its input object as it is at this moment, and conclude."""
        j = self.jobs[job_id]
        current = j.snapshot if self.reads == "create" else self.cos.current(j.bucket, j.key)
        j.read_body = current.body if current is not None else None
        j.read_etag = current.etag if current is not None else None
        op = j.detail["Operation"]
        base = {"InputObjectName": j.key, "InputObjectUrl": f"http://{j.bucket}.cos.{self.region}.myqcloud.com/{j.key}"}
        verdict = truth(j.read_body)
        if current is None or verdict == "FAILED":
            code = "InputObjectNotExist" if current is None else "InvalidImage"
            j.detail.update({"State": "Failed", "Code": code, "Message": code})
            op["ImageInspectResult"] = {"Code": code, "Message": code, **base, "State": "Failed"}
        else:
            pr: dict[str, Any] = {"PicSize": str(len(j.read_body or b"")), "PicType": "png",
                                  "Suspicious": "true" if verdict == "SUSPICIOUS" else "false"}
            if verdict == "SUSPICIOUS":
                pr.update({"SuspiciousBeginByte": "1", "SuspiciousEndByte": str(len(j.read_body or b"")),
                           "SuspiciousSize": "4", "SuspiciousType": "MPEG-TS"})
            op["ImageInspectResult"] = {"Code": "Success", "Message": "", **base, "ProcessResult": pr,
                                        "State": "Success"}
            j.detail["State"] = "Success"
        j.detail["StartTime"] = j.detail["EndTime"] = str(int(self.cos.clock.now))
        j.finished = True
        return j

    def result_body(self, j: CiJob, echo_user_data: bool = False, json_array: bool = False) -> tuple[str, str]:
        """What CI reports when a job finishes (the callback body, or the TDMQ message) and its type."""
        detail = copy.deepcopy(j.detail)
        if not echo_user_data:
            detail["Operation"].pop("UserData", None)   # the documented body carries none
        if j.request.get("CallBackFormat", "XML") == "JSON":
            return (json.dumps({"EventName": "TaskFinish", "JobsDetail": [detail] if json_array else detail}),
                    "application/json")
        return _xml("Response", {"EventName": "TaskFinish", "JobsDetail": detail}), "application/xml"

    def callback_request(self, j: CiJob, echo_user_data: bool = False, json_array: bool = False) -> dict[str, Any]:
        """The HTTP request CI sends to the job's CallBack URL, as a Function URL event."""
        return http_event(j.callback_url, *self.result_body(j, echo_user_data, json_array))

    @staticmethod
    def by_queue(j: CiJob) -> bool:
        return j.request.get("CallBackType") == "TDMQ"

    def queue_message(self, j: CiJob, msg_id: str, echo_user_data: bool = False) -> dict[str, Any]:
        """One record of SCF's CMQ topic-trigger event carrying the job's result (what CI publishes is
        unverified; most likely the callback body itself, platform.md §2)."""
        mq = j.request.get("CallBackMqConfig") or {}
        return {"CMQ": {"type": "topic", "topicOwner": 1250000000, "topicName": mq.get("MqName", ""),
                        "subscriptionName": "ciflow", "publishTime": str(int(self.cos.clock.now)), "msgId": msg_id,
                        "requestId": f"req-{msg_id}", "msgBody": self.result_body(j, echo_user_data)[0],
                        "msgTag": ""}}


def http_event(url: str, body: str, ctype: str = "application/xml") -> dict[str, Any]:
    parts = urlsplit(url)
    return {"httpMethod": "POST", "path": parts.path or "/", "isBase64Encoded": False, "body": body,
            "headers": {"Content-Type": ctype, "User-Agent": "Go-http-client/1.1", "X-Scf-Remote-Addr": "203.0.113.7"},
            "queryString": dict(parse_qsl(parts.query))}
