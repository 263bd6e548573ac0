"""The invariants of ciflow's state machine, checked against the model's ground truth.

The model knows what the library cannot: which bytes each CI job really read, which upload wrote each
version, and whose event a function handled. `Checks` uses that to judge every change the functions
make (`observe`), every job CI accepts (`job_accepted`), and the settled state (`quiescent`).

A violation names the object (key, ETag) it is about. `FINDINGS` lists the open defects found so far,
each with the mechanism that explains a violation (the model can tell, e.g., that the job behind a
verdict read other bytes). A `World` built with `tolerate=` counts violations explained by those
findings instead of failing, so a run can explore past a known defect; a strict world (the default)
fails on every violation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ciflow import tagging
from ciflow.records import RecordId, claim_of_marker
from ciflow.userdata import decode as decode_user_data

from .ci import CiJob, truth
from .cos import ENABLED, SUSPENDED, Mutation, Version

if TYPE_CHECKING:
    from .world import World

FINAL = ("CLEAN", "SUSPICIOUS", "FAILED")


@dataclass(frozen=True)
class Violation:
    code: str
    text: str
    key: str = ""
    etag: str = ""

    def __str__(self) -> str:
        return f"[{self.code}] {self.text}"


@dataclass(frozen=True)
class Finding:
    name: str
    title: str
    explains: Callable[[World, Violation], bool]


def _named_etag(job: CiJob) -> str:
    ud = decode_user_data(job.user_data)
    return ud.etag if ud is not None else ""


def misread(job: CiJob) -> bool:
    """CI ran the job on other bytes than the ETag it was submitted for (or on none at all)."""
    return job.finished and job.read_etag != _named_etag(job)


def _explained_by_overwrite_before_verdict(world: World, v: Violation) -> bool:
    # CI reads the key, not a version. Other bytes written over the inspected version before its verdict came
    # leave nothing that shows which of them CI read, so the library keeps no verdict for either (the result
    # is "stale" or "object-missing") and removes nothing; the overwritten version stays readable by VersionId.
    # Likewise a documented event names neither ETag nor version: an upload overwritten or deleted before its
    # event is handled is never seen (the event's HEAD finds the newer bytes, or nothing).
    if v.code != "suspicious-version-readable":
        return False
    doc = world.checks.result_record(v.key, v.etag) or {}
    for up in world.uploads:
        if up.key != v.key or up.etag != v.etag:
            continue
        overwritten = any(o.key == v.key and o.etag != v.etag and o.uid > up.uid for o in world.uploads)
        deleted = any(k == v.key and n >= up.uid for k, n in world.user_deletes)
        if overwritten and doc.get("applied") in ("stale", "object-missing"):
            return True
        if (overwritten or deleted) and up.form == "documented":
            return True
    return False


def _explained_by_delete_race(world: World, v: Violation) -> bool:
    # Where COS honoured If-Match on DELETE, the functions' DELETE names the content they checked: no race.
    return (v.code == "wrong-action" and (v.key, v.etag) in world.checks.raced_deletes
            and world.cos.delete_if_match != "honour")


def _explained_by_same_second_rewrite(world: World, v: Violation) -> bool:
    # A job submitted while the key held its ETag read other bytes (an overwrite while it ran), and the
    # ETag came back no later than the second the claim last recorded its job: COS's whole-second
    # Last-Modified cannot tell that rewrite from the original write, and the bucket has no version ids.
    if not v.key or world.kind == ENABLED:
        return False
    claim = world.cos.current(world.store, RecordId(v.key, v.etag, "images").path(world.record_prefix, "jobs"))
    if claim is None:
        return False
    for job in world.ci.jobs.values():
        if job.key != v.key or _named_etag(job) != v.etag or not misread(job):
            continue
        # The key held the job's bytes when CI accepted it (then no check of the submitter can see the
        # overwrite), or the submitter died right after POST /jobs, before its check of the key.
        if world.checks.held_at_accept.get(job.job_id) != v.etag and job.job_id not in world.checks.unchecked_jobs:
            continue
        since = world.uploads_at_job.get(job.job_id, 0)
        if any(up.key == v.key and up.etag == v.etag and up.uid > since and int(up.at) <= int(claim.modified)
               for up in world.uploads):
            return True
    return False


# Windows COS's API leaves open, documented in docs/reliability.md ("Known limits"): tolerated in every
# run (counted in the statistics), each with a regression test showing its sequence.
LIMITATIONS = {f.name: f for f in (
    Finding("delete-races-upload",
            "on a bucket without versioning, removing the inspected content is a read that shows its ETag (a "
            "conditional copy, or a HEAD) then an unconditional DELETE; an upload landing in between is deleted "
            "(COS documents no If-Match on DELETE)",
            _explained_by_delete_race),
    Finding("same-second-rewrite",
            "on a bucket without version ids, the key overwritten while its job runs and then written with the "
            "job's bytes again within the second the job was recorded: CI read the other bytes, and COS's "
            "whole-second Last-Modified cannot tell the rewrite from the original write",
            _explained_by_same_second_rewrite),
    Finding("overwrite-before-verdict",
            "on a versioned bucket, a version overwritten with other bytes before its verdict came (CI reads "
            "the key, not a version, so nothing shows which bytes the verdict is about), or overwritten or "
            "deleted before its event was handled (a documented event names neither ETag nor version): a "
            "suspicious version stays readable by VersionId",
            _explained_by_overwrite_before_verdict),
)}


FINDINGS: dict[str, Finding] = {}



class Checks:
    def __init__(self, world: World, tolerate: frozenset[str] = frozenset()):
        unknown = set(tolerate) - set(FINDINGS)
        if unknown:
            raise ValueError(f"no such finding(s): {sorted(unknown)}")
        self.world = world
        self.tolerate = tolerate
        self.new: list[Violation] = []
        self.tolerated: list[tuple[str, Violation]] = []
        # id(version in quarantine) → (the version, the key it was copied from); the version is held so that
        # its id is never reused by another object while it is a key here
        self.quarantined_from: dict[int, tuple[Version, str]] = {}
        self.orphan_results: set[str] = set()        # result records written while their claim did not exist
        self.raced_deletes: set[tuple[str, str]] = set()  # (key, ETag) a function deleted, uploaded after it started
        self.held_at_accept: dict[str, str] = {}  # job id → the ETag its key held when CI accepted it
        self.unchecked_jobs: set[str] = set()     # jobs whose submitter crashed once CI accepted them

    def add(self, code: str, text: str, key: str = "", etag: str = "") -> None:
        self.new.append(Violation(code, text, key, etag))

    # --- every step ---------------------------------------------------------------------------------
    def observe(self, m: Mutation) -> None:
        """Every change a function makes outside ciflow's records must be an action the verdict allows."""
        w = self.world
        if m.bucket == w.store and m.key.startswith(w.record_prefix):
            results = f"{w.record_prefix}results/"
            if m.actor != "user" and m.op == "put" and m.key.startswith(results):
                claim = f"{w.record_prefix}jobs/{m.key[len(results):]}"
                if w.cos.current(w.store, claim) is None:
                    self.orphan_results.add(m.key)
                    w.reached["a result written while no claim exists"] += 1
            if m.actor != "user" and m.op == "put" and m.key.startswith(results) and m.written is not None:
                self._result_written(m.key, m.written.body)
            if m.actor != "user" and m.op == "delete" and m.key.startswith(f"{w.record_prefix}pending/"):
                self._marker_dropped(m.key)
            return
        if m.actor == "user" or m.bucket != w.bucket:
            if m.actor != "user":
                self.add("outside-bucket", f"{m.actor} changed {m.bucket}/{m.key}, outside its records")
            return
        where = "quarantine/" if m.key.startswith(w.rules.quarantine_prefix) else "user key"
        w.reached[f"{m.actor}: {m.op} {where}"] += 1
        if m.revealed is not None:
            w.reached["an older version became current after a delete"] += 1
        if m.op == "tags" and m.written is not None and m.written.tags.get(tagging.STATUS) == "PENDING":
            markers = RecordId(m.key, m.written.etag, "images").markers(w.record_prefix)
            if not w.cos.listing(w.store, markers):
                w.reached["PENDING written on content with no pending work"] += 1
        if m.op == "put":
            self.add("wrote-user-object", f"{m.actor} wrote over the user's object {m.key}", m.key)
        elif m.op == "copy":
            src = m.source
            body = src.body if src is not None else b""
            if m.written is not None:
                self.quarantined_from[id(m.written)] = (m.written, m.source_key)
            if not m.key.startswith(w.rules.quarantine_prefix):
                self.add("copy-outside-quarantine", f"{m.actor} copied into {m.key}", m.key)
            elif truth(body) != "SUSPICIOUS":
                self.add("wrong-action", f"{m.actor} quarantined content that is not suspicious: {m.key} <- {body!r}",
                         m.source_key, src.etag if src is not None else "")
        elif m.op == "delete":
            gone = m.removed or m.hidden
            if gone is not None and truth(gone.body) != "SUSPICIOUS":
                inv, up = w.current(), w.by_version.get(id(gone))
                if inv is not None and up is not None and up.uid > inv.uploads_at_start:
                    self.raced_deletes.add((m.key, gone.etag))   # uploaded while this invocation ran
                self.add("wrong-action", f"{m.actor} deleted content that is not suspicious: {m.key} "
                         f"({gone.body!r}, v={gone.vid or '-'})", m.key, gone.etag)
        elif m.op == "acl" and m.written is not None and truth(m.written.body) != "SUSPICIOUS":
            self.add("wrong-action", f"{m.actor} made {m.key} private though it is not suspicious", m.key,
                     m.written.etag)

    def _result_written(self, path: str, body: bytes) -> None:
        w = self.world
        try:
            doc = json.loads(body)
        except ValueError:
            return
        job = w.ci.jobs.get(str(doc.get("job_id") or ""))
        claim = w.cos.current(w.store, path.replace(f"{w.record_prefix}results/", f"{w.record_prefix}jobs/", 1))
        if job is None or claim is None:
            return
        ud = decode_user_data(job.user_data)
        if ud is not None and ud.attempt < int(json.loads(claim.body).get("attempts") or 1):
            w.reached["a result written for an attempt older than the claim's"] += 1

    def _marker_dropped(self, path: str) -> None:
        w = self.world
        claim = w.cos.current(w.store, claim_of_marker(w.record_prefix, path))
        if claim is None:
            return
        job = w.ci.jobs.get(str(json.loads(claim.body).get("job_id") or ""))
        if job is not None and (job.lost or not job.finished):
            w.reached["a marker dropped while its claim's job is unconcluded"] += 1

    def job_accepted(self, job: CiJob) -> None:
        """At most one live job per (object version, rule)."""
        w = self.world
        ud = decode_user_data(job.user_data)
        held = w.cos.current(w.bucket, job.key)
        self.held_at_accept[job.job_id] = held.etag if held is not None and not held.marker else ""
        for other in w.ci.jobs.values():
            if other is job or other.lost or other.bucket != job.bucket or other.key != job.key:
                continue
            oud = decode_user_data(other.user_data)
            if other.user_data == job.user_data:
                self.add("duplicate-job", f"job {job.job_id[:5]} repeats {other.job_id[:5]} ({job.key}, same "
                         f"UserData {job.user_data!r})", job.key, ud.etag if ud else "")
                continue
            # A job for the same bytes is a new one only when the key was written again since the other job
            # was accepted (a new object version), or the other was given up on (Timeout).
            rewritten = any(up.key == job.key and up.uid > w.uploads_at_job.get(other.job_id, 0) for up in w.uploads)
            if (ud and oud and oud.etag == ud.etag and oud.rule == ud.rule and not other.finished and not rewritten
                    and w.clock.now - other.created < w.settings.reconcile_give_up_seconds):
                self.add("second-job", f"job {job.job_id[:5]} (attempt {ud.attempt}) for {job.key} ({ud.etag[:6]}) "
                         f"while {other.job_id[:5]} (attempt {oud.attempt}) is still queued", job.key, ud.etag)

    def unexpected(self, function: str, exc: BaseException) -> None:
        self.add("unexpected-exception", f"{function} raised {type(exc).__name__}: {exc}")

    def settle(self) -> list[Violation]:
        """The violations found since the last call that no tolerated finding explains."""
        w = self.world
        fatal = []
        for v in self.new:
            if v.code in ("duplicate-job", "second-job") and w.kind == SUSPENDED:
                # Documented (docs/reliability.md, "Versioned buckets"): on a Suspended bucket no version can
                # arbitrate the claim, so a repeated event can start a second job; it is never applied twice.
                w.stats["duplicate jobs on Suspended buckets (documented)"] += 1
                continue
            limit = next((name for name, f in LIMITATIONS.items() if f.explains(w, v)), None)
            if limit is not None:
                w.stats[f"violations explained by platform limit {limit} (documented)"] += 1
                continue
            explained = next((name for name in sorted(self.tolerate) if FINDINGS[name].explains(w, v)), None)
            if explained is not None:
                self.tolerated.append((explained, v))
                w.stats[f"violations explained by open finding {explained}"] += 1
            else:
                fatal.append(v)
        self.new.clear()
        return fatal

    # --- quiescence -----------------------------------------------------------------------------------
    def record(self, key: str, etag: str, kind: str, rule: str = "images") -> Optional[dict[str, Any]]:
        w = self.world
        v = w.cos.current(w.store, RecordId(key, etag, rule).path(w.record_prefix, kind))
        return json.loads(v.body) if v is not None else None

    def result_record(self, key: str, etag: str, rule: str = "images") -> Optional[dict[str, Any]]:
        return self.record(key, etag, "results", rule)

    def lost_jobs(self, key: str, etag: str) -> int:
        return sum(1 for j in self.world.ci.jobs.values() if j.lost and j.key == key and _named_etag(j) == etag)

    def quiescent(self, keys: list[str]) -> None:
        w = self.world
        for marker in w.markers():
            self.add("leftover-marker", f"pending marker {marker} is left")
        for key in keys:
            self._key(key)
        for key, v in w.cos.listing(w.bucket, w.rules.quarantine_prefix):
            if truth(v.body) != "SUSPICIOUS":
                self.add("wrong-action", f"{key} in quarantine holds content that is not suspicious",
                         self.quarantined_from.get(id(v), (v, ""))[1], v.etag)

    def _key(self, key: str) -> None:
        w = self.world
        cur = w.cos.current(w.bucket, key)
        for v in w.cos.versions(w.bucket, key):
            if v.marker or v is cur:
                continue
            up = w.by_version.get(id(v))
            doc = self.result_record(key, v.etag)
            # Bytes that are suspicious, and that a verdict the library received says so about.
            if up is not None and up.owed and doc and doc.get("outcome") == "SUSPICIOUS" \
                    and truth(v.body) == "SUSPICIOUS":
                self.add("suspicious-version-readable",
                         f"suspicious bytes of {up.label()} still readable by VersionId", key, v.etag)
        if cur is None:
            w.reached["final: key empty"] += 1
            return
        up = w.by_version.get(id(cur))
        status = cur.tags.get(tagging.STATUS, "")
        reason = cur.tags.get(tagging.REASON, "")
        w.reached[f"final: {status or 'untagged'}" + (f"/{reason}" if reason else "")] += 1
        what = up.label() if up is not None else key
        if status == "PENDING":
            self.add("left-pending", f"{what} is left PENDING", key, cur.etag)
        if status in FINAL:
            self._verdict_tags(what, key, cur, status, reason)
        if up is not None and up.owed:
            if status not in FINAL:
                self.add("not-final", f"{what} never reached a final status (tags {cur.tags})", key, cur.etag)
            # FAILED/JobLost or Timeout: CI never gave a verdict (the tags check verifies CI really lost the jobs).
            no_verdict = status == "FAILED" and reason in ("JobLost", "Timeout")
            if truth(cur.body) == "SUSPICIOUS" and not no_verdict:
                self.add("suspicious-readable", f"{what} is suspicious and still readable at its key", key, cur.etag)

    def _verdict_tags(self, what: str, key: str, cur: Version, status: str, reason: str) -> None:
        """Tags describe the current content: the job they name read exactly these bytes."""
        if status == "FAILED" and reason == "Timeout":
            return
        if status == "FAILED" and reason == "JobLost":
            lost = self.lost_jobs(key, cur.etag)
            if lost < self.world.settings.max_submit_attempts:
                self.add("joblost-without-loss", f"{what} is FAILED/JobLost, but CI lost {lost} job(s) for it",
                         key, cur.etag)
            return
        job = self.world.ci.jobs.get(cur.tags.get(tagging.JOB_ID, ""))
        if job is None:
            self.add("tags-other-content", f"{what} is tagged {status} by job {cur.tags.get(tagging.JOB_ID)!r}, "
                     "which CI never ran", key, cur.etag)
        elif job.read_etag != cur.etag or truth(job.read_body) != status:
            read = "nothing (the object was absent)" if job.read_body is None else job.read_body.decode()
            self.add("tags-other-content", f"{what} is tagged {status} from job {job.job_id[:5]}, which read {read}",
                     key, cur.etag)


class InvariantViolation(AssertionError):
    def __init__(self, violations: list[Violation], scenario: list[str]):
        self.found = list(violations)
        text = "\n".join(f"  ✗ {v}" for v in violations)
        story = "\n".join(f"  {line}" for line in scenario)
        super().__init__(f"invariant violated:\n{text}\nscenario:\n{story}")
