"""deploy/plan.py's checks on recorded calls built here, so they are tested without Node.js
(tests/integration/test_deploy_plan.py feeds them the real component's calls)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import pytest

from deploy import deploy, plan, state, tdmq

ROOT = Path(__file__).resolve().parents[2]
ENV = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_BUCKET": "uploads-1250000000", "CIFLOW_ROLE": "ciflow-functions",
       "CIFLOW_CALLBACK_SECRET": "s" * 32, "CIFLOW_CALLBACK_URL": ""}
OUTPUTS = {"ciflow-layer-deps.version": "7", "ciflow-layer-lib.version": "3"}


@pytest.fixture(scope="module")
def instance() -> dict[str, Any]:
    return plan.load_yaml(ROOT / "serverless.yml")


def good_plan(instance: dict[str, Any]) -> plan.Plan:
    """The calls a correct first deploy records, as the component shapes them."""
    calls: list[dict[str, Any]] = []
    for fn in plan.expected_functions(instance, ENV, OUTPUTS):
        calls.append({"service": "scf", "Action": "CreateFunction", "params": {
            "FunctionName": fn.name, "Runtime": fn.runtime, "Handler": fn.handler, "MemorySize": fn.memory,
            "Timeout": fn.timeout, "Role": fn.role,
            "Environment": {"Variables": [{"Key": k, "Value": v} for k, v in fn.environment.items()]},
            "Layers": [{"LayerName": n, "LayerVersion": v} for n, v in fn.layers]}})
    names = {k: f"ciflow-dev-ciflow-{k}" for k in instance["inputs"]["functions"]}
    calls += [
        {"service": "scf", "Action": "CreateTrigger", "params": {
            "FunctionName": names["submit"], "Type": "cos",
            "TriggerName": "uploads-1250000000.cos.ap-guangzhou.myqcloud.com",
            "TriggerDesc": json.dumps({"event": "cos:ObjectCreated:*", "filter": {"Prefix": "uploads/", "Suffix": ""}}),
            "Enable": "OPEN"}},
        {"service": "scf", "Action": "CreateTrigger", "params": {
            "FunctionName": names["callback"], "Type": "http", "TriggerName": "callback-url", "Qualifier": "$DEFAULT",
            "TriggerDesc": json.dumps({"AuthType": "NONE",
                                       "NetConfig": {"EnableIntranet": False, "EnableExtranet": True}}),
            "Enable": "OPEN"}},
        {"service": "scf", "Action": "CreateTrigger", "params": {
            "FunctionName": names["reconcile"], "Type": "timer", "TriggerName": "reconcile",
            "TriggerDesc": "0 */5 * * * * *", "Enable": "OPEN"}},
    ]
    return plan.Plan(False, None, calls)


def create(p: plan.Plan, key: str) -> dict[str, Any]:
    return next(c["params"] for c in p.calls if c["Action"] == "CreateFunction"
                and c["params"]["FunctionName"].endswith(f"-{key}"))


def test_a_correct_plan_passes(instance: dict[str, Any]) -> None:
    assert plan.check_plan(good_plan(instance), instance, ENV, OUTPUTS) == []


def _drop_secret(p: plan.Plan) -> None:
    env = create(p, "callback")["Environment"]
    env["Variables"] = [v for v in env["Variables"] if v["Key"] != "CIFLOW_CALLBACK_SECRET"]


def _swap_layers(p: plan.Plan) -> None:
    create(p, "reconcile")["Layers"][0]["LayerVersion"] = "3"


def _drop_trigger(p: plan.Plan) -> None:
    p.calls[:] = [c for c in p.calls if c["params"].get("Type") != "timer"]


MUTATIONS: dict[str, tuple[Callable[[plan.Plan], None], str]] = {
    "a variable missing": (_drop_secret, "callback (ciflow-dev-ciflow-callback): Environment differs from "
                                         "serverless.yml: missing ['CIFLOW_CALLBACK_SECRET']"),
    "an extra variable": (lambda p: create(p, "submit")["Environment"]["Variables"].append(
        {"Key": "POWERTOOLS_SERVICE_NAME", "Value": "ciflow"}), "not listed ['POWERTOOLS_SERVICE_NAME']"),
    "another value": (lambda p: create(p, "submit")["Environment"]["Variables"][0].update(Value="ap-shanghai"),
                      "other value ['CIFLOW_REGION']"),
    "a placeholder": (lambda p: create(p, "submit")["Environment"]["Variables"][3].update(Value="undefined"),
                      "sets CIFLOW_CALLBACK_SECRET to the placeholder of an unset variable"),
    "an empty dead-letter config": (lambda p: create(p, "submit").update(DeadLetterConfig={}),
                                    "sends DeadLetterConfig={}"),
    "the async execution mode": (lambda p: create(p, "submit").update(AsyncRunEnable="TRUE"), "sends AsyncRunEnable"),
    "a retry policy from the component": (lambda p: p.calls.append(
        {"Action": "UpdateFunctionEventInvokeConfig", "params": {"FunctionName": "x"}}),
        "unexpected UpdateFunctionEventInvokeConfig"),
    "layers swapped": (_swap_layers, "layers [('ciflow-deps', '3'), ('ciflow-lib', '3')]"),
    "another handler": (lambda p: create(p, "callback").update(Handler="functions/submit.main_handler"),
                        "handler 'functions/submit.main_handler'"),
    "no role": (lambda p: create(p, "submit").pop("Role"), "role None, expected 'ciflow-functions'"),
    "a trigger missing": (_drop_trigger, "timer trigger 'reconcile' of reconcile: the component made 0"),
    "a closed trigger": (lambda p: p.calls[-2]["params"].update(Enable="CLOSE"), "Enable 'CLOSE'"),
    "a private Function URL": (lambda p: p.calls[-2]["params"].update(TriggerDesc=json.dumps(
        {"AuthType": "NONE", "NetConfig": {"EnableIntranet": True, "EnableExtranet": False}})), "TriggerDesc"),
    "the component failed": (lambda p: setattr(p, "error", "boom"), "the multi-scf component failed: boom"),
}


@pytest.mark.parametrize("what", list(MUTATIONS))
def test_each_departure_is_reported(instance: dict[str, Any], what: str) -> None:
    mutate, expected = MUTATIONS[what]
    recorded = good_plan(instance)
    mutate(recorded)
    problems = plan.check_plan(recorded, instance, ENV, OUTPUTS)
    assert any(expected in p for p in problems), problems


def test_problems_and_printed_calls_never_show_the_secret(instance: dict[str, Any]) -> None:
    recorded = good_plan(instance)
    create(recorded, "submit")["Environment"]["Variables"][3]["Value"] = "x" * 32
    problems = plan.check_plan(recorded, instance, ENV, OUTPUTS)
    assert problems and not any("x" * 32 in p or "s" * 32 in p for p in problems)
    printed = json.dumps(plan.masked(copy.deepcopy(recorded.calls)))
    assert "s" * 32 not in printed and "x" * 32 not in printed and '"***"' in printed


def test_unset_references_name_what_the_env_file_lacks(instance: dict[str, Any]) -> None:
    assert plan.unset_references(instance, ENV) == []
    assert plan.unset_references(instance, {k: v for k, v in ENV.items() if k != "CIFLOW_ROLE"}) == ["CIFLOW_ROLE"]


def test_scf_plan_installs_into_the_user_cache_or_else_build(tmp_path: Path) -> None:
    assert plan.plan_home({"SCF_PLAN_HOME": "/x"}) == "/x"
    assert plan.plan_home({"XDG_CACHE_HOME": str(tmp_path)}) == str(tmp_path / "scf-plan")
    assert plan.node_tools(lambda tool: None) == ["node", "npm"]
    assert plan.node_tools(lambda tool: "/usr/bin/" + tool) == []


def test_layer_outputs_are_distinct_per_instance() -> None:
    assert plan.layer_outputs() == OUTPUTS


# --- TDMQ: the cmq trigger and the delivery settings, against the rules and settings -------------------

TOPIC = tdmq.Selection(uses=(tdmq.Use("rule 'images'", "gz", "Topic", "ciflow-results"),))
SETTINGS = {"CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz", "CIFLOW_CALLBACK_MQ_MODE": "Topic",
            "CIFLOW_CALLBACK_MQ_NAME": "ciflow-all"}
GLOBAL = tdmq.Selection(uses=(tdmq.Use("the settings (CIFLOW_CALLBACK_TYPE)", "gz", "Topic", "ciflow-all"),),
                        settings_env=SETTINGS)


def rendered_plan(instance: dict[str, Any], chosen: tdmq.Selection, tmp_path: Path) -> tuple[dict[str, Any], plan.Plan]:
    """serverless.yml rendered for `chosen`, and the calls a correct first deploy of it records."""
    rendered = tdmq.render(instance, chosen, tmp_path / "functions")
    recorded = good_plan(rendered)
    for t in chosen.topics:
        recorded.calls.append({"service": "scf", "Action": "CreateTrigger", "params": {
            "FunctionName": "ciflow-dev-ciflow-callback", "Namespace": "default", "Type": "cmq",
            "Qualifier": "$DEFAULT", "TriggerName": t, "TriggerDesc": json.dumps({"filterType": 1}), "Enable": "OPEN"}})
    return rendered, recorded


def all_problems(recorded: plan.Plan, rendered: dict[str, Any], chosen: tdmq.Selection) -> list[str]:
    return plan.check_plan(recorded, rendered, ENV, OUTPUTS) + plan.check_tdmq(recorded, rendered, chosen)


@pytest.mark.parametrize("chosen", [tdmq.Selection(), TOPIC, GLOBAL], ids=["off", "rule topic", "settings topic"])
def test_a_correct_plan_with_or_without_tdmq_passes(instance: dict[str, Any], tmp_path: Path,
                                                    chosen: tdmq.Selection) -> None:
    rendered, recorded = rendered_plan(instance, chosen, tmp_path)
    assert all_problems(recorded, rendered, chosen) == []
    assert len([c for c in recorded.calls if c["params"].get("Type") == "cmq"]) == len(chosen.topics)


def _cmq(p: plan.Plan) -> dict[str, Any]:
    return next(c["params"] for c in p.calls if c["params"].get("Type") == "cmq")


def _drop_cmq(p: plan.Plan) -> None:
    p.calls[:] = [c for c in p.calls if c["params"].get("Type") != "cmq"]


def _settings_on_callback(p: plan.Plan) -> None:
    create(p, "callback")["Environment"]["Variables"].append({"Key": "CIFLOW_CALLBACK_TYPE", "Value": "tdmq"})


def _settings_missing_on_reconcile(p: plan.Plan) -> None:
    env = create(p, "reconcile")["Environment"]
    env["Variables"] = [v for v in env["Variables"] if v["Key"] != "CIFLOW_CALLBACK_MQ_NAME"]


TDMQ_MUTATIONS: dict[str, tuple[tdmq.Selection, Callable[[plan.Plan], None], str]] = {
    "the trigger missing": (TOPIC, _drop_cmq, "cmq triggers none, but the rules and settings call for "
                                              "[('ciflow-dev-ciflow-callback', 'ciflow-results')]"),
    "the trigger on another function": (TOPIC, lambda p: _cmq(p).update(FunctionName="ciflow-dev-ciflow-submit"),
                                        "cmq triggers [('ciflow-dev-ciflow-submit', 'ciflow-results')]"),
    "another topic": (TOPIC, lambda p: _cmq(p).update(TriggerName="ciflow-other"), "'ciflow-other')], but"),
    "a closed trigger": (TOPIC, lambda p: _cmq(p).update(Enable="CLOSE"),
                         "cmq trigger 'ciflow-results': Enable 'CLOSE'"),
    "a filter": (TOPIC, lambda p: _cmq(p).update(TriggerDesc=json.dumps({"filterType": 1, "filterKey": ["x"]})),
                 "cmq trigger 'ciflow-results': TriggerDesc"),
    "the settings on callback": (GLOBAL, _settings_on_callback, "callback gets the delivery settings "
                                                                "{'CIFLOW_CALLBACK_TYPE': 'tdmq'}, expected none"),
    "a setting missing": (GLOBAL, _settings_missing_on_reconcile, "reconcile gets the delivery settings"),
}


@pytest.mark.parametrize("what", list(TDMQ_MUTATIONS))
def test_each_tdmq_departure_is_reported(instance: dict[str, Any], tmp_path: Path, what: str) -> None:
    chosen, mutate, expected = TDMQ_MUTATIONS[what]
    rendered, recorded = rendered_plan(instance, chosen, tmp_path)
    mutate(recorded)
    problems = all_problems(recorded, rendered, chosen)
    assert any(expected in p for p in problems), problems


def test_a_trigger_the_rules_do_not_ask_for_is_reported_even_when_the_rendering_adds_it(
        instance: dict[str, Any], tmp_path: Path) -> None:
    # Given a rendering that subscribed the callback to a topic although no rule or setting uses TDMQ
    rendered, recorded = rendered_plan(instance, TOPIC, tmp_path)
    # Then the trigger checks agree with the rendered file, but the TDMQ check, from the rules, does not
    assert plan.check_plan(recorded, rendered, ENV, OUTPUTS) == []
    assert plan.check_tdmq(recorded, rendered, tdmq.Selection()) == [
        "first deploy: cmq triggers [('ciflow-dev-ciflow-callback', 'ciflow-results')], but the rules and settings "
        "call for none (one per TDMQ topic, on callback)"]


# --- the state bucket: on every function that reads records, exactly when the env file sets it ----------

STATE_ENV = {**ENV, "CIFLOW_STATE_BUCKET": "ciflow-state-1250000000"}


def state_plan(instance: dict[str, Any], env: dict[str, str], tmp_path: Path) -> tuple[dict[str, Any], plan.Plan]:
    """serverless.yml rendered as make deploy renders it for `env`, and the calls a correct deploy records."""
    rendered = deploy.render_functions(env, tdmq.Selection(), tmp_path / "functions")
    return rendered, good_plan(rendered)


@pytest.mark.parametrize("env", [ENV, STATE_ENV], ids=["unset", "set"])
def test_a_correct_plan_with_or_without_a_state_bucket_passes(instance: dict[str, Any], tmp_path: Path,
                                                              env: dict[str, str]) -> None:
    rendered, recorded = state_plan(instance, env, tmp_path)
    assert plan.check_plan(recorded, rendered, env, OUTPUTS) == []
    assert plan.check_state(recorded, rendered, env) == []
    sent = {p["FunctionName"]: {v["Key"]: v["Value"] for v in p["Environment"]["Variables"]}.get(state.VARIABLE)
            for p in recorded.actions("CreateFunction")}
    assert set(sent.values()) == {env.get(state.VARIABLE)}


def _drop_state(key: str) -> Callable[[plan.Plan], None]:
    def drop(p: plan.Plan) -> None:
        env = create(p, key)["Environment"]
        env["Variables"] = [v for v in env["Variables"] if v["Key"] != state.VARIABLE]
    return drop


def _other_state(p: plan.Plan) -> None:
    next(v for v in create(p, "reconcile")["Environment"]["Variables"] if v["Key"] == state.VARIABLE).update(
        Value="ciflow-other-1250000000")


STATE_MUTATIONS: dict[str, tuple[dict[str, str], Callable[[plan.Plan], None], str]] = {
    "missing on callback": (STATE_ENV, _drop_state("callback"),
                            "callback gets CIFLOW_STATE_BUCKET=None, but the env file sets 'ciflow-state-1250000000'"),
    "missing on submit": (STATE_ENV, _drop_state("submit"), "submit gets CIFLOW_STATE_BUCKET=None"),
    "another bucket on reconcile": (STATE_ENV, _other_state, "reconcile gets CIFLOW_STATE_BUCKET="
                                                             "'ciflow-other-1250000000', but the env file sets"),
    "present though unset": (ENV, lambda p: create(p, "submit")["Environment"]["Variables"].append(
        {"Key": state.VARIABLE, "Value": "ciflow-state-1250000000"}),
        "submit gets CIFLOW_STATE_BUCKET='ciflow-state-1250000000', but the env file does not set it"),
}


@pytest.mark.parametrize("what", list(STATE_MUTATIONS))
def test_each_state_bucket_departure_is_reported(instance: dict[str, Any], tmp_path: Path, what: str) -> None:
    env, mutate, expected = STATE_MUTATIONS[what]
    rendered, recorded = state_plan(instance, env, tmp_path)
    mutate(recorded)
    problems = plan.check_state(recorded, rendered, env)
    assert any(expected in p for p in problems), problems


def test_a_rendering_that_forgets_the_state_bucket_is_caught_from_the_env_file(instance: dict[str, Any],
                                                                                tmp_path: Path) -> None:
    # Given a rendering without the state bucket, and calls that agree with that rendering
    rendered, recorded = state_plan(instance, ENV, tmp_path)
    # Then the function checks pass, but the state check, from the env file, does not
    assert plan.check_plan(recorded, rendered, STATE_ENV, OUTPUTS) == []
    assert len(plan.check_state(recorded, rendered, STATE_ENV)) == 3


def test_an_environment_map_is_refused_with_the_reason() -> None:
    # Given serverless.yml written in the form multi-scf silently replaces
    import yaml

    from deploy import plan as plan_mod

    instance = yaml.safe_load((plan_mod.ROOT / "serverless.yml").read_text(encoding="utf-8"))
    assert plan_mod.check_environment_form(instance) == []
    fn = instance["inputs"]["functions"]["submit"]
    fn["environment"] = {"variables": {e["key"]: e["value"] for e in fn.pop("environments")}}
    # Then the plan says why it would deploy no variable at all, and which required ones are absent
    problems = plan_mod.check_environment_form(instance)
    assert any("functions.submit.environment: multi-scf replaces it" in p and "without a single variable" in p
               for p in problems), problems
    assert any("lacks CIFLOW_REGION, CIFLOW_CALLBACK_SECRET" in p for p in problems), problems
