"""A finished job's callback, sent as CI sends it, with a switch for each thing CI's pages leave open.

CI POSTs `{"EventName": "TaskFinish", "JobsDetail": ...}` (JSON) or `<Response><EventName>TaskFinish</EventName>
<JobsDetail>...</JobsDetail></Response>` (XML, the default) to the job's `CallBack` URL. Switches, in
`emu.config` (settable through `/_emulator/config` or `CiEmulator(config=...)`):

- `callback_user_data`: `omit` (the default) | `echo`. The documented ImageInspect callback has no
  `Operation.UserData` (platform.md §2) and whether real callbacks echo it is unverified; `omit` sends the
  documented shape, `echo` keeps the UserData the job was created with. `GET /jobs/<id>` carries it either way.
- `callback_query`: `keep` | `drop` | `reencode`. Whether CI keeps the `CallBack` URL's query string, and
  whether it percent-encodes it, is unverified: `drop` calls the URL without its query, `reencode` with
  the query percent-encoded once more as one opaque string (`t=a.b&x=1` → `t%3Da.b%26x%3D1`).
- `json_jobs_detail`: `object` | `array` and `json_numbers`: `int` | `str`, the two JSON shapes the pages show.
- Faults: `callback_drop_rate`, `callback_duplicate_rate`, `callback_delay`, `callback_jitter` and
  `callback_retries` (attempts after a failed POST).

Each attempt is recorded in `job.callbacks` with the URL it went to.
"""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from .xmlutil import to_xml

if TYPE_CHECKING:
    from .server import CiEmulator, Job

CHOICES: dict[str, tuple[str, ...]] = {
    "damaged_image": ("clean", "failed"),
    "callback_user_data": ("omit", "echo"),
    "callback_query": ("keep", "drop", "reencode"),
    "json_jobs_detail": ("object", "array"),
    "json_numbers": ("int", "str"),
}
DEFAULTS: dict[str, Any] = {
    "callback_user_data": "omit",
    "callback_query": "keep",
    "json_jobs_detail": "object",
    "json_numbers": "int",
    "callback_retries": 2,
    "callback_drop_rate": 0.0,       # never send the callback
    "callback_duplicate_rate": 0.0,  # send the callback twice
    "callback_delay": 0.0,           # seconds added before every callback
    "callback_jitter": 0.0,          # up to this many random seconds more, which reorders callbacks
}


def callback_url(url: str, query_mode: str) -> str:
    """The URL CI calls for a job's `CallBack`, under the `callback_query` switch."""
    parts = urlsplit(url)
    if query_mode == "keep" or not parts.query:
        return url
    query = "" if query_mode == "drop" else quote(parts.query, safe="")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def callback_body(detail: dict[str, Any], fmt: str, config: dict[str, Any]) -> tuple[bytes, str]:
    """(body, content type) of the callback for a job whose JobsDetail is `detail` (not modified)."""
    detail = json.loads(json.dumps(detail))
    if config.get("callback_user_data", DEFAULTS["callback_user_data"]) == "omit":
        op = detail.get("Operation")
        if isinstance(op, dict):
            op.pop("UserData", None)
    if fmt == "JSON":
        if config.get("json_numbers") == "str":
            detail = _stringify(detail)
        jd: Any = [detail] if config.get("json_jobs_detail") == "array" else detail
        return json.dumps({"EventName": "TaskFinish", "JobsDetail": jd}).encode(), "application/json"
    xml = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": detail})
    return xml.encode("utf-8"), "application/xml"


def post(url: str, body: bytes, ctype: str) -> tuple[int, str]:
    """(HTTP status or 0, error text) of one POST; one connection per callback, as nothing is kept alive."""
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


def send(emu: CiEmulator, job: Job) -> None:
    """Send the callback of a finished job (now, later or never, as the fault switches say)."""
    if job.request.get("CallBackType") == "TDMQ":
        publish(emu, job)
        return
    url = job.request.get("CallBack")
    if not url or url == "no":
        return
    cfg = emu.config
    if random.random() < float(cfg.get("callback_drop_rate") or 0):
        job.callbacks.append({"attempt": 0, "status": None, "error": "dropped (injected)", "time": time.time()})
        return
    copies = 2 if random.random() < float(cfg.get("callback_duplicate_rate") or 0) else 1
    for n in range(copies):
        delay = float(cfg.get("callback_delay") or 0) + random.uniform(0, float(cfg.get("callback_jitter") or 0))
        if delay or n:
            t = threading.Timer(delay + 0.05 * n, deliver, args=(emu, job))
            t.daemon = True
            t.start()
        else:
            deliver(emu, job)


def publish(emu: CiEmulator, job: Job) -> None:
    """`CallBackType=TDMQ`: the callback document goes to the job's CMQ topic or queue instead."""
    mq = job.request.get("CallBackMqConfig") or {}
    with emu._lock:
        body, _ = callback_body(job.detail, job.request.get("CallBackFormat", "XML"), emu.config)
    job.callbacks.append({"attempt": 1, "status": "published", "error": None, "time": time.time(),
                          "mq": f"{mq.get('MqMode')}:{mq.get('MqName')}"})
    text = body.decode("utf-8") if isinstance(body, bytes) else str(body)
    if emu.mq_publisher is not None:
        emu.mq_publisher(str(mq.get("MqRegion", "")), str(mq.get("MqMode", "")), str(mq.get("MqName", "")),
                         text, job.detail["JobId"])


def deliver(emu: CiEmulator, job: Job) -> None:
    """POST the callback, retrying connection failures and 5xx answers `callback_retries` times."""
    cfg = emu.config
    url = callback_url(job.request["CallBack"], str(cfg.get("callback_query", DEFAULTS["callback_query"])))
    fmt = job.request.get("CallBackFormat", "XML")
    with emu._lock:
        body, ctype = callback_body(job.detail, fmt, cfg)
    attempts = 1 + int(cfg.get("callback_retries", DEFAULTS["callback_retries"]))
    for attempt in range(attempts):
        status, error = post(url, body, ctype)
        job.callbacks.append({"attempt": attempt + 1, "status": status, "error": error, "format": fmt,
                              "url": url, "time": time.time()})
        if status and status < 500:
            return
        time.sleep(0.2 * (attempt + 1))


def _stringify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return value
