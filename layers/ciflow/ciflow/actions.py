"""Apply a verdict to the object: merge status tags, then the rule's actions.

Every step is idempotent, so a repeated or late callback converges on the same final state:
tags are merged (not appended), a move is a conditional copy that carries the tags, then a delete of
exactly the inspected content, and nothing acts on content whose ETag differs from the one inspected.
Tag writes cannot be conditional on COS, so a write that may have landed on newer content is checked
and repaired from that content's own records (`settle_tags`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from . import tagging
from .concurrency import Timed, together
from .log import logger
from .records import RecordId, Records, given_up, pending_work
from .results import RETRY_REASONS, Verdict, verdict_from_result
from .rules import Rule
from .storage import ObjectInfo, Storage, is_version

# A copy that answered within this many times the HEAD's round trip read the source at most about half a round
# trip before answering: the DELETE follows it without another HEAD (`ActionRunner._move`).
COPY_AS_FAST_AS_HEAD = 1.5


@dataclass
class Applied:
    status: str                      # applied | already-applied | stale | object-missing
    final_key: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)
    tagged_in_place: bool = False    # tags were written on the key itself (check them afterwards)
    # The content was removed here by a DELETE without a version id: no older version became current (on a
    # versioned bucket it adds a delete marker), so there is none to look for afterwards.
    nothing_revealed: bool = False


@dataclass
class Seen:
    """What the object looked like just before acting: read together, in one round trip."""

    info: Optional[ObjectInfo]
    tags: Optional[dict[str, str]]
    dest_key: Optional[str] = None
    dest: Optional[ObjectInfo] = None
    extra: list[Any] = field(default_factory=list)
    head_seconds: float = 0.0      # how long the HEAD of the key took: one round trip, as this function sees it


def status_tags(rule: Rule, v: Verdict) -> list[tuple[str, str]]:
    """Our tags, highest priority first (the 10-tag budget drops from the end)."""
    ours = [(tagging.STATUS, v.outcome), (tagging.JOB_ID, v.job_id)]
    if rule.job == "VideoTargetRec" and v.outcome != "FAILED":
        ours.append((tagging.LABELS, " ".join(lb.name for lb in v.labels) or "NONE"))
    if v.suspicious_type:
        ours.append((tagging.SUSPICIOUS_TYPE, v.suspicious_type))
    if v.output_key:
        ours.append((tagging.OUTPUT, v.output_key))
    if v.reason:
        ours.append((tagging.REASON, v.reason))
    ours.append((tagging.RULE, rule.name))
    for lb in v.labels:
        ours.append((f"{tagging.FIRST_SEEN}{tagging.clean_value(lb.name, 100)}", f"{lb.first_seen:g}"))
    for name in v.applied_outcomes:
        ours.extend(rule.outcome(name).tags)
    return ours


def pending_tags(rule: Rule) -> list[tuple[str, str]]:
    return [(tagging.STATUS, "PENDING"), (tagging.RULE, rule.name)]


def managed_tags(rule: Rule) -> list[str]:
    return [k for o in rule.outcomes.values() for k, _ in o.tags]


def planned_actions(rule: Rule, v: Verdict) -> tuple[list[str], Optional[str]]:
    """The union of the applied outcomes' actions, in a safe order, and the move's prefix (if any)."""
    actions: list[str] = []
    move_prefix: Optional[str] = None
    for name in v.applied_outcomes:
        outcome = rule.outcome(name)
        for action in outcome.actions:
            if action in ("move", "quarantine"):
                if move_prefix is None and "move" not in actions and "quarantine" not in actions:
                    move_prefix = outcome.move_to if action == "move" else None
                    actions.append("move" if action == "move" else "quarantine")
            elif action not in actions:
                actions.append(action)
    order = {"make_private": 0, "quarantine": 1, "move": 1, "delete": 2}
    return sorted(actions, key=order.__getitem__), move_prefix


def removes_content(rule: Rule, v: Verdict) -> bool:
    """Whether the verdict's actions take the inspected content away from its key."""
    return any(a in ("move", "quarantine", "delete") for a in planned_actions(rule, v)[0])


def expected_final_key(rule: Rule, v: Verdict, key: str, quarantine_prefix: str) -> Optional[str]:
    """Where the object ends when the actions go as planned (recorded before they run)."""
    actions, move_prefix = planned_actions(rule, v)
    if "delete" in actions:
        return None
    prefix = quarantine_prefix if "quarantine" in actions else move_prefix
    return prefix + key if prefix is not None else key


def merge_logged(existing: dict[str, str], ours: list[tuple[str, str]], managed: list[str]) -> dict[str, str]:
    merged, dropped = tagging.merge(existing, ours, managed)
    if dropped:
        logger.warning("tag budget exhausted; status tags dropped", extra={"dropped": dropped})
    return merged


def settle_tags(storage: Storage, records: Records, key: str, rule: Rule, etag: str, rounds: int = 3) -> int:
    """After a tag write meant for content `etag`: if `key` now holds other content, our write may
    have landed on it, so that content's status tags are rewritten from its own records (its verdict,
    else PENDING while it has pending work (`Records.has_pending`: a marker of its current attempt, or one
    reconcile acts on), else none of ours). Returns the number of repairs."""
    repairs = 0
    for _ in range(rounds):
        info = storage.head(records.bucket, key)
        if info is None or info.etag == etag:
            return repairs
        rid = RecordId(key, info.etag, rule.name)
        # The records pending_work judges from (its result also holds the verdict) ∥ the tags: one round trip.
        (result, claim, markers), tags = together(lambda r=rid: records.pending_state(r),
                                                  lambda: storage.get_tags(records.bucket, key))
        if tags is None:
            return repairs
        v = verdict_from_result(result)
        # A marker the run that gave up has yet to drop (or an older attempt's) is no pending work.
        pending = pending_work(markers, claim, result) and not given_up(claim, result, markers)
        if (v is None and not pending and result and result.get("outcome") == "FAILED"
                and result.get("reason") in RETRY_REASONS):
            # A failure that says nothing about the bytes (Timeout, JobLost) is no verdict to re-apply, but
            # it is this content's final status until new work starts. Any other failure without a verdict
            # came from a job that may have read other bytes (stale, object-missing): it says nothing here.
            v = Verdict("FAILED", str(result.get("job_id") or ""), reason=str(result.get("reason") or ""))
        ours = status_tags(rule, v) if v is not None else pending_tags(rule) if pending else []
        merged = merge_logged(tags, ours, managed_tags(rule))
        if merged != tags:
            logger.warning("content changed under a tag write; its tags were rewritten from its records",
                           extra={"written_for_etag": etag, "current_etag": info.etag})
            storage.put_tags(records.bucket, key, merged)
            repairs += 1
        etag = info.etag
    return repairs


def settle_pending(storage: Storage, records: Records, key: str, rule: Rule, etag: str) -> bool:
    """`settle_tags` for the submit path's PENDING write, which may also land after the verdict it
    precedes (CI finished while the write was being retried): then the verdict's tags are put back.
    Returns whether the key held other content than `etag` (the job may read those bytes)."""
    rid = RecordId(key, etag, rule.name)
    info, result = together(lambda: storage.head(records.bucket, key), lambda: records.read_result(rid))
    if info is not None and info.etag != etag:
        settle_tags(storage, records, key, rule, etag)
        return True
    v = verdict_from_result(result)
    if info is None or v is None:
        return False
    tags = storage.get_tags(records.bucket, key)
    if tags is None or tags.get(tagging.STATUS) != "PENDING":
        return False
    logger.warning("a PENDING tag landed after the verdict; the verdict's tags were put back",
                   extra={"outcome": v.outcome})
    storage.put_tags(records.bucket, key, merge_logged(tags, status_tags(rule, v), managed_tags(rule)))
    return False


class ActionRunner:
    def __init__(self, storage: Storage, bucket: str, quarantine_prefix: str):
        self.storage = storage
        self.bucket = bucket
        self.quarantine_prefix = quarantine_prefix

    def destination(self, rule: Rule, v: Verdict) -> tuple[list[str], Optional[str]]:
        actions, move_prefix = planned_actions(rule, v)
        return actions, self.quarantine_prefix if "quarantine" in actions else move_prefix

    def observe(self, rule: Rule, key: str, v: Verdict, *extra: Callable[[], Any]) -> Seen:
        """HEAD the key, read its tags, HEAD the move's destination, plus any `extra` reads: together."""
        _, prefix = self.destination(rule, v)
        dest_key = prefix + key if prefix is not None else None
        head = Timed(lambda: self.storage.head(self.bucket, key))
        results = together(head, lambda: self.storage.get_tags(self.bucket, key),
                           (lambda: self.storage.head(self.bucket, dest_key)) if dest_key else None,
                           *extra)
        return Seen(results[0], results[1], dest_key, results[2], results[3:], head.seconds)

    def apply(self, rule: Rule, key: str, etag: str, v: Verdict, seen: Optional[Seen] = None,
              alongside: Optional[Callable[[], Any]] = None, job_version: str = "", known: bool = False,
              vouched: Optional[Callable[[], bool]] = None) -> Applied:
        """Apply `v` to `key`, which was inspected at `etag`. `alongside` (recording the result) is sent
        together with the first write, once the object is known to hold the inspected content. `job_version`
        is the version id the job was submitted for (or, `known`: a verdict known for these bytes applied
        again, the version the upload made), on a versioned bucket; `vouched` says whether nothing the library
        recorded puts in doubt that the job read that version."""
        if seen is None:
            seen = self.observe(rule, key, v)
        return self._apply(rule, key, etag, v, seen, alongside, job_version, known, vouched)

    def _apply(self, rule: Rule, key: str, etag: str, v: Verdict, seen: Seen,
               alongside: Optional[Callable[[], Any]], job_version: str = "", known: bool = False,
               vouched: Optional[Callable[[], bool]] = None) -> Applied:
        ours = status_tags(rule, v)
        managed = managed_tags(rule)
        actions, prefix = self.destination(rule, v)
        info = seen.info
        if info is None or seen.tags is None:
            hidden = self._remove_hidden(rule, key, etag, v, job_version, prefix, alongside, known, vouched)
            if hidden is not None:
                return hidden
            gone = self._after_source_gone(key, prefix, v, actions)
            if gone.status == "already-applied" and gone.final_key and not known:
                # This job's copy is in place: an earlier attempt applied the verdict while the key held these
                # bytes, and its removal was cut short. The hidden version is known to be what it is about.
                hidden = self._remove_hidden(rule, key, etag, v, job_version, prefix, alongside, True)
            return hidden if hidden is not None else gone
        if info.etag != etag:
            hidden = self._remove_hidden(rule, key, etag, v, job_version, prefix, alongside, True) if known else None
            if hidden is not None:
                return hidden
            logger.warning("object changed since it was inspected; not acting",
                           extra={"inspected_etag": etag, "current_etag": info.etag})
            return Applied("stale", key)
        merged = merge_logged(seen.tags, ours, managed)
        if prefix is not None:
            return self._move(info, prefix, v, merged, actions, seen, alongside)
        out = Applied("applied", key, merged, tagged_in_place=True)
        private = "make_private" in actions
        wrote, made_private, _ = together(
            (lambda: self.storage.put_tags(self.bucket, key, merged)) if merged != seen.tags else None,
            (lambda: self.storage.make_private(self.bucket, key)) if private else None,
            alongside)
        out.steps.append("tagged")
        if made_private:
            out.steps.append("made-private")
        if wrote is False:
            return self._after_source_gone(key, prefix, v, actions)
        if "delete" in actions:
            self.storage.delete_content(self.bucket, key, etag, info.version_id)
            out.nothing_revealed = not is_version(info.version_id)
            out.final_key = None
            out.tagged_in_place = False
            out.steps.append("deleted")
        return out

    def _move(self, info: ObjectInfo, prefix: str, v: Verdict, merged: dict[str, str], actions: list[str],
              seen: Seen, alongside: Optional[Callable[[], Any]] = None) -> Applied:
        key, etag = info.key, info.etag
        dest, existing = self._destination(prefix, key, etag, v.job_id, seen.dest)
        fresh = False
        if existing is None:
            # The copy carries the tags, and takes exactly the inspected content (version, ETag).
            copy = Timed(lambda: self.storage.copy(self.bucket, key, dest, if_match=etag, version_id=info.version_id,
                                                   tags=merged, size=info.size))
            copied, _ = together(copy, alongside)
            if not copied:
                logger.warning("source changed or vanished during the move; left in place")
                return Applied("stale", key)
            # The conditional copy just found the inspected ETag at the key. When it answered about as fast as a
            # HEAD does, checking again before the DELETE would narrow nothing: an upload can land between the
            # copy and the DELETE, or between a HEAD and the DELETE, for one round trip either way. A slower copy
            # (a large object) is checked again (docs/reliability.md, "Known limits").
            fresh = 0.0 < copy.seconds <= COPY_AS_FAST_AS_HEAD * seen.head_seconds
        else:
            # A copy from an earlier attempt: make sure it carries this verdict's tags.
            dest_tags, _ = together(lambda: self.storage.get_tags(self.bucket, dest) or {}, alongside)
            if dest_tags != merged:
                self.storage.put_tags(self.bucket, dest, merged)
        out = Applied("applied", dest, merged)
        together((lambda: self.storage.make_private(self.bucket, dest)) if "make_private" in actions else None,
                 lambda: self.storage.delete_content(self.bucket, key, etag, info.version_id, checked=fresh))
        out.nothing_revealed = not is_version(info.version_id)
        if "make_private" in actions:
            out.steps.append("made-private")
        out.steps.append("quarantined" if prefix == self.quarantine_prefix else f"moved to {prefix}")
        if "delete" in actions:  # the source is already gone with the move
            out.final_key = None
            out.steps.append("deleted")
        return out

    def _destination(self, prefix: str, key: str, etag: str, job_id: str,
                     existing: Optional[ObjectInfo]) -> tuple[str, Optional[ObjectInfo]]:
        """Where a move puts the bytes `etag` of `key`, and what is there now: `prefix + key` (whose HEAD is
        `existing`), or, when other bytes already sit there, a key scoped to the job, so that both are kept."""
        dest = prefix + key
        if existing is not None and existing.etag != etag:
            dest = f"{prefix}{job_id}/{key}"
            existing = self.storage.head(self.bucket, dest)
        return dest, existing

    def _remove_hidden(self, rule: Rule, key: str, etag: str, v: Verdict, job_version: str, prefix: Optional[str],
                       alongside: Optional[Callable[[], Any]], proven: bool = False,
                       vouched: Optional[Callable[[], bool]] = None) -> Optional[Applied]:
        """On a versioned bucket, a verdict that removes content found the inspected bytes hidden: the key was
        deleted (a delete marker), or (`proven`: a verdict known for these bytes, applied again) holds other
        bytes now. The versions holding them are still readable by VersionId. They are removed (one moved
        first, when the rule moves) when the verdict is known to be about them: `proven`, or no version with
        other bytes was written after the one the job was submitted for (then CI can only have read it).
        Otherwise which bytes CI read is unknown, and nothing is done (docs/reliability.md, "Known limits")."""
        if not is_version(job_version) or not removes_content(rule, v):
            return None
        versions = self.storage.versions(self.bucket, key)
        ids = [vid for vid, _ in versions]
        if proven:
            # A verdict already known for these bytes: every version holding them is what it is about.
            job_version = next((vid for vid, e in versions if e == etag), "")
            if not job_version:
                return None
        elif job_version not in ids:
            return None
        elif any(e != etag for _, e in versions[:ids.index(job_version)]) or (vouched is None or not vouched()):
            logger.warning("other bytes were at the key after the inspected version; it is left as it is",
                           extra={"version_id": job_version})
            return None
        dest: Optional[str] = None
        merged = merge_logged({}, status_tags(rule, v), managed_tags(rule))
        if prefix is not None:
            first = self.storage.head(self.bucket, prefix + key)
            dest, existing = self._destination(prefix, key, etag, v.job_id, first)
            if existing is None:
                copied, _ = together(lambda: self.storage.copy(self.bucket, key, dest, if_match=etag,
                                                               version_id=job_version, tags=merged),
                                     alongside)
                if not copied:
                    return None
                alongside = None
        if alongside is not None:
            alongside()
        removed = self.storage.delete_content(self.bucket, key, etag, job_version)
        logger.warning("the inspected bytes were hidden by a later write; their versions are removed",
                       extra={"version_id": job_version, "versions_removed": removed, "final_key": dest})
        out = Applied("applied", dest, merged)
        out.tagged_in_place = False
        # Hidden versions only: what is current (a delete marker, or other bytes) stays current.
        out.nothing_revealed = True
        out.steps.append("hidden version removed" + (f" (moved to {dest})" if dest else ""))
        return out

    def _after_source_gone(self, key: str, prefix: Optional[str], v: Verdict, actions: list[str]) -> Applied:
        # A repeated callback after a finished move finds the source gone and the copy in place.
        if prefix is not None:
            for candidate in (prefix + key, f"{prefix}{v.job_id}/{key}"):
                tags = self.storage.get_tags(self.bucket, candidate)
                if tags is not None and tags.get(tagging.JOB_ID) == v.job_id:
                    return Applied("already-applied", candidate, tags)
        if "delete" in actions:
            return Applied("already-applied", None)
        logger.warning("object no longer exists; verdict recorded only")
        return Applied("object-missing", None)
