"""`make deploy-plan`: what `scf deploy` of serverless.yml would ask Tencent Cloud to do, checked.

It runs scf-plan (../shared/tools/scf-plan: the real multi-scf component's deploy(), with every
Tencent Cloud API call recorded instead of sent) twice, as a first deploy and as a redeploy, and
checks the recorded calls against serverless.yml and the env file:

- each function is created, and updated on a redeploy, with its handler, runtime, memory, timeout,
  role and layers (each layer at the version its instance outputs), and with exactly the
  environment variables serverless.yml lists, holding the env file's values;
- no value anywhere is the CLI's placeholder for an unset variable;
- no `DeadLetterConfig`, `AsyncRunEnable` or `UpdateFunctionEventInvokeConfig`: `make deploy` sets
  the retry policy and the dead-letter queue itself (deploy/scf_api.py);
- every trigger in serverless.yml becomes one CreateTrigger with the expected name and details;
- TDMQ: exactly one `cmq` trigger on the callback function per topic that a Topic-mode delivery of
  the rules or settings names (none when no rule or setting uses a topic), and the settings'
  delivery variables on submit and reconcile exactly when `.env` chooses TDMQ for all rules;
- the state bucket: CIFLOW_STATE_BUCKET on submit, callback and reconcile, holding the env file's
  value, exactly when the env file sets it, and on no function otherwise.

What is run is serverless.yml as `make deploy` renders it (deploy/tdmq.py, deploy/state.py) for the
env file and the rules (the bundled rules, which the lib layer ships, or `--rules`).

It also applies the components' published input rules (deploy/component_rules.py) to
serverless.yml and deploy/layers/*/serverless.yml. Without Node.js or npm the scf-plan part is
skipped, saying so; the rules are checked all the same.

    python -m deploy.plan [--env-file .env.example] [--rules FILE] [--tool PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from . import component_rules, dotenv, state, tdmq
from .deploy import render_functions

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOOL = ROOT.parent / "shared" / "tools" / "scf-plan" / "scf-plan"
LAYER_DIRS = ["deploy/layers/deps", "deploy/layers/lib"]
# What render.js turns an unset ${env:X} into when it is part of a string, as the CLI does; a whole
# value that is unset vanishes instead (and the toolkit then sends String(undefined)).
UNSET = "undefined"
# Distinct fake versions, so a function wired to the wrong layer instance shows.
FAKE_LAYER_VERSIONS = (7, 3)


class PlanError(Exception):
    """scf-plan could not be run (missing tool, install failure, unreadable output)."""


@dataclass
class Plan:
    existing: bool
    error: Optional[str]
    calls: list[dict[str, Any]]

    def actions(self, action: str, function: Optional[str] = None) -> list[dict[str, Any]]:
        return [c["params"] for c in self.calls if c.get("Action") == action
                and (function is None or c["params"].get("FunctionName") == function)]


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def node_tools(which: Callable[[str], Optional[str]] = shutil.which) -> list[str]:
    """The missing ones of `node` and `npm`."""
    return [tool for tool in ("node", "npm") if which(tool) is None]


def plan_home(environ: Mapping[str, str]) -> str:
    """Where scf-plan installs itself: SCF_PLAN_HOME, else the user cache if writable, else build/."""
    if environ.get("SCF_PLAN_HOME"):
        return environ["SCF_PLAN_HOME"]
    cache = Path(environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    probe = cache if cache.exists() else cache.parent
    if os.access(probe, os.W_OK | os.X_OK):
        return str(cache / "scf-plan")
    return str(ROOT / "build" / "scf-plan")


def run_scf_plan(tool: Path, project: Path, env_file: Path, values: Mapping[str, str], existing: bool = False,
                 outputs: Optional[Mapping[str, str]] = None, timeout: float = 900) -> Plan:
    """Run scf-plan on `project`/serverless.yml. `values` go in the environment, where they win over
    the env file as with the CLI; Tencent and ciflow variables of this process are left out."""
    if not tool.is_file():
        raise PlanError(f"scf-plan not found at {tool}: the shared folder must sit beside the project "
                        "(../shared), or pass --tool")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    env.update(values)
    env["SCF_PLAN_HOME"] = plan_home(os.environ)
    args = [str(tool), str(project), str(env_file)]
    if existing:
        args.append("--existing")
    for key, value in (outputs or {}).items():
        args += ["--output", f"{key}={value}"]
    try:
        proc = subprocess.run(["bash", *args], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PlanError(f"scf-plan did not finish in {timeout:.0f} s") from None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise PlanError(f"scf-plan exited {proc.returncode} without a plan:\n{tail}") from None
    return Plan(existing, doc.get("error"), doc.get("calls") or [])


# --- what serverless.yml asks for ------------------------------------------------------------------

@dataclass(frozen=True)
class ExpectedFunction:
    key: str
    name: str
    handler: str
    runtime: str
    memory: int
    timeout: int
    role: Optional[str]
    environment: dict[str, str]
    layers: list[tuple[str, str]]


def layer_outputs(root: Path = ROOT) -> dict[str, str]:
    """`<layer instance>.version` for each layer instance, with distinct fake versions."""
    names = [load_yaml(root / d / "serverless.yml")["name"] for d in LAYER_DIRS]
    return {f"{n}.version": str(v) for n, v in zip(names, FAKE_LAYER_VERSIONS)}


def _substitute(value: Any, instance: Mapping[str, Any], env: Mapping[str, str], outputs: Mapping[str, str]) -> Any:
    if not isinstance(value, str):
        return value
    value = component_rules.ENV_REF.sub(lambda m: env.get(m.group(1), UNSET), value)
    for k in ("stage", "app", "name"):
        value = value.replace(f"${{{k}}}", str(instance.get(k)))
    if value.startswith("${output:") and value.endswith("}"):
        return outputs.get(value[len("${output:"):-1].split(":")[-1], "1")
    return value


def expected_functions(instance: Mapping[str, Any], env: Mapping[str, str],
                       outputs: Mapping[str, str]) -> list[ExpectedFunction]:
    inputs = instance["inputs"]
    out = []
    for key, fn in inputs["functions"].items():
        sub = lambda v: _substitute(v, instance, env, outputs)  # noqa: E731
        role = sub(fn.get("role", inputs.get("role")))
        out.append(ExpectedFunction(
            key=key, name=f"{instance['name']}-{instance['stage']}-{instance['app']}-{key}",
            handler=fn["handler"], runtime=fn.get("runtime", inputs.get("runtime")),
            memory=fn.get("memorySize", inputs.get("memorySize")), timeout=fn.get("timeout", inputs.get("timeout")),
            role=role,
            environment={e["key"]: sub(e.get("value", "")) for e in fn.get("environments") or []},
            layers=[(layer["name"], str(sub(layer["version"]))) for layer in fn.get("layers") or []],
        ))
    return out


# --- the checks -------------------------------------------------------------------------------------

def _walk(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, f"{path}[{i}]")


def unset_references(instance: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """The `${env:X}` serverless.yml uses that `env` does not define."""
    refs = {m.group(1) for _, v in _walk(instance, "") if isinstance(v, str)
            for m in component_rules.ENV_REF.finditer(v)}
    return sorted(r for r in refs if r not in env)


def check_function(plan: Plan, fn: ExpectedFunction) -> list[str]:
    tag = f"{'redeploy' if plan.existing else 'first deploy'}: {fn.key} ({fn.name})"
    action = "UpdateFunctionConfiguration" if plan.existing else "CreateFunction"
    configs = plan.actions(action, fn.name)
    if len(configs) != 1:
        return [f"{tag}: expected one {action}, the component made {len(configs)}"]
    p = configs[0]
    problems = []
    code = p if not plan.existing else (plan.actions("UpdateFunctionCode", fn.name) or [{}])[0]
    if code.get("Handler") != fn.handler:
        problems.append(f"{tag}: handler {code.get('Handler')!r}, serverless.yml says {fn.handler!r}")
    if not plan.existing and p.get("Runtime") != fn.runtime:
        problems.append(f"{tag}: runtime {p.get('Runtime')!r}, serverless.yml says {fn.runtime!r}")
    if (p.get("MemorySize"), p.get("Timeout")) != (fn.memory, fn.timeout):
        problems.append(f"{tag}: memory/timeout {p.get('MemorySize')}/{p.get('Timeout')}, "
                        f"serverless.yml says {fn.memory}/{fn.timeout}")
    if fn.role is not None and UNSET in fn.role:
        problems.append(f"{tag}: its role comes from an unset variable (the component sends Role={p.get('Role')!r})")
    elif p.get("Role") != fn.role:
        problems.append(f"{tag}: role {p.get('Role')!r}, expected {fn.role!r}")
    variables = (p.get("Environment") or {}).get("Variables")
    if variables is None:
        problems.append(f"{tag}: no Environment sent")
        variables = []
    sent = {v.get("Key"): v.get("Value") for v in variables}
    if len(sent) != len(variables) or "" in sent:
        problems.append(f"{tag}: Environment has empty or repeated keys: {[v.get('Key') for v in variables]}")
    missing = sorted(set(fn.environment) - set(sent))
    extra = sorted(set(sent) - set(fn.environment) - {""})
    # Values are compared, never printed: one of them is the callback secret.
    differ = sorted(k for k in set(sent) & set(fn.environment) if sent[k] != fn.environment[k])
    if missing or extra or differ:
        problems.append(f"{tag}: Environment differs from serverless.yml: missing {missing or '-'}, "
                        f"not listed {extra or '-'}, other value {differ or '-'}")
    layers = [(lay.get("LayerName"), str(lay.get("LayerVersion"))) for lay in p.get("Layers") or []]
    if layers != fn.layers:
        problems.append(f"{tag}: layers {layers}, expected {fn.layers}")
    for key in ("DeadLetterConfig", "AsyncRunEnable"):
        if key in p:
            problems.append(f"{tag}: sends {key}={p[key]!r}; make deploy sets the retry policy and the "
                            "dead-letter queue through the SCF API instead")
    return problems


def check_triggers(plan: Plan, instance: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    names = {key: f"{instance['name']}-{instance['stage']}-{instance['app']}-{key}"
             for key in instance["inputs"]["functions"]}
    created = plan.actions("CreateTrigger")
    problems = []
    wanted = instance["inputs"].get("triggers") or []
    for t in wanted:
        par = {k: _substitute(v, instance, env, {}) for k, v in (t.get("parameters") or {}).items()}
        fn = names.get(t["function"])
        whole = False  # compare the whole TriggerDesc, not only the keys expected
        if t["type"] == "cos":
            f = par.get("filter") or {}
            name = par["bucket"]
            desc = {"event": par["events"], "filter": {"Prefix": f.get("prefix", ""), "Suffix": f.get("suffix", "")}}
        elif t["type"] == "http":
            net = par.get("netConfig") or {}
            name = par.get("name", "url-trigger")
            desc = {"AuthType": par.get("authType", "NONE"),
                    "NetConfig": {"EnableIntranet": bool(net.get("enableIntranet", False)),
                                  "EnableExtranet": bool(net.get("enableExtranet", False))}}
        elif t["type"] == "timer":
            name, desc = par["name"], par["cronExpression"]
        elif t["type"] == "cmq":
            # The toolkit always sends filterType 1 (tags); without filterKey every message arrives, and
            # a filter nobody asked for would drop CI's messages unseen.
            name, whole = par["name"], True
            desc = {"filterType": 1, **({"filterKey": par["filterKey"]} if "filterKey" in par else {})}
        else:
            problems.append(f"trigger type {t['type']!r} is not checked by deploy.plan")
            continue
        match = [c for c in created if c.get("Type") == t["type"] and c.get("FunctionName") == fn
                 and c.get("TriggerName") == name]
        if len(match) != 1:
            problems.append(f"{t['type']} trigger {name!r} of {t['function']}: the component made {len(match)}")
            continue
        got = match[0].get("TriggerDesc")
        try:
            got = json.loads(got) if t["type"] != "timer" else got
        except ValueError:
            pass
        if isinstance(got, dict) and isinstance(desc, dict) and not whole:
            got = {k: got.get(k) for k in desc}
        if got != desc:
            problems.append(f"{t['type']} trigger {name!r}: TriggerDesc {match[0].get('TriggerDesc')!r}, "
                            f"expected {desc!r}")
        if match[0].get("Enable") != "OPEN":
            problems.append(f"{t['type']} trigger {name!r}: Enable {match[0].get('Enable')!r}")
    if len(created) != len(wanted):
        problems.append(f"the component created {len(created)} triggers, serverless.yml lists {len(wanted)}")
    return problems


def check_tdmq(plan: Plan, instance: Mapping[str, Any], chosen: tdmq.Selection) -> list[str]:
    """The cmq triggers and the delivery variables against what the rules and settings choose, read
    from the recorded calls alone (so a rendering that adds a trigger regardless is caught)."""
    tag = "redeploy" if plan.existing else "first deploy"
    names = {key: f"{instance['name']}-{instance['stage']}-{instance['app']}-{key}"
             for key in instance["inputs"]["functions"]}
    cmq = sorted((c.get("FunctionName"), c.get("TriggerName")) for c in plan.actions("CreateTrigger")
                 if c.get("Type") == "cmq")
    wanted = sorted((names[tdmq.RECEIVING_FUNCTION], topic) for topic in chosen.topics)
    problems = []
    if cmq != wanted:
        problems.append(f"{tag}: cmq triggers {cmq or 'none'}, but the rules and settings call for "
                        f"{wanted or 'none'} (one per TDMQ topic, on {tdmq.RECEIVING_FUNCTION})")
    action = "UpdateFunctionConfiguration" if plan.existing else "CreateFunction"
    for key, name in names.items():
        for p in plan.actions(action, name):
            sent = {v.get("Key"): v.get("Value") for v in (p.get("Environment") or {}).get("Variables") or []}
            got = {k: sent[k] for k in tdmq.DELIVERY_VARIABLES if k in sent}
            expected = chosen.settings_env if key in tdmq.SUBMITTING_FUNCTIONS else {}
            if got != expected:
                problems.append(f"{tag}: {key} gets the delivery settings {got or 'none'}, "
                                f"expected {expected or 'none'}")
    return problems


def check_state(plan: Plan, instance: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """CIFLOW_STATE_BUCKET against the env file, read from the recorded calls alone: with its value on
    every function that reads records when the env file sets it, and on no function otherwise."""
    tag = "redeploy" if plan.existing else "first deploy"
    action = "UpdateFunctionConfiguration" if plan.existing else "CreateFunction"
    wanted = state.bucket(env)
    problems = []
    for key in instance["inputs"]["functions"]:
        name = f"{instance['name']}-{instance['stage']}-{instance['app']}-{key}"
        expected = wanted if key in state.RECORD_FUNCTIONS else ""
        for p in plan.actions(action, name):
            sent = {v.get("Key"): v.get("Value") for v in (p.get("Environment") or {}).get("Variables") or []}
            got = sent.get(state.VARIABLE)
            if expected and got != expected:
                problems.append(f"{tag}: {key} gets {state.VARIABLE}={got!r}, but the env file sets {expected!r}: "
                                "it would keep its records elsewhere than the other functions")
            elif not expected and state.VARIABLE in sent:
                problems.append(f"{tag}: {key} gets {state.VARIABLE}={got!r}, but the env file does not set it")
    return problems


def required_settings() -> list[str]:
    """The variables without which the functions' settings refuse to load (found by leaving each out)."""
    tdmq._library_importable()
    from ciflow.errors import ConfigError
    from ciflow.settings import ENV_VARS, load_settings

    base = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "s" * 32}
    out = []
    for name in ENV_VARS:
        if name in base:
            try:
                load_settings({k: v for k, v in base.items() if k != name})
            except ConfigError:
                out.append(name)
    return out


def check_environment_form(instance: Mapping[str, Any]) -> list[str]:
    """What multi-scf does with each function's environment, read from serverless.yml before running it:
    it deploys `environments: [{key, value}]` and nothing else (docs/deploy.md)."""
    problems = []
    required = required_settings()
    for key, fn in (instance.get("inputs", {}).get("functions") or {}).items():
        if "environment" in fn:
            problems.append(f"functions.{key}.environment: multi-scf replaces it with its own `environments` list "
                            f"(empty by default), so {key} would be deployed without a single variable, and a "
                            "redeploy would wipe what it had; list them as `environments: [{key: NAME, value: "
                            "VALUE}, ...]`")
        listed = {e.get("key") for e in fn.get("environments") or [] if isinstance(e, dict)}
        absent = [name for name in required if name not in listed]
        if absent:
            problems.append(f"functions.{key}.environments: lacks {', '.join(absent)}, without which its settings "
                            "refuse to load: every invocation would fail")
    return problems


def check_plan(plan: Plan, instance: Mapping[str, Any], env: Mapping[str, str],
               outputs: Mapping[str, str]) -> list[str]:
    """Everything wrong with one recorded deploy, as messages (empty when it is what we want)."""
    tag = "redeploy" if plan.existing else "first deploy"
    if plan.error:
        return [f"{tag}: the multi-scf component failed: {plan.error}"]
    problems = []
    for call in plan.calls:
        params = call["params"]
        where = f"{call.get('Action')} {params.get('FunctionName') or params.get('bucket') or ''}".strip()
        for v in (params.get("Environment") or {}).get("Variables") or []:
            if UNSET in str(v.get("Value")):
                problems.append(f"{tag}: {where} sets {v.get('Key')} to the placeholder of an unset variable")
        for path, value in _walk({k: v for k, v in params.items() if k != "Environment"}, ""):
            if isinstance(value, str) and UNSET in value:
                problems.append(f"{tag}: {where}: {path.lstrip('.')} is {value!r}, from an unset variable")
    for fn in expected_functions(instance, env, outputs):
        problems += check_function(plan, fn)
    problems += [f"{tag}: {p}" for p in check_triggers(plan, instance, env)]
    for action in ("UpdateFunctionEventInvokeConfig", "UpdateFunctionConfiguration" if not plan.existing else ""):
        if action and plan.actions(action):
            problems.append(f"{tag}: unexpected {action}")
    return problems


def masked(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls with the values of secret-looking environment variables replaced, for printing."""
    out = json.loads(json.dumps(calls))
    for call in out:
        for v in (call["params"].get("Environment") or {}).get("Variables") or []:
            if "SECRET" in str(v.get("Key")).upper() and v.get("Value"):
                v["Value"] = "***"
    return out


def summary(instance: Mapping[str, Any], env: Mapping[str, str], outputs: Mapping[str, str]) -> list[str]:
    lines = []
    for fn in expected_functions(instance, env, outputs):
        lines.append(f"  {fn.key:<10} {fn.name}  {fn.runtime} {fn.memory} MB {fn.timeout} s  role {fn.role}")
        lines.append(f"  {'':<10} env {', '.join(fn.environment)}")
        lines.append(f"  {'':<10} layers {', '.join(f'{n}@{v}' for n, v in fn.layers)}")
    for t in instance["inputs"].get("triggers") or []:
        topic = f" (topic {t['parameters']['name']})" if t["type"] == "cmq" else ""
        lines.append(f"  trigger    {t['type']} -> {t['function']}{topic}")
    return lines


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.plan", description=__doc__.split("\n\n")[0])
    p.add_argument("--env-file", type=Path, default=ROOT / ".env.example")
    p.add_argument("--rules", type=Path, default=tdmq.DEPLOYED_RULES,
                   help="rules JSON file whose TDMQ deliveries to deploy (default: the bundled rules, which the "
                        "lib layer ships)")
    p.add_argument("--tool", type=Path, default=Path(os.environ.get("SCF_PLAN") or DEFAULT_TOOL))
    p.add_argument("--json", action="store_true", help="print the recorded calls of the first deploy")
    ns = p.parse_args(argv)
    env = dotenv.read(ns.env_file)
    if not ns.env_file.is_file():
        print(f"deploy-plan: {ns.env_file} does not exist", file=sys.stderr)
        return 2
    static = load_yaml(ROOT / "serverless.yml")
    problems: list[str] = check_environment_form(static)
    try:
        chosen = tdmq.selection(env, ns.rules)
    except tdmq.TdmqConfigError as exc:
        print("deploy-plan: the TDMQ deliveries cannot be deployed:\n  - " + "\n  - ".join(exc.problems),
              file=sys.stderr)
        return 1
    refused = state.problems(env)
    if refused:
        print("deploy-plan: the record location cannot be deployed:\n  - " + "\n  - ".join(refused),
              file=sys.stderr)
        return 1

    findings = component_rules.project_findings(ROOT, LAYER_DIRS, env)
    for f in findings:
        print(f"deploy-plan: {f}")
    problems += [str(f) for f in findings if f.level == "error"]

    missing = node_tools()
    if missing:
        print(f"deploy-plan: skipped running the multi-scf component: {' and '.join(missing)} not found "
              "(install Node.js with npm to check the API calls serverless.yml makes)")
    else:
        unset = unset_references(static, env)
        if unset:
            problems.append(f"{ns.env_file.name} does not define {', '.join(unset)}, which serverless.yml uses")
        outputs = layer_outputs()
        with tempfile.TemporaryDirectory(prefix="ciflow-plan-") as tmp:
            folder = Path(tmp) / "functions"
            instance = render_functions(env, chosen, folder)
            tdmq.write(instance, folder)
            try:
                for existing in (False, True):
                    plan = run_scf_plan(ns.tool, folder, ns.env_file, env, existing, outputs)
                    if ns.json and not existing:
                        print(json.dumps(masked(plan.calls), indent=2))
                    problems += check_plan(plan, instance, env, outputs)
                    problems += check_tdmq(plan, instance, chosen)
                    problems += check_state(plan, instance, env)
            except PlanError as exc:
                print(f"deploy-plan: {exc}", file=sys.stderr)
                return 2
        if not problems:
            print(f"deploy-plan: the multi-scf component deploys serverless.yml as intended ({ns.env_file.name}, "
                  f"rules {ns.rules.name}):")
            print("\n".join(summary(instance, env, outputs)))
            print("\n".join(f"  {line}" for line in [*chosen.describe(), state.describe(env)]))
            print("  async retries and the dead-letter queue: not sent by the component; make deploy sets them "
                  "through the SCF API")
    if problems:
        print("deploy-plan: problems:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
