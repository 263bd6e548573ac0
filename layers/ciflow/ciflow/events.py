"""COS trigger events → typed records.

Whether COS percent-encodes the key inside ``cosObject.key`` is not documented, so each record
carries every plausible reading of its key (`key_candidates`); the submit path resolves the one
that exists with a HEAD request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import unquote, unquote_plus, urlsplit

from .errors import BadEventError
from .regions import full_region

CREATE_PREFIX = "cos:ObjectCreated:"


@dataclass(frozen=True)
class CosRecord:
    """One object event. `bucket` is the full bucket name (`<name>-<appid>`)."""

    bucket: str
    appid: str
    region: str
    event_name: str
    key_candidates: tuple[str, ...]
    size: Optional[int]
    meta: dict[str, str]
    version_id: str
    request_id: str
    event_time: float = 0.0   # eventTime: when COS saw the write (epoch seconds, COS's clock)

    @property
    def key(self) -> str:
        """The first (most likely) reading of the key; see `key_candidates`."""
        return self.key_candidates[0]

    @property
    def is_create(self) -> bool:
        return self.event_name.startswith(CREATE_PREFIX)

    @property
    def etag(self) -> str:
        """The ETag the event reports (logged production events carry `meta.ETag`; the documented
        example does not), unquoted; "" when absent."""
        for k, v in self.meta.items():
            if k.lower() == "etag" and v:
                return v.strip().strip('"')
        return ""

    @property
    def content_type(self) -> Optional[str]:
        for k, v in self.meta.items():
            if k.lower() == "content-type" and v:
                return v
        return None


def _encodable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _candidates(raw_key: str, url: Optional[str]) -> tuple[str, ...]:
    out: list[str] = []

    def add(k: Optional[str]) -> None:
        # A key that cannot be UTF-8 (a lone surrogate after decoding) names no COS object.
        if k and k not in out and _encodable(k):
            out.append(k)

    add(raw_key)
    if "%" in raw_key:
        add(unquote(raw_key))
    if "+" in raw_key or "%" in raw_key:
        add(unquote_plus(raw_key))
    if url:
        try:
            path = urlsplit(url).path.lstrip("/")
        except ValueError:  # a malformed URL only loses us one candidate
            path = ""
        add(unquote(path))
    return tuple(out)


def _number(value: Any) -> float:
    try:
        return float(value) if value not in (None, "") and not isinstance(value, bool) else 0.0
    except (TypeError, ValueError):
        return 0.0


def parse_record(record: Any) -> CosRecord:
    """Parse one element of ``Records``. Raises BadEventError with the field at fault."""
    if not isinstance(record, dict):
        raise BadEventError("record: expected an object")
    cos = record.get("cos")
    event = record.get("event") or {}
    if not isinstance(cos, dict) or not isinstance(event, dict):
        raise BadEventError("record.cos: missing or not an object")
    obj = cos.get("cosObject")
    bkt = cos.get("cosBucket")
    if not isinstance(obj, dict) or not isinstance(bkt, dict):
        raise BadEventError("record.cos.cosObject/cosBucket: missing or not an object")
    name = str(bkt.get("name") or "")
    appid = str(bkt.get("appid") or "")
    region = full_region(str(bkt.get("s3Region") or bkt.get("region") or ""))
    if not name or not appid or not region:
        raise BadEventError("record.cos.cosBucket: name, appid and region are required")
    raw = obj.get("key")
    if not isinstance(raw, str) or not raw:
        raise BadEventError("record.cos.cosObject.key: missing")
    prefix = f"/{appid}/{name}/"
    if raw.startswith(prefix):
        raw_key = raw[len(prefix):]
    elif raw.startswith(f"{appid}/{name}/"):
        raw_key = raw[len(prefix) - 1:]
    else:
        raise BadEventError(f"record.cos.cosObject.key: expected '/{appid}/{name}/<key>'")
    if not raw_key:
        raise BadEventError("record.cos.cosObject.key: empty object key")
    url = obj.get("url") if isinstance(obj.get("url"), str) else None
    candidates = _candidates(raw_key, url)
    if not candidates:
        raise BadEventError("record.cos.cosObject.key: not a valid UTF-8 object key")
    size = obj.get("size")
    try:
        size = int(size) if size is not None and size != "" else None
    except (TypeError, ValueError):
        size = None
    meta_raw = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    meta = {str(k): str(v) for k, v in meta_raw.items() if v is not None}
    bucket = name if name.endswith(f"-{appid}") else f"{name}-{appid}"
    return CosRecord(
        bucket=bucket,
        appid=appid,
        region=region,
        event_name=str(event.get("eventName") or ""),
        key_candidates=candidates,
        size=size,
        meta=meta,
        version_id=str(obj.get("vid") or ""),
        request_id=str(meta.get("x-cos-request-id") or event.get("reqid") or ""),
        event_time=_number(event.get("eventTime")),
    )


def parse_event(event: Any) -> tuple[list[CosRecord], list[str]]:
    """Parse every record. Returns (records, problems); a bad record never hides the good ones."""
    if isinstance(event, (bytes, str)):
        import json

        try:
            event = json.loads(event)
        except ValueError:
            raise BadEventError("event: not JSON") from None
    if not isinstance(event, dict) or not isinstance(event.get("Records"), list):
        raise BadEventError("event: expected an object with a 'Records' list")
    records: list[CosRecord] = []
    problems: list[str] = []
    for i, rec in enumerate(event["Records"]):
        try:
            records.append(parse_record(rec))
        except BadEventError as exc:
            problems.append(f"Records[{i}]: {exc}")
    return records, problems
