"""How CI delivers a job's result: an HTTP callback to the Function URL, or a TDMQ (CMQ) message.

Chosen globally (settings) or per rule. With TDMQ there is no public URL to POST to, the queue
keeps messages while the function is down or throttled, and access is governed by CAM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

MQ_REGIONS = ("sh", "bj", "gz", "cd", "hk")
MQ_MODES = ("Queue", "Topic")
# CMQ topic and queue names: a letter first, then letters, digits, '-' and '_', at most 64.
MQ_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Delivery:
    type: str = "url"           # url | tdmq
    mq_region: str = ""
    mq_mode: str = ""
    mq_name: str = ""

    @property
    def is_queue(self) -> bool:
        return self.type == "tdmq"

    def job_fields(self) -> dict[str, Any]:
        """The request fields that ask CI to deliver this way (the URL itself is added by the caller)."""
        if not self.is_queue:
            return {"CallBackType": "Url"}
        return {"CallBackType": "TDMQ",
                "CallBackMqConfig": {"MqRegion": self.mq_region, "MqMode": self.mq_mode, "MqName": self.mq_name}}


URL = Delivery()


def parse_delivery(raw: Any, where: str) -> tuple[Optional[Delivery], list[tuple[str, str]]]:
    """`"url"`, or `{"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "…"}`.
    Returns the delivery (None when invalid) and (field path, problem) pairs."""
    if raw == "url" or raw == {"type": "url"}:
        return URL, []
    if not isinstance(raw, dict) or raw.get("type") != "tdmq":
        return None, [(where, 'must be "url" or {"type": "tdmq", "mq_region", "mq_mode", "mq_name"}')]
    problems = []
    extra = sorted(set(raw) - {"type", "mq_region", "mq_mode", "mq_name"})
    if extra:
        problems.append((where, f"unknown field(s): {', '.join(extra)}"))
    region, mode, name = raw.get("mq_region"), raw.get("mq_mode"), raw.get("mq_name")
    if region not in MQ_REGIONS:
        problems.append((f"{where}.mq_region", f"must be one of {'|'.join(MQ_REGIONS)} (got {region!r})"))
    if mode not in MQ_MODES:
        problems.append((f"{where}.mq_mode", f"must be Queue or Topic (got {mode!r})"))
    if not isinstance(name, str) or not MQ_NAME_RE.fullmatch(name):
        problems.append((f"{where}.mq_name", "must be a CMQ name: a letter, then up to 63 letters, digits, '-', '_'"))
    if problems:
        return None, problems
    return Delivery("tdmq", str(region), str(mode), str(name)), []
