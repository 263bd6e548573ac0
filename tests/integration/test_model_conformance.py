"""The in-memory models the state machine runs on (tests/model/) answer like the local stack's object store
and CI emulator, on the same operations, so the two cannot drift apart.

Each scenario runs once through the real `ciflow.storage.Storage` adapter (and its boto3 client, as the
functions build it) over the object store, and once over the COS model; the transcripts of what each
call returned must be equal. Version ids are compared by the order in which they first appear, times by
what the library uses them for. CI's side runs the real `CiJobs` port (cos-python-sdk-v5) against the
emulator and the CI model's port.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Iterator, Optional

import pytest
from botocore.exceptions import ClientError

from ciflow.ci import CiJobs
from ciflow.errors import PermanentError
from ciflow.settings import Credentials
from ciflow.storage import Storage, _build_client
from devstack.objectstore import ObjectStore
from devstack.samples import _png, mpegts_stream
from tests.conftest import Dev
from tests.model.ci import CiModel
from tests.model.cos import ENABLED, NEVER, SUSPENDED, CosModel

pytestmark = pytest.mark.integration
REGION = "ap-guangzhou"
# moto's state is per process: these bucket names are used by no other test module.
BUCKETS = {NEVER: "confplain-1250000000", ENABLED: "confenabled-1250000000", SUSPENDED: "confsuspended-1250000000"}


@pytest.fixture(scope="module")
def store() -> Iterator[ObjectStore]:
    s = ObjectStore(REGION, lambda event: None)
    s.start()
    admin = s.client()
    for kind, bucket in BUCKETS.items():
        admin.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        if kind != NEVER:
            s.set_versioning(bucket, kind, admin)
    yield s
    s.stop()


def model_side() -> tuple[Storage, Any]:
    cos = CosModel()
    cos.clock.now = time.time()
    for kind, bucket in BUCKETS.items():
        cos.create_bucket(bucket, kind)
    client = cos.client()
    return Storage(client=client), client


def real_side(store: ObjectStore) -> tuple[Storage, Any]:
    client = _build_client(Credentials("devstack", "devstack", None), store.endpoint, REGION, 10.0)
    return Storage(client=client), client


class Transcript:
    """What each call returned, with version ids replaced by the order they first appeared in."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, Any]] = []
        self.vids: dict[str, str] = {}

    def vid(self, v: Optional[str]) -> str:
        # "null" (a Suspended bucket's version) and no version id at all mean the same to the library
        # (`is_version`); whether COS names the null version in a PUT's answer is not documented.
        if not v or v == "null":
            return "-"
        return self.vids.setdefault(v, f"v{len(self.vids) + 1}")

    def note(self, what: str, value: Any) -> Any:
        self.lines.append((what, value))
        return value


def outcome(call: Callable[[], Any]) -> Any:
    """A call's result, or its error as (code, HTTP status)."""
    try:
        return call()
    except ClientError as exc:
        r = exc.response
        return ("error", r.get("Error", {}).get("Code"), r.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    except PermanentError as exc:
        return ("permanent", exc.code)


def objects_scenario(storage: Storage, raw: Any, kind: str, prefix: str) -> list[tuple[str, Any]]:
    b = BUCKETS[kind]
    t = Transcript()
    k1, k2, k3, dst = (f"{prefix}{name}" for name in ("one.png", "claim.json", "three.png", "copy/one.png"))
    put = raw.put_object(Bucket=b, Key=k1, Body=b"one", ContentType="image/png")
    etag = t.note("PUT ETag", put["ETag"].strip('"'))
    t.note("PUT version", t.vid(put.get("VersionId")))
    info = storage.head(b, k1)
    t.note("HEAD", (info.etag, info.size, info.content_type, t.vid(info.version_id)))
    t.note("ETag is the MD5", etag == __import__("hashlib").md5(b"one").hexdigest())   # noqa: S324
    # The conditional create: x-cos-forbid-overwrite (409) on unversioned buckets, no effect on versioned ones
    t.note("create", storage.create_if_absent(b, k2, b"first"))
    t.note("create again", storage.create_if_absent(b, k2, b"second"))
    t.note("record kept", storage.get(b, k2))
    t.note("claim versions", [(t.vid(v), e) for v, e in storage.versions(b, k2)] if kind != NEVER else None)
    t.note("raw forbid-overwrite", outcome(lambda: raw.put_object(Bucket=b, Key=k2, Body=b"third", IfNoneMatch="*")
                                           and "written"))
    # Tags: the whole set is replaced; an empty set deletes them; a missing object says so
    t.note("tags", (storage.put_tags(b, k1, {"a": "1", "b": "2"}), storage.get_tags(b, k1)))
    t.note("tags replaced", (storage.put_tags(b, k1, {"c": "3"}), storage.get_tags(b, k1)))
    t.note("tags emptied", (storage.put_tags(b, k1, {}), storage.get_tags(b, k1)))
    t.note("tags of a missing object", (storage.put_tags(b, f"{prefix}none", {"a": "1"}),
                                        storage.get_tags(b, f"{prefix}none")))
    t.note("eleven tags", outcome(lambda: raw.put_object_tagging(
        Bucket=b, Key=k1, Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}))[2])
    # Copy: a precondition that fails is 412 and writes nothing; the copy carries the given tags and the ETag
    t.note("copy if-match wrong", storage.copy(b, k1, dst, if_match="0" * 32))
    t.note("nothing copied", storage.head(b, dst))
    t.note("copy", storage.copy(b, k1, dst, if_match=etag, version_id=info.version_id, tags={"x": "1"}))
    t.note("copy's ETag and tags", (storage.head(b, dst).etag, storage.get_tags(b, dst)))
    t.note("copy of a missing source", storage.copy(b, f"{prefix}none", dst))
    # Versions: newest first; a plain delete hides (versioned) or removes; delete_content removes the bytes
    a = raw.put_object(Bucket=b, Key=k3, Body=b"a")
    raw.put_object(Bucket=b, Key=k3, Body=b"b")
    t.note("versions", [(t.vid(v), e) for v, e in storage.versions(b, k3)])
    storage.delete(b, k3)
    t.note("after a delete", (storage.head(b, k3), [(t.vid(v), e) for v, e in storage.versions(b, k3)]))
    removed = storage.delete_content(b, k3, a["ETag"].strip('"'), str(a.get("VersionId") or ""))
    t.note("delete_content", (removed, [(t.vid(v), e) for v, e in storage.versions(b, k3)]))
    # COS's clock: a record's age and a listing's Date
    record = storage.get_record(b, k1)
    t.note("record", (record.body, 0 <= record.age < 30, record.server_now > 0))
    objects, token, now = storage.list_page(b, prefix, None, 2)
    t.note("listing", ([(o.key[len(prefix):], o.etag) for o in objects], token is not None, now > 0))
    return t.lines


@pytest.mark.parametrize("kind", [NEVER, ENABLED, SUSPENDED])
def test_the_cos_model_answers_like_the_object_store(store: ObjectStore, kind: str) -> None:
    prefix = f"conformance/{uuid.uuid4().hex[:8]}/"
    real = objects_scenario(*real_side(store), kind, prefix)
    model = objects_scenario(*model_side(), kind, prefix)
    for (what, got), (_, expected) in zip(model, real):
        assert got == expected, f"{kind}, {what}: the model says {got!r}, the object store {expected!r}"
    assert len(model) == len(real)


# --- CI ---------------------------------------------------------------------------------------------

def ci_port(dev: Dev) -> CiJobs:
    from urllib.parse import urlsplit

    from qcloud_cos import CosConfig, CosS3Client

    ep = urlsplit(dev.env["CIFLOW_CI_ENDPOINT"])
    cfg = CosConfig(Region=dev.env["CIFLOW_REGION"], SecretId=dev.env["TENCENTCLOUD_SECRETID"],
                    SecretKey=dev.env["TENCENTCLOUD_SECRETKEY"], Token=dev.env.get("TENCENTCLOUD_SESSIONTOKEN"),
                    Scheme="http", IP=ep.hostname, Port=ep.port)
    return CiJobs(client=CosS3Client(cfg, retry=0), sleep=lambda s: None)


def job(key: str, user_data: str) -> dict[str, Any]:
    return {"Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0", "UserData": user_data},
            "CallBack": "no"}


def ci_scenario(ci: Any, bucket: str, other_bucket: str, prefix: str, finish: Callable[[str], dict[str, Any]],
                samples: dict[str, bytes]) -> list[tuple[str, Any]]:
    t = Transcript()
    ids = {}
    for name in samples:
        d = ci.create(bucket, job(f"{prefix}{name}", f"conf:{name}"))
        ids[name] = d["JobId"]
        t.note(f"created {name}", (d["State"], d["Tag"], d["Input"]["BucketId"] == bucket,
                                   d["Input"]["Object"] == f"{prefix}{name}", d["Operation"]["UserData"]))
    t.note("unknown job", ci.get(bucket, "c" + "0" * 32))
    t.note("another bucket's view", ci.get(other_bucket, ids["clean.png"]))
    found = ci.find(bucket, "ImageInspect", f"{prefix}clean.png", "conf:clean.png")
    t.note("found by UserData", found is not None and found["JobId"] == ids["clean.png"])
    t.note("other UserData", ci.find(bucket, "ImageInspect", f"{prefix}clean.png", "conf:other"))
    t.note("get_many", sorted(ci.get_many(bucket, [*ids.values(), "c" + "1" * 32])) == sorted(ids.values()))
    for name, job_id in ids.items():
        d = finish(job_id)
        result = d["Operation"].get("ImageInspectResult") or {}
        pr = result.get("ProcessResult") or {}
        t.note(f"finished {name}", (d["State"], d.get("Code"), result.get("State"), pr.get("Suspicious"),
                                    sorted(pr), int(pr["PicSize"]) == len(samples[name]) if pr else None))
    return t.lines


def test_the_ci_model_answers_like_the_ci_emulator(dev: Dev) -> None:
    prefix = f"conformance/{uuid.uuid4().hex[:8]}/"
    clean = _png(seed=3)
    real_samples = {"clean.png": clean, "suspicious.png": _png(seed=4) + mpegts_stream(), "missing.png": b""}
    for name, body in real_samples.items():
        if body:
            dev.put(f"{prefix}{name}", body)
    port = ci_port(dev)

    def finished(job_id: str) -> dict[str, Any]:
        return dev.wait_for(lambda: (d := port.get(dev.bucket, job_id)) and d["State"] in ("Success", "Failed") and d,
                            what=f"job {job_id} finished")

    real = ci_scenario(port, dev.bucket, dev.buckets[1], prefix, finished, real_samples)

    cos = CosModel()
    for b in (dev.bucket, dev.buckets[1]):
        cos.create_bucket(b)
    model_samples = {"clean.png": clean, "suspicious.png": b"EVIL" + clean[4:] + mpegts_stream(), "missing.png": b""}
    model_samples["suspicious.png"] = model_samples["suspicious.png"][:len(real_samples["suspicious.png"])]
    for name, body in model_samples.items():
        if body:
            cos.put(dev.bucket, f"{prefix}{name}", body)
    ci = CiModel(cos, REGION)
    model = ci_scenario(ci, dev.bucket, dev.buckets[1], prefix, lambda job_id: ci.finish(job_id).detail, model_samples)
    for (what, got), (_, expected) in zip(model, real):
        assert got == expected, f"{what}: the model says {got!r}, the CI emulator {expected!r}"
    assert len(model) == len(real)
