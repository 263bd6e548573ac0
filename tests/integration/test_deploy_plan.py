"""serverless.yml through the real multi-scf component, offline (scf-plan in ../shared/tools): the
API calls a deploy would make, checked by deploy/plan.py; and the platform facts that shaped
serverless.yml, shown with the same component on the forms it replaced."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from deploy import deploy, plan, tdmq

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(plan.node_tools()), reason="scf-plan needs Node.js and npm")]

ROOT = Path(__file__).resolve().parents[2]
FILLED = {"TENCENT_SECRET_ID": "AKIDplan", "TENCENT_SECRET_KEY": "plan-key", "CIFLOW_REGION": "ap-guangzhou",
          "CIFLOW_APPID": "1250000000", "CIFLOW_BUCKET": "uploads-1250000000", "CIFLOW_OWNER_UIN": "100000000001",
          "CIFLOW_ROLE": "ciflow-functions", "CIFLOW_CALLBACK_SECRET": "c" * 32,
          "CIFLOW_CALLBACK_URL": "https://1250000000-abc123.ap-guangzhou.tencentscf.com"}


def env_file(tmp_path: Path, values: dict[str, str]) -> Path:
    path = tmp_path / "plan.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()), encoding="utf-8")
    return path


def run(tmp_path: Path, values: dict[str, str], existing: bool = False, project: Path = ROOT) -> plan.Plan:
    return plan.run_scf_plan(plan.DEFAULT_TOOL, project, env_file(tmp_path, values), values, existing,
                             plan.layer_outputs())


def variant(tmp_path: Path, change: Any) -> tuple[Path, dict[str, Any]]:
    """A copy of serverless.yml, changed, in its own folder."""
    doc = copy.deepcopy(plan.load_yaml(ROOT / "serverless.yml"))
    change(doc)
    folder = tmp_path / "variant"
    folder.mkdir()
    (folder / "serverless.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    return folder, doc


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    return plan.load_yaml(ROOT / "serverless.yml")


@pytest.mark.parametrize("existing", [False, True], ids=["first deploy", "redeploy"])
def test_serverless_yml_deploys_what_it_says(tmp_path: Path, instance: dict[str, Any], existing: bool) -> None:
    # When the real component deploys serverless.yml with a complete .env
    recorded = run(tmp_path, FILLED, existing)
    # Then deploy/plan.py finds nothing wrong
    assert plan.check_plan(recorded, instance, FILLED, plan.layer_outputs()) == []
    # And, read straight from the recorded calls: each function gets its own variables, with .env's values
    config = "UpdateFunctionConfiguration" if existing else "CreateFunction"
    env_of = {p["FunctionName"].rsplit("-", 1)[1]: {v["Key"]: v["Value"] for v in p["Environment"]["Variables"]}
              for p in recorded.actions(config)}
    shared = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_BUCKETS": "uploads-1250000000",
              "CIFLOW_CALLBACK_SECRET": "c" * 32}
    url = {"CIFLOW_CALLBACK_URL": FILLED["CIFLOW_CALLBACK_URL"]}
    assert env_of == {"submit": {**shared, **url}, "callback": shared, "reconcile": {**shared, **url}}
    # And no dead-letter configuration or retry policy comes from the component
    assert not [p for p in recorded.actions(config) if "DeadLetterConfig" in p or "AsyncRunEnable" in p]
    assert recorded.actions("UpdateFunctionEventInvokeConfig") == []
    # And the Function URL trigger is created for callback
    http = recorded.actions("CreateTrigger", "ciflow-dev-ciflow-callback")
    assert [(t["Type"], t["TriggerName"], t["Qualifier"]) for t in http] == [("http", "callback-url", "$DEFAULT")]


def test_a_missing_variable_is_caught_by_the_plan_and_refused_by_make_deploy(tmp_path: Path,
                                                                             instance: dict[str, Any]) -> None:
    values = {k: v for k, v in FILLED.items() if k not in ("CIFLOW_ROLE", "CIFLOW_CALLBACK_SECRET")}
    # The component would deploy the secret as the placeholder string and drop the role
    recorded = run(tmp_path, values)
    secrets = {v["Value"] for p in recorded.actions("CreateFunction") for v in p["Environment"]["Variables"]
               if v["Key"] == "CIFLOW_CALLBACK_SECRET"}
    assert secrets == {plan.UNSET}
    assert all("Role" not in p for p in recorded.actions("CreateFunction"))
    problems = "\n".join(plan.check_plan(recorded, instance, values, plan.layer_outputs()))
    assert "sets CIFLOW_CALLBACK_SECRET to the placeholder of an unset variable" in problems
    assert "its role comes from an unset variable" in problems
    assert plan.unset_references(instance, values) == ["CIFLOW_CALLBACK_SECRET", "CIFLOW_ROLE"]
    # And `make deploy` refuses before any of that, naming both
    refused = deploy.preflight(values, which=lambda _: "/usr/bin/scf")
    assert len(refused) == 1 and "CIFLOW_CALLBACK_SECRET, CIFLOW_ROLE" in refused[0]


def test_an_environment_map_deploys_no_variables_and_a_redeploy_clears_them(tmp_path: Path) -> None:
    # Given the `environment: {variables: ...}` form instead of `environments`
    def to_map(doc: dict[str, Any]) -> None:
        for fn in doc["inputs"]["functions"].values():
            fn["environment"] = {"variables": {e["key"]: e["value"] for e in fn.pop("environments")}}
    folder, doc = variant(tmp_path, to_map)
    first, again = run(tmp_path, FILLED, False, folder), run(tmp_path, FILLED, True, folder)
    # Then the component sends no variables at all, and a redeploy replaces them with one empty key
    assert {str(p["Environment"]) for p in first.actions("CreateFunction")} == {"{'Variables': []}"}
    assert {str(p["Environment"]) for p in again.actions("UpdateFunctionConfiguration")} == {
        "{'Variables': [{'Key': '', 'Value': ''}]}"}
    # And the plan check says so
    problems = "\n".join(plan.check_plan(again, plan.load_yaml(ROOT / "serverless.yml"), FILLED, plan.layer_outputs()))
    assert "Environment differs from serverless.yml: missing ['CIFLOW_BUCKETS'" in problems


def test_retry_settings_are_ignored_and_an_empty_dead_letter_block_is_still_sent(tmp_path: Path) -> None:
    # Given the retryNum/msgTTL/deadLetter form, with no queue configured
    def add(doc: dict[str, Any]) -> None:
        doc["inputs"]["functions"]["submit"].update(
            retryNum=2, msgTTL=21600, deadLetter={"type": "${env:CIFLOW_DLQ_TYPE}", "name": "${env:CIFLOW_DLQ_NAME}"})
    folder, _ = variant(tmp_path, add)
    recorded = run(tmp_path, {**FILLED, "CIFLOW_DLQ_TYPE": "", "CIFLOW_DLQ_NAME": ""}, False, folder)
    # Then no retry policy is set, and DeadLetterConfig goes out empty
    assert recorded.actions("UpdateFunctionEventInvokeConfig") == []
    submit = recorded.actions("CreateFunction", "ciflow-dev-ciflow-submit")[0]
    assert submit["DeadLetterConfig"] == {}
    problems = plan.check_plan(recorded, plan.load_yaml(ROOT / "serverless.yml"), FILLED, plan.layer_outputs())
    assert any("sends DeadLetterConfig={}" in p for p in problems)


def test_make_deploy_plan_runs_the_component_and_skips_only_without_node(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    ok = subprocess.run([sys.executable, "-m", "deploy.plan"], cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=900)
    assert ok.returncode == 0, ok.stderr
    assert "deploys serverless.yml as intended" in ok.stdout and "env CIFLOW_REGION, CIFLOW_BUCKETS" in ok.stdout
    # Without node and npm on PATH: the component part is skipped, saying so, and the rules still run
    no_node = {**env, "PATH": str(tmp_path)}
    skipped = subprocess.run([sys.executable, "-m", "deploy.plan"], cwd=ROOT, env=no_node, capture_output=True,
                             text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    assert "skipped running the multi-scf component: node and npm not found" in skipped.stdout
    assert "risk: serverless.yml inputs.runtime" in skipped.stdout
    # A missing scf-plan is an error, not a skip
    missing = subprocess.run([sys.executable, "-m", "deploy.plan", "--tool", str(tmp_path / "nowhere")], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "scf-plan not found" in missing.stderr


# --- TDMQ: the cmq trigger, through the real component --------------------------------------------------

TOPIC_RULE = {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "ciflow-results"}
SETTINGS_TOPIC = {"CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz",
                  "CIFLOW_CALLBACK_MQ_NAME": "ciflow-all"}


def rules_file(tmp_path: Path, delivery: Optional[dict[str, str]]) -> Path:
    doc = json.loads(tdmq.DEPLOYED_RULES.read_text(encoding="utf-8"))
    if delivery is not None:
        doc["rules"][0]["delivery"] = delivery
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def rendered(tmp_path: Path, values: dict[str, str], rules: Path) -> tuple[Path, dict[str, Any], tdmq.Selection]:
    """serverless.yml rendered as `make deploy` does, in its own folder."""
    chosen = tdmq.selection(values, rules)
    folder = tmp_path / "functions"
    doc = tdmq.render(plan.load_yaml(ROOT / "serverless.yml"), chosen, folder)
    tdmq.write(doc, folder)
    return folder, doc, chosen


def cmq_triggers(recorded: plan.Plan) -> list[dict[str, Any]]:
    return [c for c in recorded.actions("CreateTrigger") if c["Type"] == "cmq"]


@pytest.mark.parametrize("existing", [False, True], ids=["first deploy", "redeploy"])
def test_without_tdmq_the_component_creates_no_cmq_trigger(tmp_path: Path, existing: bool) -> None:
    # Given the bundled rules and an .env that keeps the Function URL
    folder, doc, chosen = rendered(tmp_path, FILLED, tdmq.DEPLOYED_RULES)
    recorded = run(tmp_path, FILLED, existing, folder)
    # Then the component subscribes nothing, and the plan checks agree
    assert chosen.topics == [] and cmq_triggers(recorded) == []
    assert [c["Type"] for c in recorded.actions("CreateTrigger")] == ["cos", "http", "timer"]
    assert plan.check_plan(recorded, doc, FILLED, plan.layer_outputs()) == []
    assert plan.check_tdmq(recorded, doc, chosen) == []


@pytest.mark.parametrize("existing", [False, True], ids=["first deploy", "redeploy"])
def test_a_topic_rule_makes_the_component_subscribe_callback_to_the_topic(tmp_path: Path, existing: bool) -> None:
    # Given a rule whose results go to a TDMQ topic in the functions' region
    folder, doc, chosen = rendered(tmp_path, FILLED, rules_file(tmp_path, TOPIC_RULE))
    recorded = run(tmp_path, FILLED, existing, folder)
    # Then exactly one CreateTrigger Type=cmq, for callback, named after the topic, open, on $DEFAULT,
    # with no tag filter (every message reaches the function)
    assert [{k: c[k] for k in ("FunctionName", "Type", "TriggerName", "Qualifier", "TriggerDesc", "Enable")}
            for c in cmq_triggers(recorded)] == [
        {"FunctionName": "ciflow-dev-ciflow-callback", "Type": "cmq", "TriggerName": "ciflow-results",
         "Qualifier": "$DEFAULT", "TriggerDesc": '{"filterType":1}', "Enable": "OPEN"}]
    # And the other triggers and the functions are as without TDMQ
    assert plan.check_plan(recorded, doc, FILLED, plan.layer_outputs()) == []
    assert plan.check_tdmq(recorded, doc, chosen) == []


def test_the_settings_choosing_a_topic_reach_submit_and_reconcile(tmp_path: Path) -> None:
    # Given an .env that sends every rule's results to a topic
    values = {**FILLED, **SETTINGS_TOPIC}
    folder, doc, chosen = rendered(tmp_path, values, tdmq.DEPLOYED_RULES)
    recorded = run(tmp_path, values, False, folder)
    # Then the component deploys the delivery settings to the functions that submit jobs, and only to them
    env_of = {p["FunctionName"].rsplit("-", 1)[1]: {v["Key"]: v["Value"] for v in p["Environment"]["Variables"]}
              for p in recorded.actions("CreateFunction")}
    chosen_env = {**SETTINGS_TOPIC, "CIFLOW_CALLBACK_MQ_MODE": "Topic"}
    for key in ("submit", "reconcile"):
        assert {k: v for k, v in env_of[key].items() if k in chosen_env} == chosen_env, key
    assert not set(chosen_env) & set(env_of["callback"])
    # And subscribes callback to the settings' topic
    assert [c["TriggerName"] for c in cmq_triggers(recorded)] == ["ciflow-all"]
    assert plan.check_plan(recorded, doc, values, plan.layer_outputs()) == []
    assert plan.check_tdmq(recorded, doc, chosen) == []


def test_a_queue_rule_creates_no_trigger(tmp_path: Path) -> None:
    folder, doc, chosen = rendered(tmp_path, FILLED, rules_file(tmp_path, {**TOPIC_RULE, "mq_mode": "Queue"}))
    recorded = run(tmp_path, FILLED, False, folder)
    assert chosen.queues == ["ciflow-results"] and cmq_triggers(recorded) == []
    assert plan.check_tdmq(recorded, doc, chosen) == []


def test_a_cmq_trigger_without_enable_is_created_closed(tmp_path: Path) -> None:
    # The toolkit's `enable` defaults to off: a trigger written without it would subscribe nothing
    def add(doc: dict[str, Any]) -> None:
        doc["inputs"]["triggers"].append({"type": "cmq", "function": "callback", "parameters": {"name": "t1"}})
    folder, _ = variant(tmp_path, add)
    recorded = run(tmp_path, FILLED, False, folder)
    assert [(c["TriggerName"], c["Enable"]) for c in cmq_triggers(recorded)] == [("t1", "CLOSE")]
    assert tdmq.cmq_trigger("t1")["parameters"]["enable"] is True


def test_make_deploy_plan_checks_the_rules_it_is_given(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    # With a topic rule: the plan says which topic subscribes callback
    rules = rules_file(tmp_path, TOPIC_RULE)
    ok = subprocess.run([sys.executable, "-m", "deploy.plan", "--rules", str(rules)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stderr
    assert "trigger    cmq -> callback (topic ciflow-results)" in ok.stdout
    assert "TDMQ: topic ciflow-results (gz) for rule 'images': cmq trigger on callback" in ok.stdout
    # With the topic in another region than .env.example's functions: refused, saying why
    rules.write_text(rules.read_text(encoding="utf-8").replace('"gz"', '"bj"'), encoding="utf-8")
    refused = subprocess.run([sys.executable, "-m", "deploy.plan", "--rules", str(rules)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "'ciflow-results' is in ap-beijing" in refused.stderr and "ap-guangzhou" in refused.stderr


# --- the state bucket, through the real component -----------------------------------------------------

STATE = {"CIFLOW_STATE_BUCKET": "ciflow-state-1250000000"}


@pytest.mark.parametrize("existing", [False, True], ids=["first deploy", "redeploy"])
@pytest.mark.parametrize("values", [FILLED, {**FILLED, **STATE}], ids=["unset", "set"])
def test_the_state_bucket_reaches_every_function_exactly_when_set(tmp_path: Path, values: dict[str, str],
                                                                 existing: bool) -> None:
    # Given serverless.yml rendered as make deploy renders it for the env file
    folder = tmp_path / "functions"
    doc = deploy.render_functions(values, tdmq.selection(values), folder)
    tdmq.write(doc, folder)
    # When the real component deploys it
    recorded = run(tmp_path, values, existing, folder)
    # Then, read straight from the recorded calls: submit, callback and reconcile get the bucket, or none does
    config = "UpdateFunctionConfiguration" if existing else "CreateFunction"
    sent = {p["FunctionName"].rsplit("-", 1)[1]: {v["Key"]: v["Value"] for v in p["Environment"]["Variables"]}
            for p in recorded.actions(config)}
    assert {k: env.get("CIFLOW_STATE_BUCKET") for k, env in sent.items()} == {
        k: values.get("CIFLOW_STATE_BUCKET") for k in ("submit", "callback", "reconcile")}
    # And deploy/plan.py's checks agree
    assert plan.check_plan(recorded, doc, values, plan.layer_outputs()) == []
    assert plan.check_state(recorded, doc, values) == []


def test_make_deploy_plan_checks_the_state_bucket_of_the_env_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TENCENT_", "CIFLOW_"))}
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    # .env.example documents the variable, commented out: the default plan deploys it nowhere
    assert "\n# CIFLOW_STATE_BUCKET=" in example and "\nCIFLOW_STATE_BUCKET=" not in example
    # With it set, the plan passes and says where the records go
    values = tmp_path / "state.env"
    values.write_text(example + "CIFLOW_STATE_BUCKET=ciflow-state-1250000000\n", encoding="utf-8")
    ok = subprocess.run([sys.executable, "-m", "deploy.plan", "--env-file", str(values)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=900)
    assert ok.returncode == 0, ok.stderr
    assert "records: in ciflow-state-1250000000 under .ciflow/uploads-1250000000/ (CIFLOW_STATE_BUCKET on " \
           "submit, callback, reconcile)" in ok.stdout
    assert ok.stdout.count("CIFLOW_CALLBACK_SECRET, CIFLOW_STATE_BUCKET") == 3
    # In another form, it is refused, naming it
    values.write_text(example + "CIFLOW_STATE_BUCKET=ciflow-state\n", encoding="utf-8")
    refused = subprocess.run([sys.executable, "-m", "deploy.plan", "--env-file", str(values)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1
    assert "CIFLOW_STATE_BUCKET must be the bucket's full name, <name>-<appid>; got 'ciflow-state'" in refused.stderr
