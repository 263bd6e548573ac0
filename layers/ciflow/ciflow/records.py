"""Job records: small JSON objects under the state prefix, one set per (object, ETag, rule).

- ``jobs/<rule>/<h>/<etag>.json``     the *claim*: created with a conditional PUT before a job is
  submitted, so a repeated event finds it and stops. Only the submitter writes it afterwards
  (to add the job id), so it never races with the callback.
- ``results/<rule>/<h>/<etag>.json``  the *result*: written by whoever applied the verdict
  (callback or reconcile), after every action finished. Its presence means "done".
- ``pending/<rule>/<h>/<etag>.<attempt>.json``  a marker per attempt that exists from its start to
  its result, so the reconcile timer lists only unfinished work. Attempt 1's is written together with
  the claim (and re-written by any submit that finds a claim); a takeover writes the new attempt's
  marker before it records that attempt in the claim. So no claim exists that reconcile cannot find,
  and the completion of an attempt drops exactly its own marker, never a newer attempt's. Markers
  written before markers had attempts (``<etag>.json``) are read as markers of an older attempt.

docs/reliability.md describes who writes each record, under which condition, and what every crash
point leaves behind.

`<h>` is a hash of the key (keys can be long and contain anything). Records are plain objects in
the user's bucket, readable with any S3 client.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any, Optional

from .concurrency import together
from .errors import RetryableError
from .log import logger
from .results import verdict_from_result
from .storage import Storage, is_version

# A claim without a job id older than this may be taken over: its submitter died, or let go.
STALE_CLAIM_SECONDS = 300


LEASE_MARGIN_SECONDS = 10
MARKER_TRIES = 3  # rounds of the SDK's own retries for a pending marker


def claim_lease(time_limit_ms: Any) -> float:
    """How long a claim an invocation makes may keep others away: the function's own time limit
    (after it, that invocation cannot be alive), plus a margin. Without one, the default lease."""
    try:
        limit = float(time_limit_ms) / 1000
    except (TypeError, ValueError):
        return STALE_CLAIM_SECONDS
    return min(STALE_CLAIM_SECONDS, limit + LEASE_MARGIN_SECONDS) if limit > 0 else STALE_CLAIM_SECONDS


# Set on a claim as read: its Last-Modified by COS's clock, i.e. when its job was last recorded.
WRITTEN = "_written"
# Set on a claim whose submitter saw other content at the key right after POST /jobs: the job may read it.
OTHER_CONTENT = "other_content_at_submit"


def rewritten_since(info_modified: float, claim: dict[str, Any]) -> bool:
    """Whether the object was written after the claim's job was recorded (both by COS's clock, whole
    seconds): then CI may have read other bytes than the ones the job was submitted for (A-B-A)."""
    written = float(claim.get(WRITTEN) or 0)
    return bool(info_modified and written and claim.get("job_id") and info_modified > written)


def job_window_start(claim: dict[str, Any]) -> float:
    """A time by COS's clock no later than the claim's job was submitted, for comparing with COS timestamps:
    the claim's last write (recording the job, which follows POST /jobs) less the time its submitter took
    from claiming to recording (one function's clock, so a skewed clock cancels out), less a second for
    whole-second timestamps. 0 (any time) for an adopted job, recorded by another than its submitter."""
    written = float(claim.get(WRITTEN) or 0)
    if not written or claim.get("adopted") or not claim.get("submitted_at") or not claim.get("claimed_at"):
        return 0.0
    took = max(0.0, float(claim["submitted_at"]) - float(claim["claimed_at"]))
    return max(0.0, written - took - 1)


def doubtful(info_modified: float, claim: dict[str, Any], version_id: str = "") -> bool:
    """Whether the claim's job cannot vouch for the bytes the object holds now: rewritten since (above);
    another version than the one submitted (on a versioned bucket the version id tells a rewrite within
    the same second); or other content was at the key right after the job was submitted (CI reads the
    object when the job runs). Submitters act on the first only (a repeated event looks like the other
    two); for the others the verdict is set aside, and reconcile gets the bytes a new job."""
    if not claim.get("job_id"):
        return False
    recorded = str(claim.get("version_id") or "")
    if is_version(version_id) and is_version(recorded) and version_id != recorded:
        return True
    return bool(claim.get(OTHER_CONTENT)) or rewritten_since(info_modified, claim)


def in_flight(claim: dict[str, Any], age: float) -> bool:
    """Whether a repeated event must leave this claim alone: its job is recorded, or its submitter's
    lease (`age` by COS's clock against the lease it wrote: its function's time limit and a margin)
    has not run out and it did not let go."""
    lease = float(claim.get("lease") or STALE_CLAIM_SECONDS)
    return bool(claim.get("job_id")) or (age < lease and claim.get("status") != "RELEASED")


REPLACED_KEPT = 10  # job ids of replaced attempts a claim remembers


def concludes(result: dict[str, Any], claim: Optional[dict[str, Any]]) -> bool:
    """Whether `result` is about the claim's current attempt rather than one a takeover replaced since (a
    completion that landed late). Results written with the attempt they conclude must match its attempt and
    job; a verdict's result names its job, which must not be a replaced one nor differ from the claim's."""
    if claim is None:
        return True
    job = str(claim.get("job_id") or "")
    concluded = str(result.get("job_id") or "")
    if "attempt" in result:
        try:
            return int(result["attempt"]) >= int(claim.get("attempts") or 1) and concluded == job
        except (TypeError, ValueError):
            return False
    if concluded in (claim.get("replaced") or ()):
        return False
    return not concluded or not job or concluded == job


def replaced_jobs(claim: dict[str, Any]) -> list[str]:
    """The replaced job ids a takeover of `claim` records (its own job among them)."""
    kept = [str(j) for j in claim.get("replaced") or ()]
    if claim.get("job_id"):
        kept.append(str(claim["job_id"]))
    return kept[-REPLACED_KEPT:]


@dataclass(frozen=True)
class RecordId:
    key: str
    etag: str
    rule: str

    def path(self, state_prefix: str, kind: str) -> str:
        digest = hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:32]
        return f"{state_prefix}{kind}/{self.rule}/{digest}/{self.etag}.json"

    def marker(self, state_prefix: str, attempt: int) -> str:
        """The pending marker of one attempt."""
        return self.path(state_prefix, "pending")[: -len("json")] + f"{attempt}.json"

    def markers(self, state_prefix: str) -> str:
        """The prefix every pending marker of this rid starts with (an ETag holds no dot; a marker written
        before markers had attempts, `<etag>.json`, starts with it too)."""
        return self.path(state_prefix, "pending")[: -len("json")]


def marker_attempt(marker_key: str) -> Optional[int]:
    """The attempt a pending marker's name carries; None for a marker named before markers had attempts."""
    name = marker_key.rsplit("/", 1)[-1][: -len(".json")]
    head, _, tail = name.rpartition(".")
    return int(tail) if head and tail.isdigit() else None


def claim_of_marker(state_prefix: str, marker_key: str) -> str:
    """The claim beside a pending marker under `state_prefix` (same rule, key hash and ETag)."""
    rest = marker_key[len(state_prefix + "pending/"):]
    attempt = marker_attempt(rest)
    if attempt is not None:
        rest = rest[: -len(f".{attempt}.json")] + ".json"
    return state_prefix + "jobs/" + rest


def pending_work(attempts: list[Optional[int]], claim: Optional[dict[str, Any]],
                 result: Optional[dict[str, Any]]) -> bool:
    """Whether a rid whose markers carry `attempts` (None: a marker named without one) has work pending: a
    marker of the claim's current attempt (or a newer one, whose taker-over has not recorded it yet), or a
    marker of an older attempt while the current one has not concluded with a verdict (its own marker was
    never written, or the content needs a new job): reconcile acts on such a marker."""
    if not attempts:
        return False
    current = int(claim.get("attempts") or 1) if claim else 1
    if any(a is not None and a >= current for a in attempts):
        return True
    return superseded_marker_needed(claim, result)


GIVEN_UP = ("JobLost", "Timeout")   # reasons reconcile gives up on a job with (`Reconciler._fail`)


def given_up(claim: Optional[dict[str, Any]], result: Optional[dict[str, Any]],
             attempts: list[Optional[int]]) -> bool:
    """Whether reconcile gave up on the claim's current attempt (FAILED, JobLost or Timeout) and no newer
    attempt has a marker: whatever a marker of it or of an older attempt still does, it ends in that same
    FAILED, so it is no pending work for the content's tags."""
    if not claim or not result or result.get("outcome") != "FAILED" or result.get("reason") not in GIVEN_UP:
        return False
    if result.get("applied") != "applied" or not concludes(result, claim):
        return False
    current = int(claim.get("attempts") or 1)
    return not any(a is not None and a > current for a in attempts)


def superseded_marker_needed(claim: Optional[dict[str, Any]], result: Optional[dict[str, Any]]) -> bool:
    """Whether a marker of another attempt than the claim's current one (whose own marker is missing) still
    stands for work: unless the current attempt concluded with a verdict, reconcile acts on it."""
    if claim is None:
        return True
    return result is None or not concludes(result, claim) or verdict_from_result(result) is None


def _load(raw: Optional[bytes]) -> Optional[dict[str, Any]]:
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _fresh_claim(raw: bytes) -> bool:
    """A claim as `create_claim` writes it (attempt 1, no job, CLAIMED); `update_claim` never writes one."""
    doc = _load(raw) or {}
    return doc.get("status") == "CLAIMED" and int(doc.get("attempts") or 1) == 1 and not doc.get("job_id")


class Records:
    """The records of the objects in `bucket`. They live in that bucket under `state_prefix`, or, when
    `state_bucket` is set (a bucket that never had versioning, for buckets whose versioning is
    Suspended, where no conditional create exists), in that bucket under `<state_prefix><bucket>/`."""

    def __init__(self, storage: Storage, bucket: str, state_prefix: str, state_bucket: str = ""):
        self.storage = storage
        self.bucket = bucket
        self.store = state_bucket or bucket
        self.prefix = f"{state_prefix}{bucket}/" if state_bucket else state_prefix

    @classmethod
    def of(cls, storage: Storage, bucket: str, settings: Any) -> Records:
        """The records of `bucket` where `settings` keep them."""
        return cls(storage, bucket, settings.state_prefix, settings.state_bucket)

    def _put(self, rid: RecordId, kind: str, doc: dict[str, Any]) -> None:
        self.storage.put(self.store, rid.path(self.prefix, kind), json.dumps(doc).encode())

    def new_claim(self, rid: RecordId, version_id: str = "", size: int = 0,
                  lease: float = STALE_CLAIM_SECONDS) -> dict[str, Any]:
        now = int(time.time())
        return {"bucket": self.bucket, "key": rid.key, "etag": rid.etag, "rule": rid.rule, "job_id": "",
                "status": "CLAIMED", "claimed_at": now, "updated_at": now, "attempts": 1, "lost": 0,
                "version_id": version_id, "size": size, "lease": lease}

    def create_claim(self, rid: RecordId, doc: dict[str, Any]) -> bool:
        """Create the claim if absent (conditional create). True when this caller owns the submission."""
        return self.storage.create_if_absent(self.store, rid.path(self.prefix, "jobs"), json.dumps(doc).encode())

    def _token(self, rid: RecordId, name: str) -> str:
        return rid.path(self.prefix, "takeovers")[: -len(".json")] + f"/{name}.json"

    def _read_token(self, key: str) -> tuple[dict[str, Any], bool]:
        """A token's body, and whether it is still held: written within the lease it names (a holder that
        died or failed holds it no longer). A token gone meanwhile is held by nobody."""
        token = self.storage.get_record(self.store, key)
        if token is None:
            return {}, False
        doc = _load(token.body) or {}
        return doc, token.age < float(doc.get("lease") or STALE_CLAIM_SECONDS)

    def take_over(self, rid: RecordId, attempt: int, lease: float = STALE_CLAIM_SECONDS) -> bool:
        """Win the right to start `attempt` (conditional create of a token per attempt): of several
        takers-over racing (reconcile, a platform retry, a repeated event), exactly one wins. The adoption of
        the attempt it replaces is closed first (`adopt`): an adopter that read the claim before the takeover
        cannot write the older attempt back over the new one."""
        if not self._close_adoption(rid, attempt - 1):
            logger.info("an adoption of the attempt is under way; the takeover waits for it",
                        extra={"rule": rid.rule, "attempt": attempt - 1})
            return False
        key = self._token(rid, str(attempt))
        body = json.dumps({"attempt": attempt, "lease": lease}).encode()
        if self.storage.create_if_absent(self.store, key, body):
            return True
        # A winner that died or failed before recording its attempt would block every later
        # taker-over: its token counts only for the lease its invocation had.
        if self._read_token(key)[1]:
            return False
        self.storage.put(self.store, key, body)
        return True

    def adopt(self, rid: RecordId, claim: dict[str, Any], job_id: str, lease: float = STALE_CLAIM_SECONDS,
              **fields: Any) -> Optional[dict[str, Any]]:
        """Record `job_id`, a job CI accepted for the claim's attempt that its submitter never recorded. The
        claim has no compare-and-swap, and the adopter is not its owner: it read the claim some time ago, and a
        takeover may have started a newer attempt since. So the adopter first wins the attempt's adoption token
        (conditional create; a takeover closes it before starting the next attempt), then reads the claim
        again. The claim written, or None when another adopter or a takeover came first. Unless the submitter
        checked the key after POST /jobs and said so (`checked`, written with a release), the job's verdict
        will not count (`OTHER_CONTENT`)."""
        attempt = int(claim.get("attempts") or 1)
        key = self._token(rid, f"{attempt}.adopt")
        if not self.storage.create_if_absent(self.store, key, json.dumps({"by": "adopter", "lease": lease}).encode()):
            doc, held = self._read_token(key)
            if doc.get("by") != "adopter" or (held and not doc.get("done")):
                return None   # closed by a takeover, or another adopter is at work
            # An adoption done before, whose record a late write of the submitter (its release) replaced: the
            # claim, read again below, shows the same attempt without a job, and the adoption is made again.
        current = self.read_claim(rid)
        written = None
        if current is not None and int(current.get("attempts") or 1) == attempt and not current.get("job_id"):
            if not current.get("checked"):
                # Its submitter died before its check of the key after POST /jobs: nothing vouches that CI reads
                # the claimed bytes, so the job's verdict is set aside and the bytes get a new job.
                fields = {**fields, OTHER_CONTENT: True}
            written = self.update_claim(rid, current, job_id=job_id, status="SUBMITTED", adopted=True, **fields)
        self.storage.put(self.store, key, json.dumps({"by": "adopter", "done": True}).encode())
        return written

    def _close_adoption(self, rid: RecordId, attempt: int) -> bool:
        """No adopter of `attempt` may write the claim from now on. False while one that won is still within
        its lease and not done (its claim write may be in flight)."""
        if attempt < 1:
            return True
        key = self._token(rid, f"{attempt}.adopt")
        if self.storage.create_if_absent(self.store, key, json.dumps({"by": "takeover"}).encode()):
            return True
        doc, held = self._read_token(key)
        if doc.get("by") == "adopter" and held and not doc.get("done"):
            return False
        if doc.get("by") != "takeover":
            self.storage.put(self.store, key, json.dumps({"by": "takeover"}).encode())   # no adoption made again
        return True

    def mark_pending(self, rid: RecordId, version_id: str = "", attempt: int = 1) -> None:
        """The marker of `attempt` that reconcile lists. Attempt 1's is written together with the claim, and
        again by any submit that finds a claim; a takeover writes its attempt's before recording it in the
        claim. So nothing can exist that reconcile cannot find."""
        doc = {"key": rid.key, "etag": rid.etag, "rule": rid.rule, "version_id": version_id, "attempt": attempt}
        body = json.dumps(doc).encode()
        # It is what reconcile finds, so a burst of 5xx answers longer than the SDK's own retries is
        # outlasted here rather than left to the platform's few retries of the whole event.
        for tries in range(1, MARKER_TRIES + 1):
            try:
                self.storage.put(self.store, rid.marker(self.prefix, attempt), body)
                return
            except RetryableError:
                if tries == MARKER_TRIES:
                    raise
                time.sleep(0.25 * tries)

    def marker_attempts(self, rid: RecordId) -> list[Optional[int]]:
        """The attempts of the markers `rid` has (one LIST; None for a marker named without an attempt)."""
        found: list[Optional[int]] = []
        token = None
        while True:
            objects, token, _ = self.storage.list_page(self.store, rid.markers(self.prefix), token)
            found += [marker_attempt(o.key) for o in objects]
            if token is None:
                return found

    def pending_state(self, rid: RecordId) -> tuple[Optional[dict[str, Any]], Optional[dict[str, Any]],
                                                     list[Optional[int]]]:
        """What `pending_work` judges from, in one round trip: the result ∥ the claim ∥ the markers' attempts."""
        result, claim, attempts = together(lambda: self.read_result(rid), lambda: self.read_claim(rid),
                                           lambda: self.marker_attempts(rid))
        return result, claim, attempts

    def has_pending(self, rid: RecordId) -> bool:
        """Whether work for `rid` is pending (`pending_work`): what a PENDING tag on its content says."""
        result, claim, attempts = self.pending_state(rid)
        return pending_work(attempts, claim, result)

    def read_claim(self, rid: RecordId) -> Optional[dict[str, Any]]:
        record = self.read_claim_record(rid)
        return record[0] if record is not None else None

    def read_claim_record(self, rid: RecordId) -> Optional[tuple[dict[str, Any], float]]:
        """The claim and its age by COS's clock (Last-Modified against the response's Date)."""
        return self.read_claim_at(rid.path(self.prefix, "jobs"))

    def claim_key(self, marker_key: str) -> str:
        """The claim beside a pending marker (same rule, key hash and ETag)."""
        return claim_of_marker(self.prefix, marker_key)

    def read_claim_at(self, claim_key: str) -> Optional[tuple[dict[str, Any], float]]:
        # On a versioned bucket a losing contender may have left its fresh claim as the current version.
        stored = self.storage.get_created(self.store, claim_key, _fresh_claim)
        doc = _load(stored.body) if stored is not None else None
        if stored is None or doc is None:
            return None
        doc[WRITTEN] = stored.last_modified  # when COS stored it (not part of the record)
        return doc, stored.age

    def update_claim(self, rid: RecordId, base: Optional[dict[str, Any]] = None, **fields: Any) -> dict[str, Any]:
        """Rewrite the claim with `fields`. Only the claim's owner writes it, so the copy it holds
        (`base`) is current and saves a read."""
        doc = dict(base) if base is not None else self.read_claim(rid)
        if doc is None:
            doc = self.new_claim(rid)
        doc.pop(WRITTEN, None)
        doc.update(fields)
        doc["updated_at"] = int(time.time())
        self._put(rid, "jobs", doc)
        return doc

    def note_removal(self, rid: RecordId) -> None:
        """Say that a verdict removes the bytes of `rid` from its key (written before they are removed)."""
        self._put(rid, "removed", {"key": rid.key, "etag": rid.etag, "rule": rid.rule, "at": int(time.time())})

    def other_content_removed(self, rid: RecordId, since: float) -> bool:
        """Whether a verdict removed other bytes from `rid.key` (quarantined, moved or deleted them) at or after
        `since` (epoch seconds, COS's clock): one LIST of the key's removal notes (`note_removal`). On a
        versioned bucket such a removal makes an older version current again: the job of `rid`, submitted
        before, may have read the removed bytes, and nothing at the key shows it any more."""
        prefix = rid.path(self.prefix, "removed").rsplit("/", 1)[0] + "/"
        token = None
        while True:
            objects, token, _ = self.storage.list_page(self.store, prefix, token)
            if any(not o.key.endswith(f"/{rid.etag}.json") and
                   (o.last_modified is None or o.last_modified.timestamp() >= int(since)) for o in objects):
                return True
            if token is None:
                return False

    def read_result(self, rid: RecordId) -> Optional[dict[str, Any]]:
        return _load(self.storage.get(self.store, rid.path(self.prefix, "results")))

    def clear_result(self, rid: RecordId) -> None:
        self.storage.delete(self.store, rid.path(self.prefix, "results"))

    def drop_pending(self, rid: RecordId, attempt: int) -> None:
        """Remove the marker of `attempt` once its work is concluded: one DELETE. A completion that lands late,
        after a takeover started a newer attempt, removes its own marker only, never the newer attempt's."""
        self.drop_marker(rid.marker(self.prefix, attempt))

    def drop_marker(self, marker_key: str) -> None:
        self.storage.delete(self.store, marker_key)

    def put_result(self, rid: RecordId, **fields: Any) -> dict[str, Any]:
        """Record the final outcome (the pending marker stays until `drop_pending`)."""
        doc = {"key": rid.key, "etag": rid.etag, "rule": rid.rule, "at": int(time.time()), **fields}
        self._put(rid, "results", doc)
        return doc

    def write_result(self, rid: RecordId, marker: Optional[int] = None, **fields: Any) -> dict[str, Any]:
        """Record the final outcome, then drop the pending marker of attempt `marker` (in that order: never
        lose work)."""
        doc = self.put_result(rid, **fields)
        if marker is not None:
            self.drop_pending(rid, marker)
        return doc

    def read_pending(self, marker_key: str) -> Optional[RecordId]:
        """The (object, ETag, rule) a pending marker stands for; an unreadable marker is removed."""
        raw = self.storage.get(self.store, marker_key)
        if raw is None:
            return None
        doc = _load(raw)
        if doc and doc.get("key") and doc.get("etag") and doc.get("rule"):
            return RecordId(str(doc["key"]), str(doc["etag"]), str(doc["rule"]))
        self.storage.delete(self.store, marker_key)  # unreadable marker: nothing can be done with it
        return None

    def pending_markers(self, older_than: float, limit: int,
                        listed: Optional[set[str]] = None) -> tuple[list[str], int, int]:
        """Marker keys older than `older_than` seconds by COS's clock, oldest first, at most `limit`;
        then how many are younger, and how many old ones the cap left for the next run. The listing
        carries each marker's age, so young markers cost no read, and the oldest are served first so
        no job starves behind the cap. Every marker key listed is added to `listed`."""
        aged: list[tuple[float, str]] = []
        young = 0
        token = None
        while True:
            objects, token, now = self.storage.list_page(self.store, f"{self.prefix}pending/", token)
            if listed is not None:
                listed.update(o.key for o in objects)
            for o in objects:
                modified = o.last_modified.timestamp() if o.last_modified is not None else 0.0
                if now - modified >= older_than:
                    aged.append((modified, o.key))
                else:
                    young += 1
            if token is None:
                break
        aged.sort()
        return [k for _, k in aged[:limit]], young, max(0, len(aged) - limit)
