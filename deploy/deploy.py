"""`make deploy`: publish the two layers and the functions with Serverless Cloud Framework (`scf`),
then set through the SCF API what the `multi-scf` component does not (docs/deploy.md).

`make package` has built dist/*.zip. This script
1. checks that the `scf` CLI is installed, that the credentials are in `.env`, and that every
   variable serverless.yml and the layer instances use is set: the CLI would deploy an unset one as
   a placeholder string, so each missing variable is named and nothing is deployed;
2. unpacks each zip into dist/stage/, which the serverless.yml files upload, so what is deployed is
   byte for byte what was built and tested, and renders serverless.yml into dist/stage/functions/
   with what the TDMQ deliveries of the staged rules and of `.env` need (deploy/tdmq.py: a `cmq`
   trigger per topic, the delivery settings on submit and reconcile) and, when `.env` sets
   CIFLOW_STATE_BUCKET, that bucket on every function that reads records (deploy/state.py);
3. runs `scf deploy --target deploy/layers/deps`, then `.../lib`, then `scf deploy --target
   dist/stage/functions` for the functions (`--no-validation` adds the CLI's `--noValidation`,
   which skips the platform's input rules);
4. reads the callback's Function URL back with ListTriggers; when CIFLOW_CALLBACK_URL is empty (the
   first deploy), deploys the functions once more with it, since submit and reconcile hand it to CI;
5. sets the async retry policy of submit and reconcile, and of callback when a topic triggers it
   (UpdateFunctionEventInvokeConfig) and, when CIFLOW_DLQ_TYPE and CIFLOW_DLQ_NAME are set, submit's
   dead-letter queue.

    python -m deploy.deploy [--env-file PATH] [--no-validation]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from . import component_rules, dotenv, scf_api, state, tdmq

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
ARTIFACTS = ("function-code", "layer-ciflow", "layer-deps")  # dist/<name>.zip -> dist/stage/<name>/
LAYER_TARGETS = ("deploy/layers/deps", "deploy/layers/lib")
FUNCTIONS_STAGE = "functions"  # dist/stage/functions/serverless.yml, rendered by deploy/tdmq.py and state.py

CREDENTIALS = ["TENCENT_SECRET_ID", "TENCENT_SECRET_KEY"]
# May be empty: the first deploy finds the Function URL and deploys again with it.
MAY_BE_EMPTY = {"CIFLOW_CALLBACK_URL"}
BUCKET = state.BUCKET  # <name>-<appid>
PLACEHOLDER = "undefined"  # what the CLI makes of an unset ${env:...}

Runner = Callable[[list[str], Mapping[str, str]], tuple[int, str]]
Log = Callable[[str], None]


def instance(root: Path = ROOT) -> dict[str, Any]:
    return yaml.safe_load((root / "serverless.yml").read_text(encoding="utf-8"))


def referenced_variables(root: Path = ROOT) -> list[str]:
    """Every `${env:NAME}` in serverless.yml and the layer instances."""
    text = "".join((root / p).read_text(encoding="utf-8")
                   for p in ["serverless.yml", *(f"{t}/serverless.yml" for t in LAYER_TARGETS)])
    return sorted(set(component_rules.ENV_REF.findall(text)))


def function_names(sls: Mapping[str, Any]) -> dict[str, str]:
    """serverless.yml's function keys and the names multi-scf gives them: <name>-<stage>-<app>-<key>."""
    return {key: f"{sls['name']}-{sls['stage']}-{sls['app']}-{key}" for key in sls["inputs"]["functions"]}


def preflight(env: Mapping[str, str], which: Callable[[str], Optional[str]] = shutil.which,
              no_validation: bool = False, root: Path = ROOT, rules: Path = tdmq.DEPLOYED_RULES) -> list[str]:
    """Everything that would make `scf deploy` fail or deploy something broken, as messages."""
    problems = []
    if which("scf") is None:
        problems.append("the Serverless Cloud Framework CLI is not installed: npm i -g serverless-cloud-framework "
                        "(it provides the `scf` command)")
    absent = dotenv.missing(env, CREDENTIALS)
    if absent:
        problems.append(f"no Tencent Cloud credentials: set {' and '.join(absent)} in .env, or run `scf login`, "
                        "which writes them there")
    used = referenced_variables(root)
    absent = [v for v in dotenv.missing(env, used) if v not in MAY_BE_EMPTY]
    if absent:
        problems.append(f"set {', '.join(absent)} in .env (see .env.example): serverless.yml or a layer instance "
                        "uses them, and the CLI would deploy an unset variable as a placeholder string")
    literal = [v for v in used if env.get(v, "").strip() == PLACEHOLDER]
    if literal:
        problems.append(f"{', '.join(literal)} in .env holds the CLI's placeholder for an unset variable; "
                        "set a real value")
    if 0 < len(env.get("CIFLOW_CALLBACK_SECRET", "").strip()) < 16:
        problems.append("CIFLOW_CALLBACK_SECRET must be at least 16 characters")
    bucket = env.get("CIFLOW_BUCKET", "").strip()
    if bucket and not BUCKET.fullmatch(bucket):
        problems.append(f"CIFLOW_BUCKET must be the bucket's full name, <name>-<appid>; got {bucket!r}")
    url = env.get("CIFLOW_CALLBACK_URL", "").strip()
    if url and not url.startswith("https://"):
        problems.append(f"CIFLOW_CALLBACK_URL must be an https:// URL (or empty before the first deploy); got {url!r}")
    if bool(env.get("CIFLOW_DLQ_TYPE", "").strip()) != bool(env.get("CIFLOW_DLQ_NAME", "").strip()):
        problems.append("set both CIFLOW_DLQ_TYPE and CIFLOW_DLQ_NAME, or neither")
    elsewhere = [v for v in ("CIFLOW_RULES_FILE", "CIFLOW_RULES") if env.get(v, "").strip()]
    if elsewhere:
        problems.append(f"{' and '.join(elsewhere)} is set, but not deployed: the functions load the rules the lib "
                        f"layer ships ({tdmq.DEPLOYED_RULES.relative_to(ROOT)}). Put your rules there and unset "
                        f"{' and '.join(elsewhere)}, so that the deploy and the functions read the same rules")
    try:
        tdmq.selection(env, rules)
    except tdmq.TdmqConfigError as exc:
        problems += [f"TDMQ delivery: {p}" for p in exc.problems]
    problems += state.problems(env)
    if not no_validation and not absent:
        # The platform's own input check, as far as the components' published rules tell it.
        for finding in component_rules.project_findings(root, list(LAYER_TARGETS), env):
            if finding.level == "error":
                problems.append(f"{finding.where}: {finding.message} (the platform validates inputs against "
                                "the component's rules; `make deploy DEPLOY_ARGS=--no-validation` skips that)")
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


def render_functions(env: Mapping[str, str], chosen: tdmq.Selection, folder: Path, code: Optional[Path] = None,
                     root: Path = ROOT) -> dict[str, Any]:
    """serverless.yml as deployed from `folder`: rendered for the TDMQ deliveries `chosen` and for the
    state bucket of `env`. `make deploy-plan` runs the same. Raises TdmqConfigError, StateConfigError."""
    return state.render(tdmq.render(instance(root), chosen, folder, code, root), env)


def stage_functions(env: Mapping[str, str], dist: Path, root: Path = ROOT) -> tuple[Path, tdmq.Selection]:
    """dist/stage/functions/serverless.yml: serverless.yml with what the TDMQ deliveries of the staged
    rules (those the deployed functions load) and of `env` need, and `env`'s state bucket. Raises
    TdmqConfigError, StateConfigError."""
    rules = dist / "stage" / tdmq.RULES_IN_LAYER
    if not rules.is_file():
        raise FileNotFoundError(f"{rules} is missing: the lib layer ships the rules; run `make package` again")
    chosen = tdmq.selection(env, rules)
    folder = dist / "stage" / FUNCTIONS_STAGE
    shutil.rmtree(folder, ignore_errors=True)
    tdmq.write(render_functions(env, chosen, folder, dist / "stage" / "function-code", root), folder)
    return folder, chosen


def target_of(folder: Path, root: Path = ROOT) -> str:
    """`scf deploy --target` value for `folder`, relative to where `scf` runs when it can be."""
    try:
        return f"./{folder.resolve().relative_to(root.resolve())}"
    except ValueError:
        return str(folder.resolve())


def run_scf(args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run `scf`, streaming its output and returning it too (failures are explained from it)."""
    proc = subprocess.Popen(["scf", *args], cwd=ROOT, env=dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines)


def explain_failure(output: str, no_validation: bool, log: Log) -> None:
    if not no_validation and ("noValidation" in output or "校验" in output):
        log("deploy: the platform's input validation refused the deploy. SCF runs Python3.9, but the components' "
            "published rules stop at Python3.7 (docs/deploy.md); run `make deploy DEPLOY_ARGS=--no-validation` "
            "to skip that validation")


def apply_invoke_settings(api: Any, env: Mapping[str, str], names: Mapping[str, str], namespace: str,
                          log: Log, chosen: Optional[tdmq.Selection] = None) -> None:
    """The retry policy of each async function (callback too when a topic triggers it), and submit's
    dead-letter queue when configured."""
    policies = dict(scf_api.ASYNC_RETRY)
    if chosen is not None and chosen.topics:
        policies[tdmq.RECEIVING_FUNCTION] = scf_api.TOPIC_TRIGGERED_RETRY
    for key, policy in policies.items():
        scf_api.set_async_retry(api, names[key], namespace, policy)
        log(f"deploy: {key}: async retries {policy.retry_num}, events kept {policy.msg_ttl} s")
    kind, queue = env.get("CIFLOW_DLQ_TYPE", "").strip(), env.get("CIFLOW_DLQ_NAME", "").strip()
    if kind and queue:
        scf_api.set_dead_letter(api, names["submit"], namespace, kind, queue)
        log(f"deploy: submit: dead-letter queue {kind} {queue}")


def deploy(env: dict[str, str], dist: Path = DIST, scf: Runner = run_scf, api: Any = None, log: Log = print,
           no_validation: bool = False, root: Path = ROOT) -> int:
    stage(dist)
    try:
        folder, chosen = stage_functions(env, dist, root)
    except tdmq.TdmqConfigError as exc:
        log("deploy: the TDMQ deliveries cannot be deployed:\n  - " + "\n  - ".join(exc.problems))
        return 1
    except state.StateConfigError as exc:
        log("deploy: the record location cannot be deployed:\n  - " + "\n  - ".join(exc.problems))
        return 1
    for line in [*chosen.describe(), state.describe(env)]:
        log(f"deploy: {line}")
    functions = ["deploy", "--target", target_of(folder, root)]
    sls = instance(root)
    names = function_names(sls)
    namespace = sls["inputs"].get("namespace") or "default"
    http = next(t for t in sls["inputs"]["triggers"] if t["type"] == "http" and t["function"] == "callback")
    qualifier = http["parameters"].get("qualifier") or "$DEFAULT"
    flags = ["--noValidation"] if no_validation else []
    # Settings come from `env` alone (dotenv.load already put exported variables on top of .env).
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    child_env.update(env)
    child_env.setdefault("CIFLOW_CALLBACK_URL", "")
    configured = child_env["CIFLOW_CALLBACK_URL"].strip()

    def scf_deploy(args: list[str], environment: Mapping[str, str]) -> int:
        code, output = scf([*args, *flags], environment)
        if code != 0:
            explain_failure(output, no_validation, log)
        return code

    for target in LAYER_TARGETS:
        log(f"deploy: publishing the layer in {target}")
        code = scf_deploy(["deploy", "--target", f"./{target}"], child_env)
        if code != 0:
            return code
    log(f"deploy: deploying the functions ({target_of(folder, root)}/serverless.yml, rendered from serverless.yml)")
    code = scf_deploy(functions, child_env)
    if code != 0:
        return code
    try:
        api = api or scf_api.client(env)
        found = scf_api.function_url(api, names["callback"], namespace, qualifier, env["CIFLOW_REGION"])
        if found and not configured:
            log(f"deploy: the callback's Function URL is {found}; deploying the functions again with it")
            code = scf_deploy(functions, {**child_env, "CIFLOW_CALLBACK_URL": found})
            if code != 0:
                return code
        apply_invoke_settings(api, env, names, namespace, log, chosen)
    except scf_api.ScfApiError as exc:
        log(f"deploy: the functions are deployed, but an SCF API call failed: {exc}. Fix the cause and run "
            "`make deploy` again.")
        return 1
    if found and not configured:
        log(f"deploy: done. Add this line to .env so later deploys keep it:\n  CIFLOW_CALLBACK_URL={found}")
    elif found and found != configured:
        log(f"deploy: done, but CIFLOW_CALLBACK_URL in .env is {configured}, while the callback's Function URL "
            f"is {found}. Unless the first is a domain bound to the second, CI's callbacks go astray: put "
            f"CIFLOW_CALLBACK_URL={found} in .env and run `make deploy` again.")
    elif not found and not configured:
        log("deploy: the functions are deployed, but CIFLOW_CALLBACK_URL is empty, so submit cannot give CI a "
            f"callback yet, and ListTriggers shows no public Function URL for {names['callback']}. Copy the "
            "callback function's URL (SCF console -> callback -> Function URL) into CIFLOW_CALLBACK_URL in .env "
            "and run `make deploy` again.")
        return 1
    elif not found:
        log(f"deploy: done. ListTriggers shows no public Function URL for {names['callback']}; keeping "
            f"CIFLOW_CALLBACK_URL={configured} from .env.")
    else:
        log("deploy: done.")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.deploy", description=__doc__.split("\n\n")[0])
    p.add_argument("--env-file", type=Path, default=dotenv.ENV_FILE)
    p.add_argument("--no-validation", action="store_true",
                   help="pass --noValidation to `scf deploy`: skip the platform's check of the inputs against the "
                        "components' published rules (which do not list Python3.9)")
    ns = p.parse_args(argv)
    env = dotenv.load(ns.env_file)
    problems = preflight(env, no_validation=ns.no_validation)
    if problems:
        print("deploy: cannot deploy yet:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    if not ns.no_validation:
        for finding in component_rules.project_findings(ROOT, list(LAYER_TARGETS), env):
            if finding.level != "error":
                print(f"deploy: {finding}")
    try:
        return deploy(env, no_validation=ns.no_validation)
    except FileNotFoundError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
