"""The local object store behaves like COS, over HTTP with boto3: conditional create, copy preconditions,
the single-copy limit, versioned buckets, every setting of the unverified behaviours, and faults."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from devstack.objectstore import ObjectStore

pytestmark = pytest.mark.integration
REGION = "ap-guangzhou"
# moto's state is per process: these names are used by no other test module.
PLAIN = "osplain-1250000000"
ENABLED = "osenabled-1250000000"
SUSPENDED = "ossuspended-1250000000"


class Store:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.store = ObjectStore(REGION, self.events.append)
        self.store.start()
        self.s3 = self.client()
        for b in (PLAIN, ENABLED, SUSPENDED):
            self.s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": REGION})
        self.store.set_versioning(ENABLED, "Enabled")
        self.store.set_versioning(SUSPENDED, "Suspended")

    def client(self, **headers: str) -> Any:
        """boto3 as the functions build it; `headers` are added to every PUT (COS's own x-cos-* headers)."""
        config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required",
                        retries={"total_max_attempts": 1, "mode": "standard"}, s3={"addressing_style": "path"})
        client = boto3.client("s3", endpoint_url=self.store.endpoint, region_name=REGION,
                              aws_access_key_id="devstack", aws_secret_access_key="devstack", config=config)
        if headers:
            def add(request: Any, **_: Any) -> None:
                if request.method in ("PUT", "POST"):
                    for name, value in headers.items():
                        request.headers[name] = value

            client.meta.events.register("before-sign.s3", add)
        return client

    def body(self, bucket: str, key: str, **kw: Any) -> bytes:
        return self.s3.get_object(Bucket=bucket, Key=key, **kw)["Body"].read()

    def absent(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        return False


@pytest.fixture(scope="module")
def cos() -> Iterator[Store]:
    s = Store()
    yield s
    s.store.stop()


@pytest.fixture
def key() -> str:
    return f"uploads/{uuid.uuid4().hex[:8]}/photo ☕ 1+1%.png"


@pytest.fixture
def settings(cos: Store) -> Iterator[Callable[..., None]]:
    """Change store settings for one test; the previous ones come back afterwards."""
    before = cos.store.settings()
    yield cos.store.configure
    cos.store.configure(before)


def error_of(call: Callable[[], Any]) -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        call()
    r = info.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"]


FORBID = {"x-cos-forbid-overwrite": "true"}


# --- x-cos-forbid-overwrite ----------------------------------------------------------------------

def test_forbid_overwrite_answers_409_file_already_exists_and_keeps_the_object(cos: Store, key: str) -> None:
    # Given an object created with x-cos-forbid-overwrite on a bucket that never had versioning
    forbid = cos.client(**FORBID)
    forbid.put_object(Bucket=PLAIN, Key=key, Body=b"first")
    events = len(cos.events)
    # When it is written again with the header
    status, code = error_of(lambda: forbid.put_object(Bucket=PLAIN, Key=key, Body=b"second"))
    # Then COS's answer is 409 FileAlreadyExists, the first content stays and no event is sent
    assert (status, code) == (409, "FileAlreadyExists")
    assert cos.body(PLAIN, key) == b"first"
    assert len(cos.events) == events


def test_forbid_overwrite_applies_to_complete_multipart_upload(cos: Store, key: str) -> None:
    # Given an existing object and a multipart upload to the same key
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"first")
    up = cos.s3.create_multipart_upload(Bucket=PLAIN, Key=key)["UploadId"]
    etag = cos.s3.upload_part(Bucket=PLAIN, Key=key, UploadId=up, PartNumber=1, Body=b"second")["ETag"]
    # When the upload is completed with x-cos-forbid-overwrite
    status, code = error_of(lambda: cos.client(**FORBID).complete_multipart_upload(
        Bucket=PLAIN, Key=key, UploadId=up, MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]}))
    # Then it is refused and the object is unchanged
    assert (status, code) == (409, "FileAlreadyExists")
    assert cos.body(PLAIN, key) == b"first"


@pytest.mark.parametrize("bucket", [ENABLED, SUSPENDED])
def test_forbid_overwrite_has_no_effect_on_versioned_buckets(cos: Store, key: str, bucket: str) -> None:
    # Given a bucket whose versioning is Enabled, or Suspended after being enabled
    forbid = cos.client(**FORBID)
    forbid.put_object(Bucket=bucket, Key=key, Body=b"first")
    # When the key is written again with x-cos-forbid-overwrite
    forbid.put_object(Bucket=bucket, Key=key, Body=b"second")
    # Then the header has no effect: the write succeeds
    assert cos.body(bucket, key) == b"second"


def test_forbid_overwrite_lets_exactly_one_of_concurrent_creates_win(cos: Store, key: str) -> None:
    # Given 16 clients creating the same key at once with x-cos-forbid-overwrite
    forbid = cos.client(**FORBID)
    start = threading.Barrier(16)

    def create(i: int) -> str:
        start.wait()
        try:
            forbid.put_object(Bucket=PLAIN, Key=key, Body=f"writer {i}".encode())
        except ClientError as e:
            return e.response["Error"]["Code"]
        return "created"

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(create, range(16)))
    # Then exactly one create wins, and every other gets FileAlreadyExists
    assert outcomes.count("created") == 1
    assert outcomes.count("FileAlreadyExists") == 15


# --- If-None-Match: * on PUT (unverified on COS: every setting) ------------------------------------

def test_if_none_match_honoured_answers_412(cos: Store, key: str, settings: Callable[..., None]) -> None:
    settings({"if_none_match": "honour"})
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"first", IfNoneMatch="*")
    assert error_of(lambda: cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"second", IfNoneMatch="*")) == (
        412, "PreconditionFailed")
    assert cos.body(PLAIN, key) == b"first"


def test_if_none_match_ignored_overwrites(cos: Store, key: str, settings: Callable[..., None]) -> None:
    settings({"if_none_match": "ignore"})
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"first", IfNoneMatch="*")
    # The client relied on exclusivity and silently lost it
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"second", IfNoneMatch="*")
    assert cos.body(PLAIN, key) == b"second"


def test_if_none_match_rejected_answers_400_and_writes_nothing(cos: Store, key: str,
                                                               settings: Callable[..., None]) -> None:
    settings({"if_none_match": "reject"})
    status, code = error_of(lambda: cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"first", IfNoneMatch="*"))
    assert (status, code) == (400, "InvalidArgument")
    assert cos.absent(PLAIN, key)


def test_if_none_match_defaults_to_ignore(cos: Store) -> None:
    assert ObjectStore(REGION, lambda _e: None).settings()["if_none_match"] == "ignore"


# --- If-Match on DELETE (unverified on COS) ------------------------------------------------------

def test_delete_if_match_honoured_deletes_only_the_named_content(cos: Store, key: str,
                                                                 settings: Callable[..., None]) -> None:
    settings({"delete_if_match": "honour"})
    old = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"old")["ETag"]
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"new")
    assert error_of(lambda: cos.s3.delete_object(Bucket=PLAIN, Key=key, IfMatch=old)) == (412, "PreconditionFailed")
    assert cos.body(PLAIN, key) == b"new"
    current = cos.s3.head_object(Bucket=PLAIN, Key=key)["ETag"]
    cos.s3.delete_object(Bucket=PLAIN, Key=key, IfMatch=current)
    assert cos.absent(PLAIN, key)
    assert error_of(lambda: cos.s3.delete_object(Bucket=PLAIN, Key=key, IfMatch=current)) == (404, "NoSuchKey")


def test_delete_if_match_ignored_deletes_whatever_the_key_holds(cos: Store, key: str,
                                                                settings: Callable[..., None]) -> None:
    settings({"delete_if_match": "ignore"})
    old = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"old")["ETag"]
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"new")
    # The client named other content and silently lost the new one
    cos.s3.delete_object(Bucket=PLAIN, Key=key, IfMatch=old)
    assert cos.absent(PLAIN, key)


def test_delete_if_match_rejected_answers_400_and_deletes_nothing(cos: Store, key: str,
                                                                  settings: Callable[..., None]) -> None:
    settings({"delete_if_match": "reject"})
    etag = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"kept")["ETag"]
    assert error_of(lambda: cos.s3.delete_object(Bucket=PLAIN, Key=key, IfMatch=etag)) == (400, "InvalidArgument")
    assert cos.body(PLAIN, key) == b"kept"
    cos.s3.delete_object(Bucket=PLAIN, Key=key)  # without the header a DELETE works as ever
    assert cos.absent(PLAIN, key)


def test_delete_if_match_defaults_to_ignore(cos: Store) -> None:
    assert ObjectStore(REGION, lambda _e: None).settings()["delete_if_match"] == "ignore"


# --- copy preconditions --------------------------------------------------------------------------

def _stale_copy(cos: Store, key: str, **kw: Any) -> tuple[str, str]:
    """An object overwritten after its ETag was read: (the stale ETag, the destination key)."""
    stale = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"inspected")["ETag"]
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"newer content")
    return stale, "quarantine/" + key


def test_copy_with_a_stale_s3_if_match_answers_412_and_writes_nothing(cos: Store, key: str) -> None:
    # Given the source changed since its ETag was read
    stale, dest = _stale_copy(cos, key)
    # When it is copied on condition of the old ETag (boto3's CopySourceIfMatch)
    status, code = error_of(lambda: cos.s3.copy_object(Bucket=PLAIN, Key=dest, CopySource={"Bucket": PLAIN, "Key": key},
                                                       CopySourceIfMatch=stale))
    # Then COS answers 412 and nothing is written
    assert (status, code) == (412, "PreconditionFailed")
    assert cos.absent(PLAIN, dest)


def test_copy_with_a_stale_cos_if_match_answers_412_and_writes_nothing(cos: Store, key: str) -> None:
    stale, dest = _stale_copy(cos, key)
    native = cos.client(**{"x-cos-copy-source-If-Match": stale})
    status, code = error_of(lambda: native.copy_object(Bucket=PLAIN, Key=dest,
                                                       CopySource={"Bucket": PLAIN, "Key": key}))
    assert (status, code) == (412, "PreconditionFailed")
    assert cos.absent(PLAIN, dest)


def test_copy_with_a_current_if_match_copies(cos: Store, key: str) -> None:
    etag = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"inspected")["ETag"]
    cos.s3.copy_object(Bucket=PLAIN, Key="quarantine/" + key, CopySource={"Bucket": PLAIN, "Key": key},
                       CopySourceIfMatch=etag)
    cos.client(**{"x-cos-copy-source-If-Match": etag.strip('"')}).copy_object(
        Bucket=PLAIN, Key="copy/" + key, CopySource={"Bucket": PLAIN, "Key": key})
    assert cos.body(PLAIN, "quarantine/" + key) == cos.body(PLAIN, "copy/" + key) == b"inspected"


def test_copy_if_none_match_on_the_current_etag_answers_412(cos: Store, key: str) -> None:
    etag = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"x")["ETag"]
    for client, kw in ((cos.s3, {"CopySourceIfNoneMatch": etag}),
                       (cos.client(**{"x-cos-copy-source-If-None-Match": etag}), {})):
        status, code = error_of(lambda c=client, k=kw: c.copy_object(
            Bucket=PLAIN, Key="dest/" + key, CopySource={"Bucket": PLAIN, "Key": key}, **k))
        assert (status, code) == (412, "PreconditionFailed")
    assert cos.absent(PLAIN, "dest/" + key)


def test_s3_copy_conditions_ignored_copies_changed_content(cos: Store, key: str,
                                                           settings: Callable[..., None]) -> None:
    # Given COS ignores the S3 spelling of the copy condition (unverified)
    settings({"s3_copy_conditions": "ignore"})
    stale, dest = _stale_copy(cos, key)
    # Then a copy guarded only by it copies the changed content...
    cos.s3.copy_object(Bucket=PLAIN, Key=dest, CopySource={"Bucket": PLAIN, "Key": key}, CopySourceIfMatch=stale)
    assert cos.body(PLAIN, dest) == b"newer content"
    # ...while COS's own header still guards it
    native = cos.client(**{"x-cos-copy-source-If-Match": stale})
    assert error_of(lambda: native.copy_object(Bucket=PLAIN, Key="other/" + key,
                                               CopySource={"Bucket": PLAIN, "Key": key}))[0] == 412


def test_copy_condition_and_copy_are_atomic_against_an_overwrite(cos: Store, key: str) -> None:
    # Given a source overwritten over and over while guarded copies of its first content run
    first = cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"A" * 100)["ETag"]
    stop = threading.Event()

    def overwrite() -> None:
        i = 0
        while not stop.is_set():
            cos.s3.put_object(Bucket=PLAIN, Key=key, Body=(b"A" if i % 2 else b"B") * 100)
            i += 1

    t = threading.Thread(target=overwrite)
    t.start()
    try:
        for n in range(60):
            dest = f"atomic/{n}/{key}"
            try:
                cos.s3.copy_object(Bucket=PLAIN, Key=dest, CopySource={"Bucket": PLAIN, "Key": key},
                                   CopySourceIfMatch=first)
            except ClientError:
                continue
            # Then every copy that succeeded holds exactly the content the condition named
            assert cos.body(PLAIN, dest) == b"A" * 100
    finally:
        stop.set()
        t.join()


# --- the single-copy limit -----------------------------------------------------------------------

def test_copy_above_the_limit_answers_400_and_part_copy_still_works(cos: Store, key: str,
                                                                    settings: Callable[..., None]) -> None:
    settings({"copy_limit_bytes": 1000})
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"v" * 1001)
    cos.s3.put_object(Bucket=PLAIN, Key=key + ".small", Body=b"s" * 1000)
    src = {"Bucket": PLAIN, "Key": key}
    # A PUT-copy of a source above the limit is refused, and nothing is written
    assert error_of(lambda: cos.s3.copy_object(Bucket=PLAIN, Key="big/" + key, CopySource=src)) == (
        400, "EntityTooLarge")
    assert cos.absent(PLAIN, "big/" + key)
    # A source at the limit copies
    cos.s3.copy_object(Bucket=PLAIN, Key="small/" + key, CopySource={"Bucket": PLAIN, "Key": key + ".small"})
    # Upload Part - Copy is the way around the limit
    up = cos.s3.create_multipart_upload(Bucket=PLAIN, Key="big/" + key)["UploadId"]
    part = cos.s3.upload_part_copy(Bucket=PLAIN, Key="big/" + key, UploadId=up, PartNumber=1, CopySource=src)
    cos.s3.complete_multipart_upload(Bucket=PLAIN, Key="big/" + key, UploadId=up, MultipartUpload={
        "Parts": [{"ETag": part["CopyPartResult"]["ETag"], "PartNumber": 1}]})
    assert cos.body(PLAIN, "big/" + key) == b"v" * 1001


def test_part_copy_honours_the_copy_condition(cos: Store, key: str) -> None:
    stale, dest = _stale_copy(cos, key)
    up = cos.s3.create_multipart_upload(Bucket=PLAIN, Key=dest)["UploadId"]
    assert error_of(lambda: cos.s3.upload_part_copy(Bucket=PLAIN, Key=dest, UploadId=up, PartNumber=1,
                                                    CopySource={"Bucket": PLAIN, "Key": key},
                                                    CopySourceIfMatch=stale))[0] == 412


def test_the_copy_limit_defaults_to_5_gb(cos: Store) -> None:
    assert ObjectStore(REGION, lambda _e: None).settings()["copy_limit_bytes"] == 5 * 1024 ** 3


# --- versioned buckets ---------------------------------------------------------------------------

def test_versions_are_listed_read_and_deleted_by_version_id(cos: Store, key: str) -> None:
    # Given two versions of one key on a versioned bucket
    v1 = cos.s3.put_object(Bucket=ENABLED, Key=key, Body=b"one")["VersionId"]
    v2 = cos.s3.put_object(Bucket=ENABLED, Key=key, Body=b"two")["VersionId"]
    assert v1 and v2 and v1 != v2
    listed = cos.s3.list_object_versions(Bucket=ENABLED, Prefix=key)
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [(v2, True), (v1, False)]
    # Every version is readable by its id
    assert cos.body(ENABLED, key, VersionId=v1) == b"one"
    assert cos.s3.head_object(Bucket=ENABLED, Key=key, VersionId=v1)["VersionId"] == v1
    # A delete without a version id only adds a delete marker: the bytes stay readable by version id
    marker = cos.s3.delete_object(Bucket=ENABLED, Key=key)
    assert marker["DeleteMarker"] is True
    assert cos.absent(ENABLED, key)
    assert cos.body(ENABLED, key, VersionId=v2) == b"two"
    # A delete by version id removes exactly that version
    cos.s3.delete_object(Bucket=ENABLED, Key=key, VersionId=v2)
    assert error_of(lambda: cos.s3.get_object(Bucket=ENABLED, Key=key, VersionId=v2))[0] in (400, 404)
    remaining = cos.s3.list_object_versions(Bucket=ENABLED, Prefix=key)
    assert [v["VersionId"] for v in remaining["Versions"]] == [v1]
    assert [m["VersionId"] for m in remaining["DeleteMarkers"]] == [marker["VersionId"]]


def test_suspended_buckets_write_the_null_version(cos: Store, key: str) -> None:
    cos.s3.put_object(Bucket=SUSPENDED, Key=key, Body=b"one")
    cos.s3.put_object(Bucket=SUSPENDED, Key=key, Body=b"two")
    versions = cos.s3.list_object_versions(Bucket=SUSPENDED, Prefix=key)["Versions"]
    assert [v["VersionId"] for v in versions] == ["null"]
    assert cos.s3.get_bucket_versioning(Bucket=SUSPENDED)["Status"] == "Suspended"


def test_versioning_cannot_be_turned_off_or_set_to_nonsense(cos: Store) -> None:
    with pytest.raises(ValueError, match="Enabled, Suspended"):
        cos.store.set_versioning(PLAIN, "Off")
    assert cos.store.versioning(PLAIN) is None


# --- events, in both forms -----------------------------------------------------------------------

DOCUMENTED_FIELDS = {
    "Records[].cos": {"cosSchemaVersion", "cosObject", "cosBucket", "cosNotificationId"},
    "Records[].cos.cosObject": {"url", "meta", "vid", "key", "size"},
    "Records[].cos.cosBucket": {"region", "name", "appid"},
    "Records[].event": {"eventName", "eventVersion", "eventTime", "eventSource", "requestParameters"},
    "Records[].event.requestParameters": {"requestSourceIP", "requestHeaders"},
}


def _event_for(cos: Store, bucket: str, key: str) -> dict[str, Any]:
    deadline = time.time() + 5
    while time.time() < deadline:
        for e in reversed(cos.events):
            rec = e["Records"][0]
            if rec["cos"]["cosObject"]["key"].endswith("/" + key) and rec["cos"]["cosBucket"]["name"] == \
                    bucket.rsplit("-", 1)[0]:
                return rec
        time.sleep(0.05)
    raise AssertionError(f"no event for {key}")


@pytest.mark.parametrize("bucket", [PLAIN, ENABLED])
def test_documented_events_carry_exactly_the_documented_fields(cos: Store, key: str, bucket: str,
                                                               settings: Callable[..., None]) -> None:
    settings({"event_form": "documented"})
    cos.s3.put_object(Bucket=bucket, Key=key, Body=b"x", Metadata={"owner": "alice"})
    rec = _event_for(cos, bucket, key)
    assert set(rec) == {"cos", "event"}
    assert set(rec["cos"]) == DOCUMENTED_FIELDS["Records[].cos"]
    assert set(rec["cos"]["cosObject"]) == DOCUMENTED_FIELDS["Records[].cos.cosObject"]
    assert set(rec["cos"]["cosBucket"]) == DOCUMENTED_FIELDS["Records[].cos.cosBucket"]
    assert set(rec["event"]) == DOCUMENTED_FIELDS["Records[].event"]
    assert set(rec["event"]["requestParameters"]) == DOCUMENTED_FIELDS["Records[].event.requestParameters"]
    assert set(rec["cos"]["cosObject"]["meta"]) == {"x-cos-request-id", "Content-Type", "x-cos-meta-owner"}
    assert rec["cos"]["cosObject"]["vid"] == ""
    assert rec["cos"]["cosBucket"]["region"] == "gz"


@pytest.mark.parametrize("bucket", [PLAIN, ENABLED, SUSPENDED])
def test_logged_events_add_etag_storage_class_vid_regions_and_reqid(cos: Store, key: str, bucket: str,
                                                                    settings: Callable[..., None]) -> None:
    settings({"event_form": "logged"})
    put = cos.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    rec = _event_for(cos, bucket, key)
    obj, bkt = rec["cos"]["cosObject"], rec["cos"]["cosBucket"]
    assert obj["meta"]["ETag"] == put["ETag"] and put["ETag"].startswith('"')
    assert obj["meta"]["x-cos-storage-class"] == "STANDARD"
    assert obj["vid"] == {PLAIN: "", ENABLED: put.get("VersionId"), SUSPENDED: "null"}[bucket]
    assert (bkt["region"], bkt["s3Region"], bkt["cosRegion"]) == ("gz", REGION, REGION)
    assert isinstance(rec["event"]["reqid"], int)


def test_copies_and_completed_uploads_emit_events_and_refused_writes_do_not(cos: Store, key: str) -> None:
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"x")
    cos.s3.copy_object(Bucket=PLAIN, Key="copied/" + key, CopySource={"Bucket": PLAIN, "Key": key})
    assert _event_for(cos, PLAIN, "copied/" + key)["event"]["eventName"] == "cos:ObjectCreated:Copy"
    before = len(cos.events)
    error_of(lambda: cos.s3.copy_object(Bucket=PLAIN, Key="refused/" + key, CopySource={"Bucket": PLAIN, "Key": key},
                                        CopySourceIfMatch='"0000"'))
    time.sleep(0.2)
    assert len(cos.events) == before


# --- faults --------------------------------------------------------------------------------------

def test_state_write_bursts_fail_writes_under_the_state_prefix_only(cos: Store, settings: Callable[..., None]) -> None:
    settings({"state_fail_rate": 1.0, "state_fail_burst": 2})
    state_key = f".ciflow/pending/{uuid.uuid4().hex}.json"
    assert error_of(lambda: cos.s3.put_object(Bucket=PLAIN, Key=state_key, Body=b"{}"))[0] in (500, 503)
    cos.s3.put_object(Bucket=PLAIN, Key=f"uploads/{uuid.uuid4().hex}", Body=b"user data is not affected")
    assert cos.s3.list_objects_v2(Bucket=PLAIN, Prefix=".ciflow/")["KeyCount"] >= 0  # reads are never failed
    settings({"state_fail_rate": 0.0})
    # The burst goes on for its length (2 answers) even once no new burst may start
    assert error_of(lambda: cos.s3.put_object(Bucket=PLAIN, Key=state_key, Body=b"{}"))[0] in (500, 503)
    cos.s3.put_object(Bucket=PLAIN, Key=state_key, Body=b"{}")
    assert cos.body(PLAIN, state_key) == b"{}"


def test_a_stalled_tag_write_lands_late_on_whatever_the_key_holds(cos: Store, key: str,
                                                                 settings: Callable[..., None]) -> None:
    # Given tag writes held for a second
    settings({"tagging_stall_seconds": 1.0})
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"old")
    done = threading.Event()

    def tag() -> None:
        cos.s3.put_object_tagging(Bucket=PLAIN, Key=key, Tagging={"TagSet": [{"Key": "ci-status", "Value": "X"}]})
        done.set()

    threading.Thread(target=tag).start()
    # When the key is overwritten while the tag write is held (the store says which writes it holds)
    deadline = time.time() + 5
    while not any(s["key"] == key for s in cos.store.stalled()) and time.time() < deadline:
        time.sleep(0.02)
    assert any(s["key"] == key and s["kind"] == "tagging" for s in cos.store.stalled())
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"new")
    assert done.wait(5)
    # Then the late tag lands on the new content
    assert cos.body(PLAIN, key) == b"new"
    assert cos.s3.get_object_tagging(Bucket=PLAIN, Key=key)["TagSet"] == [{"Key": "ci-status", "Value": "X"}]
    assert cos.store.stalled() == []


def test_state_stalls_hold_state_writes(cos: Store, settings: Callable[..., None]) -> None:
    settings({"state_stall_seconds": 0.5})
    started = time.time()
    cos.s3.put_object(Bucket=PLAIN, Key=f".ciflow/jobs/{uuid.uuid4().hex}.json", Body=b"{}")
    assert time.time() - started >= 0.5
    started = time.time()
    cos.s3.put_object(Bucket=PLAIN, Key=f"uploads/{uuid.uuid4().hex}", Body=b"x")
    assert time.time() - started < 0.5


@pytest.mark.parametrize("values, message", [
    ({"if_none_match": "sometimes"}, "if_none_match: expected one of honour, ignore, reject"),
    ({"event_form": "fancy"}, "event_form: expected one of documented, logged"),
    ({"copy_limit_bytes": -1}, "copy_limit_bytes"),
    ({"copy_limit_bytes": 1.5}, "copy_limit_bytes: expected a whole number"),
    ({"state_fail_rate": 2}, "state_fail_rate: expected a share between 0 and 1"),
    ({"tagging_stall_seconds": "soon"}, "tagging_stall_seconds: expected a number"),
    ({"nonsense": 1}, "unknown object store setting"),
])
def test_bad_settings_are_refused_and_change_nothing(cos: Store, values: dict[str, Any], message: str) -> None:
    before = cos.store.settings()
    with pytest.raises(ValueError, match=message):
        cos.store.configure({"event_form": "logged", **values})
    assert cos.store.settings() == before


def test_a_hold_delays_only_the_next_matching_tag_write_of_its_key(cos: Store, key: str) -> None:
    # Given a hold on the next tag write of one key that sets a verdict
    cos.s3.put_object(Bucket=PLAIN, Key=key, Body=b"x")
    cos.store.hold_tag_write(PLAIN, key, 1.0, match="<Value>(CLEAN|SUSPICIOUS)</Value>")

    def tag(value: str) -> float:
        started = time.time()
        cos.s3.put_object_tagging(Bucket=PLAIN, Key=key, Tagging={"TagSet": [{"Key": "ci-status", "Value": value}]})
        return time.time() - started

    # Then a write that does not match passes at once, the matching one is held, and the hold is used up
    assert tag("PENDING") < 0.5
    assert cos.store.holds() != []
    assert tag("CLEAN") >= 1.0
    assert cos.store.holds() == []
    assert tag("SUSPICIOUS") < 0.5


def test_holds_refuse_nonsense(cos: Store) -> None:
    with pytest.raises(ValueError, match="seconds"):
        cos.store.hold_tag_write(PLAIN, "k", -1)
    with pytest.raises(ValueError, match="regular expression"):
        cos.store.hold_tag_write(PLAIN, "k", 1, match="(")
