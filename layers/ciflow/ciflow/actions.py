"""Apply a verdict to the object: merge status tags, then the rule's actions.

Every step is idempotent, so a repeated or late callback converges on the same final state:
tags are merged (not appended), a move is copy-if-absent then delete, and nothing acts on content
whose ETag differs from the one that was inspected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from . import tagging
from .log import logger
from .results import Verdict
from .rules import Rule
from .storage import Storage


@dataclass
class Applied:
    status: str                      # applied | already-applied | stale | object-missing
    final_key: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)


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


def planned_actions(rule: Rule, v: Verdict) -> tuple[list[str], Optional[str]]:
    """The union of the applied outcomes' actions, in a safe order, and the move's prefix (if any)."""
    actions: list[str] = []
    move_prefix: Optional[str] = None
    for name in v.applied_outcomes:
        outcome = rule.outcome(name)
        for action in outcome.actions:
            if action in ("move", "quarantine"):
                if move_prefix is None:  # the first outcome that moves decides where
                    move_prefix = outcome.move_to if action == "move" else None
                    actions.append("move" if action == "move" else "quarantine")
            elif action not in actions:
                actions.append(action)
    order = {"make_private": 0, "quarantine": 1, "move": 1, "delete": 2}
    return sorted(actions, key=order.__getitem__), move_prefix


class ActionRunner:
    def __init__(self, storage: Storage, bucket: str, quarantine_prefix: str):
        self.storage = storage
        self.bucket = bucket
        self.quarantine_prefix = quarantine_prefix

    def _tag(self, key: str, ours: list[tuple[str, str]], managed: list[str]) -> Optional[dict[str, str]]:
        existing = self.storage.get_tags(self.bucket, key)
        if existing is None:
            return None
        merged, dropped = tagging.merge(existing, ours, managed)
        if dropped:
            logger.warning("tag budget exhausted; status tags dropped", extra={"dropped": dropped})
        if merged != existing and not self.storage.put_tags(self.bucket, key, merged):
            return None
        return merged

    def apply(self, rule: Rule, key: str, etag: str, v: Verdict) -> Applied:
        """Apply `v` to `key`, which was inspected at `etag`."""
        ours = status_tags(rule, v)
        managed = [k for o in rule.outcomes.values() for k, _ in o.tags]
        actions, move_prefix = planned_actions(rule, v)
        prefix = self.quarantine_prefix if "quarantine" in actions else move_prefix
        info = self.storage.head(self.bucket, key)
        if info is None:
            return self._after_source_gone(key, prefix, v, actions)
        if info.etag != etag:
            logger.warning("object changed since it was inspected; not acting",
                           extra={"inspected_etag": etag, "current_etag": info.etag})
            return Applied("stale", key)
        out = Applied("applied", key)
        tags = self._tag(key, ours, managed)
        if tags is None:
            return self._after_source_gone(key, prefix, v, actions)
        out.tags = tags
        out.steps.append("tagged")
        if "make_private" in actions and self.storage.make_private(self.bucket, key):
            out.steps.append("made-private")
        if prefix is not None:
            self._move(key, prefix, etag, v, ours, managed, out)
        if "delete" in actions:
            self.storage.delete(self.bucket, key)
            out.final_key = None
            out.steps.append("deleted")
        return out

    def _move(self, key: str, prefix: str, etag: str, v: Verdict, ours: list[tuple[str, str]],
              managed: list[str], out: Applied) -> None:
        dest = prefix + key
        existing = self.storage.head(self.bucket, dest)
        if existing is not None and existing.etag != etag:
            # Something else already sits at the destination: keep both by scoping ours to the job.
            dest = f"{prefix}{v.job_id}/{key}"
            existing = self.storage.head(self.bucket, dest)
        if existing is None and not self.storage.copy(self.bucket, key, dest, if_match=etag):
            logger.warning("source changed or vanished during the move; left in place")
            return
        # Tags travel with the copy; merging again covers a copy made before tagging finished.
        tags = self._tag(dest, ours, managed)
        current = self.storage.head(self.bucket, key)
        if current is not None and current.etag == etag:
            self.storage.delete(self.bucket, key)
        out.final_key = dest
        out.tags = tags or out.tags
        out.steps.append("quarantined" if prefix == self.quarantine_prefix else f"moved to {prefix}")

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
