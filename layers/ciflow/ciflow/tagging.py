"""Status tags, merged into the object's tag set without ever dropping a user's tag.

COS allows 10 tags per object and `PutObjectTagging` replaces the whole set, so we read, merge and
write. Our own tags all start with ``ci-``; when the budget is short, ours give way in priority
order (`ci-status` is kept longest) and the user's stay.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_TAGS = 10
PREFIX = "ci-"
STATUS = "ci-status"
JOB_ID = "ci-job-id"
RULE = "ci-rule"
SUSPICIOUS_TYPE = "ci-suspicious-type"
REASON = "ci-reason"
LABELS = "ci-labels"
OUTPUT = "ci-output"
FIRST_SEEN = "ci-first-"

_BAD = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")


def clean_value(value: object, limit: int = 255) -> str:
    """Make any value a legal COS tag value (allowed characters, 1-255 long)."""
    text = _BAD.sub("_", str(value)).strip()[:limit]
    return text or "-"


def merge(existing: dict[str, str], ours: Sequence[tuple[str, str]],
          managed: Sequence[str] = ()) -> tuple[dict[str, str], list[str]]:
    """Merge `ours` (highest priority first) into `existing`.

    Every existing ``ci-*`` tag and every key in `managed` (the rule's own tags) is replaced by
    `ours`; every other tag is the user's and is kept. Returns the new set and the keys of ours
    that did not fit.
    """
    managed_keys = set(managed) | {k for k, _ in ours}
    kept = {k: v for k, v in existing.items() if not k.startswith(PREFIX) and k not in managed_keys}
    merged = dict(kept)
    dropped: list[str] = []
    for key, value in ours:
        if key in merged:
            continue
        if len(merged) >= MAX_TAGS:
            dropped.append(key)
            continue
        merged[key] = clean_value(value)
    return merged, dropped
