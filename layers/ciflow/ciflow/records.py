"""Job records: one small JSON object per (object, ETag, rule) under the state prefix.

The record is created with a conditional PUT before a job is submitted, which is what makes submit
idempotent: a second event for the same content finds the record and stops. Records are plain
objects in the user's bucket, so they can be inspected with any S3 client.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Optional

from .storage import Storage


def record_key(state_prefix: str, rule: str, key: str, etag: str) -> str:
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return f"{state_prefix}jobs/{rule}/{digest}/{etag}.json"


def new_record(bucket: str, key: str, etag: str, rule: str) -> dict[str, Any]:
    return {"bucket": bucket, "key": key, "etag": etag, "rule": rule, "job_id": "", "status": "CLAIMED",
            "claimed_at": int(time.time()), "updated_at": int(time.time())}


class Records:
    def __init__(self, storage: Storage, bucket: str, state_prefix: str):
        self.storage = storage
        self.bucket = bucket
        self.prefix = state_prefix

    def claim(self, key: str, etag: str, rule: str) -> bool:
        """Create the record if absent. True when this caller owns the submission."""
        body = json.dumps(new_record(self.bucket, key, etag, rule)).encode()
        return self.storage.create_if_absent(self.bucket, record_key(self.prefix, rule, key, etag), body)

    def read(self, key: str, etag: str, rule: str) -> Optional[dict[str, Any]]:
        raw = self.storage.get(self.bucket, record_key(self.prefix, rule, key, etag))
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def update(self, key: str, etag: str, rule: str, **fields: Any) -> dict[str, Any]:
        doc = self.read(key, etag, rule) or new_record(self.bucket, key, etag, rule)
        doc.update(fields)
        doc["updated_at"] = int(time.time())
        self.storage.put(self.bucket, record_key(self.prefix, rule, key, etag), json.dumps(doc).encode())
        return doc
