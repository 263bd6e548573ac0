"""`Operation.UserData`: what the callback needs, within CI's limits (printable ASCII, ≤ 1024)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MAX_LEN = 1024
PREFIX = "ciflow:1"


@dataclass(frozen=True)
class UserData:
    rule: str
    etag: str
    version_id: str = ""
    attempt: int = 1  # which submission of (key, etag, rule) this job is; later ones supersede it

    def encode(self) -> str:
        parts = [PREFIX, f"r={self.rule}", f"e={self.etag}"]
        if self.attempt != 1:
            parts.append(f"n={self.attempt}")
        if self.version_id:
            parts.append(f"v={self.version_id}")
        text = ";".join(parts)
        if len(text) > MAX_LEN or not is_printable_ascii(text):
            raise ValueError("UserData must be printable ASCII of at most 1024 characters")
        return text


def is_printable_ascii(text: str) -> bool:
    return all(32 <= ord(c) < 127 for c in text)


def normalize_etag(etag: Optional[str]) -> str:
    return (etag or "").strip().strip('"')


def decode(text: Optional[str]) -> Optional[UserData]:
    """Parse our UserData; None when it is absent or not ours."""
    if not text or not isinstance(text, str) or not text.startswith(PREFIX + ";"):
        return None
    fields = {}
    for part in text.split(";")[1:]:
        k, sep, v = part.partition("=")
        if sep:
            fields[k] = v
    if not fields.get("r") or not fields.get("e"):
        return None
    n = fields.get("n", "1")
    attempt = int(n) if n.isascii() and n.isdigit() and 0 < len(n) < 6 else 0
    if attempt < 1:
        return None
    return UserData(rule=fields["r"], etag=fields["e"], version_id=fields.get("v", ""), attempt=attempt)
