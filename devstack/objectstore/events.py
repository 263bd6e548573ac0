"""COS trigger events, in the two forms COS is known to send (`../shared/platform.md` §1).

- ``documented``: exactly the fields of the documented example (cloud.tencent.com/document/product/583/9707),
  with `vid` always empty. The functions may rely on nothing else, so this is the default.
- ``logged``: what events logged in production also carry: `cosObject.meta.ETag` (quoted),
  `meta.x-cos-storage-class`, `cosObject.vid` (the version id on versioned buckets), `cosBucket.s3Region`,
  `cosBucket.cosRegion` and `event.reqid`.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ciflow.regions import SHORT_TO_FULL

FULL_TO_SHORT = {v: k for k, v in SHORT_TO_FULL.items()}
EVENT_FORMS = ("documented", "logged")
KEY_ENCODINGS = ("raw", "url", "mixed")
BUCKET_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)-(?P<appid>\d{5,})$")


def split_bucket(bucket: str) -> tuple[str, str]:
    """`photos-1250000000` → (`photos`, `1250000000`)."""
    m = BUCKET_RE.match(bucket)
    if not m:
        raise ValueError(f"bucket {bucket!r} is not named <name>-<appid>")
    return m.group("name"), m.group("appid")


@dataclass
class Created:
    """What the store knows about an object it has just created, read under the write's lock."""

    size: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    etag: str = ""            # quoted, as COS sends it
    version_id: str = ""      # "" when the bucket keeps no versions
    storage_class: str = "STANDARD"


def cos_event(bucket: str, region: str, key: str, size: int, meta: dict[str, str], event_name: str,
              source_ip: str = "127.0.0.1", key_encoding: str = "raw", auth: str = "",
              form: str = "documented", etag: str = "", version_id: str = "",
              storage_class: str = "STANDARD") -> dict[str, Any]:
    """A COS trigger event for one object, as COS sends it (`form`: documented | logged)."""
    if form not in EVENT_FORMS:
        raise ValueError(f"event form {form!r}: expected one of {', '.join(EVENT_FORMS)}")
    name, appid = split_bucket(bucket)
    short = FULL_TO_SHORT.get(region, region)
    event_key = quote(key, safe="/") if key_encoding == "url" else key
    cos_meta = dict(meta)
    cos_object: dict[str, Any] = {
        "url": f"http://{bucket}.cos.{region}.myqcloud.com/{quote(key, safe='/')}",
        "meta": cos_meta,
        "vid": "",
        "key": f"/{appid}/{name}/{event_key}",
        "size": size,
    }
    cos_bucket: dict[str, Any] = {"region": short, "name": name, "appid": appid}
    event: dict[str, Any] = {
        "eventName": event_name,
        "eventVersion": "1.0",
        "eventTime": int(time.time()),
        "eventSource": "qcs::cos",
        "requestParameters": {"requestSourceIP": source_ip, "requestHeaders": {"Authorization": auth}},
    }
    if form == "logged":
        if etag:
            cos_meta["ETag"] = etag if etag.startswith('"') else f'"{etag}"'
        cos_meta["x-cos-storage-class"] = storage_class or "STANDARD"
        cos_object["vid"] = version_id
        cos_bucket.update(s3Region=region, cosRegion=region)
        event["reqid"] = random.getrandbits(62)
    return {"Records": [{
        "cos": {"cosSchemaVersion": "1.0", "cosObject": cos_object, "cosBucket": cos_bucket,
                "cosNotificationId": "unkown"},
        "event": event,
    }]}
