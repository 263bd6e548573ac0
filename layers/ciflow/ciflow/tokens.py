"""Callback tokens. CI does not sign callbacks, so the CallBack URL carries our own HMAC token.

A token binds the bucket, key, rule and ETag of one submission plus an expiry, so a token minted
for one object cannot authorise a callback about another object, bucket, or content version.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Optional

VERSION = "v1"
_EXP = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[A-Za-z0-9_-]{43}")


def _mac(secret: str, bucket: str, key: str, rule: str, etag: str, exp: int) -> str:
    # JSON keeps field boundaries unambiguous whatever characters a key contains.
    msg = json.dumps(["ciflow-callback", VERSION, bucket, key, rule, etag, exp]).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def mint(secret: str, bucket: str, key: str, rule: str, etag: str, ttl: int, now: Optional[float] = None) -> str:
    exp = int(now if now is not None else time.time()) + int(ttl)
    return f"{VERSION}.{exp}.{_mac(secret, bucket, key, rule, etag, exp)}"


def precheck(token: str, now: Optional[float] = None) -> Optional[str]:
    """The checks that need no job: form and expiry. None when the token may be valid."""
    if not token or token.count(".") != 2:
        return "malformed token"
    version, exp_s, mac = token.split(".")
    if version != VERSION or not _EXP.fullmatch(exp_s) or not _MAC.fullmatch(mac):
        return "malformed token"
    if int(exp_s) < int(now if now is not None else time.time()):
        return "expired token"
    return None


def verify(token: str, secret: str, bucket: str, key: str, rule: str, etag: str,
           now: Optional[float] = None) -> Optional[str]:
    """Return None when the token is valid for these values, else a short reason."""
    problem = precheck(token, now)
    if problem:
        return problem
    _, exp_s, mac = token.split(".")
    exp = int(exp_s)
    if not hmac.compare_digest(mac, _mac(secret, bucket, key, rule, etag, exp)):
        return "token does not match this job"
    return None
