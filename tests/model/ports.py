"""The real `ciflow.storage.Storage` adapter over the COS model, with what unit tests need around it:
seeding objects (`add`), ages by COS's clock (`set_age`), a snapshot of every object (`objects`), the
writes the code under test made (`writes`), and transient HEAD failures (`fail_head`).

The model's clock stands still unless moved, so ages are exact.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Optional

from ciflow.storage import Storage

from .cos import NEVER, Clock, CosModel, Mutation, Version


class _Client:
    """The model's boto3-shaped client, one call at a time (the code under test may call from threads),
    with HEAD failures on demand."""

    def __init__(self, owner: ModelStorage):
        self._owner = owner
        self._inner = owner.cos.client()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._inner, name)

        def call(**kwargs: Any) -> Any:
            with self._owner.lock:
                key = kwargs.get("Key", "")
                if name == "head_object" and self._owner.fail_head.get(key):
                    self._owner.fail_head[key] -= 1
                    raise ConnectionResetError(f"connection reset while reading {key}")
                return method(**kwargs)
        return call


class ModelStorage(Storage):
    def __init__(self, bucket: str, *others: str, kind: str = NEVER, now: float = 1_800_000_000.0):
        """`bucket` is the one `add`, `etag`, `set_age` and `objects` work on; `others` exist too."""
        self.cos = CosModel(Clock(now))
        self.bucket = bucket
        for name in (bucket, *others):
            self.cos.create_bucket(name, kind)
        self.lock = threading.RLock()
        self.fail_head: dict[str, int] = {}          # key → how many HEADs fail (ConnectionResetError)
        self.writes: list[tuple[str, str]] = []      # (operation, key) of every change made through the adapter
        self._seeding = False
        self.cos.actor = lambda: "test" if self._seeding else "code"
        self.cos.observers.append(self._observe)
        super().__init__(client=_Client(self))

    def _observe(self, m: Mutation) -> None:
        if m.actor == "code":
            self.writes.append(({"put": "put", "copy": "put"}.get(m.op, m.op), m.key))

    def _current(self, key: str) -> Version:
        v = self.cos.current(self.bucket, key)
        if v is None:
            raise KeyError(key)
        return v

    def add(self, key: str, body: bytes = b"x", content_type: str = "image/png",
            modified: Optional[datetime] = None, tags: Optional[dict[str, str]] = None) -> str:
        """Put an object as a user would (not counted in `writes`); its ETag."""
        with self.lock:
            self._seeding = True
            try:
                v = self.cos.put(self.bucket, key, body, content_type, tags=tags)
            finally:
                self._seeding = False
            if modified is not None:
                v.modified = modified.timestamp()
            return v.etag

    def etag(self, key: str) -> str:
        return self._current(key).etag

    def set_age(self, key: str, seconds: float) -> None:
        """Make `key` `seconds` old by COS's clock (its Last-Modified that much before the model's now)."""
        self._current(key).modified = self.cos.clock.now - seconds

    @property
    def objects(self) -> dict[str, dict[str, Any]]:
        """Every current object: body, content type, tags and Last-Modified (a snapshot)."""
        with self.lock:
            return {k: {"body": v.body, "ctype": v.content_type, "tags": dict(v.tags), "modified": v.modified}
                    for k, v in self.cos.listing(self.bucket, "")}
