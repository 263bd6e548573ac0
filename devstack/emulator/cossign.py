"""Server-side check of COS request signatures (`q-sign-algorithm=sha1`), as CI performs it.

The string to sign is rebuilt from the request as received: lower-cased method, the decoded path,
then the parameters and headers named in `q-url-param-list` / `q-header-list`, each
percent-encoded with `-_.~` left alone, sorted and joined with `&`.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional
from urllib.parse import parse_qsl, quote, unquote


@dataclass(frozen=True)
class Credential:
    secret_id: str
    secret_key: str
    token: Optional[str] = None


class SignatureError(Exception):
    def __init__(self, code: str, message: str, status: int = 403):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _enc(value: str) -> str:
    return quote(value.encode("utf-8"), safe="-_.~")


def parse_authorization(value: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in value.split("&"):
        k, sep, v = part.partition("=")
        if sep:
            fields[k.strip()] = v.strip()
    return fields


def string_to_sign(method: str, path: str, query: list[tuple[str, str]], headers: Mapping[str, str],
                   param_list: list[str], header_list: list[str]) -> str:
    qmap = {_enc(k).lower(): _enc(v) for k, v in query}
    lower_headers = {k.lower(): v for k, v in headers.items()}
    hmap = {}
    for name in header_list:
        if name not in lower_headers:
            raise SignatureError("SignatureDoesNotMatch", f"signed header {name!r} is missing")
        hmap[name] = _enc(lower_headers[name])
    pmap = {}
    for name in param_list:
        if name not in qmap:
            raise SignatureError("SignatureDoesNotMatch", f"signed parameter {name!r} is missing")
        pmap[name] = qmap[name]
    fmt = "{}\n{}\n{}\n{}\n".format(
        method.lower(),
        path,
        "&".join(f"{k}={v}" for k, v in sorted(pmap.items())),
        "&".join(f"{k}={v}" for k, v in sorted(hmap.items())),
    )
    return fmt


def verify(method: str, raw_path: str, raw_query: str, headers: Mapping[str, str],
           credentials: Mapping[str, Credential], now: Optional[float] = None) -> Credential:
    """Verify the request; return the matching credential or raise SignatureError."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization", "")
    if not auth:
        raise SignatureError("AccessDenied", "Authorization header is missing")
    f = parse_authorization(auth)
    if f.get("q-sign-algorithm") != "sha1":
        raise SignatureError("InvalidArgument", "q-sign-algorithm must be sha1", 400)
    cred = credentials.get(f.get("q-ak", ""))
    if cred is None:
        raise SignatureError("InvalidAccessKeyId", "the SecretId is not known")
    sign_time = f.get("q-sign-time", "")
    key_time = f.get("q-key-time", "")
    try:
        start, end = (int(x) for x in sign_time.split(";"))
    except ValueError:
        raise SignatureError("InvalidArgument", "q-sign-time is malformed", 400) from None
    t = int(now if now is not None else time.time())
    if not start <= t <= end:
        raise SignatureError("RequestTimeTooSkewed", "the signature is not valid at this time")
    header_list = [h for h in f.get("q-header-list", "").split(";") if h]
    param_list = [p for p in f.get("q-url-param-list", "").split(";") if p]
    fmt = string_to_sign(method, unquote(raw_path), parse_qsl(raw_query, keep_blank_values=True), headers,
                         param_list, header_list)
    sts = "sha1\n{}\n{}\n".format(sign_time, hashlib.sha1(fmt.encode("utf-8")).hexdigest())
    sign_key = hmac.new(cred.secret_key.encode(), key_time.encode(), hashlib.sha1).hexdigest()
    expected = hmac.new(sign_key.encode(), sts.encode(), hashlib.sha1).hexdigest()
    if not hmac.compare_digest(expected, f.get("q-signature", "")):
        raise SignatureError("SignatureDoesNotMatch", "The calculated signature does not match")
    if cred.token:
        token = lower.get("x-ci-security-token") or lower.get("x-cos-security-token")
        if token != cred.token:
            raise SignatureError("InvalidAccessKeyId" if token is None else "AccessDenied",
                                 "the temporary security token is missing or wrong")
    return cred
