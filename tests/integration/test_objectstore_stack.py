"""The object store's switches through the whole stack: `serve --help`, flags, `/_devstack/config` at run time,
and functions run with their clock offset."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SWITCHES = ["--key-encoding", "--event-form", "--event-copies", "--if-none-match", "--delete-if-match",
            "--s3-copy-conditions",
            "--copy-limit-bytes", "--versioning", "--callback-user-data", "--clock-offset"]


@pytest.fixture(scope="module")
def vdev() -> Iterator[Dev]:
    yield from start_dev("--buckets", "uploads,other,kept,paused", "--versioning", "kept=Enabled",
                         "--versioning", "paused=Suspended", "--clock-offset", "reconcile=400",
                         "--reconcile-every", "0.5")


def config(dev: Dev, values: Any = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(values).encode() if values is not None else None
    req = urllib.request.Request(dev.env["CIFLOW_DEV_CONFIG"], data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_serve_help_lists_every_switch() -> None:
    out = subprocess.run([sys.executable, "-m", "devstack", "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    for flag in SWITCHES:
        assert flag in out, flag
    assert "least favourable" in out


@pytest.mark.parametrize("args, message", [
    (["--versioning", "nosuch=Enabled"], "--versioning names a bucket not in --buckets"),
    (["--versioning", "uploads=On"], "expected one of Enabled, Suspended"),
    (["--if-none-match", "sometimes"], "invalid choice"),
    (["--clock-offset", "reconcile=soon"], "expected SECONDS"),
    (["--clock-offset", "nosuch=5"], "not a function"),
    (["--copy-limit-bytes", "-1"], "expected a size >= 0"),
])
def test_bad_flags_are_refused_with_a_clear_message(args: list[str], message: str, tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "devstack", "serve", "--quiet", "--env-file", str(tmp_path / "e"),
                        *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert message in r.stderr
    assert not (tmp_path / "e").exists()


def test_flags_set_versioning_per_bucket(vdev: Dev) -> None:
    status, cfg = config(vdev)
    assert status == 200
    assert cfg["versioning"] == {"kept": "Enabled", "paused": "Suspended"}
    kept, paused = (b for b in vdev.buckets if b.startswith(("kept-", "paused-")))
    assert vdev.s3.get_bucket_versioning(Bucket=kept)["Status"] == "Enabled"
    assert vdev.s3.get_bucket_versioning(Bucket=paused)["Status"] == "Suspended"
    assert "Status" not in vdev.s3.get_bucket_versioning(Bucket=vdev.bucket)


def test_switches_change_at_run_time_and_bad_ones_change_nothing(vdev: Dev) -> None:
    _, before = config(vdev)
    # A bad value is refused, naming the setting, and nothing of the request is applied
    status, out = config(vdev, {"event_form": "logged", "if_none_match": "sometimes"})
    assert status == 400 and "if_none_match" in out["error"]
    for bad in ({"event_copies": 0}, {"versioning": {"nosuch": "Enabled"}}, {"clock_offsets": {"submit": "x"}},
                {"state_fail_rate": 3}, ["not", "an", "object"]):
        assert config(vdev, bad)[0] == 400, bad
    assert config(vdev)[1] == before
    # A good one takes effect at once
    key = f"uploads/switch-{uuid.uuid4().hex[:6]}/a.txt"
    try:
        assert config(vdev, {"if_none_match": "honour"})[0] == 200
        vdev.s3.put_object(Bucket=vdev.bucket, Key=key, Body=b"1", IfNoneMatch="*")
        with pytest.raises(ClientError) as info:
            vdev.s3.put_object(Bucket=vdev.bucket, Key=key, Body=b"2", IfNoneMatch="*")
        assert info.value.response["Error"]["Code"] == "PreconditionFailed"
    finally:
        config(vdev, {"if_none_match": before["if_none_match"]})


def test_versioning_can_be_turned_on_at_run_time_but_never_off(vdev: Dev) -> None:
    other = next(b for b in vdev.buckets if b.startswith("other-"))
    assert config(vdev, {"versioning": {"other": "Enabled"}})[0] == 200
    assert vdev.s3.get_bucket_versioning(Bucket=other)["Status"] == "Enabled"
    status, out = config(vdev, {"versioning": {"other": None}})
    assert status == 400 and "Enabled, Suspended" in out["error"]


def test_a_function_with_a_clock_offset_runs_apart_with_that_offset(vdev: Dev) -> None:
    assert config(vdev)[1]["clock_offsets"] == {"reconcile": 400.0}
    runs = vdev.wait_for(lambda: [i for i in vdev.invocations("reconcile") if i.get("ok")], 20, "a reconcile run")
    assert runs[0]["clock_offset"] == 400.0
    # It ran in a worker process of this interpreter, from the source tree
    assert runs[0]["runtime"]["ciflow"].startswith(str(ROOT / "layers" / "ciflow"))
    time.sleep(0.1)
    assert all(i.get("clock_offset") is None for i in vdev.invocations("submit"))


@pytest.mark.parametrize("shape", ["omit", "echo"])
def test_callback_user_data_is_passed_to_the_ci_emulator(shape: str) -> None:
    for dev in start_dev("--callback-user-data", shape, "--reconcile-every", "0"):
        with urllib.request.urlopen(dev.env["CIFLOW_DEV_CI_ADMIN"] + "config", timeout=10) as r:
            assert json.load(r)["callback_user_data"] == shape
