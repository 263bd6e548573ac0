"""The object-storage port: the few S3-compatible calls ciflow makes on COS, through boto3.

The client is built lazily and cached per (credentials, endpoint), so a warm container reuses its
connections and a rotated key gets a fresh client.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Optional
from urllib.parse import urlsplit

from .clientcache import ClientCache
from .errors import PermanentError, RetryableError
from .settings import Credentials, current_credentials, get_settings

_clients = ClientCache()

RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                   "InternalError", "RequestLimitExceeded", "TooManyRequests"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchResource"}


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    content_type: str
    metadata: dict[str, str]
    version_id: str = ""


@dataclass(frozen=True)
class ListedObject:
    """One entry of a bucket listing. Listings carry no content type; HEAD the key for it."""

    key: str
    etag: str
    size: int
    last_modified: Optional[datetime]


def _path_style(endpoint: str) -> bool:
    """Path-style addressing for IP and localhost endpoints (no DNS for <bucket>.<host> there)."""
    host = urlsplit(endpoint).hostname or ""
    # urlsplit strips IPv6 brackets; any ':' left means IPv6. (ipaddress costs ms at every cold start.)
    return host == "localhost" or ":" in host or host.replace(".", "").isdigit()


def _build_client(creds: Credentials, endpoint: str, region: str, timeout: float) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        signature_version="s3v4",
        s3={"addressing_style": "path" if _path_style(endpoint) else "virtual"},
        # COS does not implement the flexible checksums newer botocore sends by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        # Our own code builds every request; botocore's per-call schema walk is pure overhead here.
        parameter_validation=False,
        connect_timeout=timeout,
        read_timeout=timeout,
        max_pool_connections=20,
    )
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=creds.secret_id,
        aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token,
        config=config,
    )
    client.meta.events.register("before-sign.s3.PutObject", _forbid_overwrite)
    return client


def _forbid_overwrite(request: Any, **_: Any) -> None:
    # COS spells S3's `If-None-Match: *` as `x-cos-forbid-overwrite: true`; send both.
    if request.headers.get("If-None-Match") == "*":
        request.headers["x-cos-forbid-overwrite"] = "true"


def s3_client(creds: Optional[Credentials] = None) -> Any:
    """The cached boto3 S3 client for the current credentials."""
    s = get_settings()
    creds = creds or current_credentials()
    return _clients.get((creds, s.s3_endpoint, s.region),
                        lambda: _build_client(creds, s.s3_endpoint, s.region, s.http_timeout))


def _code(exc: Exception) -> tuple[str, int]:
    resp = getattr(exc, "response", None) or {}
    err = resp.get("Error", {})
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(err.get("Code", "")), int(status or 0)


def classify(exc: Exception, what: str) -> Exception:
    """Map a botocore error to RetryableError or PermanentError."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code, status = _code(exc)
        if status >= 500 or status == 429 or code in RETRYABLE_CODES:
            return RetryableError(f"{what}: {code or status}")
        return PermanentError(code or str(status), f"{what} failed")
    return RetryableError(f"{what}: {type(exc).__name__}: {exc}")


def _is_missing(exc: Exception) -> bool:
    code, status = _code(exc)
    return status == 404 or code in MISSING_CODES


class Storage:
    """Object operations used by the functions. `client` can be injected (tests, CLI)."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else s3_client()

    def head(self, bucket: str, key: str) -> Optional[ObjectInfo]:
        """Object info, or None when it does not exist."""
        try:
            r = self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise classify(exc, f"HEAD {key}") from exc
        return ObjectInfo(
            key=key,
            etag=str(r.get("ETag", "")).strip('"'),
            size=int(r.get("ContentLength", 0)),
            content_type=str(r.get("ContentType", "")),
            metadata=dict(r.get("Metadata", {})),
            version_id=str(r.get("VersionId") or ""),
        )

    def resolve(self, bucket: str, candidates: Iterable[str]) -> Optional[ObjectInfo]:
        """HEAD each candidate reading of a key; the first that exists wins."""
        for key in candidates:
            info = self.head(bucket, key)
            if info is not None:
                return info
        return None

    def get_tags(self, bucket: str, key: str) -> Optional[dict[str, str]]:
        """The object's tags in order, or None when the object does not exist."""
        try:
            r = self.client.get_object_tagging(Bucket=bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise classify(exc, f"GET tagging {key}") from exc
        return {t["Key"]: t["Value"] for t in r.get("TagSet", [])}

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> bool:
        """Replace the tag set. False when the object no longer exists."""
        try:
            self.client.put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise classify(exc, f"PUT tagging {key}") from exc
        return True

    def copy(self, bucket: str, src: str, dst: str, if_match: Optional[str] = None) -> bool:
        """Server-side copy keeping metadata and tags. False when the source is gone or changed."""
        kwargs: dict[str, Any] = {
            "Bucket": bucket, "Key": dst, "CopySource": {"Bucket": bucket, "Key": src},
            "MetadataDirective": "COPY", "TaggingDirective": "COPY",
        }
        if if_match:
            kwargs["CopySourceIfMatch"] = f'"{if_match}"'
        try:
            self.client.copy_object(**kwargs)
        except Exception as exc:
            code, status = _code(exc)
            if _is_missing(exc) or status == 412 or code == "PreconditionFailed":
                return False
            raise classify(exc, f"COPY {src} -> {dst}") from exc
        return True

    def delete(self, bucket: str, key: str) -> None:
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            if _is_missing(exc):
                return
            raise classify(exc, f"DELETE {key}") from exc

    def make_private(self, bucket: str, key: str) -> bool:
        try:
            self.client.put_object_acl(Bucket=bucket, Key=key, ACL="private")
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise classify(exc, f"PUT acl {key}") from exc
        return True

    def create_if_absent(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Conditional create (`If-None-Match: *`). False when the object already exists."""
        try:
            self.client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*"
            )
        except Exception as exc:
            code, status = _code(exc)
            if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise classify(exc, f"PUT {key}") from exc
        return True

    def put(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except Exception as exc:
            raise classify(exc, f"PUT {key}") from exc

    def list_keys(self, bucket: str, prefix: str, limit: int = 1000) -> list[str]:
        """Up to `limit` keys under `prefix`."""
        keys: list[str] = []
        token = None
        try:
            while len(keys) < limit:
                kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": min(1000, limit - len(keys))}
                if token:
                    kwargs["ContinuationToken"] = token
                r = self.client.list_objects_v2(**kwargs)
                keys.extend(o["Key"] for o in r.get("Contents", []))
                token = r.get("NextContinuationToken")
                if not r.get("IsTruncated") or not token:
                    break
        except Exception as exc:
            raise classify(exc, f"LIST {prefix}") from exc
        return keys

    def list_objects(self, bucket: str, prefix: str, start_after: Optional[str] = None) -> Iterator[ListedObject]:
        """Every object under `prefix` in key order, after `start_after` when given, one page at a time."""
        token = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            elif start_after:
                kwargs["StartAfter"] = start_after
            try:
                r = self.client.list_objects_v2(**kwargs)
            except Exception as exc:
                raise classify(exc, f"LIST {prefix}") from exc
            for o in r.get("Contents", []):
                yield ListedObject(key=o["Key"], etag=str(o.get("ETag", "")).strip('"'), size=int(o.get("Size", 0)),
                                   last_modified=o.get("LastModified"))
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated") or not token:
                return

    def get(self, bucket: str, key: str) -> Optional[bytes]:
        try:
            r = self.client.get_object(Bucket=bucket, Key=key)
            return r["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise classify(exc, f"GET {key}") from exc
