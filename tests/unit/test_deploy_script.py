"""`make deploy` without Tencent Cloud: preflight messages, staging, and the order of `scf` runs."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

from deploy import deploy

ROOT = Path(__file__).resolve().parents[2]
CONFIGURED = {"TENCENT_SECRET_ID": "AKIDx", "TENCENT_SECRET_KEY": "k", "CIFLOW_REGION": "ap-guangzhou",
              "CIFLOW_BUCKET": "uploads-1250000000", "CIFLOW_ROLE": "ciflow-functions",
              "CIFLOW_CALLBACK_SECRET": "s" * 32}
URL = "https://1250000000-abc123xyz.ap-guangzhou.tencentscf.com"


def fake_dist(tmp_path: Path) -> Path:
    for name in deploy.ARTIFACTS:
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr(f"{name}/marker.txt", name)
    return tmp_path


class FakeScf:
    """Records each `scf` run; the functions deploy prints a Function URL like the real output would."""

    def __init__(self, output: str = f"triggers:\n  - url: {URL}\n", code: int = 0):
        self.runs: list[tuple[list[str], str]] = []
        self.output, self.code = output, code

    def __call__(self, args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
        self.runs.append((args, env["CIFLOW_CALLBACK_URL"]))
        return self.code, self.output if args == ["deploy"] else "layer published"


def test_preflight_names_the_missing_cli_credentials_and_settings() -> None:
    problems = deploy.preflight({"CIFLOW_CALLBACK_SECRET": "short", "CIFLOW_DLQ_NAME": "q"}, which=lambda _: None)
    text = "\n".join(problems)
    assert "npm i -g serverless-cloud-framework" in text and "`scf`" in text
    assert "TENCENT_SECRET_ID and TENCENT_SECRET_KEY" in text and "scf login" in text
    assert "CIFLOW_REGION, CIFLOW_BUCKET, CIFLOW_ROLE" in text
    assert "at least 16 characters" in text
    assert "CIFLOW_DLQ_TYPE and CIFLOW_DLQ_NAME" in text
    assert deploy.preflight(CONFIGURED, which=lambda _: "/usr/bin/scf") == []


def test_first_deploy_publishes_layers_then_functions_then_redeploys_with_the_callback_url(tmp_path: Path) -> None:
    # Given packaged artifacts and no callback URL yet
    scf, logs = FakeScf(), []
    # When deploying
    code = deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, logs.append)
    # Then the layers go first, the functions next, and again once the Function URL is known
    assert code == 0
    assert scf.runs == [(["deploy", "--target", "./deploy/layers/deps"], ""),
                        (["deploy", "--target", "./deploy/layers/lib"], ""),
                        (["deploy"], ""),
                        (["deploy"], URL)]
    assert f"CIFLOW_CALLBACK_URL={URL}" in logs[-1]
    # And every artifact was unpacked where the serverless.yml files look for it
    for name in deploy.ARTIFACTS:
        assert (tmp_path / "stage" / name / name / "marker.txt").read_text() == name


def test_a_known_callback_url_needs_one_functions_deploy(tmp_path: Path) -> None:
    scf = FakeScf()
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}, fake_dist(tmp_path), scf, print) == 0
    assert [args for args, _ in scf.runs].count(["deploy"]) == 1


def test_without_a_url_in_the_output_it_says_what_to_do(tmp_path: Path) -> None:
    scf, logs = FakeScf(output="done\n"), []
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, logs.append) == 1
    assert "CIFLOW_CALLBACK_URL" in logs[-1] and "make deploy" in logs[-1]


def test_a_failed_layer_deploy_stops_everything(tmp_path: Path) -> None:
    scf = FakeScf(code=3)
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, print) == 3
    assert len(scf.runs) == 1


def test_make_deploy_entry_point_explains_missing_cli_and_credentials(tmp_path: Path) -> None:
    # Given no .env, no Tencent variables and no `scf` on PATH
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    env["PATH"] = str(Path(sys.executable).parent)
    # When the deploy entry point runs
    proc = subprocess.run([sys.executable, "-m", "deploy.deploy", "--env-file", str(tmp_path / "none.env")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    # Then it fails before doing anything, saying what is missing
    assert proc.returncode == 1
    assert "serverless-cloud-framework" in proc.stderr and "no Tencent Cloud credentials" in proc.stderr
