"""The DELETE after a quarantine copy: right after a copy that answered as fast as a HEAD (a HEAD there would
narrow nothing), after another HEAD when the copy was slow (an upload may have landed while it ran)."""

from __future__ import annotations

import json
from typing import Any, Optional

import pytest

from ciflow import concurrency
from ciflow.actions import ActionRunner
from ciflow.results import Verdict
from ciflow.rules import parse_rules
from ciflow.storage import ObjectInfo

KEY = "uploads/a.png"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


class Storage:
    """Just what a quarantine move calls; each call takes `cost[name]` seconds on `clock`."""

    def __init__(self, clock: Clock, copy_seconds: float, etag_after_copy: str = "e1") -> None:
        self.clock = clock
        self.cost = {"head": 0.02, "copy": copy_seconds}
        self.etag = "e1"
        self.etag_after_copy = etag_after_copy
        self.calls: list[str] = []

    def _take(self, name: str) -> None:
        self.calls.append(name)
        self.clock.now += self.cost.get(name, 0.0)

    def head(self, bucket: str, key: str, version_id: Optional[str] = None) -> Optional[ObjectInfo]:
        self._take("head" if key == KEY else "head-dest")
        if key != KEY:
            return None
        return ObjectInfo(KEY, self.etag, 10, "image/png", {}, "", 0.0)

    def get_tags(self, bucket: str, key: str, version_id: Optional[str] = None) -> dict[str, str]:
        self._take("tags")
        return {}

    def copy(self, bucket: str, src: str, dst: str, **kwargs: Any) -> bool:
        self._take("copy")
        self.etag = self.etag_after_copy   # an upload landing while the copy runs
        return True

    def delete_content(self, bucket: str, key: str, etag: str, version_id: str = "", checked: bool = False) -> int:
        if not checked:
            current = self.head(bucket, key)
            if current is None or current.etag != etag:
                return 0
        self._take("delete")
        return 1


def quarantine(monkeypatch: pytest.MonkeyPatch, storage: Storage, clock: Clock) -> list[str]:
    monkeypatch.setattr(concurrency.time, "monotonic", clock.monotonic)
    rules = parse_rules(json.dumps({"version": 1, "quarantine_prefix": "quarantine/", "rules": [
        {"name": "images", "job": "ImageInspect", "prefixes": ["uploads/"],
         "outcomes": {"SUSPICIOUS": {"actions": ["quarantine"]}}}]}))
    rule = rules.rules[0]
    runner = ActionRunner(storage, "bucket", "quarantine/")   # type: ignore[arg-type]
    applied = runner.apply(rule, KEY, "e1", Verdict("SUSPICIOUS", "j1"))
    assert applied.status == "applied"
    return storage.calls


def test_a_copy_as_fast_as_a_head_is_followed_by_the_delete_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    calls = quarantine(monkeypatch, Storage(clock, copy_seconds=0.025), clock)
    assert calls[calls.index("copy"):] == ["copy", "delete"]


def test_a_slow_copy_is_checked_again_and_a_new_upload_is_not_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    storage = Storage(clock, copy_seconds=2.0, etag_after_copy="e2")
    calls = quarantine(monkeypatch, storage, clock)
    assert calls[calls.index("copy"):] == ["copy", "head"]   # the key holds e2 now: no DELETE
