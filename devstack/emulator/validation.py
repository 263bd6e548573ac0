"""What every `/jobs` request must satisfy, whatever its Tag, as the API pages describe it.

`validate_request` checks a parsed `<Request>` (from `request_xml.parse_request`): only documented
elements, each at most once, single values where the pages say String and containers where they say
Container, then the documented value sets. Job types add their own checks (`emu.validators`).
`ListQuery.parse` does the same for the list API's query string (`GET /jobs?...`).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from .errors import ApiError

REQUEST_FIELDS = ("Tag", "Input", "Operation", "CallBack", "CallBackFormat", "CallBackType",
                  "CallBackMqConfig", "QueueId")
SCALAR_FIELDS = ("Tag", "CallBack", "CallBackFormat", "CallBackType", "QueueId")
INPUT_FIELDS = ("Object",)
MQ_FIELDS = ("MqRegion", "MqMode", "MqName")
STATES = ("All", "Submitted", "Running", "Success", "Failed", "Pause", "Cancel")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def once(value: Any, path: str) -> Any:
    if isinstance(value, list):
        raise ApiError("InvalidArgument", f"{path} may appear only once")
    return value


def scalar(value: Any, path: str) -> str:
    """A String element: given once, with text and no child elements."""
    once(value, path)
    if isinstance(value, dict):
        raise ApiError("InvalidArgument", f"{path} must be a single value, not a container")
    return value


def container(value: Any, path: str) -> dict[str, Any]:
    """A Container element given once (an empty one reads as {})."""
    once(value, path)
    if value == "":
        return {}
    if not isinstance(value, dict):
        raise ApiError("InvalidArgument", f"{path} must be a container")
    return value


def _printable_ascii(text: str) -> bool:
    return all(32 <= ord(c) < 127 for c in text)


def validate_request(doc: dict[str, Any], tags: Collection[str]) -> None:
    """Raise ApiError for anything the pages do not allow in any `POST /jobs` body."""
    for k in doc:
        if k not in REQUEST_FIELDS:
            raise ApiError("InvalidArgument", f"Request.{k} is not a recognised element")
    for k in SCALAR_FIELDS:
        if k in doc:
            scalar(doc[k], f"Request.{k}")
    tag = doc.get("Tag")
    if not tag:
        raise ApiError("MissingContent", "Request.Tag is required")
    if tag not in tags:
        raise ApiError("InvalidArgument", f"Request.Tag {tag!r} is not supported")

    if doc.get("Input") is None:
        raise ApiError("MissingContent", "Request.Input is required")
    inp = container(doc["Input"], "Request.Input")
    for k in inp:
        if k not in INPUT_FIELDS:
            raise ApiError("InvalidArgument", f"Request.Input.{k} is not a recognised element")
    if not inp.get("Object"):
        raise ApiError("MissingContent", "Request.Input.Object is required")
    scalar(inp["Object"], "Request.Input.Object")

    op = container(doc.get("Operation", {}), "Request.Operation")
    for k in ("UserData", "JobLevel"):
        if k in op:
            scalar(op[k], f"Request.Operation.{k}")
    level = op.get("JobLevel", "0")
    if level not in ("0", "1", "2"):
        raise ApiError("InvalidArgument", f"Request.Operation.JobLevel must be 0, 1 or 2, got {level!r}")
    ud = op.get("UserData")
    if ud is not None and (len(ud) > 1024 or not _printable_ascii(ud)):
        raise ApiError("InvalidArgument",
                       "Request.Operation.UserData must be printable ASCII of at most 1024 characters")

    fmt = doc.get("CallBackFormat")
    if fmt is not None and fmt not in ("XML", "JSON"):
        raise ApiError("InvalidArgument", f"Request.CallBackFormat must be XML or JSON, got {fmt!r}")
    ctype = doc.get("CallBackType")
    if ctype is not None and ctype not in ("Url", "TDMQ"):
        raise ApiError("InvalidArgument", f"Request.CallBackType must be Url or TDMQ, got {ctype!r}")
    if "CallBackMqConfig" in doc or ctype == "TDMQ":
        _check_mq(doc.get("CallBackMqConfig"), required=ctype == "TDMQ")
    cb = doc.get("CallBack")
    if cb is not None and cb != "no":
        parts = urlsplit(cb)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError("InvalidArgument", "Request.CallBack must be an http(s) URL or 'no'")


def _check_mq(value: Any, required: bool) -> None:
    if value is None:
        if required:
            raise ApiError("MissingContent", "Request.CallBackMqConfig is required when CallBackType is TDMQ")
        return
    mq = container(value, "Request.CallBackMqConfig")
    for k, v in mq.items():
        if k not in MQ_FIELDS:
            raise ApiError("InvalidArgument", f"Request.CallBackMqConfig.{k} is not a recognised element")
        scalar(v, f"Request.CallBackMqConfig.{k}")
    if mq.get("MqRegion") not in ("sh", "bj", "gz", "cd", "hk"):
        raise ApiError("InvalidArgument", "Request.CallBackMqConfig.MqRegion must be sh|bj|gz|cd|hk")
    if mq.get("MqMode") not in ("Queue", "Topic"):
        raise ApiError("InvalidArgument", "Request.CallBackMqConfig.MqMode must be Queue or Topic")
    if not mq.get("MqName"):
        raise ApiError("MissingContent", "Request.CallBackMqConfig.MqName is required")


def job_ids(path_tail: str) -> list[str]:
    """The ids of `GET /jobs/<id>[,<id>...]` (path already percent-decoded)."""
    ids = [i for i in path_tail.split(",") if i]
    if not ids:
        raise ApiError("InvalidArgument", "no JobId in the path")
    return ids


@dataclass(frozen=True)
class ListQuery:
    """`GET /jobs?tag=&states=&size=&nextToken=&orderByTime=&startCreationTime=&endCreationTime=&inputObject=`."""

    tag: str
    states: Optional[frozenset[str]]  # None: All
    size: int
    start: int
    ascending: bool
    input_object: Optional[str]
    created_from: Optional[float]
    created_to: Optional[float]

    @classmethod
    def parse(cls, query: str) -> ListQuery:
        raw = parse_qs(query, keep_blank_values=True)
        for k, v in raw.items():
            if len(v) > 1:
                raise ApiError("InvalidArgument", f"the parameter {k} may be given only once")
        p = {k: v[0] for k, v in raw.items()}
        tag = p.get("tag", "")
        if not tag:
            raise ApiError("MissingContent", "tag is required")
        states_raw = p.get("states", "") or "All"
        states = states_raw.split(",")
        for s in states:
            if s not in STATES:
                raise ApiError("InvalidArgument", f"states must be a comma-separated list of "
                                                  f"{', '.join(STATES)}; got {states_raw!r}")
        size_raw = p.get("size", "") or "10"
        if not size_raw.isdigit() or not 1 <= int(size_raw) <= 100:
            raise ApiError("InvalidArgument", f"size must be an integer from 1 to 100, got {size_raw!r}")
        token = p.get("nextToken", "")
        if token and not token.isdigit():
            raise ApiError("InvalidArgument", "nextToken is not one this API returned")
        order = p.get("orderByTime", "") or "Desc"
        if order not in ("Desc", "Asc"):
            raise ApiError("InvalidArgument", f"orderByTime must be Desc or Asc, got {order!r}")
        return cls(tag=tag, states=None if "All" in states else frozenset(states), size=int(size_raw),
                   start=int(token or 0), ascending=order == "Asc", input_object=p.get("inputObject"),
                   created_from=_time(p, "startCreationTime"), created_to=_time(p, "endCreationTime"))


def _time(params: dict[str, str], name: str) -> Optional[float]:
    value = params.get(name, "")
    if not value:
        return None
    try:
        return datetime.strptime(value, TIME_FORMAT).timestamp()
    except ValueError:
        raise ApiError("InvalidArgument", f"{name} must look like 2001-01-01T00:00:00+0800, got {value!r}") from None
