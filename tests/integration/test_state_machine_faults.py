"""The state machine under re-uploads, partial writes, races, throttling, skewed clocks and hostile
input: each defect class of the submit, callback and reconcile paths, reproduced through the real
SDK clients (boto3, cos-python-sdk-v5) over the local stack, with faults injected at the ports.

The stack runs with no COS trigger and no timer, so each test drives submit, callback and reconcile
itself, in this process, configured exactly like the stack's functions.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
import uuid
from dataclasses import replace
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from devstack.emulator.xmlutil import to_xml
from devstack.samples import _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration

APPID = "1250000000"


@pytest.fixture(scope="module")
def driven() -> Any:
    """A stack that delivers no COS event and runs no timer: the tests play SCF themselves."""
    yield from start_dev("--no-trigger", "--reconcile-every", "0")


class Faults:
    """Hooks run before a port call: `before[name]` is a list of callables taking the call's args.
    One that returns True, or raises (an injected failure), is used up: each fault happens once."""

    def __init__(self) -> None:
        self.before: dict[str, list[Callable[..., Any]]] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def add(self, name: str, hook: Callable[..., Any]) -> None:
        self.before.setdefault(name, []).append(hook)

    def run(self, name: str, args: tuple[Any, ...]) -> None:
        with self.lock:
            self.calls.append((name, args))
            hooks = list(self.before.get(name, []))
        for hook in hooks:
            try:
                used = hook(*args)
            except Exception:
                with self.lock:
                    self.before[name].remove(hook)
                raise
            if used:
                with self.lock:
                    self.before[name].remove(hook)


def faulty(cls: type, faults: Faults) -> Any:
    """A subclass of a real port whose public methods run the fault hooks first."""

    def wrap(name: str) -> Callable[..., Any]:
        real = getattr(cls, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            faults.run(name, args)
            return real(self, *args, **kwargs)

        return method

    names = [n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))]
    return type(f"Faulty{cls.__name__}", (cls,), {n: wrap(n) for n in names})


class Harness:
    """Submit, callback and reconcile in this process, on the real SDK clients, with fault hooks."""

    def __init__(self, dev: Dev, monkeypatch: pytest.MonkeyPatch):
        from ciflow import settings as settings_mod

        for k, v in dev.env.items():
            if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
                monkeypatch.setenv(k, v)
        settings_mod.reset_settings()
        self.dev = dev
        self.settings = settings_mod.get_settings()
        self.faults = Faults()

    def ports(self, **overrides: Any) -> dict[str, Any]:
        from ciflow.ci import CiJobs
        from ciflow.rules import get_rules
        from ciflow.storage import Storage

        return {"storage": faulty(Storage, self.faults)(), "ci": faulty(CiJobs, self.faults)(sleep=lambda _s: None),
                "settings": replace(self.settings, **overrides), "rules": get_rules()}

    def submitter(self, **overrides: Any) -> Any:
        from ciflow.submission import Submitter

        return Submitter(**self.ports(**overrides))

    def reconciler(self, **overrides: Any) -> Any:
        from ciflow.reconcile import Reconciler

        return Reconciler(**self.ports(**overrides))

    def callback(self, **overrides: Any) -> Any:
        from ciflow.completion import CallbackHandler

        return CallbackHandler(**self.ports(**overrides))

    # --- what SCF and CI would send -------------------------------------------------------------
    def event(self, key: str, bucket: Optional[str] = None, etag: str = "", raw_key: Optional[str] = None,
              url: Optional[str] = None) -> dict:
        """A COS event in the documented shape (with meta.ETag when `etag` is given, as logged)."""
        bucket = bucket or self.dev.bucket
        name = bucket[: -len(APPID) - 1]
        meta: dict[str, str] = {"x-cos-request-id": uuid.uuid4().hex, "Content-Type": ""}
        if etag:
            meta["ETag"] = f'"{etag}"'
        k = key if raw_key is None else raw_key
        return {"Records": [{"cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": {"url": url or f"http://{bucket}.cos.ap-guangzhou.myqcloud.com/{quote(key, safe='/')}",
                          "meta": meta, "vid": "", "key": f"/{APPID}/{name}/{k}", "size": 1},
            "cosBucket": {"region": "gz", "name": name, "appid": APPID},
            "cosNotificationId": "unkown"},
            "event": {"eventName": "cos:ObjectCreated:Put", "eventVersion": "1.0", "eventTime": int(time.time()),
                      "eventSource": "qcs::cos", "requestParameters": {"requestSourceIP": "127.0.0.1",
                                                                         "requestHeaders": {"Authorization": ""}}}}]}

    def submit(self, key: str, retries: int = 2, **overrides: Any) -> dict[str, Any]:
        """One COS event, retried as SCF retries an async invocation that raised."""
        from ciflow.errors import RetryableError

        submitter = self.submitter(**overrides)
        for attempt in range(retries + 1):
            try:
                return submitter.handle(self.event(key))
            except RetryableError:
                if attempt == retries:
                    raise
        raise AssertionError("unreachable")

    def finished_job(self, key: str, index: int = -1, bucket: Optional[str] = None) -> dict[str, Any]:
        jobs = self.dev.wait_for(
            lambda: [j for j in self.dev.jobs_for(key, bucket) if j["detail"]["State"] in ("Success", "Failed")]
            and self.dev.jobs_for(key, bucket), what=f"a finished job for {key}")
        jobs.sort(key=lambda j: j["detail"]["CreationTime"])
        job = jobs[index]
        self.dev.wait_for(lambda: self.job(job["detail"]["JobId"])["detail"]["State"] in ("Success", "Failed"),
                          what="job finished")
        return self.job(job["detail"]["JobId"])

    def job(self, job_id: str) -> dict[str, Any]:
        return self.dev.ci_jobs()[job_id]

    def token_of(self, job_id: str) -> str:
        """The token submit put in the job's CallBack URL."""
        return parse_qs(urlsplit(self.job(job_id)["request"]["CallBack"]).query)["t"][0]

    def callback_event(self, detail: dict[str, Any], token: str, user_data: bool = False) -> dict[str, Any]:
        """CI's callback as documented: the finished JobsDetail, without Operation.UserData."""
        d = json.loads(json.dumps(detail))
        if not user_data:
            d.get("Operation", {}).pop("UserData", None)
        body = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": d})
        return {"body": body, "headers": {"content-type": "application/xml"}, "httpMethod": "POST", "path": "/",
                "queryString": {"t": token}, "isBase64Encoded": False}

    def deliver(self, key: str, index: int = -1, **overrides: Any) -> dict[str, Any]:
        job = self.finished_job(key, index)
        detail = job["detail"]
        out = self.callback(**overrides).handle(self.callback_event(detail, self.token_of(detail["JobId"])))
        assert out["statusCode"] == 200, out
        return json.loads(out["body"])["results"]


@pytest.fixture
def h(driven: Dev, monkeypatch: pytest.MonkeyPatch) -> Any:
    from ciflow import settings as settings_mod

    driven.ci_config(callback_drop_rate=1.0)  # callbacks are delivered by the tests
    yield Harness(driven, monkeypatch)
    driven.ci_config(callback_drop_rate=0.0, throttle_rate=0.0, lose_job_rate=0.0)
    settings_mod.reset_settings()


def raise_once(when: Callable[..., bool], error: Exception) -> Callable[..., bool]:
    """A hook that raises `error` on the first call matching `when` (and is then used up)."""

    def hook(*args: Any) -> bool:
        if when(*args):
            raise error
        return False

    return hook


def suspicious(seed: int) -> bytes:
    return _png(seed=seed) + zip_archive()


def pending_markers(dev: Dev, prefix: str = ".ciflow/pending/") -> list[str]:
    r = dev.s3.list_objects_v2(Bucket=dev.bucket, Prefix=prefix)
    return [o["Key"] for o in r.get("Contents", [])]


def marker_for(dev: Dev, key: str, etag: str, rule: str = "images") -> bool:
    from ciflow.records import RecordId

    return bool(pending_markers(dev, RecordId(key, etag, rule).markers(".ciflow/")))


# --- 1. the same bytes again: quarantine bypass ------------------------------------------------

def test_quarantined_bytes_uploaded_again_are_quarantined_again_without_a_new_job(h: Harness, prefix: str) -> None:
    # Given a suspicious upload that was quarantined
    key = f"{prefix}again.png"
    body = suspicious(11)
    h.dev.put(key, body)
    h.submit(key)
    assert h.deliver(key)[0]["outcome"] == "SUSPICIOUS"
    assert not h.dev.exists(key) and h.dev.exists("quarantine/" + key)
    # When the same bytes are uploaded to the same key again
    h.dev.put(key, body)
    h.submit(key)
    # Then the known verdict is applied at once: quarantined again, with no second job
    assert not h.dev.exists(key)
    assert h.dev.tags("quarantine/" + key)["ci-status"] == "SUSPICIOUS"
    assert len(h.dev.jobs_for(key)) == 1


def test_a_b_a_on_one_key_ends_with_the_verdict_of_a(h: Harness, prefix: str) -> None:
    key = f"{prefix}aba.png"
    a, b = suspicious(12), _png(seed=13)
    h.dev.put(key, a)
    h.submit(key)
    h.deliver(key)                       # A quarantined
    h.dev.put(key, b)
    h.submit(key)
    h.deliver(key)                       # B clean, in place
    assert h.dev.tags(key)["ci-status"] == "CLEAN"
    h.dev.put(key, a)                    # A again
    h.submit(key)
    assert not h.dev.exists(key), "A's bytes must not stay readable at the original key"
    assert h.dev.tags("quarantine/" + key)["ci-status"] == "SUSPICIOUS"
    assert len(h.dev.jobs_for(key)) == 2


def test_delete_then_reupload_of_clean_bytes_is_tagged_again(h: Harness, prefix: str) -> None:
    key = f"{prefix}del.png"
    body = _png(seed=14)
    h.dev.put(key, body)
    h.submit(key)
    h.deliver(key)
    h.dev.s3.delete_object(Bucket=h.dev.bucket, Key=key)
    h.dev.put(key, body)                 # no tags: a fresh object
    h.submit(key)
    assert h.dev.tags(key)["ci-status"] == "CLEAN"
    assert len(h.dev.jobs_for(key)) == 1


# --- 2. a claim without a pending marker ---------------------------------------------------------

def test_marker_write_failing_never_loses_the_upload(h: Harness, prefix: str) -> None:
    from ciflow.errors import RetryableError

    key = f"{prefix}marker.png"
    etag = h.dev.put(key, _png(seed=21))
    # Given the marker writes of the first delivery and of both its retries fail (each invocation tries
    # the marker three times: nine failures in a row), and one more
    for _ in range(10):
        h.faults.add("put", raise_once(lambda b, k, *_: "/pending/" in k, RetryableError("PUT: ServiceUnavailable")))
    with pytest.raises(RetryableError):
        h.submit(key, retries=2)
    # When the platform gives up, nothing is lost: the upload is findable (marker or claim) ...
    from ciflow.records import RecordId

    claim_key = RecordId(key, etag, "images").path(".ciflow/", "jobs")
    assert marker_for(h.dev, key, etag) or h.dev.exists(claim_key)
    # ... and once COS recovers, one more delivery or reconcile finishes it with one job
    h.submit(key)
    time.sleep(2.1)
    h.reconciler(reconcile_after_seconds=0).run([h.dev.bucket])
    h.deliver(key)
    assert h.dev.tags(key)["ci-status"] == "CLEAN"
    assert len(h.dev.jobs_for(key)) == 1
    assert not marker_for(h.dev, key, etag)


def test_claim_written_marker_lost_then_duplicate_event_restores_the_marker(h: Harness, prefix: str) -> None:
    from ciflow.errors import RetryableError

    key = f"{prefix}nomarker.png"
    etag = h.dev.put(key, _png(seed=22))
    # Given every marker write of the first delivery fails (it tries three times; so no job is submitted)
    for _ in range(3):
        h.faults.add("put", raise_once(lambda b, k, *_: "/pending/" in k, RetryableError("PUT: SlowDown")))
    with pytest.raises(RetryableError):
        h.submitter().handle(h.event(key))
    # When a duplicate event arrives within the lease
    h.submitter().handle(h.event(key))
    # Then reconcile can see the upload
    assert marker_for(h.dev, key, etag)


# --- 3. late writes land on newer content -------------------------------------------------------

def test_late_pending_tag_write_does_not_stick_to_newer_content(h: Harness, prefix: str) -> None:
    key = f"{prefix}late-pending.png"
    h.dev.put(key, _png(seed=31))
    newer = _png(seed=32)
    done = {"n": 0}

    def overwrite_first(bucket: str, k: str, *_: Any) -> bool:
        # The PENDING write stalls while a newer upload replaces the key, then lands on it.
        if k == key and done["n"] == 0:
            done["n"] = 1
            h.dev.put(key, newer)
            return True
        return False

    h.faults.add("put_tags", overwrite_first)
    h.submit(key)
    # The newer content's own event and verdict
    h.submit(key)
    h.deliver(key, index=-1)
    tags = h.dev.tags(key)
    assert tags["ci-status"] == "CLEAN"
    newest = h.finished_job(key, -1)["detail"]["JobId"]
    assert tags["ci-job-id"] == newest


def test_late_verdict_write_on_newer_content_is_repaired(h: Harness, prefix: str) -> None:
    key = f"{prefix}late-verdict.png"
    h.dev.put(key, suspicious(33))
    h.submit(key)
    job = h.finished_job(key)
    # Given the suspicious content's verdict tag write stalls while a clean file replaces the key
    newer = _png(seed=34)
    new_etag = {"v": ""}

    def overwrite(bucket: str, k: str, *_: Any) -> bool:
        if k == key:
            new_etag["v"] = h.dev.put(key, newer)
            return True
        return False

    h.faults.add("copy", overwrite)   # the quarantine copy is refused (412): the source changed
    h.callback().handle(h.callback_event(job["detail"], h.token_of(job["detail"]["JobId"])))
    # Then the new clean file is neither moved nor tagged with the old verdict
    assert h.dev.exists(key)
    assert h.dev.s3.head_object(Bucket=h.dev.bucket, Key=key)["ETag"].strip('"') == new_etag["v"]
    assert (h.dev.tags(key) or {}).get("ci-status") != "SUSPICIOUS"
    assert not h.dev.exists("quarantine/" + key)
    h.submit(key)
    h.deliver(key, index=-1)
    assert h.dev.tags(key)["ci-status"] == "CLEAN"


def test_late_clean_tag_write_on_newer_suspicious_content_is_repaired(h: Harness, prefix: str) -> None:
    key = f"{prefix}late-clean.png"
    h.dev.put(key, _png(seed=35))
    h.submit(key)
    job = h.finished_job(key)
    state = {"new": ""}

    def overwrite(bucket: str, k: str, *_: Any) -> bool:
        if k == key:
            state["new"] = h.dev.put(key, _png(seed=36))
            return True
        return False

    # Given the CLEAN verdict's tag write stalls while other content replaces the key
    h.faults.add("put_tags", overwrite)
    h.callback().handle(h.callback_event(job["detail"], h.token_of(job["detail"]["JobId"])))
    # Then the new content does not carry the old job's verdict
    tags = h.dev.tags(key) or {}
    assert tags.get("ci-job-id") != job["detail"]["JobId"]


# --- 4. throttling is not a lost job ----------------------------------------------------------

def test_a_throttling_burst_never_ends_in_job_lost(h: Harness, prefix: str) -> None:
    from ciflow.errors import RetryableError

    h.dev.ci_config(throttle_rate=0.6)
    keys = [f"{prefix}t{i}.png" for i in range(12)]
    for i, key in enumerate(keys):
        h.dev.put(key, _png(seed=400 + i))
        try:
            h.submit(key, max_submit_attempts=3)
        except RetryableError:
            pass  # the platform gave up; reconcile takes over
    h.dev.ci_config(throttle_rate=0.0)
    time.sleep(2.1)
    rec = h.reconciler(reconcile_after_seconds=0, max_submit_attempts=3)
    for _ in range(6):
        rec.run([h.dev.bucket])
        if all(h.dev.jobs_for(k) for k in keys):
            break
        time.sleep(2.1)
    for key in keys:
        h.deliver(key)
        tags = h.dev.tags(key)
        assert tags["ci-status"] == "CLEAN", (key, tags)


# --- 5. versioned buckets ---------------------------------------------------------------------

@pytest.fixture
def versioned(h: Harness) -> str:
    bucket = h.dev.buckets[1]
    h.dev.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return bucket


def test_versioned_bucket_duplicate_events_make_one_job(h: Harness, versioned: str, prefix: str) -> None:
    key = f"{prefix}v.png"
    h.dev.s3.put_object(Bucket=versioned, Key=key, Body=_png(seed=51))
    sub = h.submitter()
    threads = [threading.Thread(target=sub.handle, args=(h.event(key, versioned),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sub.handle(h.event(key, versioned))
    assert len(h.dev.jobs_for(key, versioned)) == 1


def test_versioned_bucket_quarantine_leaves_no_readable_version(h: Harness, versioned: str, prefix: str) -> None:
    key = f"{prefix}vq.png"
    body = suspicious(52)
    h.dev.s3.put_object(Bucket=versioned, Key=key, Body=body)
    h.dev.s3.put_object(Bucket=versioned, Key=key, Body=body)  # the same bytes twice: two versions
    h.submitter().handle(h.event(key, versioned))
    job = h.finished_job(key, bucket=versioned)
    h.callback().handle(h.callback_event(job["detail"], h.token_of(job["detail"]["JobId"])))
    versions = h.dev.s3.list_object_versions(Bucket=versioned, Prefix=key).get("Versions", [])
    assert [v for v in versions if v["Key"] == key] == []
    assert h.dev.exists("quarantine/" + key, versioned)


# --- 6. clock skew -----------------------------------------------------------------------------

def test_reconcile_clock_ahead_makes_no_second_job(h: Harness, prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = f"{prefix}skew.png"
    h.dev.put(key, _png(seed=61))
    h.submit(key)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 400)
    h.reconciler(reconcile_after_seconds=300).run([h.dev.bucket])
    monkeypatch.setattr(time, "time", real)
    assert len(h.dev.jobs_for(key)) == 1


# --- 7. one token, bounded work ----------------------------------------------------------------

def test_a_callback_repeating_one_job_costs_one_query(h: Harness, prefix: str) -> None:
    key = f"{prefix}many.png"
    h.dev.put(key, _png(seed=71))
    h.submit(key)
    detail = h.finished_job(key)["detail"]
    token = h.token_of(detail["JobId"])
    d = json.loads(json.dumps(detail))
    d["Operation"].pop("UserData", None)
    body = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": [d] * 964})
    assert len(body) < 1024 * 1024
    event = {"body": body, "headers": {}, "httpMethod": "POST", "path": "/", "queryString": {"t": token},
             "isBase64Encoded": False}
    started = time.monotonic()
    out = h.callback().handle(event)
    assert out["statusCode"] == 413 or out["statusCode"] == 200
    assert time.monotonic() - started < 5
    assert len([c for c in h.faults.calls if c[0] == "get"]) <= 1


# --- 8. keys that cannot be encoded ------------------------------------------------------------

def test_an_undecodable_key_is_skipped_not_retried(h: Harness) -> None:
    bad = "uploads/bad\udc80.png"
    out = h.submitter().handle(h.event("uploads/x.png", raw_key=bad, url=f"http://b.cos.gz.myqcloud.com/{bad}"))
    assert out["records"] == 0 and out["problems"]


# --- 9. no token in the logs --------------------------------------------------------------------

def test_tokens_never_reach_the_logs(h: Harness, prefix: str) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # as some SCF runtimes set it
    try:
        key = f"{prefix}logs.png"
        h.dev.put(key, _png(seed=91))
        h.submit(key)
        h.deliver(key)
    finally:
        root.removeHandler(handler)
        root.setLevel(old)
    token = h.token_of(h.finished_job(key)["detail"]["JobId"])
    assert token.split(".")[2] not in stream.getvalue()


# --- the callback URL names its rule and ETag: checked before any request ------------------------

def test_a_callback_whose_url_names_another_etag_is_refused_before_any_request(h: Harness, prefix: str) -> None:
    key = f"{prefix}named.png"
    h.dev.put(key, _png(seed=101))
    h.submit(key)
    detail = h.finished_job(key)["detail"]
    url = urlsplit(h.job(detail["JobId"])["request"]["CallBack"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert set(query) == {"t", "r", "e"}
    event = h.callback_event(detail, query["t"])
    h.faults.calls.clear()
    # When the ETag in the URL is swapped for another, the token no longer matches: 403, nothing read
    event["queryString"] = {**query, "e": "0" * 32}
    out = h.callback().handle(event)
    assert out["statusCode"] == 403 and h.faults.calls == []
    # And with the URL as submitted, the verdict is applied, CI confirming while the object is read
    event["queryString"] = query
    out = h.callback().handle(event)
    assert out["statusCode"] == 200 and h.dev.tags(key)["ci-status"] == "CLEAN"
    first = [name for name, _ in h.faults.calls[:4]]
    assert "get" in first and "head" in first


# --- versioning Suspended: the records live in a bucket that never had versioning ---------------

def test_suspended_bucket_with_a_state_bucket_makes_one_job_per_version(h: Harness, prefix: str) -> None:
    bucket = h.dev.buckets[1]
    state = f"ciflow-state-{APPID}"
    h.dev.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    h.dev.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    try:
        h.dev.s3.create_bucket(Bucket=state, CreateBucketConfiguration={"LocationConstraint": "ap-guangzhou"})
    except h.dev.s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    key = f"{prefix}suspended.png"
    h.dev.s3.put_object(Bucket=bucket, Key=key, Body=suspicious(111))
    # When three copies of the event race, with the records in the state bucket
    sub = h.submitter(state_bucket=state)
    threads = [threading.Thread(target=sub.handle, args=(h.event(key, bucket),)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then CI got one job, and the records are in the state bucket, not beside the object
    assert len(h.dev.jobs_for(key, bucket)) == 1
    listed = h.dev.s3.list_objects_v2(Bucket=state, Prefix=f".ciflow/{bucket}/jobs/").get("Contents", [])
    assert len(listed) == 1
    import hashlib

    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    beside = h.dev.s3.list_objects_v2(Bucket=bucket, Prefix=".ciflow/").get("Contents", [])
    assert not [o for o in beside if digest in o["Key"]]
    # And the verdict is applied from there: quarantined, no version left readable at the key
    job = h.finished_job(key, bucket=bucket)
    out = h.callback(state_bucket=state).handle(h.callback_event(job["detail"], h.token_of(job["detail"]["JobId"])))
    assert out["statusCode"] == 200, out
    assert h.dev.exists("quarantine/" + key, bucket) and not h.dev.exists(key, bucket)
    h.dev.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
