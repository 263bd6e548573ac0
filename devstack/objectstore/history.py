"""What happened to each key, in order: the evidence an audit needs when content goes missing.

COS keeps no such record, and the functions must not rely on one. It is kept for the audits of `make chaos`,
which have to tell a documented platform limit from a defect by what the store saw rather than by the note
a scenario leaves. Three kinds of entry, each with the time it took effect and the ETag involved:

- `read`:   a GET or HEAD of the object (no sub-resource) or the source of a copy, with the content it showed;
- `write`:  a create (PUT, POST, copy, completed multipart upload), with the content it wrote;
- `delete`: a DELETE of the key, with the content it removed ("" when it removed nothing, or only added a
            delete marker on a versioned bucket).

The store serves reads of an object under the same per-key lock as its writes, so the entries of one key are
in the order they took effect. Keys under the functions' state prefix are not kept.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass
from typing import Any, Optional

KINDS = ("read", "write", "delete")


@dataclass(frozen=True)
class Entry:
    at: float           # time.time() when it took effect
    kind: str           # read | write | delete
    etag: str           # unquoted; "" for a delete that removed nothing
    version_id: str = ""


class History:
    """A bounded history per (bucket, key), of at most `max_keys` keys (the least recently touched go first),
    safe to add to from the store's request threads."""

    def __init__(self, per_key: int = 64, skip_prefix: str = "", max_keys: int = 50_000):
        self.per_key = per_key
        self.skip_prefix = skip_prefix
        self.max_keys = max_keys
        self._lock = threading.Lock()
        self._keys: OrderedDict[tuple[str, str], deque[Entry]] = OrderedDict()

    def add(self, bucket: str, key: str, kind: str, etag: Optional[str], version_id: Optional[str] = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
        if not key or (self.skip_prefix and key.startswith(self.skip_prefix)):
            return
        entry = Entry(time.time(), kind, (etag or "").strip('"'), version_id or "")
        with self._lock:
            self._keys.setdefault((bucket, key), deque(maxlen=self.per_key)).append(entry)
            self._keys.move_to_end((bucket, key))
            while len(self._keys) > self.max_keys:
                self._keys.popitem(last=False)

    def of(self, bucket: str, key: str) -> list[Entry]:
        """The key's entries, oldest first."""
        with self._lock:
            return sorted(self._keys.get((bucket, key), ()), key=lambda e: e.at)

    def snapshot(self, bucket: str = "", prefix: str = "") -> list[dict[str, Any]]:
        """[{bucket, key, entries: [{at, kind, etag, version_id}]}] for the keys of `bucket` under `prefix`."""
        with self._lock:
            keys = [k for k in self._keys if (not bucket or k[0] == bucket) and k[1].startswith(prefix)]
        return [{"bucket": b, "key": k, "entries": [asdict(e) for e in self.of(b, k)]} for b, k in sorted(keys)]
