"""Job records: small JSON objects under the state prefix, one set per (object, ETag, rule).

- ``jobs/<rule>/<h>/<etag>.json``     the *claim*: created with a conditional PUT before a job is
  submitted, so a repeated event finds it and stops. Only the submitter writes it afterwards
  (to add the job id), so it never races with the callback.
- ``results/<rule>/<h>/<etag>.json``  the *result*: written by whoever applied the verdict
  (callback or reconcile), after every action finished. Its presence means "done".
- ``pending/<rule>/<h>/<etag>.json``  a marker that exists from claim to result, so the reconcile
  timer lists only unfinished work.

`<h>` is a hash of the key (keys can be long and contain anything). Records are plain objects in
the user's bucket, readable with any S3 client.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional

from .storage import Storage

# A claim without a job id older than this may be taken over: its submitter died, or let go.
STALE_CLAIM_SECONDS = 300


@dataclass(frozen=True)
class RecordId:
    key: str
    etag: str
    rule: str

    def path(self, state_prefix: str, kind: str) -> str:
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:32]
        return f"{state_prefix}{kind}/{self.rule}/{digest}/{self.etag}.json"


def _load(raw: Optional[bytes]) -> Optional[dict[str, Any]]:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class Records:
    def __init__(self, storage: Storage, bucket: str, state_prefix: str):
        self.storage = storage
        self.bucket = bucket
        self.prefix = state_prefix

    def _put(self, rid: RecordId, kind: str, doc: dict[str, Any]) -> None:
        self.storage.put(self.bucket, rid.path(self.prefix, kind), json.dumps(doc).encode())

    def claim(self, rid: RecordId) -> Optional[dict[str, Any]]:
        """Create the claim if absent: the new claim when this caller owns the submission, else None."""
        now = int(time.time())
        doc = {"bucket": self.bucket, "key": rid.key, "etag": rid.etag, "rule": rid.rule, "job_id": "",
               "status": "CLAIMED", "claimed_at": now, "updated_at": now, "attempts": 1}
        if not self.storage.create_if_absent(self.bucket, rid.path(self.prefix, "jobs"), json.dumps(doc).encode()):
            return None
        self.mark_pending(rid, now)
        return doc

    def mark_pending(self, rid: RecordId, since: int) -> None:
        self._put(rid, "pending", {"key": rid.key, "etag": rid.etag, "rule": rid.rule, "since": since})

    def read_claim(self, rid: RecordId) -> Optional[dict[str, Any]]:
        return _load(self.storage.get(self.bucket, rid.path(self.prefix, "jobs")))

    def update_claim(self, rid: RecordId, base: Optional[dict[str, Any]] = None, **fields: Any) -> dict[str, Any]:
        """Rewrite the claim with `fields`. Only the submitter writes claims, so the copy it holds
        (`base`) is current and saves a read."""
        doc = dict(base) if base is not None else self.read_claim(rid)
        if doc is None:
            doc = {"bucket": self.bucket, "key": rid.key, "etag": rid.etag, "rule": rid.rule,
                   "claimed_at": int(time.time()), "attempts": 1}
        doc.update(fields)
        doc["updated_at"] = int(time.time())
        self._put(rid, "jobs", doc)
        return doc

    def read_result(self, rid: RecordId) -> Optional[dict[str, Any]]:
        return _load(self.storage.get(self.bucket, rid.path(self.prefix, "results")))

    def clear_result(self, rid: RecordId) -> None:
        self.storage.delete(self.bucket, rid.path(self.prefix, "results"))

    def drop_pending(self, rid: RecordId) -> None:
        self.storage.delete(self.bucket, rid.path(self.prefix, "pending"))

    def write_result(self, rid: RecordId, **fields: Any) -> dict[str, Any]:
        """Record the final outcome, then drop the pending marker (in that order: never lose work)."""
        doc = {"key": rid.key, "etag": rid.etag, "rule": rid.rule, "at": int(time.time()), **fields}
        self._put(rid, "results", doc)
        self.drop_pending(rid)
        return doc

    def pending(self, limit: int = 1000) -> Iterator[RecordId]:
        """Unfinished (object, ETag, rule) triples, oldest listing order first."""
        for key in self.storage.list_keys(self.bucket, f"{self.prefix}pending/", limit):
            doc = _load(self.storage.get(self.bucket, key))
            if doc and doc.get("key") and doc.get("etag") and doc.get("rule"):
                yield RecordId(str(doc["key"]), str(doc["etag"]), str(doc["rule"]))
            elif doc is None:
                continue
            else:
                self.storage.delete(self.bucket, key)  # unreadable marker: nothing can be done with it
