"""At-least-once everywhere: reconcile, stale and missing objects, malformed events. (The chaos scenarios at a
small size are in test_chaos.py.)"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devstack.samples import _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quiet_dev():
    """A stack whose reconcile timer is off, so the tests drive reconcile themselves."""
    yield from start_dev("--reconcile-every", "0")


@pytest.fixture
def reconciler(quiet_dev: Dev, monkeypatch: pytest.MonkeyPatch):
    """Build a Reconciler in this process, configured exactly like the stack's functions."""
    from ciflow import settings as settings_mod

    for k, v in quiet_dev.env.items():
        if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
            monkeypatch.setenv(k, v)

    def make(**overrides):
        from dataclasses import replace

        from ciflow.reconcile import Reconciler

        settings_mod.reset_settings()
        s = replace(settings_mod.get_settings(), **overrides)
        return Reconciler(settings=s)

    yield make
    settings_mod.reset_settings()


def _result(dev: Dev, key: str, etag: str, rule: str = "images") -> dict:
    from ciflow.records import RecordId

    raw = dev.s3.get_object(Bucket=dev.bucket, Key=RecordId(key, etag, rule).path(".ciflow/", "results"))
    return json.loads(raw["Body"].read())


def test_lost_callback_is_applied_by_reconcile(quiet_dev: Dev, reconciler, prefix: str) -> None:
    # Given CI finishes the job but its callback never arrives
    quiet_dev.ci_config(callback_drop_rate=1.0)
    key = f"{prefix}lost-cb.png"
    etag = quiet_dev.put(key, _png(seed=1) + zip_archive())
    quiet_dev.wait_for(lambda: quiet_dev.jobs_for(key) and quiet_dev.jobs_for(key)[0]["detail"]["State"] == "Success",
                       what="job finished")
    quiet_dev.ci_config(callback_drop_rate=0.0)
    assert quiet_dev.tags(key)["ci-status"] == "PENDING"
    # When reconcile runs after the deadline
    summary = reconciler(reconcile_after_seconds=0).run([quiet_dev.bucket])
    # Then the verdict is applied exactly as the callback would have, once
    assert summary.applied >= 1
    assert quiet_dev.tags("quarantine/" + key)["ci-status"] == "SUSPICIOUS"
    assert not quiet_dev.exists(key)
    assert _result(quiet_dev, key, etag)["outcome"] == "SUSPICIOUS"
    assert len(quiet_dev.jobs_for(key)) == 1


def test_lost_job_is_resubmitted_then_given_up(quiet_dev: Dev, reconciler, prefix: str) -> None:
    # Given CI accepts jobs and then loses them
    quiet_dev.ci_config(lose_job_rate=1.0)
    key = f"{prefix}lost-job.png"
    etag = quiet_dev.put(key, _png(seed=2))
    quiet_dev.wait_status(key, "PENDING")
    time.sleep(0.5)
    rec = reconciler(reconcile_after_seconds=0, max_submit_attempts=3)
    # When reconcile runs while jobs keep getting lost, it resubmits up to the limit in all
    assert rec.run([quiet_dev.bucket]).resubmitted >= 1
    assert rec.run([quiet_dev.bucket]).resubmitted >= 1
    summary = rec.run([quiet_dev.bucket])
    # Then it gives up with a clear reason, and the upload is not PENDING forever
    assert summary.failed >= 1
    tags = quiet_dev.tags(key)
    assert tags["ci-status"] == "FAILED" and tags["ci-reason"] == "JobLost"
    assert _result(quiet_dev, key, etag)["reason"] == "JobLost"
    quiet_dev.ci_config(lose_job_rate=0.0)


def test_lost_job_recovers_when_ci_does(quiet_dev: Dev, reconciler, prefix: str) -> None:
    quiet_dev.ci_config(lose_job_rate=1.0)
    key = f"{prefix}recover.png"
    quiet_dev.put(key, _png(seed=3))
    quiet_dev.wait_status(key, "PENDING")
    time.sleep(0.5)
    quiet_dev.ci_config(lose_job_rate=0.0)
    assert reconciler(reconcile_after_seconds=0).run([quiet_dev.bucket]).resubmitted >= 1
    quiet_dev.wait_status(key, "CLEAN")
    assert len(quiet_dev.jobs_for(key)) == 1  # the lost one never existed for CI


def test_stuck_job_fails_with_timeout(quiet_dev: Dev, reconciler, prefix: str) -> None:
    quiet_dev.ci_config(job_delay=30.0)
    try:
        key = f"{prefix}stuck.png"
        quiet_dev.put(key, _png(seed=4))
        quiet_dev.wait_status(key, "PENDING")
        # Ages come from COS's clock (whole seconds): wait until the job is older than the limit.
        time.sleep(2.5)
        rec = reconciler(reconcile_after_seconds=0, reconcile_give_up_seconds=1)
        assert rec.run([quiet_dev.bucket]).failed >= 1
        tags = quiet_dev.tags(key)
        assert tags["ci-status"] == "FAILED" and tags["ci-reason"] == "Timeout"
    finally:
        quiet_dev.ci_config(job_delay=0.0)


def test_callback_for_deleted_object_is_recorded_and_answered_200(dev: Dev, prefix: str) -> None:
    # Given an object deleted while its job runs
    dev.ci_config(callback_delay=1.0)
    try:
        key = f"{prefix}gone.png"
        etag = dev.put(key, _png(seed=5) + zip_archive())
        dev.wait_for(lambda: dev.jobs_for(key), what="job created")
        dev.s3.delete_object(Bucket=dev.bucket, Key=key)
        # Then the callback is answered 200 once (no retry loop) and the outcome is recorded
        job = dev.wait_for(lambda: [j for j in dev.jobs_for(key) if j["callbacks"]], what="callback")[0]
        assert [c["status"] for c in job["callbacks"]] == [200]
        assert _result(dev, key, etag)["applied"] == "object-missing"
        assert not dev.exists("quarantine/" + key)
    finally:
        dev.ci_config(callback_delay=0.0)


def test_callback_for_overwritten_object_does_not_act_on_new_content(dev: Dev, prefix: str) -> None:
    # Given a suspicious upload overwritten by a clean one before the first verdict lands
    dev.ci_config(callback_delay=1.0)
    try:
        key = f"{prefix}swap.png"
        old = dev.put(key, _png(seed=6) + zip_archive())
        dev.wait_for(lambda: dev.jobs_for(key), what="first job")
        new = dev.put(key, _png(seed=7))
        # Then the old verdict is recorded as stale and the new content ends CLEAN, in place
        dev.wait_for(lambda: (r := _safe_result(dev, key, old)) and r, what="old result")
        assert _result(dev, key, old)["applied"] == "stale"
        dev.wait_status(key, "CLEAN")
        assert not dev.exists("quarantine/" + key)
        assert dev.s3.head_object(Bucket=dev.bucket, Key=key)["ETag"].strip('"') == new
    finally:
        dev.ci_config(callback_delay=0.0)


def _safe_result(dev: Dev, key: str, etag: str):
    try:
        return _result(dev, key, etag)
    except Exception:  # noqa: BLE001
        return None


def test_malformed_cos_events_are_logged_and_not_retried(dev: Dev, monkeypatch: pytest.MonkeyPatch) -> None:
    from ciflow import settings as settings_mod

    for k, v in dev.env.items():
        if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
            monkeypatch.setenv(k, v)
    settings_mod.reset_settings()
    import submit

    try:
        for event in ({}, {"Records": "nope"}, {"Records": [{"cos": 1}]}, "not json", None,
                      json.loads((ROOT / "tests/events/cos_put.json").read_text())):
            # Then the handler returns normally (no exception, so SCF does not retry) and reports why
            out = submit.main_handler(event, {"request_id": "t"})
            assert out["problems"] or all(r["status"] == "skipped" for r in out["results"])
    finally:
        settings_mod.reset_settings()
