"""`make smoke`: skipped cleanly without credentials, and its upload-and-wait logic run for real against
the local stack by pointing it at the local S3 endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Dev

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def smoke(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    # Exactly what `make smoke` runs, minus the user's .env and Tencent/ciflow variables
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_", "AWS_"))}
    clean.update(env, PYTHONPATH=str(ROOT / "layers" / "ciflow"))
    return subprocess.run([sys.executable, "-m", "deploy.smoke", *args], cwd=ROOT, env=clean,
                          capture_output=True, text=True, timeout=120)


def test_without_credentials_it_says_so_and_exits_0(tmp_path: Path) -> None:
    proc = smoke({}, "--env-file", str(tmp_path / "absent.env"))
    assert proc.returncode == 0, proc.stderr
    assert "smoke: skipped" in proc.stdout
    assert "TENCENT_SECRET_ID, TENCENT_SECRET_KEY, CIFLOW_BUCKET, CIFLOW_REGION not set" in proc.stdout


def test_credentials_in_an_env_file_are_used(tmp_path: Path) -> None:
    # Given only a partial .env: the missing names are reported, nothing else
    env_file = tmp_path / ".env"
    env_file.write_text("TENCENT_SECRET_ID=AKIDx\nTENCENT_SECRET_KEY='k'\n# CIFLOW_BUCKET=\n")
    proc = smoke({}, "--env-file", str(env_file))
    assert proc.returncode == 0 and "CIFLOW_BUCKET, CIFLOW_REGION not set" in proc.stdout


def test_upload_and_wait_against_the_local_stack(dev: Dev, tmp_path: Path) -> None:
    # Given the local stack's S3 endpoint in place of https://cos.<region>.myqcloud.com
    env = {"TENCENT_SECRET_ID": "devstack", "TENCENT_SECRET_KEY": "devstack", "CIFLOW_BUCKET": dev.bucket,
           "CIFLOW_REGION": dev.env["AWS_DEFAULT_REGION"]}
    # When the smoke check runs
    proc = smoke(env, "--endpoint", dev.env["AWS_ENDPOINT_URL"], "--poll", "0.2", "--timeout", "60",
                 "--env-file", str(tmp_path / "absent.env"))
    # Then both verdicts arrived where they should
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "smoke: passed" in proc.stdout
    clean = next(line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("ok") and
                 "clean.png" in line)
    quarantined = next(line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
                       if line.startswith("ok") and "polyglot.png" in line)
    assert dev.tags(clean)["ci-status"] == "CLEAN"
    assert quarantined.startswith("quarantine/uploads/ciflow-smoke/")
    assert dev.tags(quarantined)["ci-suspicious-type"] == "ZIP"
    # the copy is tagged before the original is deleted: the delete may trail the status by a moment
    dev.wait_for(lambda: not dev.exists(quarantined.removeprefix("quarantine/")), what="original deleted")
