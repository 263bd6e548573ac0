"""Settings: read from the environment once per cold start, validated, cached.

Credentials are deliberately *not* part of the cached settings: SCF rotates the role's temporary
keys, so `current_credentials()` reads them on every call.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from .delivery import URL, Delivery, parse_delivery
from .errors import ConfigError
from .regions import full_region

#: Every variable the settings read, with whether it is required and what it means.
#: The deploy checks compare this with serverless.yml, so keep it complete.
ENV_VARS = {
    "CIFLOW_REGION": "optional; full or short region of the bucket (default: TENCENTCLOUD_REGION)",
    "CIFLOW_CALLBACK_URL": "required by submit; public URL of the callback function",
    "CIFLOW_CALLBACK_SECRET": "required; at least 16 characters, signs the callback tokens",
    "CIFLOW_CALLBACK_FORMAT": "optional; XML (default) or JSON",
    "CIFLOW_CALLBACK_TYPE": "optional; url (default: CI POSTs to CIFLOW_CALLBACK_URL) or tdmq (a CMQ message)",
    "CIFLOW_CALLBACK_MQ_REGION": "optional; with tdmq (required then), the queue's region: sh, bj, gz, cd or hk",
    "CIFLOW_CALLBACK_MQ_MODE": "optional with tdmq; Topic (default: it triggers the callback function) or Queue",
    "CIFLOW_CALLBACK_MQ_NAME": "optional; with tdmq (required then), the CMQ topic (or queue) name",
    "CIFLOW_TOKEN_TTL_SECONDS": "optional; how long a callback token stays valid (default 7 days)",
    "CIFLOW_MAX_CALLBACK_BYTES": "optional; largest callback body accepted (default 1 MiB)",
    "CIFLOW_BUCKETS": "optional; comma-separated buckets (name-appid) callbacks may act on",
    "CIFLOW_RULES": "optional; the rules document as inline JSON",
    "CIFLOW_RULES_FILE": "optional; path to the rules JSON file (default: the bundled rules)",
    "CIFLOW_S3_ENDPOINT": "optional; S3-compatible endpoint (default https://cos.<region>.myqcloud.com)",
    "CIFLOW_CI_ENDPOINT": "optional; CI endpoint: a URL (http://host:port) or an EndpointCi domain",
    "CIFLOW_STATE_PREFIX": "optional; key prefix for ciflow's job records (default .ciflow/)",
    "CIFLOW_STATE_BUCKET": "optional; keep the job records in this bucket (one that never had versioning) instead "
                           "of each object's bucket: needed for buckets whose versioning is Suspended",
    "CIFLOW_HTTP_TIMEOUT": "optional; seconds for each HTTP call to COS or CI (default 10)",
    "CIFLOW_RECONCILE_AFTER_SECONDS": "optional; reconcile re-checks jobs pending longer than this (default 900)",
    "CIFLOW_RECONCILE_GIVE_UP_SECONDS": "optional; a job still unfinished after this is FAILED (default 21600)",
    "CIFLOW_MAX_SUBMIT_ATTEMPTS": "optional; lost jobs are resubmitted up to this many times in all (default 3)",
}

DEFAULT_RULES_FILE = os.path.join(os.path.dirname(__file__), "default_rules.json")


@dataclass(frozen=True)
class CiEndpoint:
    """Where the CI client connects. `ip`/`port` point the SDK at an emulator; `domain` is EndpointCi."""

    scheme: str = "https"
    ip: Optional[str] = None
    port: Optional[int] = None
    domain: Optional[str] = None


@dataclass(frozen=True)
class Settings:
    region: str
    callback_url: str
    callback_secret: str
    callback_format: str
    token_ttl_seconds: int
    max_callback_bytes: int
    buckets: tuple[str, ...]
    rules_source: str
    rules_text: str
    s3_endpoint: str
    ci_endpoint: CiEndpoint
    state_prefix: str
    http_timeout: float
    delivery: Delivery = URL
    state_bucket: str = ""
    reconcile_after_seconds: int = 900
    reconcile_give_up_seconds: int = 21600
    max_submit_attempts: int = 3


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str
    token: Optional[str]


def _int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def parse_ci_endpoint(raw: str) -> CiEndpoint:
    """`http://127.0.0.1:9000` → IP/Port mode; `ci.example.com` → EndpointCi domain mode."""
    raw = raw.strip()
    if not raw:
        return CiEndpoint()
    if "://" in raw:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(raw)
            port = parts.port
        except ValueError:
            raise ConfigError(f"CIFLOW_CI_ENDPOINT: expected http(s)://host[:port], got {raw!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"CIFLOW_CI_ENDPOINT: expected http(s)://host[:port], got {raw!r}")
        return CiEndpoint(scheme=parts.scheme, ip=parts.hostname, port=port)
    return CiEndpoint(domain=raw)


def load_settings(env: Optional[Mapping[str, str]] = None) -> Settings:
    """Build and validate Settings from `env` (default: os.environ). Raises ConfigError naming the variable."""
    env = os.environ if env is None else env
    region = full_region(env.get("CIFLOW_REGION") or env.get("TENCENTCLOUD_REGION") or "")
    if not region:
        raise ConfigError("CIFLOW_REGION: not set (and TENCENTCLOUD_REGION is not set either)")
    secret = env.get("CIFLOW_CALLBACK_SECRET", "")
    if len(secret) < 16:
        raise ConfigError("CIFLOW_CALLBACK_SECRET: must be set to at least 16 characters")
    fmt = (env.get("CIFLOW_CALLBACK_FORMAT") or "XML").strip().upper()
    if fmt not in ("XML", "JSON"):
        raise ConfigError(f"CIFLOW_CALLBACK_FORMAT: must be XML or JSON, got {fmt!r}")
    callback_url = env.get("CIFLOW_CALLBACK_URL", "").strip()
    if callback_url and not callback_url.startswith(("http://", "https://")):
        raise ConfigError(f"CIFLOW_CALLBACK_URL: must be an http(s) URL, got {callback_url!r}")
    inline = env.get("CIFLOW_RULES", "").strip()
    if inline:
        rules_source, rules_text = "CIFLOW_RULES", inline
    else:
        path = env.get("CIFLOW_RULES_FILE", "").strip() or DEFAULT_RULES_FILE
        try:
            with open(path, encoding="utf-8") as fh:
                rules_text = fh.read()
        except OSError as exc:
            raise ConfigError(f"CIFLOW_RULES_FILE: cannot read {path!r}: {exc.strerror}") from None
        rules_source = path
    state_prefix = env.get("CIFLOW_STATE_PREFIX", ".ciflow/").strip() or ".ciflow/"
    if not state_prefix.endswith("/"):
        state_prefix += "/"
    buckets = tuple(b.strip() for b in env.get("CIFLOW_BUCKETS", "").split(",") if b.strip())
    s3_endpoint = env.get("CIFLOW_S3_ENDPOINT", "").strip() or f"https://cos.{region}.myqcloud.com"
    timeout = env.get("CIFLOW_HTTP_TIMEOUT", "").strip() or "10"
    try:
        http_timeout = float(timeout)
    except ValueError:
        http_timeout = float("nan")
    if not 0 < http_timeout <= 900:  # also rejects nan
        raise ConfigError(f"CIFLOW_HTTP_TIMEOUT: expected seconds between 0 and 900, got {timeout!r}")
    delivery = _delivery(env.get("CIFLOW_CALLBACK_TYPE") or "url", env.get("CIFLOW_CALLBACK_MQ_REGION") or "",
                         env.get("CIFLOW_CALLBACK_MQ_MODE") or "Topic", env.get("CIFLOW_CALLBACK_MQ_NAME") or "")
    state_bucket = (env.get("CIFLOW_STATE_BUCKET") or "").strip()
    return Settings(
        state_bucket=state_bucket,
        delivery=delivery,
        region=region,
        callback_url=callback_url,
        callback_secret=secret,
        callback_format=fmt,
        token_ttl_seconds=_int(env, "CIFLOW_TOKEN_TTL_SECONDS", 7 * 24 * 3600, 60, 90 * 24 * 3600),
        max_callback_bytes=_int(env, "CIFLOW_MAX_CALLBACK_BYTES", 1024 * 1024, 1024, 6 * 1024 * 1024),
        buckets=buckets,
        rules_source=rules_source,
        rules_text=rules_text,
        s3_endpoint=s3_endpoint,
        ci_endpoint=parse_ci_endpoint(env.get("CIFLOW_CI_ENDPOINT", "")),
        state_prefix=state_prefix,
        http_timeout=http_timeout,
        reconcile_after_seconds=_int(env, "CIFLOW_RECONCILE_AFTER_SECONDS", 900, 0, 7 * 24 * 3600),
        reconcile_give_up_seconds=_int(env, "CIFLOW_RECONCILE_GIVE_UP_SECONDS", 21600, 1, 30 * 24 * 3600),
        max_submit_attempts=_int(env, "CIFLOW_MAX_SUBMIT_ATTEMPTS", 3, 1, 20),
    )


def _delivery(kind: str, region: str, mode: str, name: str) -> Delivery:
    kind = kind.strip().lower()
    if kind == "url":
        return URL
    if kind != "tdmq":
        raise ConfigError(f"CIFLOW_CALLBACK_TYPE: must be url or tdmq, got {kind!r}")
    raw = {"type": "tdmq", "mq_region": region.strip(), "mq_mode": mode.strip(), "mq_name": name.strip()}
    delivery, problems = parse_delivery(raw, "delivery")
    if delivery is None:
        where, message = problems[0]
        name = {"delivery.mq_region": "CIFLOW_CALLBACK_MQ_REGION", "delivery.mq_mode": "CIFLOW_CALLBACK_MQ_MODE",
                "delivery.mq_name": "CIFLOW_CALLBACK_MQ_NAME"}.get(where, "CIFLOW_CALLBACK_TYPE")
        raise ConfigError(f"{name}: {message}")
    return delivery


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, parsed on first use (cold start) and cached."""
    return load_settings()


def reset_settings() -> None:
    """Forget cached settings (tests, or after changing the environment). The rules and the cached
    clients need no reset: they are keyed by what they are built from (the rules text; credentials,
    endpoint and region), so they follow."""
    get_settings.cache_clear()


def current_credentials(env: Optional[Mapping[str, str]] = None) -> Credentials:
    """The role's temporary credentials as SCF provides them right now (they rotate)."""
    env = os.environ if env is None else env
    sid = env.get("TENCENTCLOUD_SECRETID", "")
    skey = env.get("TENCENTCLOUD_SECRETKEY", "")
    if not sid or not skey:
        raise ConfigError("TENCENTCLOUD_SECRETID/TENCENTCLOUD_SECRETKEY: not set (is a role bound to the function?)")
    return Credentials(sid, skey, env.get("TENCENTCLOUD_SESSIONTOKEN") or None)
