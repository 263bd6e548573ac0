"""The object-storage port: the few S3-compatible calls ciflow makes on COS, through boto3.

The client is built lazily and cached per (credentials, endpoint), so a warm container reuses its
connections and a rotated key gets a fresh client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

from .clientcache import ClientCache
from .errors import PermanentError, RetryableError
from .log import logger
from .settings import Credentials, current_credentials, get_settings

_clients = ClientCache()

RETRYABLE_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "ServiceUnavailable",
                   "InternalError", "RequestLimitExceeded", "TooManyRequests"}
MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchResource", "NoSuchVersion"}
# COS copies at most 5 GB in one request; larger objects are copied in parts.
SINGLE_COPY_LIMIT = 5 * 1024 ** 3
COPY_PART_SIZE = 512 * 1024 ** 2


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    content_type: str
    metadata: dict[str, str]
    version_id: str = ""
    last_modified: float = 0.0   # epoch seconds by COS's clock; 0 when unknown

    @property
    def versioned(self) -> bool:
        """The bucket keeps versions (Enabled): a version id other than COS's "null"."""
        return is_version(self.version_id)


def is_version(version_id: Optional[str]) -> bool:
    return bool(version_id) and version_id != "null"


@dataclass(frozen=True)
class StoredRecord:
    """A small object read with COS's own timestamps, so ages never depend on a local clock."""

    body: bytes
    last_modified: float   # epoch seconds, COS's Last-Modified
    server_now: float      # epoch seconds, COS's Date header of the same response
    version_id: str = ""   # the version read, on a bucket that keeps versions

    @property
    def age(self) -> float:
        return self.server_now - self.last_modified


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
    for op in ("PutObject", "PutObjectTagging"):
        client.meta.events.register(f"before-sign.s3.{op}", _cos_put_headers)
    return client


def _cos_put_headers(request: Any, **_: Any) -> None:
    # Our bodies are small records and tag sets: waiting for `100 Continue` only adds a round trip.
    if "Expect" in request.headers:
        del request.headers["Expect"]
    # The conditional create in COS's own spelling only. Whether COS honours, ignores or rejects S3's
    # `If-None-Match: *` is unverified, so it is never sent.
    if request.headers.get("If-None-Match") == "*":
        del request.headers["If-None-Match"]
        request.headers["x-cos-forbid-overwrite"] = "true"


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str) and value:
        try:
            return parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            return 0.0
    return 0.0


def server_time(response: Any) -> float:
    """COS's clock, from the Date header of a response (0 when absent)."""
    headers = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {})
    return _epoch(headers.get("date", ""))


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


_delete_if_match_refused = False   # COS refused If-Match on DELETE once: this container sends it no more


def _refuse_delete_if_match(code: str) -> None:
    global _delete_if_match_refused
    if not _delete_if_match_refused:
        logger.warning("COS refused If-Match on DELETE; deleting without it from now on", extra={"code": code})
    _delete_if_match_refused = True


class Storage:
    """Object operations used by the functions. `client` can be injected (tests, CLI)."""

    def __init__(self, client: Any = None):
        self._client = client

    @property
    def client(self) -> Any:
        return self._client if self._client is not None else s3_client()

    def head(self, bucket: str, key: str, version_id: Optional[str] = None) -> Optional[ObjectInfo]:
        """Object info (of exactly `version_id` when given), or None when it does not exist."""
        try:
            r = self.client.head_object(Bucket=bucket, Key=key, **_version(version_id))
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
            last_modified=_epoch(r.get("LastModified")),
        )

    def resolve(self, bucket: str, candidates: Iterable[str]) -> Optional[ObjectInfo]:
        """HEAD each candidate reading of a key; the first that exists wins."""
        for key in candidates:
            info = self.head(bucket, key)
            if info is not None:
                return info
        return None

    def get_tags(self, bucket: str, key: str, version_id: Optional[str] = None) -> Optional[dict[str, str]]:
        """The object's tags (of exactly `version_id` when given) in order, or None when it does not exist."""
        try:
            r = self.client.get_object_tagging(Bucket=bucket, Key=key, **_version(version_id))
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise classify(exc, f"GET tagging {key}") from exc
        return {t["Key"]: t["Value"] for t in r.get("TagSet", [])}

    def put_tags(self, bucket: str, key: str, tags: dict[str, str]) -> bool:
        """Replace the tag set (an empty set deletes the tags). False when the object no longer exists."""
        try:
            if not tags:
                self.client.delete_object_tagging(Bucket=bucket, Key=key)
                return True
            self.client.put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
            )
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise classify(exc, f"PUT tagging {key}") from exc
        return True

    def copy(self, bucket: str, src: str, dst: str, if_match: Optional[str] = None,
             version_id: Optional[str] = None, tags: Optional[dict[str, str]] = None, size: int = 0) -> bool:
        """Server-side copy keeping metadata. The copy carries `tags` when given (one request instead of a
        copy plus a tag write), else the source's tags. `version_id` copies exactly that version;
        `if_match` refuses a source whose ETag differs. Sources above COS's single-copy limit are copied
        in parts. False when the source is gone or changed."""
        source: dict[str, Any] = {"Bucket": bucket, "Key": src}
        if is_version(version_id):
            source["VersionId"] = version_id
        if size > SINGLE_COPY_LIMIT:
            return self._copy_in_parts(bucket, source, dst, if_match, tags, size)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": dst, "CopySource": source, "MetadataDirective": "COPY"}
        if tags is not None:
            kwargs["TaggingDirective"] = "REPLACE"
            kwargs["Tagging"] = urlencode(tags)
        else:
            kwargs["TaggingDirective"] = "COPY"
        if if_match:
            kwargs["CopySourceIfMatch"] = f'"{if_match}"'
        try:
            self.client.copy_object(**kwargs)
        except Exception as exc:
            if _copy_refused(exc):
                return False
            raise classify(exc, f"COPY {src} -> {dst}") from exc
        return True

    def _copy_in_parts(self, bucket: str, source: dict[str, Any], dst: str, if_match: Optional[str],
                       tags: Optional[dict[str, str]], size: int) -> bool:
        src = source["Key"]
        try:
            head = self.client.head_object(Bucket=bucket, Key=src, **(
                {"VersionId": source["VersionId"]} if "VersionId" in source else {}))
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise classify(exc, f"HEAD {src}") from exc
        create: dict[str, Any] = {"Bucket": bucket, "Key": dst, "Metadata": head.get("Metadata", {})}
        if head.get("ContentType"):
            create["ContentType"] = head["ContentType"]
        if tags is None:
            tags = self.get_tags(bucket, src) or {}
        if tags:
            create["Tagging"] = urlencode(tags)
        try:
            upload_id = self.client.create_multipart_upload(**create)["UploadId"]
        except Exception as exc:
            raise classify(exc, f"COPY {src} -> {dst}: initiate") from exc
        parts = []
        try:
            for number, start in enumerate(range(0, size, COPY_PART_SIZE), 1):
                end = min(size, start + COPY_PART_SIZE) - 1
                kwargs: dict[str, Any] = {"Bucket": bucket, "Key": dst, "UploadId": upload_id, "PartNumber": number,
                                          "CopySource": source, "CopySourceRange": f"bytes={start}-{end}"}
                if if_match:
                    kwargs["CopySourceIfMatch"] = f'"{if_match}"'
                r = self.client.upload_part_copy(**kwargs)
                parts.append({"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]})
            self.client.complete_multipart_upload(Bucket=bucket, Key=dst, UploadId=upload_id,
                                                  MultipartUpload={"Parts": parts})
        except Exception as exc:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=dst, UploadId=upload_id)
            except Exception:  # noqa: BLE001, S110 - the original failure is what matters
                pass
            if _copy_refused(exc):
                return False
            raise classify(exc, f"COPY {src} -> {dst}") from exc
        return True

    def delete(self, bucket: str, key: str, version_id: Optional[str] = None, if_match: str = "") -> bool:
        """Delete the key (a delete marker on versioned buckets), or exactly one version of it.

        `if_match`: the ETag the key must still hold. It goes out as S3's `If-Match`, which COS documents
        nowhere (S3 honours it since 2025-09): where it is honoured, content written since the caller's
        check is not deleted and this returns False; where it is ignored, the DELETE is what it always
        was. Where it is refused (400 or 501), or answered 412 while a HEAD shows the named content still
        there, the DELETE is sent again without it, and this container stops sending it
        (docs/reliability.md, "Known limits")."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if is_version(version_id):
            kwargs["VersionId"] = version_id
        conditional = bool(if_match) and not is_version(version_id) and not _delete_if_match_refused
        try:
            self.client.delete_object(**kwargs, **({"IfMatch": f'"{if_match}"'} if conditional else {}))
        except Exception as exc:
            code, status = _code(exc)
            if conditional and (status == 412 or code == "PreconditionFailed"):
                current = self.head(bucket, key)
                if current is None or current.etag != if_match:
                    return False  # other content at the key, or none: nothing of ours to delete
                # 412 for the very content it named: not S3's If-Match; do without it
            if conditional and (status in (400, 412, 501) or code == "PreconditionFailed"):
                deleted = self.delete(bucket, key, version_id)  # raises if the header was not the reason
                _refuse_delete_if_match(code or str(status))
                return deleted
            if _is_missing(exc):
                return not conditional
            raise classify(exc, f"DELETE {key}") from exc
        return True

    def versioning(self, bucket: str) -> str:
        """The bucket's versioning status: "Enabled", "Suspended", or "" (never enabled)."""
        try:
            r = self.client.get_bucket_versioning(Bucket=bucket)
        except Exception as exc:
            raise classify(exc, f"GET versioning {bucket}") from exc
        return str(r.get("Status") or "")

    def versions(self, bucket: str, key: str) -> list[tuple[str, str]]:
        """(version id, ETag) of every version of exactly `key`, newest first; delete markers left out."""
        out: list[tuple[str, str]] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": key}
        while True:
            try:
                r = self.client.list_object_versions(**kwargs)
            except Exception as exc:
                raise classify(exc, f"LIST versions {key}") from exc
            out.extend((str(v.get("VersionId") or ""), str(v.get("ETag", "")).strip('"'))
                       for v in r.get("Versions", []) if v.get("Key") == key)
            if not r.get("IsTruncated"):
                return out
            kwargs["KeyMarker"] = r.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = r.get("NextVersionIdMarker")

    def delete_content(self, bucket: str, key: str, etag: str, version_id: str = "", checked: bool = False) -> int:
        """Make the bytes with `etag` unreadable at `key`: on a versioned bucket every version holding
        them is deleted (a plain delete would only add a marker); otherwise the key is deleted if it
        still holds them. Returns how many versions or objects were deleted."""
        if is_version(version_id):
            doomed = [vid for vid, e in self.versions(bucket, key) if e == etag]
            for vid in doomed:
                self.delete(bucket, key, vid)
            return len(doomed)
        if not checked:   # `checked`: the caller has just seen `etag` at the key
            current = self.head(bucket, key)
            if current is None or current.etag != etag:
                return 0
        return 1 if self.delete(bucket, key, if_match=etag) else 0

    def make_private(self, bucket: str, key: str) -> bool:
        try:
            self.client.put_object_acl(Bucket=bucket, Key=key, ACL="private")
        except Exception as exc:
            if _is_missing(exc):
                return False
            raise classify(exc, f"PUT acl {key}") from exc
        return True

    def create_if_absent(self, bucket: str, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Create `key` only if it does not exist; False when it already did.

        COS's `x-cos-forbid-overwrite` answers 409 on buckets that never had versioning, and has no
        effect on versioned ones. There every writer's PUT becomes a version, so the oldest version
        decides: a writer whose version is not the oldest lost, and removes its own version again so
        that the winner's record stays the current one.
        """
        try:
            r = self.client.put_object(
                Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*"
            )
        except Exception as exc:
            code, status = _code(exc)
            if status in (409, 412) or code in ("FileAlreadyExists", "PreconditionFailed",
                                                 "ConditionalRequestConflict"):
                return False
            raise classify(exc, f"PUT {key}") from exc
        ours = str(r.get("VersionId") or "")
        if not is_version(ours):
            return True
        versions = self.versions(bucket, key)
        if not versions or versions[-1][0] == ours:
            return True
        self.delete(bucket, key, ours)
        return False

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
        record = self.get_record(bucket, key)
        return record.body if record is not None else None

    def get_record(self, bucket: str, key: str, version_id: Optional[str] = None) -> Optional[StoredRecord]:
        """A small object (exactly `version_id` when given) with COS's Last-Modified and Date; None when it
        does not exist."""
        try:
            r = self.client.get_object(Bucket=bucket, Key=key, **_version(version_id))
            body = r["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise classify(exc, f"GET {key}") from exc
        return StoredRecord(body, _epoch(r.get("LastModified")), server_time(r), str(r.get("VersionId") or ""))

    def get_created(self, bucket: str, key: str, contender: Callable[[bytes], bool]) -> Optional[StoredRecord]:
        """A record made by `create_if_absent` and rewritten since only by its winner, as the winner left
        it. On a versioned bucket, a contender whose arbitration failed or died (listing the versions, or
        deleting its own) leaves its own version as the current one: a version whose body `contender`
        recognises as a fresh create and that is not the oldest lost, so it is skipped (and removed), and
        the newest version before it is the record."""
        record = self.get_record(bucket, key)
        if record is None or not is_version(record.version_id) or not contender(record.body):
            return record
        versions = [vid for vid, _ in self.versions(bucket, key)]
        if not versions or versions[-1] == record.version_id:
            return record   # the winner's own create, never rewritten yet
        for vid in versions:
            older = record if vid == record.version_id else self.get_record(bucket, key, vid)
            if older is None:
                continue
            if vid == versions[-1] or not contender(older.body):
                return older
            self._drop_leftover(bucket, key, vid)
        return None

    def _drop_leftover(self, bucket: str, key: str, version_id: str) -> None:
        """Remove a losing contender's version that its own arbitration left behind (best effort: readers
        skip it either way)."""
        try:
            self.delete(bucket, key, version_id)
        except (RetryableError, PermanentError):
            pass

    def list_page(self, bucket: str, prefix: str, token: Optional[str] = None,
                  max_keys: int = 1000) -> tuple[list[ListedObject], Optional[str], float]:
        """One listing page: its objects, the next page's token (None at the end) and COS's clock."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            r = self.client.list_objects_v2(**kwargs)
        except Exception as exc:
            raise classify(exc, f"LIST {prefix}") from exc
        objects = [ListedObject(key=o["Key"], etag=str(o.get("ETag", "")).strip('"'), size=int(o.get("Size", 0)),
                                last_modified=o.get("LastModified")) for o in r.get("Contents", [])]
        nxt = r.get("NextContinuationToken") if r.get("IsTruncated") else None
        return objects, nxt or None, server_time(r)


def _version(version_id: Optional[str]) -> dict[str, str]:
    return {"VersionId": version_id} if version_id and is_version(version_id) else {}


def _copy_refused(exc: Exception) -> bool:
    code, status = _code(exc)
    return _is_missing(exc) or status == 412 or code == "PreconditionFailed"
