"""`python -m ciflow` against the local stack, started with `--no-trigger`: objects uploaded "before
any trigger existed" reach CI only through the CLI. Observed through the emulator's received jobs,
the objects' final tags and locations, and the CLI's own output."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from ciflow.records import RecordId
from devstack.samples import _jpeg, _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nt_dev() -> Iterator[Dev]:
    """The object store delivers no COS events, and the reconcile timer is off: only the CLI submits."""
    yield from start_dev("--no-trigger", "--reconcile-every", "0")


@pytest.fixture
def cli(nt_dev: Dev, monkeypatch: pytest.MonkeyPatch):
    """Run the CLI in this process, configured exactly like the stack's functions."""
    from ciflow import cli as cli_mod
    from ciflow import settings as settings_mod

    for k, v in nt_dev.env.items():
        if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
            monkeypatch.setenv(k, v)

    def run(*argv: str) -> tuple[int, str, str]:
        settings_mod.reset_settings()
        out, err = io.StringIO(), io.StringIO()
        code = cli_mod.main(list(argv), out, err)
        return code, out.getvalue(), err.getvalue()

    yield run
    settings_mod.reset_settings()


def run_module(dev: Dev, *argv: str) -> subprocess.CompletedProcess:
    """The real entry point, `python -m ciflow`, with the stack's environment (as `.devstack.env` gives)."""
    env = {**os.environ, **dev.env, "PYTHONPATH": str(ROOT / "layers" / "ciflow")}
    return subprocess.run([sys.executable, "-m", "ciflow", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def count(out: str, name: str) -> int:
    m = re.search(rf"^  {re.escape(name)}\s+(\d+)", out, re.MULTILINE)
    assert m, f"no {name!r} row in:\n{out}"
    return int(m.group(1))


def upload_samples(dev: Dev, prefix: str) -> dict[str, str]:
    return {
        f"{prefix}clean.png": dev.put(f"{prefix}clean.png", _png(seed=11), ContentType="image/png",
                                      Tagging="owner=alice"),
        f"{prefix}photo.jpg": dev.put(f"{prefix}photo.jpg", _jpeg(), ContentType="image/jpeg"),
        f"{prefix}poly.png": dev.put(f"{prefix}poly.png", _png(seed=12) + zip_archive(), ContentType="image/png"),
        f"{prefix}notes.txt": dev.put(f"{prefix}notes.txt", b"not an image", ContentType="text/plain"),
    }


def test_backfill_processes_objects_uploaded_before_any_trigger_and_a_second_run_submits_nothing(
        nt_dev: Dev, prefix: str) -> None:
    # Given objects uploaded while no trigger existed
    keys = upload_samples(nt_dev, prefix)
    time.sleep(0.5)
    assert all(nt_dev.jobs_for(k) == [] for k in keys)
    assert all(not nt_dev.tags(k).get("ci-status") for k in keys)
    # When `python -m ciflow backfill` runs with the stack's environment
    proc = run_module(nt_dev, "backfill", "--prefix", prefix, "--rate", "50/s")
    # Then it shows a progress bar and its counts, and submits each image once
    assert proc.returncode == 0, proc.stderr
    assert f"backfill {prefix}: 4 object(s) to examine" in proc.stderr
    assert re.search(r"\[#{24}\] 100% 4/4 \| submitted 3 \| duplicate 0 \| skipped 1 \| failed 0 \| errors 0",
                     proc.stderr), proc.stderr
    assert count(proc.stdout, "seen") == 4 and count(proc.stdout, "submitted") == 3
    assert re.search(r"^  skipped +1  no rule matches: 1$", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(rf"checkpoint: s3://{nt_dev.bucket}/\.ciflow/backfill/[0-9a-f]{{16}}\.json \(complete",
                     proc.stdout)
    # And the verdicts are applied as for an upload: CLEAN in place, SUSPICIOUS in quarantine
    clean = nt_dev.wait_status(f"{prefix}clean.png", "CLEAN")
    assert clean["owner"] == "alice"
    nt_dev.wait_status(f"{prefix}photo.jpg", "CLEAN")
    poly = nt_dev.wait_status(f"quarantine/{prefix}poly.png", "SUSPICIOUS")
    assert poly["ci-suspicious-type"] == "ZIP"
    nt_dev.wait_for(lambda: not nt_dev.exists(f"{prefix}poly.png"), what="original moved")
    # And CI received exactly one job per image, for its current ETag
    for key in (f"{prefix}clean.png", f"{prefix}photo.jpg", f"{prefix}poly.png"):
        (job,) = nt_dev.jobs_for(key)
        assert job["detail"]["Operation"]["UserData"] == f"ciflow:1;r=images;e={keys[key]}"
    assert nt_dev.jobs_for(f"{prefix}notes.txt") == []
    # When it runs again, nothing is submitted: every remaining image has a result for its ETag
    again = run_module(nt_dev, "backfill", "--prefix", prefix)
    assert again.returncode == 0, again.stderr
    assert count(again.stdout, "submitted") == 0 and count(again.stdout, "seen") == 3
    assert "already has a result for this ETag: 2; no rule matches: 1" in again.stdout
    assert sum(len(nt_dev.jobs_for(k)) for k in keys) == 3


def test_backfill_dry_run_and_since_submit_and_write_nothing(nt_dev: Dev, cli, prefix: str) -> None:
    nt_dev.put(f"{prefix}a.png", _png(seed=21))
    nt_dev.put(f"{prefix}b.png", _png(seed=22))
    before = {o["Key"] for o in nt_dev.s3.list_objects_v2(Bucket=nt_dev.bucket).get("Contents", [])}
    code, out, err = cli("backfill", "--prefix", prefix, "--dry-run")
    assert code == 0 and "(dry run: nothing was submitted or written)" in out
    assert count(out, "would submit") == 2 and "(not written: dry run)" in out
    assert "would submit 2" in err
    code, out, _ = cli("backfill", "--prefix", prefix, "--since", "2999-01-01")
    assert code == 0 and count(out, "submitted") == 0 and "modified before --since: 2" in out
    # No job, no tag, no record: the only new object is the --since run's own checkpoint
    after = {o["Key"] for o in nt_dev.s3.list_objects_v2(Bucket=nt_dev.bucket).get("Contents", [])}
    (new,) = after - before
    assert new.startswith(".ciflow/backfill/")
    assert json.loads(nt_dev.s3.get_object(Bucket=nt_dev.bucket, Key=new)["Body"].read())["since"].startswith(
        "2999-01-01")
    assert nt_dev.jobs_for(f"{prefix}a.png") == [] and nt_dev.tags(f"{prefix}a.png") == {}


def test_jobs_in_flight_are_duplicates_and_status_lists_them_with_their_job_ids(
        nt_dev: Dev, cli, prefix: str) -> None:
    # Given CI accepts a job and then never finishes it, so the object stays PENDING
    key = f"{prefix}stuck.png"
    nt_dev.put(key, _png(seed=31))
    nt_dev.put(f"{prefix}done.png", _png(seed=32))
    nt_dev.put(f"{prefix}plain.txt", b"text", ContentType="text/plain")
    code, _, _ = cli("backfill", "--prefix", prefix, "--json")
    assert code == 0
    nt_dev.wait_status(f"{prefix}done.png", "CLEAN")
    nt_dev.wait_status(key, "CLEAN")            # its first job is finished before the rescan supersedes it
    nt_dev.ci_config(lose_job_rate=1.0)
    try:
        code, out, _ = cli("rescan", key, "--json")
    finally:
        nt_dev.ci_config(lose_job_rate=0.0)
    assert code == 0
    job_id = json.loads(out)["objects"][0]["jobs"][0]["job_id"]
    assert nt_dev.ci_requests_for(key)[-1]["job_id"] == job_id
    assert nt_dev.tags(key)["ci-status"] == "PENDING"
    # When backfill runs again, the job in flight is reported as a duplicate, not resubmitted
    code, out, _ = cli("backfill", "--prefix", prefix, "--json")
    summary = json.loads(out)
    assert summary["counts"]["duplicate"] == 1 and summary["counts"]["submitted"] == 0
    assert summary["counts"]["duplicate_by_reason"] == {"a job is already in flight for this ETag": 1}
    assert len(nt_dev.ci_requests_for(key)) == 2
    # And status counts by ci-status and lists the PENDING object with the job id of its claim
    time.sleep(1.1)
    code, out, _ = cli("status", "--prefix", prefix, "--older-than", "1")
    assert code == 0
    assert count(out, "PENDING") == 1 and count(out, "CLEAN") == 1 and count(out, "untagged") == 1
    row = next(line for line in out.splitlines() if line.strip().startswith(key))
    assert row.split()[:3] == [key, "images", job_id]
    code, out, _ = cli("status", "--prefix", prefix, "--older-than", "3600", "--json")
    doc = json.loads(out)
    assert doc["pending"] == [] and doc["counts"]["PENDING"] == 1 and doc["total"] == 3


def test_status_includes_the_quarantine_when_asked(nt_dev: Dev, cli, prefix: str) -> None:
    upload_samples(nt_dev, prefix)
    cli("backfill", "--prefix", prefix)
    nt_dev.wait_status(f"quarantine/{prefix}poly.png", "SUSPICIOUS")
    nt_dev.wait_status(f"{prefix}photo.jpg", "CLEAN")
    nt_dev.wait_status(f"{prefix}clean.png", "CLEAN")
    code, out, _ = cli("status", "--prefix", prefix, "--include-quarantine")
    assert code == 0
    assert f"status of {nt_dev.bucket}/{prefix}: 3 object(s)" in out
    assert f"quarantine {nt_dev.bucket}/quarantine/{prefix}: 1 object(s)" in out
    main, quarantine = out.split("quarantine " + nt_dev.bucket)
    assert count(main, "CLEAN") == 2 and count(main, "untagged") == 1 and count(main, "SUSPICIOUS") == 0
    assert count(quarantine, "SUSPICIOUS") == 1
    code, out, _ = cli("status", "--prefix", prefix, "--json")
    doc = json.loads(out)
    assert doc["quarantine_counts"] is None and doc["counts"]["CLEAN"] == 2


def test_rescan_forces_a_second_job_and_reapplies_the_verdict(nt_dev: Dev, cli, prefix: str) -> None:
    key = f"{prefix}again.png"
    etag = nt_dev.put(key, _png(seed=41), Tagging="owner=bob")
    cli("backfill", "--prefix", prefix)
    first = nt_dev.wait_status(key, "CLEAN")["ci-job-id"]
    # When the object is rescanned, although a result exists for its ETag
    code, out, err = cli("rescan", key)
    assert code == 0, err
    assert count(out, "submitted") == 1 and f"{key}: submitted: images job " in out
    # Then CI gets a second job for the same ETag, which supersedes the first
    jobs = nt_dev.wait_for(lambda: len(nt_dev.jobs_for(key)) == 2 and nt_dev.jobs_for(key), what="second job")
    assert sorted(j["detail"]["Operation"]["UserData"] for j in jobs) == [
        f"ciflow:1;r=images;e={etag}", f"ciflow:1;r=images;e={etag};n=2"]
    second = next(j["detail"]["JobId"] for j in jobs if j["detail"]["JobId"] != first)
    # And its verdict is applied again: the tags and the result record name the new job
    tags = nt_dev.wait_for(lambda: (t := nt_dev.tags(key)) and t.get("ci-job-id") == second and t, what="re-tagged")
    assert tags["ci-status"] == "CLEAN" and tags["owner"] == "bob"
    rec = RecordId(key, etag, "images").path(".ciflow/", "results")
    result = nt_dev.wait_for(lambda: json.loads(nt_dev.s3.get_object(Bucket=nt_dev.bucket, Key=rec)["Body"].read())
                             if nt_dev.exists(rec) else None, what="result record")
    assert result["job_id"] == second and result["outcome"] == "CLEAN"
    # And a plain backfill still leaves it alone
    code, out, _ = cli("backfill", "--prefix", prefix)
    assert count(out, "submitted") == 0 and len(nt_dev.jobs_for(key)) == 2


def test_explain_predicts_the_request_without_side_effects(nt_dev: Dev, cli, prefix: str) -> None:
    key = f"{prefix}future.png"
    etag = nt_dev.put(key, _png(seed=51), ContentType="image/png", Tagging="owner=carol")
    requests_before = len(nt_dev.ci_requests())
    # When explain runs on an object that was never submitted
    code, out, _ = cli("explain", key, "--json")
    assert code == 0
    e = json.loads(out)
    # Then it tells which rule matches and why, and changes nothing (no claim, no tag, no CI call)
    assert e["object"]["etag"] == etag and e["object"]["tags"] == {"owner": "carol"}
    assert [(r["name"], r["matches"], r["why"]) for r in e["rules"]] == [
        ("images", True, "under 'uploads/', suffix '.png'")]
    (job,) = e["jobs"]
    assert job["state"] == "new" and job["outcomes"]["SUSPICIOUS"]["actions"] == ["quarantine"]
    assert nt_dev.tags(key) == {"owner": "carol"}
    assert len(nt_dev.ci_requests()) == requests_before
    assert not any(nt_dev.exists(RecordId(key, etag, "images").path(".ciflow/", kind))
                   for kind in ("jobs", "pending", "results"))
    # And the request it shows is exactly what backfill then sends to CI (the token aside)
    cli("backfill", "--prefix", prefix)
    (received,) = nt_dev.ci_requests_for(key)
    sent = dict(received["request"])
    assert "t=v1." in sent["CallBack"]
    sent["CallBack"] = re.sub(r"t=[^&]+", "t=REDACTED", sent["CallBack"])
    assert sent == job["request"]
    nt_dev.wait_status(key, "CLEAN")
    # Once done, explain says an upload event would do nothing, and what a rescan would send
    code, out, _ = cli("explain", key)
    assert code == 0
    assert re.search(r"upload event  no new job: the verdict known for this ETag \(CLEAN, job c[0-9a-f]+\) "
                     r"is applied again", out)
    assert f'"UserData": "ciflow:1;r=images;e={etag};n=2"' in out
    assert "?t=REDACTED" in out and "t=v1." not in out
    # Keys that are skipped say why; a key without an object works with --content-type
    code, out, _ = cli("explain", f"quarantine/{prefix}x.png")
    assert "an upload event is skipped: in the quarantine prefix" in out
    code, out, _ = cli("explain", f"{prefix}later.bin", "--content-type", "image/gif")
    assert "object        does not exist" in out and "content type 'image/gif' (rule: 'image/')" in out
    assert '"UserData": "ciflow:1;r=images;e=<etag>"' in out


def test_check_config_against_the_stack_environment(nt_dev: Dev, tmp_path: Path) -> None:
    ok = run_module(nt_dev, "check-config")
    assert ok.returncode == 0 and "configuration OK" in ok.stdout, ok.stdout + ok.stderr
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps({"quarantine_prefix": "q", "rules": [
        {"name": "images", "job": "ImageInspect", "prefixes": ["uploads/"], "outcomes": {"MAYBE": {}}}]}))
    proc = run_module(nt_dev, "check-config", "--rules", str(bad))
    assert proc.returncode == 1
    assert f"error: {bad}: $.quarantine_prefix: must be a key prefix ending in '/'" in proc.stdout
    assert f"error: {bad}: rules[0].outcomes.MAYBE: unknown outcome for ImageInspect" in proc.stdout
    assert "2 problem(s)" in proc.stdout and "Traceback" not in proc.stderr


def test_check_config_online_and_status_report_each_buckets_versioning(nt_dev: Dev, cli, prefix: str) -> None:
    # Given the second bucket has versioning enabled, the first never had it
    versioned = nt_dev.buckets[1]
    nt_dev.s3.put_bucket_versioning(Bucket=versioned, VersioningConfiguration={"Status": "Enabled"})
    # When check-config reads the buckets
    code, out, _ = cli("check-config", "--online")
    # Then it says what each bucket's versioning means for the guarantees
    assert code == 0, out
    assert f"bucket {nt_dev.bucket}: versioning never enabled" in out
    assert f"bucket {versioned}: versioning Enabled" in out and "arbitrated by object versions" in out
    # And status says it too
    code, out, _ = cli("status", "--bucket", versioned, "--prefix", prefix)
    assert code == 0 and "versioning Enabled" in out
    code, out, _ = cli("status", "--json", "--bucket", versioned, "--prefix", prefix)
    assert json.loads(out)["versioning"] == "Enabled"
