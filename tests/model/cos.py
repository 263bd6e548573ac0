"""COS in memory: buckets, objects, versions, tags and COS's clock, behind a boto3-shaped client.

`ModelS3Client` answers the S3 calls `ciflow.storage.Storage` makes, with COS's rules where COS and S3
differ (platform.md §7), so the real `Storage` adapter runs on top of it unchanged:

- `IfNoneMatch="*"` on PUT is COS's `x-cos-forbid-overwrite: true` (the adapter sends only that):
  409 `FileAlreadyExists` on a bucket that never had versioning, **no effect** on a bucket where
  versioning is or ever was on (Enabled or Suspended);
- `CopySourceIfMatch` is honoured (412 `PreconditionFailed`), a copy takes the source's current or named
  version, and `TaggingDirective=REPLACE` sets exactly the given tags;
- S3's `IfMatch` on DELETE, which COS documents nowhere, is ignored unless `CosModel.delete_if_match` says
  `honour` (412 `PreconditionFailed`, or 404 `NoSuchKey` when nothing is there) or `reject` (400);
- `PutObjectTagging` replaces the whole set, at most 10 tags from COS's character set (400 `InvalidTag`);
- Enabled buckets keep every PUT as a version, a DELETE without VersionId adds a delete marker, a DELETE
  with one removes exactly that version; Suspended buckets write and delete the `null` version;
- ETags are the MD5 of the bytes (single-part uploads and copies), timestamps come from COS's clock
  (`Clock`), `Last-Modified` and `Date` in whole seconds as the HTTP headers carry them.

Errors are botocore `ClientError`s with COS's codes and statuses, as boto3 would raise them.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl

from botocore.exceptions import ClientError

NEVER = "never"          # versioning never enabled: forbid-overwrite works, no version ids
ENABLED = "Enabled"
SUSPENDED = "Suspended"
BUCKET_KINDS = (NEVER, ENABLED, SUSPENDED)

MAX_TAGS = 10
_TAG_CHARS = re.compile(r"[A-Za-z0-9 +\-=._:/@]+")


class Clock:
    """COS's clock (Last-Modified, Date). Seconds since the epoch; only moved on purpose."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = float(now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def etag_of(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()  # noqa: S324 - an ETag, as COS computes it for single-part objects


def error(op: str, code: str, status: int, message: str = "") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message or code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, op)


@dataclass
class Version:
    vid: str                   # "" on never-versioned buckets, "null" for Suspended writes
    body: bytes = b""
    content_type: str = "binary/octet-stream"
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    modified: float = 0.0
    acl: str = "default"
    marker: bool = False       # a delete marker
    origin: str = ""           # who wrote it (the model's bookkeeping, never part of an answer)

    @property
    def etag(self) -> str:
        return etag_of(self.body)


@dataclass
class Bucket:
    name: str
    kind: str = NEVER
    # key → versions, oldest first
    keys: dict[str, list[Version]] = field(default_factory=dict)

    @property
    def versioned(self) -> bool:
        return self.kind != NEVER


@dataclass
class Mutation:
    """One change the model made, for observers (invariants, statistics)."""

    op: str                    # put | copy | delete | tags | acl
    bucket: str
    key: str
    actor: str                 # who called (the model's caller label)
    removed: Optional[Version] = None   # delete: the version (or object) whose bytes were removed
    written: Optional[Version] = None   # put, copy: the new version
    source: Optional[Version] = None    # copy: the version copied
    source_key: str = ""                # copy: the key it was copied from
    hidden: Optional[Version] = None    # delete: the version a new delete marker hid (still readable by id)
    revealed: Optional[Version] = None  # delete: an older version that became current again


class CosModel:
    """All buckets. Direct methods are the model's semantics; `client()` is the boto3-shaped view."""

    def __init__(self, clock: Optional[Clock] = None):
        self.clock = clock or Clock()
        self.buckets: dict[str, Bucket] = {}
        self._vid = 0
        self.observers: list[Callable[[Mutation], None]] = []
        self.actor: Callable[[], str] = lambda: "user"
        self.delete_if_match = "ignore"   # honour | ignore | reject: S3's If-Match on DELETE (unverified on COS)

    # --- buckets and versions -------------------------------------------------------------------
    def create_bucket(self, name: str, kind: str = NEVER) -> Bucket:
        if kind not in BUCKET_KINDS:
            raise ValueError(f"bucket kind: expected one of {BUCKET_KINDS}, got {kind!r}")
        b = self.buckets[name] = Bucket(name, kind)
        return b

    def set_versioning(self, name: str, status: str) -> None:
        """Like COS: a bucket whose versioning was ever on never goes back to never-versioned."""
        if status not in (ENABLED, SUSPENDED):
            raise ValueError(f"versioning: expected Enabled or Suspended, got {status!r}")
        self.bucket(name).kind = status

    def bucket(self, name: str) -> Bucket:
        b = self.buckets.get(name)
        if b is None:
            raise error("Bucket", "NoSuchBucket", 404, f"bucket {name} does not exist")
        return b

    def _new_vid(self, b: Bucket) -> str:
        if b.kind == NEVER:
            return ""
        if b.kind == SUSPENDED:
            return "null"
        self._vid += 1
        return f"MTg0NDUxNz{self._vid:06d}"

    def current(self, bucket: str, key: str) -> Optional[Version]:
        versions = self.bucket(bucket).keys.get(key) or []
        if not versions or versions[-1].marker:
            return None
        return versions[-1]

    def versions(self, bucket: str, key: str) -> list[Version]:
        """Every version of `key` (delete markers too), oldest first."""
        return list(self.bucket(bucket).keys.get(key) or [])

    def find_version(self, bucket: str, key: str, vid: str) -> Optional[Version]:
        for v in self.bucket(bucket).keys.get(key) or []:
            if v.vid == (vid or ""):
                return v
        return None

    def _notify(self, m: Mutation) -> None:
        for fn in self.observers:
            fn(m)

    def _add(self, b: Bucket, key: str, v: Version) -> None:
        versions = b.keys.setdefault(key, [])
        if b.kind in (NEVER, SUSPENDED):
            # The unversioned (or null) slot is replaced; Enabled-era versions stay.
            versions[:] = [x for x in versions if x.vid != v.vid]
        versions.append(v)

    # --- operations (the semantics; the client below maps requests and errors) -------------------
    def put(self, bucket: str, key: str, body: bytes, content_type: str = "binary/octet-stream",
            forbid_overwrite: bool = False, tags: Optional[dict[str, str]] = None,
            metadata: Optional[dict[str, str]] = None, op: str = "PutObject") -> Version:
        b = self.bucket(bucket)
        if forbid_overwrite and b.kind == NEVER and self.current(bucket, key) is not None:
            raise error(op, "FileAlreadyExists", 409, "the object already exists")
        if tags:
            check_tags(tags, op)
        v = Version(self._new_vid(b), bytes(body), content_type, dict(metadata or {}), dict(tags or {}),
                    self.clock.now, origin=self.actor())
        self._add(b, key, v)
        self._notify(Mutation("put", bucket, key, v.origin, written=v))
        return v

    def delete(self, bucket: str, key: str, vid: Optional[str] = None) -> Optional[Version]:
        """Delete the key (a marker on versioned buckets) or exactly version `vid`. Returns the
        version whose bytes stopped being readable, if any."""
        b = self.bucket(bucket)
        versions = b.keys.get(key)
        actor = self.actor()
        if not versions:
            return None
        if vid:
            target = next((v for v in versions if v.vid == vid), None)
            if target is None:
                return None
            before = self.current(bucket, key)
            versions.remove(target)
            if not versions:
                del b.keys[key]
            after = self.current(bucket, key)
            removed = None if target.marker else target
            revealed = after if after is not None and after is not before else None
            self._notify(Mutation("delete", bucket, key, actor, removed=removed, revealed=revealed))
            return removed
        if b.kind == NEVER:
            removed = versions[-1]
            del b.keys[key]
            self._notify(Mutation("delete", bucket, key, actor, removed=removed))
            return removed
        latest = None if versions[-1].marker else versions[-1]
        if b.kind == SUSPENDED:
            # The null version (if any) is removed and a null delete marker becomes the latest.
            removed = next((v for v in versions if v.vid == "null" and not v.marker), None)
            versions[:] = [v for v in versions if v.vid != "null"]
            versions.append(Version("null", modified=self.clock.now, marker=True, origin=actor))
            hidden = latest if latest is not None and latest is not removed else None
            self._notify(Mutation("delete", bucket, key, actor, removed=removed, hidden=hidden))
            return removed
        versions.append(Version(self._new_vid(b), modified=self.clock.now, marker=True, origin=actor))
        self._notify(Mutation("delete", bucket, key, actor, hidden=latest))
        return None

    def copy(self, bucket: str, src: str, dst: str, src_vid: Optional[str] = None, if_match: Optional[str] = None,
             tags: Optional[dict[str, str]] = None, op: str = "CopyObject") -> Version:
        if src_vid:
            source = self.find_version(bucket, src, src_vid)
            if source is None:
                raise error(op, "NoSuchVersion", 404, "the source version does not exist")
            if source.marker:
                raise error(op, "InvalidRequest", 400, "the source version is a delete marker")
        else:
            source = self.current(bucket, src)
            if source is None:
                raise error(op, "NoSuchKey", 404, "the source object does not exist")
        if if_match is not None and if_match.strip().strip('"') != source.etag:
            raise error(op, "PreconditionFailed", 412, "x-cos-copy-source-If-Match does not match")
        new_tags = dict(source.tags) if tags is None else dict(tags)
        if tags:
            check_tags(tags, op)
        b = self.bucket(bucket)
        v = Version(self._new_vid(b), source.body, source.content_type, dict(source.metadata), new_tags,
                    self.clock.now, origin=self.actor())  # a copy does not keep the source's ACL
        self._add(b, dst, v)
        self._notify(Mutation("copy", bucket, dst, v.origin, written=v, source=source, source_key=src))
        return v

    def put_tags(self, bucket: str, key: str, tags: dict[str, str], op: str = "PutObjectTagging") -> Version:
        check_tags(tags, op)
        v = self.current(bucket, key)
        if v is None:
            raise error(op, "NoSuchKey", 404)
        v.tags = dict(tags)
        self._notify(Mutation("tags", bucket, key, self.actor(), written=v))
        return v

    def set_acl(self, bucket: str, key: str, acl: str) -> Version:
        v = self.current(bucket, key)
        if v is None:
            raise error("PutObjectAcl", "NoSuchKey", 404)
        v.acl = acl
        self._notify(Mutation("acl", bucket, key, self.actor(), written=v))
        return v

    def listing(self, bucket: str, prefix: str) -> list[tuple[str, Version]]:
        """Current objects under `prefix` in key order."""
        b = self.bucket(bucket)
        out = []
        for key in sorted(b.keys):
            if key.startswith(prefix):
                v = self.current(bucket, key)
                if v is not None:
                    out.append((key, v))
        return out

    def client(self, page_size: int = 1000) -> ModelS3Client:
        return ModelS3Client(self, page_size)


def check_tags(tags: dict[str, str], op: str) -> None:
    if len(tags) > MAX_TAGS:
        raise error(op, "InvalidTag", 400, f"at most {MAX_TAGS} tags per object")
    for k, v in tags.items():
        if not (1 <= len(k) <= 127 and _TAG_CHARS.fullmatch(k)):
            raise error(op, "InvalidTag", 400, f"bad tag key {k!r}")
        if not (1 <= len(v) <= 255 and _TAG_CHARS.fullmatch(v)):
            raise error(op, "InvalidTag", 400, f"bad tag value {v!r}")


def _http_date(t: float) -> str:
    return formatdate(int(t), usegmt=True)


def _dt(t: float, whole_seconds: bool = True) -> datetime:
    return datetime.fromtimestamp(int(t) if whole_seconds else round(t, 3), tz=timezone.utc)


class ModelS3Client:
    """The boto3 S3 client calls `ciflow.storage.Storage` makes, answered by a `CosModel`."""

    def __init__(self, model: CosModel, page_size: int = 1000):
        self.model = model
        self.page_size = page_size

    def _meta(self, status: int = 200) -> dict[str, Any]:
        return {"HTTPStatusCode": status, "HTTPHeaders": {"date": _http_date(self.model.clock.now)}}

    def _version_field(self, bucket: str, v: Version) -> dict[str, str]:
        return {"VersionId": v.vid} if self.model.bucket(bucket).versioned else {}

    def _object(self, op: str, bucket: str, key: str, vid: Optional[str]) -> Version:
        if vid:
            v = self.model.find_version(bucket, key, vid)
            if v is None:
                raise error(op, "NoSuchVersion", 404)
            if v.marker:
                raise error(op, "MethodNotAllowed", 405, "the version is a delete marker")
            return v
        v = self.model.current(bucket, key)
        if v is None:
            raise error(op, "NoSuchKey", 404)
        return v

    def head_object(self, Bucket: str, Key: str, VersionId: Optional[str] = None) -> dict[str, Any]:
        try:
            v = self._object("HeadObject", Bucket, Key, VersionId)
        except ClientError as exc:
            status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
            raise error("HeadObject", str(status), status) from None   # HEAD answers carry no body
        return {"ETag": f'"{v.etag}"', "ContentLength": len(v.body), "ContentType": v.content_type,
                "Metadata": dict(v.metadata), "LastModified": _dt(v.modified), **self._version_field(Bucket, v),
                "ResponseMetadata": self._meta()}

    def get_object(self, Bucket: str, Key: str, VersionId: Optional[str] = None) -> dict[str, Any]:
        v = self._object("GetObject", Bucket, Key, VersionId)
        return {"Body": io.BytesIO(v.body), "ETag": f'"{v.etag}"', "ContentLength": len(v.body),
                "ContentType": v.content_type, "Metadata": dict(v.metadata), "LastModified": _dt(v.modified),
                **self._version_field(Bucket, v), "ResponseMetadata": self._meta()}

    def get_object_tagging(self, Bucket: str, Key: str, VersionId: Optional[str] = None) -> dict[str, Any]:
        v = self._object("GetObjectTagging", Bucket, Key, VersionId)
        return {"TagSet": [{"Key": k, "Value": val} for k, val in v.tags.items()],
                **self._version_field(Bucket, v), "ResponseMetadata": self._meta()}

    def put_object_tagging(self, Bucket: str, Key: str, Tagging: dict[str, Any],
                           VersionId: Optional[str] = None) -> dict[str, Any]:
        tags = {t["Key"]: t["Value"] for t in Tagging.get("TagSet", [])}
        if len(tags) != len(Tagging.get("TagSet", [])):
            raise error("PutObjectTagging", "InvalidTag", 400, "duplicate tag keys")
        if VersionId:
            v = self._object("PutObjectTagging", Bucket, Key, VersionId)
            check_tags(tags, "PutObjectTagging")
            v.tags = dict(tags)
        else:
            v = self.model.put_tags(Bucket, Key, tags)
        return {**self._version_field(Bucket, v), "ResponseMetadata": self._meta()}

    def delete_object_tagging(self, Bucket: str, Key: str, VersionId: Optional[str] = None) -> dict[str, Any]:
        if VersionId:
            v = self._object("DeleteObjectTagging", Bucket, Key, VersionId)
            v.tags = {}
        else:
            v = self.model.put_tags(Bucket, Key, {}, "DeleteObjectTagging")
        return {**self._version_field(Bucket, v), "ResponseMetadata": self._meta(204)}

    def get_bucket_versioning(self, Bucket: str) -> dict[str, Any]:
        kind = self.model.bucket(Bucket).kind
        return {**({"Status": kind} if kind != NEVER else {}), "ResponseMetadata": self._meta()}

    def put_object(self, Bucket: str, Key: str, Body: Any = b"", ContentType: str = "binary/octet-stream",
                   IfNoneMatch: Optional[str] = None, Tagging: Optional[str] = None,
                   Metadata: Optional[dict[str, str]] = None, **_: Any) -> dict[str, Any]:
        body = Body.read() if hasattr(Body, "read") else bytes(Body)
        tags = dict(parse_qsl(Tagging, keep_blank_values=True)) if Tagging else None
        # The adapter turns `If-None-Match: *` into COS's `x-cos-forbid-overwrite: true`.
        v = self.model.put(Bucket, Key, body, ContentType, forbid_overwrite=IfNoneMatch == "*", tags=tags,
                           metadata=Metadata)
        return {"ETag": f'"{v.etag}"', **self._version_field(Bucket, v), "ResponseMetadata": self._meta()}

    def copy_object(self, Bucket: str, Key: str, CopySource: dict[str, str], MetadataDirective: str = "COPY",
                    TaggingDirective: str = "COPY", Tagging: Optional[str] = None,
                    CopySourceIfMatch: Optional[str] = None, **_: Any) -> dict[str, Any]:
        if CopySource.get("Bucket") != Bucket:
            raise error("CopyObject", "InvalidArgument", 400, "the model copies within one bucket")
        tags = dict(parse_qsl(Tagging or "", keep_blank_values=True)) if TaggingDirective == "REPLACE" else None
        v = self.model.copy(Bucket, CopySource["Key"], Key, CopySource.get("VersionId"), CopySourceIfMatch, tags)
        return {"CopyObjectResult": {"ETag": f'"{v.etag}"', "LastModified": _dt(v.modified)},
                **self._version_field(Bucket, v), "ResponseMetadata": self._meta()}

    def delete_object(self, Bucket: str, Key: str, VersionId: Optional[str] = None,
                      IfMatch: Optional[str] = None) -> dict[str, Any]:
        mode = self.model.delete_if_match
        if IfMatch is not None and mode == "reject":
            raise error("DeleteObject", "InvalidArgument", 400, "If-Match is not supported on DELETE Object")
        if IfMatch is not None and mode == "honour" and not VersionId:
            current = self.model.current(Bucket, Key)
            if current is None:
                raise error("DeleteObject", "NoSuchKey", 404)
            if IfMatch.strip().strip('"') != current.etag:
                raise error("DeleteObject", "PreconditionFailed", 412)
        self.model.delete(Bucket, Key, VersionId)
        return {"ResponseMetadata": self._meta(204)}

    def put_object_acl(self, Bucket: str, Key: str, ACL: str) -> dict[str, Any]:
        self.model.set_acl(Bucket, Key, ACL)
        return {"ResponseMetadata": self._meta()}

    def list_object_versions(self, Bucket: str, Prefix: str = "", KeyMarker: Optional[str] = None,
                             VersionIdMarker: Optional[str] = None, MaxKeys: Optional[int] = None) -> dict[str, Any]:
        b = self.model.bucket(Bucket)
        entries: list[tuple[str, Version, bool]] = []
        for key in sorted(b.keys):
            if key.startswith(Prefix):
                versions = b.keys[key]
                for i, v in enumerate(reversed(versions)):   # newest first within a key
                    entries.append((key, v, i == 0))
        start = 0
        if KeyMarker is not None:
            after_key = next((i for i, (k, _, _) in enumerate(entries) if k > KeyMarker), len(entries))
            start = after_key
            if VersionIdMarker:
                at = next((i for i, (k, v, _) in enumerate(entries)
                           if k == KeyMarker and (v.vid or "null") == VersionIdMarker), None)
                if at is not None:
                    start = at + 1
        limit = min(MaxKeys or self.page_size, self.page_size)
        page = entries[start:start + limit]
        out: dict[str, Any] = {"Versions": [], "DeleteMarkers": [], "IsTruncated": start + limit < len(entries),
                               "ResponseMetadata": self._meta()}
        for key, v, latest in page:
            entry = {"Key": key, "VersionId": v.vid or "null", "IsLatest": latest, "LastModified": _dt(v.modified)}
            if v.marker:
                out["DeleteMarkers"].append(entry)
            else:
                out["Versions"].append({**entry, "ETag": f'"{v.etag}"', "Size": len(v.body)})
        if out["IsTruncated"]:
            out["NextKeyMarker"] = page[-1][0]
            out["NextVersionIdMarker"] = page[-1][1].vid or "null"
        return out

    def list_objects_v2(self, Bucket: str, Prefix: str = "", MaxKeys: int = 1000,
                        ContinuationToken: Optional[str] = None, StartAfter: Optional[str] = None) -> dict[str, Any]:
        objects = self.model.listing(Bucket, Prefix)
        after = ContinuationToken if ContinuationToken is not None else StartAfter
        if after is not None:
            objects = [(k, v) for k, v in objects if k > after]
        limit = min(MaxKeys, self.page_size)
        page = objects[:limit]
        truncated = len(objects) > limit
        out: dict[str, Any] = {
            "Contents": [{"Key": k, "ETag": f'"{v.etag}"', "Size": len(v.body), "LastModified": _dt(v.modified, False)}
                         for k, v in page],
            "KeyCount": len(page), "IsTruncated": truncated, "ResponseMetadata": self._meta()}
        if truncated:
            out["NextContinuationToken"] = page[-1][0]
        return out
