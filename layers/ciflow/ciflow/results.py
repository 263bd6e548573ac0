"""Turn a confirmed JobsDetail into an outcome: CLEAN / SUSPICIOUS / FAILED, with details."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

FINAL_STATES = ("Success", "Failed", "Cancel")


@dataclass(frozen=True)
class Verdict:
    outcome: str                  # CLEAN | SUSPICIOUS | FAILED
    job_id: str
    reason: str = ""              # error code for FAILED
    suspicious_type: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def _dict(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def is_final(detail: dict[str, Any]) -> bool:
    return str(detail.get("State", "")) in FINAL_STATES


def verdict(detail: dict[str, Any]) -> Optional[Verdict]:
    """The verdict for a finished job, or None while it is still queued or running."""
    job_id = str(detail.get("JobId", ""))
    state = str(detail.get("State", ""))
    if state not in FINAL_STATES:
        return None
    if state != "Success":
        return Verdict("FAILED", job_id, reason=str(detail.get("Code") or state))
    op = _dict(detail.get("Operation"))
    tag = str(detail.get("Tag", ""))
    if tag == "ImageInspect":
        res = _dict(op.get("ImageInspectResult"))
        if res and str(res.get("State", "Success")) != "Success":
            return Verdict("FAILED", job_id, reason=str(res.get("Code") or "Failed"))
        pr = _dict(res.get("ProcessResult"))
        if not pr:
            return Verdict("FAILED", job_id, reason="NoResult")
        details = {k: pr.get(k) for k in ("PicSize", "PicType", "Suspicious", "SuspiciousBeginByte",
                                          "SuspiciousEndByte", "SuspiciousSize", "SuspiciousType")
                   if pr.get(k) not in (None, "")}
        if _truthy(pr.get("Suspicious")):
            return Verdict("SUSPICIOUS", job_id, suspicious_type=str(pr.get("SuspiciousType") or "UNKNOWN"),
                           details=details)
        return Verdict("CLEAN", job_id, details=details)
    return Verdict("FAILED", job_id, reason=f"UnsupportedTag:{tag}")
