"""Turn a confirmed JobsDetail into a verdict: the status, and the rule outcomes that apply.

| job              | status                     | outcomes (rule keys)                      |
| ImageInspect     | CLEAN / SUSPICIOUS / FAILED | the same                                 |
| VideoTargetRec   | LABELLED / NONE / FAILED    | PERSON, PET, CAR (each found) or NONE    |
| VideoEnhance,    | SUCCESS / FAILED            | the same                                 |
| DigitalWatermark |                             |                                          |

CI's values arrive as strings from XML and as strings or numbers from JSON; both are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

FINAL_STATES = ("Success", "Failed", "Cancel")
# VideoTargetRecResult arrays → (outcome, info element, default label name)
RECOGNITIONS = (("BodyRecognition", "PERSON", "BodyInfo", "person"),
                ("PetRecognition", "PET", "PetInfo", "pet"),
                ("CarRecognition", "CAR", "CarInfo", "car"))


@dataclass(frozen=True)
class Label:
    name: str
    first_seen: float
    score: float


@dataclass(frozen=True)
class Verdict:
    outcome: str                  # the status (see the table above)
    job_id: str
    reason: str = ""              # error code for FAILED
    suspicious_type: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    outcomes: tuple[str, ...] = ()  # the rule outcomes to apply; defaults to (outcome,)
    labels: tuple[Label, ...] = ()
    output_key: str = ""

    @property
    def applied_outcomes(self) -> tuple[str, ...]:
        return self.outcomes or (self.outcome,)


def _dict(value: Any) -> dict[str, Any]:
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def is_final(detail: dict[str, Any]) -> bool:
    return str(detail.get("State", "")) in FINAL_STATES


def _image_inspect(job_id: str, op: dict[str, Any]) -> Verdict:
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


def _video_target_rec(job_id: str, op: dict[str, Any], threshold: float) -> Verdict:
    res = _dict(op.get("VideoTargetRecResult"))
    if not res:
        return Verdict("FAILED", job_id, reason="NoResult")
    if str(res.get("State", "Success")) not in ("Success", ""):
        return Verdict("FAILED", job_id, reason=str(res.get("Code") or "Failed"))
    found: dict[str, Label] = {}
    outcomes: list[str] = []
    for array, outcome, info_key, default_name in RECOGNITIONS:
        for entry in _list(res.get(array)):
            if not isinstance(entry, dict):
                continue
            t = _num(entry.get("Time"))
            for info in _list(entry.get(info_key)):
                if not isinstance(info, dict):
                    continue
                score = _num(info.get("Score"), -1)
                if score < threshold:
                    continue
                name = str(info.get("Name") or default_name).strip().lower() or default_name
                prev = found.get(name)
                found[name] = Label(name, min(t, prev.first_seen) if prev else t, max(score, prev.score if prev else 0))
                if outcome not in outcomes:
                    outcomes.append(outcome)
    labels = tuple(sorted(found.values(), key=lambda lb: (lb.first_seen, lb.name)))
    if not labels:
        return Verdict("NONE", job_id, outcomes=("NONE",))
    order = [o for _, o, _, _ in RECOGNITIONS]
    return Verdict("LABELLED", job_id, outcomes=tuple(sorted(outcomes, key=order.index)), labels=labels)


def _media(job_id: str, op: dict[str, Any], bucket: str) -> Verdict:
    out = _dict(_dict(op.get("MediaResult")).get("OutputFile"))
    key = str(out.get("ObjectName") or _dict(op.get("Output")).get("Object") or "")
    out_bucket = str(out.get("Bucket") or _dict(op.get("Output")).get("Bucket") or bucket)
    shown = key if not out_bucket or out_bucket == bucket else f"{out_bucket}/{key}"
    return Verdict("SUCCESS", job_id, output_key=shown, details={"output_bucket": out_bucket, "output_key": key})


def verdict(detail: dict[str, Any], rule: Any = None) -> Optional[Verdict]:
    """The verdict for a finished job, or None while it is still queued or running.

    `rule` supplies job options that shape the verdict (VideoTargetRec's score threshold).
    """
    job_id = str(detail.get("JobId", ""))
    state = str(detail.get("State", ""))
    if state not in FINAL_STATES:
        return None
    if state != "Success":
        return Verdict("FAILED", job_id, reason=str(detail.get("Code") or state))
    op = _dict(detail.get("Operation"))
    tag = str(detail.get("Tag", ""))
    if tag == "ImageInspect":
        return _image_inspect(job_id, op)
    if tag == "VideoTargetRec":
        threshold = float((getattr(rule, "params", None) or {}).get("score_threshold", 50))
        return _video_target_rec(job_id, op, threshold)
    if tag in ("VideoEnhance", "DigitalWatermark"):
        return _media(job_id, op, str(_dict(detail.get("Input")).get("BucketId") or ""))
    return Verdict("FAILED", job_id, reason=f"UnsupportedTag:{tag}")


def verdict_from_result(doc: Optional[dict[str, Any]]) -> Optional[Verdict]:
    """The verdict a result record holds, or None when it holds none (the object was gone or had
    changed before any verdict was known, or CI lost the job): such content needs a new job."""
    if not doc or not doc.get("outcome") or doc.get("applied") in ("stale", "object-missing"):
        # "stale": the object had changed by the time the verdict came; "object-missing": it was gone. Either
        # way CI may have read other bytes (it reads the object when the job runs): which ones is unknown.
        return None
    if doc.get("outcome") == "FAILED" and doc.get("reason") in RETRY_REASONS:
        return None
    labels = []
    for lb in doc.get("labels") or []:
        if isinstance(lb, dict) and lb.get("name"):
            labels.append(Label(str(lb["name"]), _num(lb.get("first_seen")), _num(lb.get("score"))))
    return Verdict(str(doc["outcome"]), str(doc.get("job_id") or ""), reason=str(doc.get("reason") or ""),
                   suspicious_type=str(doc.get("suspicious_type") or ""),
                   outcomes=tuple(str(o) for o in doc.get("outcomes") or ()), labels=tuple(labels),
                   output_key=str(doc.get("output_key") or ""))


# CI's failure when the job's input object did not exist (or could not be read) when the job ran.
INPUT_ABSENT = "InputObjectNotExist"
# Failures that say nothing about the content: an upload of the same bytes gets a new job.
RETRY_REASONS = ("JobLost", "Timeout", INPUT_ABSENT)
