"""Each chaos audit finds what it is for: an extra copy, suspicious bytes readable by VersionId, a leftover
pending marker, a ci-job-id naming a job that inspected other content, a state that changes after settling,
and a callback that was refused. Objects are placed by hand outside the watched prefix, so the functions
leave them alone."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from typing import Any, Iterator

import pytest

from devstack.chaos import STACK_ARGS, Chaos, Upload
from devstack.chaos_limits import LIMIT_WINDOW, concurrent_upload_deleted
from devstack.process import StackProcess
from devstack.samples import _png, zip_archive
from tests.conftest import Dev

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chaos() -> Iterator[Chaos]:
    # Reconcile off: nothing may tidy up what the tests plant.
    args = [a for a in STACK_ARGS]
    args[args.index("--reconcile-every") + 1] = "0"
    with StackProcess(args) as env:
        c = Chaos(env, per_scenario=1, timeout=30)
        c.marker_grace = 1.0
        yield c


@pytest.fixture
def prefix() -> str:
    return f"audit/{uuid.uuid4().hex[:8]}/"


def tagged(chaos: Chaos, bucket: str, key: str, body: bytes, **tags: str) -> str:
    etag = chaos.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
    chaos.s3.put_object_tagging(Bucket=bucket, Key=key,
                                Tagging={"TagSet": [{"Key": k.replace("_", "-"), "Value": v} for k, v in tags.items()]})
    return etag


def clean_upload(chaos: Chaos, key: str, bucket: str = "") -> Upload:
    u = Upload(key, _png(seed=3), suspicious=False, bucket=bucket or chaos.bucket)
    u.write(chaos.s3, u.body, False)
    chaos.s3.put_object_tagging(Bucket=u.bucket, Key=key, Tagging={"TagSet": [{"Key": "ci-status", "Value": "CLEAN"}]})
    return u


def test_an_extra_copy_is_found(chaos: Chaos, prefix: str) -> None:
    u = clean_upload(chaos, prefix + "a.png")
    assert chaos.extra_copies(prefix, [u]) == []
    chaos.s3.copy_object(Bucket=u.bucket, Key="quarantine/quarantine/" + u.key,
                         CopySource={"Bucket": u.bucket, "Key": u.key})
    assert chaos.extra_copies(prefix, [u]) == [(u.key, f"an extra copy at quarantine/quarantine/{u.key}")]


def test_suspicious_bytes_left_readable_by_version_id_are_found(chaos: Chaos, prefix: str) -> None:
    bucket = chaos.bucket_named("versioned")
    u = Upload(prefix + "s.png", b"", suspicious=True, bucket=bucket)
    u.write(chaos.s3, _png(seed=4) + zip_archive(), True)
    # A quarantine that only deleted the key: a delete marker, the bytes still there by VersionId
    chaos.s3.copy_object(Bucket=bucket, Key="quarantine/" + u.key, CopySource={"Bucket": bucket, "Key": u.key})
    chaos.s3.delete_object(Bucket=bucket, Key=u.key)
    found = chaos.extra_copies(prefix, [u])
    assert found == [(u.key, "suspicious bytes still readable by VersionId under the original key (1 version(s))")]
    # Once the version itself is deleted, nothing is found
    for v in chaos.s3.list_object_versions(Bucket=bucket, Prefix=u.key)["Versions"]:
        chaos.s3.delete_object(Bucket=bucket, Key=u.key, VersionId=v["VersionId"])
    assert chaos.extra_copies(prefix, [u]) == []


def test_a_leftover_pending_marker_is_found(chaos: Chaos, prefix: str) -> None:
    u = clean_upload(chaos, prefix + "p.png")
    assert chaos.leftover_markers([u]) == []
    digest = hashlib.sha256(u.key.encode()).hexdigest()[:32]
    marker = f"{chaos.state_prefix}pending/images/{digest}/{u.etag}.json"
    chaos.s3.put_object(Bucket=u.bucket, Key=marker, Body=json.dumps({"key": u.key, "etag": u.etag}).encode())
    try:
        assert chaos.leftover_markers([u]) == [(u.key, f"pending marker left behind ({marker})")]
        # Also when the marker's path does not name the key's hash, by the key inside it
        chaos.s3.delete_object(Bucket=u.bucket, Key=marker)
        other = f"{chaos.state_prefix}pending/images/elsewhere/{u.etag}.json"
        chaos.s3.put_object(Bucket=u.bucket, Key=other, Body=json.dumps({"key": u.key}).encode())
        assert chaos.leftover_markers([u]) == [(u.key, f"pending marker left behind ({other})")]
        chaos.s3.delete_object(Bucket=u.bucket, Key=other)
    finally:
        chaos.s3.delete_object(Bucket=u.bucket, Key=marker)


def test_a_job_id_naming_a_job_that_inspected_other_content_is_found(chaos: Chaos, prefix: str) -> None:
    dev = Dev(chaos.env)
    # Given a job that inspected one content (a real upload under the watched prefix)
    watched = f"uploads/{prefix}inspected.png"
    dev.put(watched, _png(seed=5))
    job = dev.wait_status(watched, "CLEAN")["ci-job-id"]
    assert chaos._dev("inspections")["jobs"][job]["etags"] == [dev.s3.head_object(
        Bucket=dev.bucket, Key=watched)["ETag"].strip('"')]
    # Then its id on that content is fine, and on other content is found
    assert chaos.job_tags([Upload(watched, b"", False, bucket=dev.bucket)]) == []
    other = Upload(prefix + "other.png", b"", False, bucket=dev.bucket)
    other.etag = tagged(chaos, dev.bucket, other.key, _png(seed=6), ci_status="CLEAN", ci_job_id=job)
    assert chaos.job_tags([other]) == [
        (other.key, f"ci-job-id {job} on {other.key} names a job that inspected other content")]


def test_a_state_that_changes_after_settling_is_found(chaos: Chaos, prefix: str) -> None:
    u = clean_upload(chaos, prefix + "late.png")
    assert chaos.state(u) == (True, True, "")
    assert chaos.recheck([u], time.time()) == []
    # A late write lands a second after the object looked settled
    timer = threading.Timer(1.0, lambda: chaos.s3.put_object_tagging(
        Bucket=u.bucket, Key=u.key, Tagging={"TagSet": [{"Key": "ci-status", "Value": "PENDING"}]}))
    timer.start()
    assert chaos.recheck([u], time.time()) == [(u.key, "changed 3s after it settled: ci-status=PENDING")]


def test_a_refused_callback_is_found() -> None:
    jobs: dict[str, Any] = {
        "c1": {"detail": {"Input": {"Object": "uploads/x/a.png"}}, "callbacks": [{"status": 200}]},
        "c2": {"detail": {"Input": {"Object": "uploads/x/b.png"}}, "callbacks": [{"status": 403}, {"status": 403}]},
        "c3": {"detail": {"Input": {"Object": "uploads/x/c.png"}}, "callbacks": [{"status": None, "error": "dropped"}]},
        "c4": {"detail": {"Input": {"Object": "uploads/y/d.png"}}, "callbacks": [{"status": 500}]},
    }
    assert Chaos.refused_callbacks("uploads/x/", jobs) == [
        "the callback of job c2 was answered 403: the verdict waited for reconcile"]


def test_a_clean_upload_lost_to_a_move_racing_it_is_told_from_any_other_loss(chaos: Chaos, prefix: str) -> None:
    # A move of suspicious content: the copy reads it (the check), the user's clean upload lands, the DELETE
    # removes the clean upload, as COS does without a conditional DELETE.
    s3 = chaos.s3
    u = Upload(prefix + "raced.png", b"", suspicious=True, bucket=chaos.bucket)
    u.write(s3, _png(seed=7) + zip_archive(), True)
    s3.copy_object(Bucket=u.bucket, Key="quarantine/" + u.key, CopySource={"Bucket": u.bucket, "Key": u.key},
                   CopySourceIfMatch=u.etag)
    u.write(s3, _png(seed=8), False)
    s3.delete_object(Bucket=u.bucket, Key=u.key)
    assert chaos.state(u) == (True, False, "clean image vanished")
    assert chaos.platform_limit(u).startswith(f"delete against a concurrent upload: {u.etag[:8]} was written ")
    # The store's history of the key, in order: the copy's read of the suspicious content, both writes, and
    # a DELETE that removed the clean one
    keys = chaos._dev("history", {"bucket": u.bucket, "prefix": u.key})["keys"]
    entries = next(k["entries"] for k in keys if k["key"] == u.key)
    assert [(x["kind"], x["etag"]) for x in entries] == [
        ("write", u.history[0].etag), ("read", u.history[0].etag), ("write", u.etag), ("delete", u.etag)]

    # A clean upload deleted with no read of suspicious content before it: a wrong action, not the limit
    v = Upload(prefix + "deleted.png", b"", suspicious=False, bucket=chaos.bucket)
    v.write(s3, _png(seed=9), False)
    s3.head_object(Bucket=v.bucket, Key=v.key)
    s3.delete_object(Bucket=v.bucket, Key=v.key)
    assert chaos.state(v) == (True, False, "clean image vanished")
    assert chaos.platform_limit(v) == ""


def test_the_history_filter_refuses_nonsense(chaos: Chaos) -> None:
    with pytest.raises(RuntimeError, match="400"):
        chaos._dev("history", {"bucket": 3})
    with pytest.raises(RuntimeError, match="400"):
        chaos._dev("history", {"key": "x"})


# Last in the module, and `reject` last of all: a container that saw COS refuse If-Match on DELETE stops
# sending it, as the functions' containers here do for the rest of the stack's life.
@pytest.mark.parametrize("delete_if_match", ["ignore", "honour", "reject"])
def test_a_move_s_late_delete_against_an_upload_in_every_setting_of_if_match_on_delete(
        chaos: Chaos, prefix: str, delete_if_match: str) -> None:
    dev = Dev(chaos.env)
    u = Upload(f"uploads/{prefix}late-delete.png", b"", suspicious=True, bucket=dev.bucket)
    # Given a suspicious upload whose quarantine move sends its DELETE into a network that holds it for 0.8 s
    chaos.configure({}, {"delete_stall_seconds": 0.8, "delete_if_match": delete_if_match})
    try:
        u.write(dev.s3, _png(seed=10) + zip_archive(), True)
        dev.wait_for(lambda: any(s["kind"] == "delete" and s["key"] == u.key for s in chaos._dev("stalls")["stalled"]),
                     what="the move's DELETE to be held")
        # When the user uploads clean content to the key meanwhile
        u.write(dev.s3, _png(seed=11), False)
        if delete_if_match == "honour":
            # Then the DELETE, naming the suspicious content, leaves the clean upload alone, which gets its verdict
            dev.wait_for(lambda: not chaos._dev("stalls")["stalled"], what="the DELETE to be applied")
            dev.wait_status(u.key, "CLEAN")
            assert chaos.state(u) == (True, True, "")
        else:
            # Then the late DELETE removes the clean upload (the documented limit). Refused, it is sent again
            # without If-Match, and held again.
            dev.wait_for(lambda: not dev.exists(u.key), what="the clean upload to be deleted")
            assert chaos.state(u) == (True, False, "clean image vanished")
    finally:
        chaos.configure({}, {})
    # The suspicious content is in quarantine in every setting
    assert dev.s3.head_object(Bucket=dev.bucket, Key="quarantine/" + u.key)["ETag"].strip('"') == u.history[0].etag
    if delete_if_match == "honour":
        return
    # and the store's history shows the loss to be that limit, not a defect: within the audit's window where
    # the DELETE went once, within two held DELETEs where it was refused and sent again
    entries = next(k["entries"] for k in chaos._dev("history", {"bucket": u.bucket, "prefix": u.key})["keys"]
                   if k["key"] == u.key)
    window = LIMIT_WINDOW if delete_if_match == "ignore" else 2 * 0.8 + LIMIT_WINDOW
    assert concurrent_upload_deleted(entries, u.etag, u.suspicious_etags, window).startswith(
        f"delete against a concurrent upload: {u.etag[:8]} was written ")
    if delete_if_match == "ignore":
        assert chaos.platform_limit(u)
