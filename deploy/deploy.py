"""`make deploy`: publish the two layers and the functions with Serverless Cloud Framework (`scf`).

`make package` has built dist/*.zip. This script
1. checks that the `scf` CLI is installed and that credentials and settings are in `.env`;
2. unpacks each zip into dist/stage/, which the serverless.yml files upload, so what is deployed is
   byte for byte what was built and tested;
3. runs `scf deploy --target deploy/layers/deps`, then `.../lib`, then `scf deploy` for the functions;
4. when CIFLOW_CALLBACK_URL is empty (the first deploy), finds the callback's Function URL in the
   output and deploys the functions once more with it, since submit must hand it to CI.

    python -m deploy.deploy [--env-file PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Callable, Optional

from . import dotenv

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
ARTIFACTS = ("function-code", "layer-ciflow", "layer-deps")  # dist/<name>.zip -> dist/stage/<name>/
LAYER_TARGETS = ("deploy/layers/deps", "deploy/layers/lib")

CREDENTIALS = ["TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"]
SETTINGS = ["CIFLOW_REGION", "CIFLOW_BUCKET", "CIFLOW_ROLE", "CIFLOW_CALLBACK_SECRET"]
# https://<appid>-<id>.<region>.tencentscf.com (platform.md §4)
FUNCTION_URL = re.compile(r"https://\d+-[0-9a-z]+\.[0-9a-z-]+\.tencentscf\.com\b[^\s'\"]*")

Runner = Callable[[list[str], Mapping[str, str]], tuple[int, str]]


def preflight(env: Mapping[str, str], which: Callable[[str], Optional[str]] = shutil.which) -> list[str]:
    """Everything that would make `scf deploy` fail or deploy something broken, as messages."""
    problems = []
    if which("scf") is None:
        problems.append("the Serverless Cloud Framework CLI is not installed: npm i -g serverless-cloud-framework "
                        "(it provides the `scf` command)")
    absent = dotenv.missing(env, CREDENTIALS)
    if absent:
        problems.append(f"no Tencent Cloud credentials: set {' and '.join(absent)} in .env, or run `scf login`, "
                        "which writes them there")
    absent = dotenv.missing(env, SETTINGS)
    if absent:
        problems.append(f"set {', '.join(absent)} in .env (see .env.example)")
    if 0 < len(env.get("CIFLOW_CALLBACK_SECRET", "")) < 16:
        problems.append("CIFLOW_CALLBACK_SECRET must be at least 16 characters")
    if bool(env.get("CIFLOW_DLQ_TYPE")) != bool(env.get("CIFLOW_DLQ_NAME")):
        problems.append("set both CIFLOW_DLQ_TYPE and CIFLOW_DLQ_NAME, or neither")
    return problems


def stage(dist: Path) -> None:
    """Unpack each artifact into dist/stage/<name>/, replacing what an earlier deploy left there."""
    for name in ARTIFACTS:
        src, dest = dist / f"{name}.zip", dist / "stage" / name
        if not src.exists():
            raise FileNotFoundError(f"{src} is missing: run `make package` first")
        shutil.rmtree(dest, ignore_errors=True)
        with zipfile.ZipFile(src) as zf:
            zf.extractall(dest)


def run_scf(args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run `scf`, streaming its output and returning it too (the Function URL is read from it)."""
    proc = subprocess.Popen(["scf", *args], cwd=ROOT, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines)


def deploy(env: dict[str, str], dist: Path = DIST, scf: Runner = run_scf, log: Callable[[str], None] = print) -> int:
    stage(dist)
    # Settings come from `env` alone (dotenv.load already put exported variables on top of .env).
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    child_env.update(env)
    child_env.setdefault("CIFLOW_CALLBACK_URL", "")
    child_env.setdefault("CIFLOW_DLQ_TYPE", "")
    child_env.setdefault("CIFLOW_DLQ_NAME", "")
    for target in LAYER_TARGETS:
        log(f"deploy: publishing the layer in {target}")
        code, _ = scf(["deploy", "--target", f"./{target}"], child_env)
        if code != 0:
            return code
    log("deploy: deploying the functions (serverless.yml)")
    code, output = scf(["deploy"], child_env)
    if code != 0 or child_env["CIFLOW_CALLBACK_URL"]:
        return code
    urls = sorted(set(FUNCTION_URL.findall(output)))
    if len(urls) != 1:
        log("deploy: the functions are deployed, but CIFLOW_CALLBACK_URL is empty, so submit cannot start jobs "
            f"yet, and {'no' if not urls else 'more than one'} Function URL was found in the output. Copy the "
            "callback function's URL (SCF console -> callback -> Function URL) into CIFLOW_CALLBACK_URL in .env "
            "and run `make deploy` again.")
        return 1
    log(f"deploy: the callback's Function URL is {urls[0]}; deploying the functions again with it")
    code, _ = scf(["deploy"], {**child_env, "CIFLOW_CALLBACK_URL": urls[0]})
    if code == 0:
        log(f"deploy: done. Add this line to .env so later deploys keep it:\n  CIFLOW_CALLBACK_URL={urls[0]}")
    return code


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--env-file", type=Path, default=dotenv.ENV_FILE)
    ns = p.parse_args(argv)
    env = dotenv.load(ns.env_file)
    problems = preflight(env)
    if problems:
        print("deploy: cannot deploy yet:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    try:
        return deploy(env)
    except FileNotFoundError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
