"""What the rules and settings ask of TDMQ (CMQ), and serverless.yml rendered for it.

CI delivers a job's result to a CMQ topic or queue instead of the Function URL when the job asks
for it (`CallBackType=TDMQ`): per rule (`"delivery"` in the rules), or for every rule without its
own (`CIFLOW_CALLBACK_TYPE=tdmq` with `CIFLOW_CALLBACK_MQ_*` in `.env`). A YAML file cannot be
conditional, so `make deploy` and `make deploy-plan` deploy a rendering of serverless.yml that adds,
exactly when they are needed:

- one `cmq` trigger on the callback function per topic a Topic-mode delivery names: the topic pushes
  each message to its subscribers, and the trigger subscribes the function. A CMQ topic triggers
  only functions of its own region, so a topic in another region is refused here;
- the settings' delivery variables, on the functions that submit jobs (submit, and reconcile, which
  resubmits lost ones), when `.env` chooses TDMQ for all rules.

Queue mode has no push trigger, so nothing is created for it: reconcile's `GET /jobs` finishes
those jobs, as it does for any job whose callback never arrived.

The rules are those the functions load on SCF: CIFLOW_RULES_FILE is not deployed, so that is the
file the lib layer ships (`ciflow/default_rules.json`).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The rules the deployed functions load: the lib layer's copy of this file.
DEPLOYED_RULES = ROOT / "layers" / "ciflow" / "ciflow" / "default_rules.json"
RULES_IN_LAYER = Path("layer-ciflow") / "ciflow" / "default_rules.json"  # under dist/stage/
# The settings that choose the delivery for every rule without its own (ciflow.settings.ENV_VARS).
DELIVERY_VARIABLES = ("CIFLOW_CALLBACK_TYPE", "CIFLOW_CALLBACK_MQ_REGION", "CIFLOW_CALLBACK_MQ_MODE",
                      "CIFLOW_CALLBACK_MQ_NAME")
# The functions that put a delivery into CI jobs; tests/unit/test_deploy_config.py derives this set
# from the code. The callback function only receives.
SUBMITTING_FUNCTIONS = ("submit", "reconcile")
RECEIVING_FUNCTION = "callback"
_PROBE_SECRET = "0" * 16  # load_settings insists on a secret; the delivery does not depend on it
HEADER = ("# Rendered by `make deploy` (deploy/tdmq.py, deploy/state.py) from serverless.yml, with what the TDMQ\n"
          "# deliveries of the rules and settings and the state bucket of .env need. Do not edit: edit\n"
          "# serverless.yml, the rules or .env instead.\n")


class TdmqConfigError(Exception):
    """The rules or settings ask for a TDMQ delivery that cannot be deployed (each problem a line)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Use:
    """One delivery through TDMQ: who asks for it, and where CI is to publish."""

    where: str  # "rule 'images'" or "the settings (CIFLOW_CALLBACK_TYPE)"
    region: str  # the queue's region code: sh, bj, gz, cd or hk
    mode: str  # Topic or Queue
    name: str


@dataclass(frozen=True)
class Selection:
    """The TDMQ deliveries in effect for one deployment."""

    uses: tuple[Use, ...] = ()
    # Values of DELIVERY_VARIABLES for the submitting functions; empty when the settings choose url.
    settings_env: dict[str, str] = field(default_factory=dict)

    @property
    def topics(self) -> list[str]:
        """The topics a cmq trigger must subscribe the callback function to."""
        return sorted({u.name for u in self.uses if u.mode == "Topic"})

    @property
    def queues(self) -> list[str]:
        return sorted({u.name for u in self.uses if u.mode == "Queue"})

    def describe(self) -> list[str]:
        """One line per topic or queue, saying who uses it and what the deployment does about it."""
        if not self.uses:
            return ["TDMQ: no rule and no setting uses it; no cmq trigger"]
        lines = []
        for mode, names, effect in (("Topic", self.topics, "cmq trigger on callback"),
                                    ("Queue", self.queues, "no trigger (reconcile's GET /jobs finishes these jobs)")):
            for name in names:
                users = ", ".join(u.where for u in self.uses if u.mode == mode and u.name == name)
                region = next(u.region for u in self.uses if u.mode == mode and u.name == name)
                lines.append(f"TDMQ: {mode.lower()} {name} ({region}) for {users}: {effect}")
        return lines


def _library_importable() -> None:
    """The settings and rules parsers are the library's own (layers/ciflow), which `python -m deploy.*`
    run from the repository does not have on its path unless PYTHONPATH says so."""
    lib = str(ROOT / "layers" / "ciflow")
    if lib not in sys.path:
        sys.path.append(lib)


def full_region(code: str) -> str:
    _library_importable()
    from ciflow.regions import full_region as full

    return full(code)


def selection(env: Mapping[str, str], rules_path: Path = DEPLOYED_RULES) -> Selection:
    """The TDMQ deliveries that `env` (the deploy's `.env`) and the rules at `rules_path` put in effect,
    parsed by the functions' own code. Raises TdmqConfigError naming each problem."""
    _library_importable()
    from ciflow.errors import ConfigError
    from ciflow.rules import parse_rules
    from ciflow.settings import load_settings

    problems: list[str] = []
    region = full_region(env.get("CIFLOW_REGION", "").strip())
    probe = {k: env.get(k, "") for k in DELIVERY_VARIABLES}
    probe.update(CIFLOW_REGION=region or "ap-guangzhou", CIFLOW_CALLBACK_SECRET=_PROBE_SECRET)
    try:
        default = load_settings(probe).delivery
    except ConfigError as exc:
        problems.append(f".env: {exc}")
        default = None
    try:
        rules = parse_rules(rules_path.read_text(encoding="utf-8"), str(rules_path)).rules
    except (OSError, ConfigError) as exc:
        raise TdmqConfigError([*problems, f"the rules: {exc}"]) from None
    uses = []
    for rule in rules:
        delivery, where = rule.delivery, f"rule {rule.name!r}"
        if delivery is None:
            delivery, where = default, "the settings (CIFLOW_CALLBACK_TYPE)"
        if delivery is None or not delivery.is_queue:
            continue
        use = Use(where, delivery.mq_region, delivery.mq_mode, delivery.mq_name)
        if use not in uses:
            uses.append(use)
    for use in uses:
        if use.mode == "Topic" and region and full_region(use.region) != region:
            problems.append(f"{use.where}: the CMQ topic {use.name!r} is in {full_region(use.region)} "
                            f"(mq_region {use.region!r}), but the functions deploy to {region} (CIFLOW_REGION); a CMQ "
                            "topic triggers only functions of its own region, so create the topic there")
    if problems:
        raise TdmqConfigError(problems)
    settings_env = {}
    if default is not None and default.is_queue:
        settings_env = dict(zip(DELIVERY_VARIABLES, ("tdmq", default.mq_region, default.mq_mode, default.mq_name)))
    return Selection(tuple(uses), settings_env)


def cmq_trigger(topic: str) -> dict[str, Any]:
    """The multi-scf trigger that subscribes the callback function to `topic`. The toolkit
    (modules/triggers/cmq.js) sends CreateTrigger Type=cmq, TriggerName=<topic>,
    TriggerDesc={"filterType":1} (no filterKey: every message) and Enable from `enable`, whose
    default is off."""
    return {"type": "cmq", "function": RECEIVING_FUNCTION,
            "parameters": {"name": topic, "qualifier": "$DEFAULT", "enable": True}}


def render(instance: Mapping[str, Any], chosen: Selection, folder: Path, code: Optional[Path] = None,
           root: Path = ROOT) -> dict[str, Any]:
    """serverless.yml as deployed from `folder`: its code path (`code`, by default the one serverless.yml
    names) made relative to `folder`, a cmq trigger per topic, and the settings' delivery variables on
    the submitting functions."""
    out = copy.deepcopy(dict(instance))
    inputs = out["inputs"]
    src = inputs["src"]
    code = code or root / src["src"]
    src["src"] = os.path.relpath(code.resolve(), folder.resolve())
    for key in SUBMITTING_FUNCTIONS:
        environments = inputs["functions"][key].setdefault("environments", [])
        clash = [e["key"] for e in environments if e["key"] in chosen.settings_env]
        if clash:
            raise TdmqConfigError([f"serverless.yml already sets {', '.join(clash)} for {key}; the delivery "
                                   "variables come from .env"])
        environments += [{"key": k, "value": v} for k, v in chosen.settings_env.items()]
    inputs["triggers"] = [*inputs.get("triggers", []), *(cmq_trigger(t) for t in chosen.topics)]
    return out


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:  # the layers list is shared: write it out each time
        return True


def write(rendered: Mapping[str, Any], folder: Path) -> Path:
    """`folder`/serverless.yml holding `rendered`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "serverless.yml"
    text = yaml.dump(dict(rendered), Dumper=_NoAliases, sort_keys=False, allow_unicode=True, default_flow_style=False)
    path.write_text(HEADER + text, encoding="utf-8")
    return path
