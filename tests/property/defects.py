"""Known-defect switches: each puts one defect of the state machine back into the library, by patching it
for the length of one generated sequence (never in production code), so the test can show the machine
finds it. They are the cases of docs/reliability.md's history (same bytes again, marker after the claim,
late tag writes, throttling counted as lost jobs, versioned buckets without arbitration, local clocks).
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

import ciflow.submission
from ciflow.records import RecordId, Records
from ciflow.rules import Rule
from ciflow.storage import ObjectInfo, Storage, StoredRecord, classify
from tests.model.world import World


def claim_means_in_flight(world: World) -> None:
    """(1) Same bytes again: any existing claim with a job id is "in flight" and the submitter stops; the
    pending marker is written only with a claim it created (so nothing reconcile can see is left)."""

    class ClaimIsInFlight(Records):
        created = False

        def create_claim(self, rid: RecordId, doc: dict[str, Any]) -> bool:
            self.created = super().create_claim(rid, doc)
            return self.created

        def mark_pending(self, rid: RecordId, version_id: str = "", attempt: int = 1) -> None:
            if self.created:          # runs right after create_claim in the same batch
                super().mark_pending(rid, version_id, attempt)

        def read_result(self, rid: RecordId) -> Optional[dict[str, Any]]:
            # Blind to results only where the submitter decides (not in the tag check it also runs).
            if sys._getframe(1).f_code.co_qualname.startswith("Submitter.submit"):
                return None
            return super().read_result(rid)

    world.patch(ciflow.submission, "Records", ClaimIsInFlight)


def marker_after_claim(world: World) -> None:
    """(2) The claim is written, then the marker, as two steps; a submitter that finds a claim writes none."""

    class MarkerAfterClaim(Records):
        def create_claim(self, rid: RecordId, doc: dict[str, Any]) -> bool:
            created = super().create_claim(rid, doc)
            if created:   # one write, as it was (no retries of its own)
                self.storage.put(self.store, rid.marker(self.prefix, 1), json.dumps(
                    {"key": rid.key, "etag": rid.etag, "rule": rid.rule,
                     "version_id": str(doc.get("version_id") or ""), "attempt": 1}).encode())
            return created

        def mark_pending(self, rid: RecordId, version_id: str = "", attempt: int = 1) -> None:
            pass

    world.patch(ciflow.submission, "Records", MarkerAfterClaim)


def patch_everywhere(world: World, name: str, value: Any) -> None:
    """Replace `name` in every ciflow module that defines or imported it."""
    for module_name, module in sorted(sys.modules.items()):
        if (module_name == "ciflow" or module_name.startswith("ciflow.")) and hasattr(module, name):
            world.patch(module, name, value)


def no_tag_check(world: World) -> None:
    """(3) Tag writes are not checked afterwards: a late PENDING or verdict write stays on newer content."""

    def unchecked(*args: Any, **kwargs: Any) -> int:
        return 0

    for name in ("settle_tags", "settle_pending"):
        patch_everywhere(world, name, unchecked)


def every_takeover_lost(world: World) -> None:
    """(4) Every takeover counts as a lost job, so throttled or crashed submissions end FAILED/JobLost."""
    original = ciflow.submission.Submitter.submit

    def submit(self: Any, bucket: str, info: ObjectInfo, rule: Rule, force: bool = False,
               takeover: bool = False, lost: bool = False, **rest: Any) -> Optional[str]:
        return original(self, bucket, info, rule, force=force, takeover=takeover, lost=lost or takeover, **rest)

    world.patch(ciflow.submission.Submitter, "submit", submit)


def no_version_arbitration(world: World) -> None:
    """(5) The conditional create trusts `x-cos-forbid-overwrite` on versioned buckets too."""

    def create_if_absent(self: Storage, bucket: str, key: str, body: bytes,
                         content_type: str = "application/json") -> bool:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
        except Exception as exc:
            if getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") == 409:
                return False
            raise classify(exc, f"PUT {key}") from exc
        return True

    world.patch(Storage, "create_if_absent", create_if_absent)


def local_clock_ages(world: World) -> None:
    """(6) Ages from the function's own clock instead of COS's `Date`."""
    world.patch(StoredRecord, "age", property(lambda self: world.local_now() - self.last_modified))
    original = Storage.list_page

    def list_page(self: Storage, *args: Any, **kwargs: Any) -> Any:
        objects, token, _ = original(self, *args, **kwargs)
        return objects, token, world.local_now()

    world.patch(Storage, "list_page", list_page)


# The open findings (tests/model/checks.py) whose mechanism a switch puts back in full: a run with that switch
# must not tolerate them, or it would count the defect's violations as the finding's.
OVERLAPS = {"no-version-arbitration": ("contender-claim-left-current",)}

# Where a switch's defect shows, generation is steered (tests/property/machine.py Config): `weights` weighs the
# actions its mechanism needs (in place of machine.ACTIONS' weights), `faults` offers the faults that start it
# as a sequence's fault plan.
# What counts as found is unchanged: any invariant violated, by a sequence that passes without the switch.
STEERING: dict[str, dict[str, Any]] = {
    # Claims met again by later submitters (repeated events, more deliveries), some of them left by a POST
    # /jobs that failed or whose submitter died, so that "a claim means in flight" is wrong.
    "claim-means-in-flight": {
        "weights": {"duplicate event": 3, "time passes": 2, "deliver event": 3},
        "faults": (("crash", "ci.create"), ("fail", "ci.create")),
    },
    # A submitter that dies between its claim and its marker leaves a claim nothing lists: crashes on the
    # state writes, and no repeated event (its submitter would find the claim and stop as a duplicate).
    "marker-after-claim": {
        "weights": {"deliver event": 3, "time passes": 2, "reconcile": 2, "duplicate event": 0},
        "faults": (("crash", "cos.put_object"),),
    },
    # A takeover that is no loss: POST /jobs failed (or its submitter died) and reconcile takes the claim over;
    # CI then loses the new job, and reconcile gives up after one loss. Any later event for the same bytes
    # starts a new job, and new content or a delete hides the verdict, so uploads are rare and deletes absent;
    # CI finishing jobs, or losing a second one for the same bytes, would end the path as well.
    "every-takeover-lost": {
        "weights": {"reconcile": 4, "time passes": 4, "CI loses a job": 2, "upload": 1, "delete": 0,
                    "CI finishes a job": 1, "stalled request resumes": 1},
        "faults": (("fail", "ci.create"), ("crash", "ci.create")),
    },
    # A claim whose age a skewed clock overstates looks stale while its submitter is still at work (held up
    # before POST /jobs), so a repeated event takes it over: more repeated events and clock skews.
    "local-clock-ages": {
        "weights": {"duplicate event": 4, "skew a clock": 3},
        "faults": (("stall", "ci.create"), ("stall", "cos.get_object_tagging")),
    },
}

DEFECTS: dict[str, Callable[[World], None]] = {
    "claim-means-in-flight": claim_means_in_flight,
    "marker-after-claim": marker_after_claim,
    "no-tag-check": no_tag_check,
    "every-takeover-lost": every_takeover_lost,
    "no-version-arbitration": no_version_arbitration,
    "local-clock-ages": local_clock_ages,
}
