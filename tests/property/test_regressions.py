"""Sequences the state machine found that break an invariant of the library as it is: one per open finding
(tests/model/checks.py FINDINGS), each cut down to the steps that matter.

Each regression replays its steps in a strict world (no finding tolerated) and asserts that no invariant is
violated; while the defect is open (listed in FINDINGS) it fails, so it is marked `xfail(strict=True)`: the
day the library is fixed the test passes, strict xfail turns that into a failure, and whoever fixed it
removes the finding from FINDINGS (which `make test` and `make explore` tolerate until then). The sequence
stays here, as the regression test of the fix.

The second test checks that each finding's explanation covers its own sequence and nothing more is wrong
there, so tolerating a finding in the exploration hides only what it describes.
"""

from __future__ import annotations

import pytest

from tests.model import checks
from tests.model.checks import FINDINGS, LIMITATIONS
from tests.model.cos import ENABLED, NEVER, SUSPENDED

from .machine import Config, Step
from .replay import replay

A, B = "uploads/a.png", "uploads/b.png"

REGRESSIONS: dict[str, tuple[str, list[Step]]] = {
    # BROKEN1's submitter dies right after POST /jobs (before its check of the key); EVIL overwrites it and CI
    # reads EVIL; EVIL's own job quarantines EVIL, which makes BROKEN1 current again, and reconcile applies
    # the first job's verdict (about EVIL) to it.
    # Fixed: the removal of EVIL, recorded after BROKEN1's job was submitted, makes its verdict doubtful.
    "verdict-from-other-removed": (ENABLED, [
        ("upload", (A, b"BROKEN1", "documented")), ("deliver event", (0, {7: "crash"})),
        ("upload", (A, b"EVIL--1", "logged"))]),
    # Fixed: the event's meta.ETag named BROKEN1 while EVIL was current; the check after POST /jobs sees it.
    "verdict-from-other-bytes-event-etag": (NEVER, [
        ("upload", (B, b"BROKEN1", "logged")), ("upload", (B, b"EVIL--1", "logged")),
        ("deliver event", (0, {})), ("CI finishes a job", (0,)), ("upload", (B, b"BROKEN1", "documented"))]),
    # Both events resolve to EVIL (the current version); quarantining it makes clean-2 current, never inspected.
    "uninspected-version-revealed": (ENABLED, [
        ("upload", (A, b"clean-2", "documented")), ("upload", (A, b"EVIL--1", "documented"))]),
    # Fixed: the user deletes the key (a delete marker) before the SUSPICIOUS verdict arrives: the version stayed.
    "suspicious-version-left": (ENABLED, [
        ("upload", (A, b"EVIL--1", "documented")), ("deliver event", (0, {})), ("CI finishes a job", (0,)),
        ("delete", (A,))]),
    # A late PENDING write meant for clean-1 lands on BROKEN1; the check keeps PENDING because BROKEN1 has a
    # claim, though that claim's work ended (object-missing) long ago.
    "stale-pending-tags": (NEVER, [
        ("upload", (B, b"BROKEN1", "logged")), ("delete", (B,)), ("deliver event", (0, {})),
        ("upload", (B, b"clean-1", "logged")), ("upload", (B, b"BROKEN1", "documented")), ("drop event", (1,))]),
    # Reconcile gives up on attempt 1 (Timeout) but stalls; a repeated event starts attempt 2, which CI loses;
    # the stalled reconcile then drops the marker attempt 2 shares, and nothing ever notices the loss.
    "late-completion-of-older-attempt": (NEVER, [
        ("upload", (A, b"BROKEN1", "documented")), ("duplicate event", (0,)), ("deliver event", (1, {})),
        ("time passes", (3601,)), ("reconcile", ({("cos.head_object", 1): "stall"},)), ("CI finishes a job", (0,)),
        ("deliver event", (0, {})), ("CI loses a job", (0,))]),
    # POST /jobs succeeds but the PENDING tag write beside it fails: the claim is released as if CI had failed;
    # reconcile records "stale" for it; the platform's retry takes over without looking for the accepted job.
    "takeover-past-live-job": (ENABLED, [
        ("upload", (B, b"EVIL--1", "logged")), ("upload", (B, b"clean-2", "logged")),
        ("upload", (B, b"clean-1", "logged")), ("deliver event", (1, {("cos.put_object_tagging", 0): "fail_after"})),
        ("time passes", (901,)), ("reconcile", ({},)), ("SCF retry", (0, {}))]),
    # EVIL written again after its job was recorded; the re-upload's takeover stalls after winning its token and
    # dies; its retry stops as a duplicate; the old job's verdict is set aside (rewritten): EVIL stays readable.
    "set-aside-not-resubmitted": (NEVER, [
        ("upload", (A, b"EVIL--1", "documented")), ("deliver event", (0, {})), ("time passes", (901,)),
        ("upload", (A, b"EVIL--1", "logged")), ("deliver event", (0, {("cos.put_object", 2): "stall"})),
        ("time passes", (301,))]),
    # Two reconcile runs overlap on a lost job: the second resubmits (attempt 2); the first, stalled, then
    # takes over attempt 2 as well (attempt 3).
    "takeover-on-stale-read": (NEVER, [
        ("upload", (B, b"BROKEN1", "documented")), ("deliver event", (0, {})), ("CI loses a job", (0,)),
        ("time passes", (901,)), ("reconcile", ({("cos.put_object", 0): "stall"},)), ("reconcile", ({},))]),
    # The platform's retry writes its contender claim, then listing the versions fails: its fresh claim stays
    # the current version, hiding reconcile's attempt 2, and the next retry submits attempt 2 again.
    "contender-claim-left-current": (ENABLED, [
        ("upload", (B, b"clean-2", "logged")), ("deliver event", (0, {("ci.create", 0): "fail"})),
        ("time passes", (901,)), ("reconcile", ({},)), ("SCF retry", (0, {("cos.list_object_versions", 0): "fail"})),
        ("time passes", (301,))]),
    # Fixed: the platform's retry takes over BROKEN1 (meta.ETag) while clean-2 is current, writes PENDING onto
    # clean-2 and dies in its check; the next retry adopts the job CI accepted, and checks the tags as well.
    "adopted-job-left-pending": (ENABLED, [
        ("upload", (B, b"BROKEN1", "logged")), ("deliver event", (0, {("cos.put_object", 0): "stall"})),
        ("upload", (B, b"clean-2", "logged")), ("drop event", (4,)), ("time passes", (901,)),
        ("SCF retry", (2, {("cos.list_objects_v2", 0): "crash"})), ("time passes", (3601,))]),
    # Fixed: reconcile gives EVIL's job up (Timeout, FAILED); clean-2's late event (meta.ETag) writes PENDING
    # onto EVIL and its check rewrote EVIL's tags from its records, where a failure was no verdict: tags gone.
    "failure-tags-lost-in-repair": (NEVER, [
        ("upload", (A, b"clean-2", "logged")), ("upload", (A, b"EVIL--1", "documented")),
        ("deliver event", (1, {})), ("time passes", (3601,)), ("reconcile", ({},)), ("CI loses a job", (0,))]),
    # Fixed: POST /jobs is accepted but answers an error, so the submitter releases its claim. A repeated event
    # reads that claim and stalls on its next read; another adopts the job CI accepted; its verdict is set aside
    # (the key was written again since), and a third event starts attempt 2. The stalled one then resumes and
    # writes its adoption of attempt 1 over attempt 2, and reconcile starts attempt 2 a second time.
    "adoption-on-stale-read": (ENABLED, [
        ("upload", (A, b"clean-1", "logged")), ("upload", (A, b"clean-1", "documented")),
        ("upload", (A, b"clean-1", "documented")), ("upload", (A, b"clean-1", "documented")),
        ("deliver event", (4, {("ci.create", 0): "fail_after"})), ("deliver event", (4, {8: "stall"})),
        ("CI finishes a job", (4,)), ("deliver event", (6, {})), ("deliver callback", (6, {})),
        ("deliver event", (0, {}))]),
    # Platform limit: EVIL's job is submitted and CI reads EVIL, then clean-1 is written over it before the
    # verdict comes: the verdict cannot be told to be about EVIL, and EVIL's version stays readable by VersionId.
    "overwrite-before-verdict": (ENABLED, [
        ("upload", (A, b"EVIL--1", "documented")), ("deliver event", (0, {})), ("CI finishes a job", (0,)),
        ("upload", (A, b"clean-1", "documented"))]),
    # Platform limit: EVIL is quarantined; EVIL is uploaded again and clean-2 over it before that upload's
    # documented event is handled: its HEAD finds clean-2, and nothing names the EVIL version.
    "overwrite-before-event": (ENABLED, [
        ("upload", (B, b"EVIL--1", "documented")), ("deliver event", (0, {})), ("CI finishes a job", (0,)),
        ("deliver callback", (0, {})), ("upload", (B, b"EVIL--1", "documented")),
        ("upload", (B, b"clean-2", "documented"))]),
    # Fixed: clean-1's job reads EVIL (written over it); EVIL's own job quarantines it, a delete marker is
    # current, and removing clean-1's hidden version on the strength of that verdict removed clean content.
    "hidden-version-after-other-content": (ENABLED, [
        ("upload", (B, b"clean-1", "logged")), ("deliver event", (0, {("cos.head_object", 0): "fail"})),
        ("CI finishes a job", (2,)), ("delete", (B,)), ("upload", (B, b"EVIL--1", "logged")),
        ("deliver callback", (6, {}))]),
    # Fixed: BROKEN1's job reads EVIL; EVIL's known verdict quarantines it again, which makes BROKEN1 current;
    # a late callback of EVIL's first job rewrote EVIL's result as stale, so the removal went unseen.
    "removal-overwritten-by-late-callback": (ENABLED, [
        ("upload", (A, b"EVIL--1", "documented")), ("deliver event", (6, {})), ("time passes", (3601,)),
        ("CI finishes a job", (7,)), ("reconcile", ({},)), ("upload", (A, b"EVIL--1", "logged")),
        ("upload", (A, b"clean-2", "logged")), ("upload", (A, b"BROKEN1", "documented")),
        ("deliver event", (2, {})), ("upload", (A, b"EVIL--1", "documented")), ("CI finishes a job", (2,))]),
    # Fixed: clean-1's submitter stalls on its PENDING write beside POST /jobs; EVIL is written over clean-1 and
    # CI reads it; the submitter dies before recording the job or checking the key; clean-1 comes back as a new
    # version, and the verdict about EVIL quarantined it. A job adopted from a submitter that never checked the
    # key now has its verdict set aside.
    "verdict-from-other-bytes": (ENABLED, [
        ("upload", (B, b"clean-1", "documented")), ("deliver event", (5, {("cos.put_object_tagging", 0): "stall"})),
        ("upload", (B, b"EVIL--1", "logged")), ("CI finishes a job", (6,)),
        ("stalled request resumes", (4, "land_then_crash")), ("upload", (B, b"clean-1", "documented"))]),
    # Fixed: POST /jobs is accepted but answers an error; the submitter stalls on its release; the result comes,
    # finds the job unrecorded and adopts it; the release then lands over the adoption, and every later adopter
    # found the adoption token taken: EVIL was never finished.
    "release-over-adoption": (NEVER, [
        ("upload", (B, b"BROKEN1", "documented")), ("upload", (B, b"EVIL--1", "documented")),
        ("upload", (A, b"EVIL--1", "logged")), ("deliver event", (7, {})), ("deliver event", (6, {})),
        ("deliver event", (6, {7: "stall", ("ci.create", 0): "fail_after"})), ("CI finishes a job", (3,)),
        ("deliver callback", (2, {}))]),
    # Fixed: reconcile gives BROKEN1's job up (Timeout) after the key was deleted; the job then runs and finds
    # nothing; BROKEN1 is written again (its event lost). The job's result was set aside, but with the marker
    # gone nothing gave BROKEN1 a new job, and it kept the FAILED tags of a job that read nothing.
    "absent-input-after-give-up": (ENABLED, [
        ("upload", (A, b"BROKEN1", "logged")), ("deliver event", (4, {})), ("time passes", (3601,)),
        ("delete", (A,)), ("reconcile", ({},)), ("CI finishes a job", (4,)), ("upload", (A, b"EVIL--1", "logged")),
        ("upload", (A, b"BROKEN1", "logged")), ("drop event", (1,))]),
    # Fixed: EVIL's event (meta.ETag) is handled while clean-2 is current; the check of the key after POST /jobs
    # fails, so EVIL's PENDING write on clean-2 was never repaired (clean-2's event is lost, EVIL's job too).
    "failed-check-left-pending": (SUSPENDED, [
        ("upload", (A, b"EVIL--1", "logged")), ("upload", (A, b"clean-2", "logged")),
        ("deliver event", (2, {5: "fail_after"})), ("drop event", (0,)), ("CI loses a job", (4,))]),
    # Platform limit: EVIL is quarantined; EVIL is uploaded again and the key deleted before that upload's
    # documented event is handled: its HEAD finds nothing, and nothing names the EVIL version.
    "delete-before-event": (ENABLED, [
        ("upload", (B, b"EVIL--1", "documented")), ("deliver event", (3, {})), ("CI finishes a job", (7,)),
        ("deliver callback", (5, {})), ("upload", (B, b"EVIL--1", "documented")), ("delete", (B,))]),
    # Platform limit: BROKEN1's job is submitted and recorded while the key holds BROKEN1; clean-1 overwrites it
    # and CI reads clean-1; BROKEN1 comes back in the same second, so its Last-Modified shows no rewrite.
    "same-second-rewrite": (NEVER, [
        ("upload", (A, b"BROKEN1", "documented")), ("deliver event", (0, {})),
        ("upload", (A, b"clean-1", "logged")), ("CI finishes a job", (0,)),
        ("upload", (A, b"BROKEN1", "documented"))]),
    # Fixed: the event's meta.ETag names EVIL while clean-1 is current; its submitter dies in its check of the
    # key after POST /jobs, before recording the job; CI reads clean-1; EVIL is written again in the same second.
    "same-second-rewrite-unchecked": (NEVER, [
        ("upload", (B, b"EVIL--1", "logged")), ("upload", (B, b"clean-1", "documented")),
        ("deliver event", (0, {8: "crash"})), ("CI finishes a job", (5,)), ("upload", (B, b"EVIL--1", "logged"))]),
    # Fixed: EVIL's POST /jobs is accepted but answers an error, and the submitter releases its claim. A repeated
    # event wins the job's adoption token and fails reading the claim, so the job stays unrecorded while the
    # token is held. clean-1 is written over EVIL and CI reads clean-1; EVIL is written again. The result found
    # the adoption taken and applied its verdict (about clean-1) to EVIL on the unrecorded claim, where no
    # rewrite can be told. A result whose job another adopter holds is now left to reconcile.
    "rewrite-before-adoption": (NEVER, [
        ("upload", (A, b"clean-1", "documented")), ("upload", (B, b"BROKEN1", "documented")),
        ("upload", (B, b"EVIL--1", "documented")), ("deliver event", (0, {0: "crash"})),
        ("upload", (A, b"clean-2", "logged")), ("deliver event", (6, {("ci.create", 0): "fail_after"})),
        ("deliver event", (3, {})), ("deliver event", (1, {10: "fail_after"})),
        ("upload", (B, b"clean-1", "logged")), ("CI finishes a job", (0,)), ("time passes", (1,)),
        ("upload", (B, b"EVIL--1", "documented"))]),
    # clean-2's job reads BROKEN1 written over it and fails; its result is stale. clean-2 is written again in the
    # same second and its event never comes; BROKEN1's job reads clean-2 and is stale too. Its repair of the key's
    # tags put back the failure that came from BROKEN1's bytes as clean-2's status.
    "stale-failure-as-status": (NEVER, [
        ("upload", (A, b"clean-2", "logged")), ("upload", (A, b"BROKEN1", "documented")),
        ("deliver event", (4, {})), ("deliver event", (7, {})), ("CI finishes a job", (4,)),
        ("deliver callback", (5, {})), ("upload", (A, b"clean-2", "logged")), ("drop event", (2,))]),
    # clean-1's submitter dies once CI accepted its job; clean-2's two jobs are lost, and one reconcile run gives
    # up on it (FAILED, JobLost) and then, completing clean-1's stale job, repaired the key's tags from clean-2's
    # records while the given-up attempt's older marker was still listed: PENDING, with no work left to end it.
    "given-up-marker-left-pending": (NEVER, [
        ("upload", (A, b"clean-1", "logged")), ("deliver event", (3, {7: "crash"})),
        ("upload", (A, b"clean-2", "logged")), ("upload", (A, b"clean-2", "documented")),
        ("deliver event", (4, {})), ("time passes", (901,)), ("CI loses a job", (5,)),
        ("CI finishes a job", (4,)), ("reconcile", ({},)), ("time passes", (301,)), ("CI loses a job", (0,))]),
    # EVIL's verdict is applied (copied to quarantine, result recorded), and the removal of its version fails;
    # clean-1 is written and the key deleted. CI's repeated result found the version hidden behind other bytes,
    # and left it readable by VersionId as "other bytes came after it", though its job had concluded with the
    # key holding EVIL. A concluded job's repeated result now finishes the removal.
    "interrupted-removal-behind-newer-bytes": (ENABLED, [
        ("upload", (A, b"EVIL--1", "logged")), ("deliver event", (5, {})), ("CI finishes a job", (4,)),
        ("deliver callback", (7, {("cos.list_object_versions", 0): "fail"})), ("upload", (A, b"clean-1", "logged")),
        ("delete", (A,))]),
    # The same with the result's record failing beside the quarantine copy: nothing records the verdict, but the
    # job's copy is in place. Its repeated result found the version hidden behind clean-1 and stopped at the
    # copy ("already applied"); it now finishes the removal.
    "interrupted-move-behind-newer-bytes": (ENABLED, [
        ("upload", (B, b"EVIL--1", "logged")), ("deliver event", (3, {})), ("CI finishes a job", (2,)),
        ("deliver callback", (2, {("cos.put_object", 0): "fail"})), ("upload", (B, b"clean-1", "documented")),
        ("delete", (B,))]),
    # Platform limit: reconcile quarantines EVIL: HEAD sees EVIL, the DELETE stalls, the user uploads clean-1,
    # the DELETE lands.
    "delete-races-upload": (NEVER, [
        ("upload", (A, b"clean-2", "documented")), ("deliver event", (0, {})),
        ("upload", (B, b"EVIL--1", "documented")), ("deliver event", (0, {})), ("delete", (A,)),
        ("CI finishes a job", (1,)), ("time passes", (3601,)),
        ("reconcile", ({("cos.delete_object", 1): "stall"},)), ("upload", (B, b"clean-1", "documented"))]),
}


def test_every_open_finding_and_platform_limit_has_a_regression() -> None:
    assert set(FINDINGS) | set(LIMITATIONS) <= set(REGRESSIONS)


@pytest.mark.parametrize("name,limit", [("overwrite-before-event", "overwrite-before-verdict"),
                                        ("delete-before-event", "overwrite-before-verdict")])
def test_a_second_sequence_of_a_platform_limit(name: str, limit: str, monkeypatch: pytest.MonkeyPatch) -> None:
    kind, steps = REGRESSIONS[name]
    assert replay(Config(kind), steps)[0] is None
    monkeypatch.setattr(checks, "LIMITATIONS", {n: f for n, f in LIMITATIONS.items() if n != limit})
    assert replay(Config(kind), steps)[0] is not None


@pytest.mark.parametrize("name", list(LIMITATIONS))
def test_a_platform_limit_is_the_only_explanation_of_its_sequence(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every run tolerates the platform limits; without this one its sequence violates an invariant, so the
    # limit is real and its explanation is what hides it, nothing else.
    kind, steps = REGRESSIONS[name]
    assert replay(Config(kind), steps)[0] is None
    monkeypatch.setattr(checks, "LIMITATIONS", {n: f for n, f in LIMITATIONS.items() if n != name})
    violation, _ = replay(Config(kind), steps)
    assert violation is not None


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.xfail(strict=True, reason=f"open: {FINDINGS[name].title}")]
                 if name in FINDINGS else [], id=name)
    for name in REGRESSIONS])
def test_regression(name: str) -> None:
    kind, steps = REGRESSIONS[name]
    violation, _ = replay(Config(kind), steps)
    assert violation is None, str(violation)


@pytest.mark.parametrize("name", list(FINDINGS))
def test_a_finding_explains_its_own_sequence(name: str) -> None:
    kind, steps = REGRESSIONS[name]
    violation, _ = replay(Config(kind, tolerate=(name,)), steps)
    assert violation is None, str(violation)


@pytest.mark.parametrize("mode,closed", [("honour", True), ("reject", False), ("ignore", False)])
def test_where_cos_honours_if_match_on_delete_the_delete_race_is_closed(mode: str, closed: bool,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    # The functions send S3's If-Match on every DELETE of content they checked. Where COS honours it, the
    # stalled DELETE of EVIL meets clean-1 and removes nothing, with no limit to explain anything; where it is
    # ignored, or refused (and the DELETE sent again without it), the limit stays.
    kind, steps = REGRESSIONS["delete-races-upload"]
    monkeypatch.setattr(checks, "LIMITATIONS", {n: f for n, f in LIMITATIONS.items() if n != "delete-races-upload"})
    violation, _ = replay(Config(kind, delete_if_match=mode), steps)
    assert (violation is None) == closed, str(violation)
