"""The object store's settings: switches for COS behaviour that is not verified, and injected faults.

Switches default to the setting least favourable to the functions (except where one says otherwise),
and each can be changed while the store runs (the stack's `/_devstack/config`). Unknown names and bad
values raise ValueError with a message that says what is accepted; nothing is half applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from .events import EVENT_FORMS, KEY_ENCODINGS

IF_NONE_MATCH = ("honour", "ignore", "reject")
DELETE_IF_MATCH = ("honour", "ignore", "reject")
S3_COPY_CONDITIONS = ("honour", "ignore")
VERSIONING = ("Enabled", "Suspended")
COPY_LIMIT_BYTES = 5 * 1024 ** 3   # COS: PUT Object - Copy takes sources of at most 5 GB


@dataclass
class Switches:
    """COS behaviours the platform docs leave open (`../shared/platform.md` §1, §7)."""

    # raw | url | mixed: how the object key appears in `cosObject.key` (unverified; `url` is always encoded).
    key_encoding: str = "raw"
    # documented | logged: the documented example's fields only, or also those logged events carry.
    event_form: str = "documented"
    # honour | ignore | reject: S3's `If-None-Match: *` on PUT (unverified on COS). `ignore` is least
    # favourable: a client relying on it silently loses exclusivity.
    if_none_match: str = "ignore"
    # honour | ignore: the S3 spelling `x-amz-copy-source-if-(none-)match` (unverified on COS; COS's own
    # `x-cos-copy-source-If-(None-)Match` is always honoured). `ignore` is the stricter setting; the default
    # stays `honour` while the functions send only the S3 spelling.
    s3_copy_conditions: str = "honour"
    # The single-copy limit of PUT Object - Copy (UploadPartCopy is not limited).
    copy_limit_bytes: int = COPY_LIMIT_BYTES
    # honour | ignore | reject: S3's `If-Match` on DELETE Object (S3 since 2025-09; COS documents none).
    # `ignore` is least favourable: the DELETE removes whatever the key holds, as the docs imply.
    delete_if_match: str = "ignore"

    def update(self, values: dict[str, Any]) -> None:
        checked = _checked(self, values, {
            "key_encoding": KEY_ENCODINGS, "event_form": EVENT_FORMS, "if_none_match": IF_NONE_MATCH,
            "s3_copy_conditions": S3_COPY_CONDITIONS, "delete_if_match": DELETE_IF_MATCH,
        })
        if checked.get("copy_limit_bytes", 0) < 0:
            raise ValueError(f"copy_limit_bytes: expected a size >= 0, got {checked['copy_limit_bytes']!r}")
        for k, v in checked.items():
            setattr(self, k, v)


@dataclass
class Faults:
    """Injected faults, as shares of requests (rates) and seconds (stalls)."""

    tagging_fail_rate: float = 0.0      # PUT ?tagging answered 503 SlowDown
    copy_fail_rate: float = 0.0         # PUT-copy answered 500, or 200 with an <Error> body (COS does both)
    tagging_stall_seconds: float = 0.0  # PUT ?tagging held this long before it is applied
    tagging_stall_rate: float = 1.0     # share of tag writes held (when tagging_stall_seconds > 0)
    state_fail_rate: float = 0.0        # writes under the state prefix: share that starts a burst of 5xx
    state_fail_burst: int = 4           # consecutive 5xx answers to writes of that key, once a burst starts
    state_stall_seconds: float = 0.0    # writes under the state prefix held this long before they are applied
    state_stall_rate: float = 1.0       # share of state writes held (when state_stall_seconds > 0)
    delete_stall_seconds: float = 0.0   # DELETE of an object outside the state prefix held this long, then applied

    def update(self, values: dict[str, Any]) -> None:
        checked = _checked(self, values, {})
        for k, v in checked.items():
            if k.endswith("_rate") and not 0.0 <= v <= 1.0:
                raise ValueError(f"{k}: expected a share between 0 and 1, got {v!r}")
            if not k.endswith("_rate") and v < 0:
                raise ValueError(f"{k}: expected a value >= 0, got {v!r}")
        for k, v in checked.items():
            setattr(self, k, v)


def _checked(obj: Any, values: dict[str, Any], choices: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """`values` converted to the fields' types, or ValueError naming the first bad one."""
    types = {f.name: type(getattr(obj, f.name)) for f in fields(obj)}
    out: dict[str, Any] = {}
    for k, v in values.items():
        if k not in types:
            raise ValueError(f"unknown setting {k!r}; known: {', '.join(sorted(types))}")
        if k in choices:
            if v not in choices[k]:
                raise ValueError(f"{k}: expected one of {', '.join(choices[k])}, got {v!r}")
            out[k] = v
            continue
        kind = "a whole number" if types[k] is int else "a number"
        try:
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise TypeError
            number = float(v)
            if not math.isfinite(number) or (types[k] is int and not number.is_integer()):
                raise ValueError
        except (TypeError, ValueError):
            raise ValueError(f"{k}: expected {kind}, got {v!r}") from None
        out[k] = int(number) if types[k] is int else number
    return out


def as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}
