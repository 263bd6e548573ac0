"""`make dev`: the stack in the foreground, usable from plain boto3 with the values it writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from devstack.samples import _png, zip_archive
from devstack.stack import read_env_file

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_dev_serves_and_plain_boto3_uploads_get_acted_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".devstack.env"
    log_file = tmp_path / "dev.log"
    proc = subprocess.Popen([sys.executable, "-m", "devstack", "serve", "--env-file", str(env_file),
                             "--log-file", str(log_file)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        while not env_file.exists():
            assert proc.poll() is None and time.time() < deadline, "stack did not start"
            time.sleep(0.05)
        values = read_env_file(str(env_file))
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                  "CIFLOW_DEV_BUCKET"):
            monkeypatch.setenv(k, values[k])
        s3 = boto3.client("s3")  # nothing but the sourced values
        bucket = values["CIFLOW_DEV_BUCKET"]
        s3.put_object(Bucket=bucket, Key="uploads/dev/mine.png", Body=_png())
        s3.put_object(Bucket=bucket, Key="uploads/dev/poly.png", Body=_png() + zip_archive())

        def status(key: str):
            try:
                tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            except Exception:  # noqa: BLE001
                return None
            return {t["Key"]: t["Value"] for t in tags}.get("ci-status")

        deadline = time.time() + 30
        while time.time() < deadline and (status("uploads/dev/mine.png") != "CLEAN"
                                          or status("quarantine/uploads/dev/poly.png") != "SUSPICIOUS"):
            time.sleep(0.1)
        assert status("uploads/dev/mine.png") == "CLEAN"
        assert status("quarantine/uploads/dev/poly.png") == "SUSPICIOUS"
        time.sleep(float(os.environ.get("CIFLOW_TEST_DEV_IDLE", "6")))  # idle: reconcile runs, says nothing
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    # Ctrl-C stops everything cleanly, after printing the endpoints and the credentials file
    assert proc.returncode == 0
    assert values["AWS_ENDPOINT_URL"] in out and str(env_file) in out
    assert "stopped." in out
    assert os.path.exists(env_file)
    # One human line per thing that happened to a file, no JSON, and nothing while idle
    events = [ln for ln in out.splitlines() if re.match(r"\d\d:\d\d:\d\d  ", ln)]
    assert not [ln for ln in out.splitlines() if ln.lstrip().startswith("{")], out
    assert re.search(r"uploads/dev/mine\.png\s+→ ImageInspect job c[0-9a-f]+… +\(rule images\)", out), out
    assert re.search(r"uploads/dev/mine\.png\s+← CLEAN\s+tags ci-status=CLEAN", out), out
    assert re.search(r"uploads/dev/poly\.png\s+← SUSPICIOUS \(ZIP\)\s+→ quarantine/uploads/dev/poly\.png", out), out
    assert len(events) == 4, events
    # The functions' JSON logs went to the file named at start
    assert str(log_file) in out and '"message"' in log_file.read_text()
