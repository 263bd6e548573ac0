"""serverless.yml and the layer instances against their components' published input rules, offline.

Before it deploys an instance, Tencent's platform checks its inputs against the component's
`serverless.component.yml` (the CLI's `--noValidation` skips that). deploy/components/ holds that
file for the two components used, verbatim from their public repositories, and this module applies
it the way those rules read: `type`, `allow` (for an array, per item), `regex`, `min`/`max`,
`required`; a rule with `level: warning` only warns.

The layer instances are also checked against what the layer component's code reads
(serverless-components/tencent-layer `src/utils.js`, `prepareInputs`): only `src`, `region`,
`name`, `runtimes` and `description`. Any other key is ignored without a word, a missing `runtimes`
publishes a `Nodejs10.15` layer, and a missing `name` a randomly named one. And every layer a
function attaches must list the function's runtime.

A value the public rules refuse but that the SCF API accepts (`Python3.9`, see ACCEPTED_RISKS) is
reported as a risk, with the workaround, instead of an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

COMPONENTS = Path(__file__).resolve().parent / "components"
ENV_REF = re.compile(r"\$\{env:([\w.-]+)\}")
# serverless-components/tencent-layer src/utils.js prepareInputs (commit in components/layer.yml).
LAYER_INPUTS_READ = frozenset({"src", "region", "name", "runtimes", "description"})
# (input, value) pairs the public rules refuse although the SCF API takes them: SCF runs Python
# 3.9 (platform.md §5), while the rules' allow-lists stop at Python3.7. Whether the platform
# applies these public rules or newer ones is not verified.
ACCEPTED_RISKS = {("runtime", "Python3.9"), ("runtimes", "Python3.9")}
RISK_ADVICE = ("the platform may refuse the deploy; `make deploy DEPLOY_ARGS=--no-validation` skips its "
               "input validation (docs/deploy.md, \"Python 3.9 and the components' input rules\")")


@dataclass(frozen=True)
class Finding:
    level: str  # "error", "warning" or "risk"
    where: str  # file and input path, e.g. serverless.yml inputs.functions.submit.memorySize
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def load_rules(component: str) -> dict[str, Any]:
    """The `deploy` action's input rules of `component` ("multi-scf" or "layer")."""
    doc = yaml.safe_load((COMPONENTS / f"{component}.yml").read_text(encoding="utf-8"))
    return doc["actions"]["deploy"]["inputs"]


def _js_regex(pattern: str) -> re.Pattern[str]:
    # JavaScript reads `[\w-_]` as three literal members; Python calls `\w-_` a bad range.
    return re.compile(re.sub(r"(\\[wdsWDS])-", r"\1\\-", pattern))


def resolve(value: Any, env: Optional[Mapping[str, str]]) -> Any:
    """`${env:NAME}` replaced from `env`, as the CLI does; left as is without `env`."""
    if env is None:
        return value
    if isinstance(value, str):
        return ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), value)
    if isinstance(value, dict):
        return {k: resolve(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, env) for v in value]
    return value


_TYPES = {"string": (str,), "number": (int, float), "boolean": (bool,), "array": (list,), "object": (dict,),
          "src": (str, dict)}


def _check_value(name: str, value: Any, rule: Mapping[str, Any], where: str) -> Iterator[Finding]:
    if isinstance(value, str) and ENV_REF.search(value):
        return  # unresolved: checked once `.env` is known
    level = "warning" if rule.get("level") == "warning" else "error"
    kind = rule.get("type")
    types = _TYPES.get(kind or "", ())
    if types and (not isinstance(value, types) or (kind == "number" and isinstance(value, bool))):
        yield Finding(level, where, f"expected {kind}, got {type(value).__name__} {value!r}")
        return
    if kind == "array":
        item_rule = (rule.get("items") or [{}])[0]
        for i, item in enumerate(value):
            yield from _check_value(name, item, item_rule, f"{where}[{i}]")
        return
    allowed = rule.get("allow")
    if allowed is not None and value not in allowed:
        if (name, value) in ACCEPTED_RISKS:
            same_kind = [a for a in allowed if str(a)[:3] == str(value)[:3]] or allowed
            yield Finding("risk", where, f"{value!r} is not in the component's published allow-list "
                                         f"({', '.join(map(str, same_kind))}, ...): {RISK_ADVICE}")
        else:
            message = rule.get("message") or ""
            yield Finding(level, where, f"{value!r} is not allowed (allowed: {', '.join(map(str, allowed))})"
                                        + (f"; the component says: {message}" if message else ""))
    if "regex" in rule and isinstance(value, str) and not _js_regex(rule["regex"]).search(value):
        yield Finding(level, where, f"{value!r} does not match {rule['regex']}")
    if "min" in rule and isinstance(value, (int, float)) and value < rule["min"]:
        yield Finding(level, where, f"{value} is below the minimum {rule['min']}")
    if "max" in rule and isinstance(value, (int, float)) and value > rule["max"]:
        yield Finding(level, where, f"{value} is above the maximum {rule['max']}")


def check_inputs(inputs: Mapping[str, Any], rules: Mapping[str, Any], where: str) -> list[Finding]:
    """`inputs` against one component's input rules."""
    found: list[Finding] = []
    for name, rule in rules.items():
        if name not in inputs:
            if rule.get("required"):
                found.append(Finding("error", f"{where}.{name}", "required by the component, missing"))
            continue
        found += _check_value(name, inputs[name], rule, f"{where}.{name}")
    return found


def multi_scf_findings(instance: Mapping[str, Any], env: Optional[Mapping[str, str]] = None,
                       file: str = "serverless.yml") -> list[Finding]:
    """The multi-scf instance against its rules. The rules name top-level inputs; the same rules are
    applied to each function's own `runtime`, `memorySize` and `timeout`, which override them."""
    rules = load_rules("multi-scf")
    inputs = resolve(instance.get("inputs") or {}, env)
    found = check_inputs(inputs, rules, f"{file} inputs")
    for key, fn in (inputs.get("functions") or {}).items():
        per_function = {k: v for k, v in rules.items() if k in ("runtime", "memorySize", "timeout")}
        found += check_inputs(fn, per_function, f"{file} inputs.functions.{key}")
    return found


def layer_findings(instance: Mapping[str, Any], env: Optional[Mapping[str, str]] = None,
                   file: str = "serverless.yml") -> list[Finding]:
    """A layer instance against the layer component's rules and against what its code reads."""
    inputs = resolve(instance.get("inputs") or {}, env)
    found = check_inputs(inputs, load_rules("layer"), f"{file} inputs")
    for key in sorted(set(inputs) - LAYER_INPUTS_READ):
        found.append(Finding("error", f"{file} inputs.{key}",
                             f"the layer component never reads {key!r} (it reads only "
                             f"{', '.join(sorted(LAYER_INPUTS_READ))})"))
    if "runtimes" not in inputs:
        found.append(Finding("error", f"{file} inputs.runtimes",
                             "missing: the layer component then publishes a Nodejs10.15 layer"))
    if "name" not in inputs:
        found.append(Finding("error", f"{file} inputs.name", "missing: the layer component then picks a random name"))
    if instance.get("component") != "layer":
        found.append(Finding("error", file, f"component is {instance.get('component')!r}, expected 'layer'"))
    return found


def runtime_findings(instance: Mapping[str, Any], layers: Mapping[str, Mapping[str, Any]],
                     file: str = "serverless.yml") -> list[Finding]:
    """Every layer a function attaches is published by one of `layers` (by layer name) and lists the
    function's runtime among its compatible runtimes."""
    inputs = instance.get("inputs") or {}
    found = []
    for key, fn in (inputs.get("functions") or {}).items():
        runtime = fn.get("runtime", inputs.get("runtime"))
        for i, attached in enumerate(fn.get("layers") or inputs.get("layers") or []):
            where = f"{file} inputs.functions.{key}.layers[{i}]"
            layer = layers.get(attached.get("name"))
            if layer is None:
                found.append(Finding("error", where, f"no layer instance publishes {attached.get('name')!r}"))
            elif runtime not in (layer.get("inputs") or {}).get("runtimes", []):
                found.append(Finding("error", where, f"layer {attached.get('name')!r} does not list the "
                                                     f"function's runtime {runtime!r}"))
    return found


def project_findings(root: Path, layer_dirs: list[str], env: Optional[Mapping[str, str]] = None) -> list[Finding]:
    """serverless.yml and every layer instance under `layer_dirs`, all checks."""
    instance = yaml.safe_load((root / "serverless.yml").read_text(encoding="utf-8"))
    found = multi_scf_findings(instance, env)
    layers = {}
    for d in layer_dirs:
        doc = yaml.safe_load((root / d / "serverless.yml").read_text(encoding="utf-8"))
        found += layer_findings(doc, env, f"{d}/serverless.yml")
        layers[(doc.get("inputs") or {}).get("name")] = doc
    return found + runtime_findings(instance, layers)
