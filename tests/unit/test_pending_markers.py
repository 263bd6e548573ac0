"""Pending markers per attempt: the completion of attempt N drops exactly marker N (one DELETE, nothing read
after it), so a late completion of a replaced attempt never removes the marker of the attempt that replaced
it; reconcile drops markers of other attempts once the current one has its own marker or concluded with a
verdict, and otherwise moves them onto the current attempt; markers named before they had attempts
(`<etag>.json`) are handled the same way. And a removal that made no older version current needs no
read before the marker goes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ciflow.reconcile import Reconciler
from ciflow.records import RecordId, Records, claim_of_marker, marker_attempt, pending_work
from tests.model.cos import ENABLED, NEVER, SUSPENDED
from tests.model.ports import ModelStorage

BUCKET = "pics-1250000000"
PREFIX = ".ciflow/"
RID = RecordId("uploads/a.png", "e" * 32, "images")


class CountingStorage(ModelStorage):
    """Counts the requests made (by name), so a test can say what an operation costs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []

    def delete(self, bucket: str, key: str, version_id: Any = None) -> None:
        self.calls.append("delete")
        super().delete(bucket, key, version_id)

    def get(self, bucket: str, key: str) -> Any:
        self.calls.append("get")
        return super().get(bucket, key)

    def get_record(self, bucket: str, key: str) -> Any:
        self.calls.append("get")
        return super().get_record(bucket, key)


def records() -> tuple[CountingStorage, Records]:
    storage = CountingStorage(BUCKET, kind=NEVER)
    return storage, Records(storage, BUCKET, PREFIX)


def markers(storage: ModelStorage) -> list[str]:
    return sorted(k.rsplit("/", 1)[-1] for k, _ in storage.cos.listing(BUCKET, f"{PREFIX}pending/"))


def claim_at(recs: Records, attempt: int, job_id: str) -> dict[str, Any]:
    assert recs.create_claim(RID, recs.new_claim(RID))
    return recs.update_claim(RID, None, attempts=attempt, job_id=job_id, status="SUBMITTED")


def legacy_marker(storage: ModelStorage) -> str:
    key = RID.path(PREFIX, "pending")
    storage.put(BUCKET, key, json.dumps({"key": RID.key, "etag": RID.etag, "rule": RID.rule}).encode())
    return key


def test_marker_names_carry_the_attempt_and_lead_to_the_claim() -> None:
    claim = RID.path(PREFIX, "jobs")
    assert RID.marker(PREFIX, 3).endswith(f"/{RID.etag}.3.json")
    assert marker_attempt(RID.marker(PREFIX, 3)) == 3
    assert marker_attempt(RID.path(PREFIX, "pending")) is None          # named before markers had attempts
    assert claim_of_marker(PREFIX, RID.marker(PREFIX, 12)) == claim
    assert claim_of_marker(PREFIX, RID.path(PREFIX, "pending")) == claim
    assert RID.marker(PREFIX, 1).startswith(RID.markers(PREFIX))
    assert RID.path(PREFIX, "pending").startswith(RID.markers(PREFIX))


def test_a_late_completion_of_a_replaced_attempt_drops_its_own_marker_only_with_one_delete() -> None:
    storage, recs = records()
    recs.mark_pending(RID, attempt=1)
    recs.mark_pending(RID, attempt=2)        # the takeover's, written before it records attempt 2
    storage.calls.clear()

    recs.drop_pending(RID, 1)                # attempt 1's completion, landing late

    assert storage.calls == ["delete"]
    assert markers(storage) == [f"{RID.etag}.2.json"]


@pytest.mark.parametrize("attempts,claim_attempt,result,pending", [
    ([], 1, None, False),
    ([1], 1, None, True),
    ([2], 1, None, True),                    # a takeover's marker, its attempt not yet recorded
    ([1], 2, None, True),                    # attempt 2 has no marker of its own and is not concluded
    ([1], 2, {"job_id": "j2", "outcome": "CLEAN"}, False),
    ([1], 2, {"job_id": "j1", "outcome": "CLEAN"}, True),    # a replaced attempt's result concludes nothing
    ([1], 2, {"job_id": "j2", "outcome": "CLEAN", "applied": "stale"}, True),   # no verdict: work is owed
    ([None], 1, None, True),
    ([None], 1, {"job_id": "j2", "outcome": "CLEAN"}, False),
])
def test_pending_work(attempts: list, claim_attempt: int, result: Any, pending: bool) -> None:
    claim = {"attempts": claim_attempt, "job_id": "j2", "replaced": ["j1"] if claim_attempt > 1 else []}
    assert pending_work(attempts, claim, result) is pending


def test_has_pending_reads_the_markers_the_claim_and_the_result() -> None:
    storage, recs = records()
    claim_at(recs, 2, "j2")
    recs.mark_pending(RID, attempt=1)        # a repeated event's, written before it found the claim
    assert recs.has_pending(RID)
    recs.put_result(RID, job_id="j2", outcome="CLEAN")
    assert not recs.has_pending(RID)
    recs.mark_pending(RID, attempt=2)
    assert recs.has_pending(RID)


def take(recs: Records, storage: ModelStorage, marker: str) -> bool:
    claim = recs.read_claim(RID) or {}
    listed = {k for k, _ in storage.cos.listing(BUCKET, f"{PREFIX}pending/")}
    return Reconciler._take_marker(recs, RID, marker, claim, int(claim.get("attempts") or 1), listed)


@pytest.mark.parametrize("old", ["legacy", "older"])
def test_reconcile_drops_another_attempts_marker_when_the_current_one_has_its_own(old: str) -> None:
    storage, recs = records()
    claim_at(recs, 2, "j2")
    recs.mark_pending(RID, attempt=2)
    marker = legacy_marker(storage) if old == "legacy" else RID.marker(PREFIX, 1)
    recs.mark_pending(RID, attempt=1) if old == "older" else None

    assert take(recs, storage, marker) is False
    assert markers(storage) == [f"{RID.etag}.2.json"]


@pytest.mark.parametrize("old", ["legacy", "older"])
def test_reconcile_drops_another_attempts_marker_when_the_current_one_concluded(old: str) -> None:
    storage, recs = records()
    claim_at(recs, 2, "j2")
    recs.put_result(RID, job_id="j2", outcome="SUSPICIOUS")
    marker = legacy_marker(storage) if old == "legacy" else RID.marker(PREFIX, 1)
    recs.mark_pending(RID, attempt=1) if old == "older" else None

    assert take(recs, storage, marker) is False
    assert markers(storage) == []


@pytest.mark.parametrize("old", ["legacy", "older", "newer"])
def test_reconcile_moves_a_marker_that_still_stands_for_work_onto_the_current_attempt(old: str) -> None:
    storage, recs = records()
    claim_at(recs, 2, "j2")                  # attempt 2 neither marked nor concluded
    marker = {"legacy": legacy_marker(storage) if old == "legacy" else "", "older": RID.marker(PREFIX, 1),
              "newer": RID.marker(PREFIX, 3)}[old]
    if old != "legacy":
        recs.mark_pending(RID, attempt=marker_attempt(marker) or 1)

    assert take(recs, storage, marker) is True
    assert markers(storage) == [f"{RID.etag}.2.json"]


@pytest.mark.parametrize("kind,revealed_possible", [(NEVER, False), (SUSPENDED, False), (ENABLED, True)])
def test_a_quarantine_says_whether_an_older_version_may_have_become_current(kind: str,
                                                                           revealed_possible: bool) -> None:
    # Only a DELETE of versions by id makes an older version current; a DELETE without one (a bucket without
    # versioning, or content in COS's "null" version) adds a delete marker at most: nothing to look for after.
    from ciflow.actions import ActionRunner
    from ciflow.results import Verdict
    from ciflow.settings import load_settings
    from tests.model.world import default_rules, settings_env

    settings = load_settings(settings_env(CIFLOW_BUCKETS=BUCKET))
    rules = default_rules(settings)
    storage = ModelStorage(BUCKET, kind=kind)
    key = "uploads/a.png"
    storage.put(BUCKET, key, b"older bytes")
    storage.put(BUCKET, key, b"suspicious bytes")
    rule = rules.matching(key, "image/png")[0]

    applied = ActionRunner(storage, BUCKET, rules.quarantine_prefix).apply(
        rule, key, storage.etag(key), Verdict("SUSPICIOUS", "j1"))

    assert applied.steps[-1] == "quarantined"
    assert applied.nothing_revealed is not revealed_possible
    assert (storage.head(BUCKET, key) is not None) is revealed_possible
