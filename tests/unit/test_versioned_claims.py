"""Claims on a versioned bucket: every contender's claim PUT is a version, and the oldest wins. A contender
whose arbitration failed or died leaves its fresh claim as the current version; readers must still see
the winner's claim (its attempt, its job), whichever version is current."""

from __future__ import annotations

import json

import pytest

from ciflow.errors import RetryableError
from ciflow.records import RecordId, Records
from tests.model.cos import ENABLED, NEVER
from tests.model.ports import ModelStorage

BUCKET = "pics-1250000000"
RID = RecordId("uploads/a.png", "e" * 32, "images")


def records(kind: str = ENABLED) -> tuple[ModelStorage, Records]:
    storage = ModelStorage(BUCKET, kind=kind)
    return storage, Records(storage, BUCKET, ".ciflow/")


class FailingListing(ModelStorage):
    """Listing the versions fails (once), as a contender's arbitration may."""

    fail_listing = 0

    def versions(self, bucket: str, key: str) -> list[tuple[str, str]]:
        if self.fail_listing:
            self.fail_listing -= 1
            raise RetryableError("LIST versions: SlowDown")
        return super().versions(bucket, key)


def contender_left_behind(storage: FailingListing, recs: Records) -> None:
    """A contender's claim PUT lands over the winner's; its arbitration fails before it deletes its version."""
    storage.fail_listing = 1
    with pytest.raises(RetryableError):
        recs.create_claim(RID, recs.new_claim(RID))


def claim_versions(storage: ModelStorage) -> list[dict]:
    return [json.loads(v.body) for v in storage.cos.versions(BUCKET, RID.path(".ciflow/", "jobs"))]


def test_a_contender_left_current_does_not_hide_the_winners_job() -> None:
    storage = FailingListing(BUCKET, kind=ENABLED)
    recs = Records(storage, BUCKET, ".ciflow/")
    assert recs.create_claim(RID, recs.new_claim(RID))
    recs.update_claim(RID, recs.new_claim(RID), attempts=2, job_id="j-winner", status="SUBMITTED")
    contender_left_behind(storage, recs)
    assert claim_versions(storage)[-1]["job_id"] == ""          # the leftover is the current version

    claim = recs.read_claim(RID)

    assert claim is not None and claim["job_id"] == "j-winner" and claim["attempts"] == 2
    # The leftover is removed on the way, so later reads cost nothing extra.
    assert [c["job_id"] for c in claim_versions(storage)] == ["", "j-winner"]


def test_a_contender_left_over_a_winner_that_has_not_recorded_its_job_yet_keeps_the_winners_age() -> None:
    storage = FailingListing(BUCKET, kind=ENABLED)
    recs = Records(storage, BUCKET, ".ciflow/")
    assert recs.create_claim(RID, recs.new_claim(RID))
    storage.cos.clock.advance(200)
    contender_left_behind(storage, recs)
    storage.fail_listing = 1
    with pytest.raises(RetryableError):   # a second one, stacked on the first
        recs.create_claim(RID, recs.new_claim(RID))

    found = recs.read_claim_record(RID)

    assert found is not None
    assert found[1] == 200      # the winner's claim, written 200 s ago: its lease is measured from it
    assert len(claim_versions(storage)) == 1


def test_the_winners_own_fresh_claim_is_read_as_it_is() -> None:
    storage, recs = records()
    assert recs.create_claim(RID, recs.new_claim(RID))
    assert not recs.create_claim(RID, recs.new_claim(RID))   # a loser that finished its arbitration

    found = recs.read_claim_record(RID)

    assert found is not None and found[0]["status"] == "CLAIMED"
    assert len(claim_versions(storage)) == 1


@pytest.mark.parametrize("kind", [NEVER, ENABLED])
def test_released_and_taken_over_claims_are_read_as_written(kind: str) -> None:
    storage, recs = records(kind)
    assert recs.create_claim(RID, recs.new_claim(RID))
    recs.update_claim(RID, recs.new_claim(RID), status="RELEASED")
    assert recs.read_claim(RID)["status"] == "RELEASED"
    recs.update_claim(RID, recs.read_claim(RID), attempts=2, job_id="", status="CLAIMED")
    claim = recs.read_claim(RID)
    assert claim["attempts"] == 2 and claim["status"] == "CLAIMED"
