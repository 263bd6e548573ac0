"""`make deploy` without Tencent Cloud: preflight messages, staging, the order of `scf` runs, and the
SCF API calls that follow (tests/integration/test_deploy_scf_api.py sends those through the real SDK)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from deploy import deploy, scf_api, state, tdmq

ROOT = Path(__file__).resolve().parents[2]
CONFIGURED = {"TENCENT_SECRET_ID": "AKIDx", "TENCENT_SECRET_KEY": "k", "CIFLOW_REGION": "ap-guangzhou",
              "CIFLOW_BUCKET": "uploads-1250000000", "CIFLOW_ROLE": "ciflow-functions",
              "CIFLOW_CALLBACK_SECRET": "s" * 32}
URL = "https://1250000000-abc123xyz.ap-guangzhou.tencentscf.com"
HAS_SCF = lambda _: "/usr/bin/scf"  # noqa: E731


TOPIC_RULE = {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "ciflow-results"}


def rules_with(delivery: Optional[dict[str, str]] = None) -> str:
    """The bundled rules, their one rule delivering through `delivery` when given."""
    doc = json.loads(tdmq.DEPLOYED_RULES.read_text(encoding="utf-8"))
    if delivery is not None:
        doc["rules"][0]["delivery"] = delivery
    return json.dumps(doc)


def fake_dist(tmp_path: Path, rules: Optional[str] = None) -> Path:
    for name in deploy.ARTIFACTS:
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr(f"{name}/marker.txt", name)
            if name == "layer-ciflow":  # the lib layer ships the rules the functions load
                zf.writestr("ciflow/default_rules.json", rules if rules is not None else rules_with())
    return tmp_path


def functions(dist: Path) -> list[str]:
    """The `scf deploy` of the functions: the serverless.yml rendered into dist/stage/functions."""
    return ["deploy", "--target", str((dist / "stage" / "functions").resolve())]


class FakeScf:
    """Records each `scf` run with the callback URL it was given, and the serverless.yml it deployed."""

    def __init__(self, code: int = 0, output: str = "done\n", fail_at: Optional[int] = None):
        self.runs: list[tuple[list[str], str]] = []
        self.deployed: list[dict[str, Any]] = []
        self.code, self.output, self.fail_at = code, output, fail_at

    def __call__(self, args: list[str], env: Mapping[str, str]) -> tuple[int, str]:
        self.runs.append((args, env["CIFLOW_CALLBACK_URL"]))
        folder = Path(args[2]) if args[1:2] == ["--target"] else ROOT
        self.deployed.append(yaml.safe_load((ROOT / folder / "serverless.yml").read_text(encoding="utf-8")))
        if self.fail_at is not None:
            return (self.code if len(self.runs) == self.fail_at else 0), self.output
        return self.code, self.output


class FakeApi:
    """Stands in for the SDK client's `call`: records actions and answers ListTriggers."""

    def __init__(self, triggers: Optional[list[dict[str, Any]]] = None, error: Optional[str] = None):
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.triggers = triggers if triggers is not None else [
            {"Type": "http", "TriggerName": "callback-url", "Qualifier": "$DEFAULT",
             "TriggerDesc": json.dumps({"AuthType": "NONE", "NetConfig": {"EnableExtranet": True}, "Url": URL})}]
        self.error = error

    def call(self, action: str, params: dict[str, Any]) -> bytes:
        self.calls.append((action, params))
        if self.error == action:
            from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
            raise TencentCloudSDKException("ResourceNotFound.Function", "no such function", "req-1")
        body: dict[str, Any] = {"RequestId": "req-1"}
        if action == "ListTriggers":
            body.update(Triggers=self.triggers, TotalCount=len(self.triggers))
        return json.dumps({"Response": body}).encode()

    def actions(self) -> list[str]:
        return [a for a, _ in self.calls]


# --- preflight ---------------------------------------------------------------------------------------

def test_preflight_names_the_missing_cli_credentials_and_settings() -> None:
    problems = deploy.preflight({"CIFLOW_CALLBACK_SECRET": "short", "CIFLOW_DLQ_NAME": "q"}, which=lambda _: None)
    text = "\n".join(problems)
    assert "npm i -g serverless-cloud-framework" in text and "`scf`" in text
    assert "TENCENT_SECRET_ID and TENCENT_SECRET_KEY" in text and "scf login" in text
    assert "set CIFLOW_BUCKET, CIFLOW_REGION, CIFLOW_ROLE in .env" in text
    assert "at least 16 characters" in text
    assert "CIFLOW_DLQ_TYPE and CIFLOW_DLQ_NAME" in text
    assert deploy.preflight(CONFIGURED, which=HAS_SCF) == []


@pytest.mark.parametrize("variable", deploy.referenced_variables())
def test_each_variable_serverless_yml_uses_is_named_when_missing_and_never_as_a_placeholder(variable: str) -> None:
    # Given a complete .env but for one variable serverless.yml or a layer instance uses
    env = {k: v for k, v in CONFIGURED.items() if k != variable}
    problems = deploy.preflight(env, which=HAS_SCF)
    if variable in deploy.MAY_BE_EMPTY:
        # The callback URL is found by the first deploy itself
        assert problems == []
        return
    # Then the deploy is refused, naming the variable
    assert len(problems) == 1 and variable in problems[0], problems
    assert "undefined" not in problems[0]
    # And a blank value counts as missing
    assert deploy.preflight({**env, variable: "  "}, which=HAS_SCF) == problems


def test_the_variables_serverless_yml_uses_are_exactly_those_configured() -> None:
    # The test above covers every one of them; CONFIGURED holds every required one
    assert set(deploy.referenced_variables()) - deploy.MAY_BE_EMPTY == {
        "CIFLOW_BUCKET", "CIFLOW_CALLBACK_SECRET", "CIFLOW_REGION", "CIFLOW_ROLE"}


def test_preflight_refuses_placeholders_short_buckets_and_plain_http_urls() -> None:
    bad = {**CONFIGURED, "CIFLOW_ROLE": "undefined", "CIFLOW_BUCKET": "uploads",
           "CIFLOW_CALLBACK_URL": "http://1250000000-abc.ap-guangzhou.tencentscf.com"}
    text = "\n".join(deploy.preflight(bad, which=HAS_SCF))
    assert "CIFLOW_ROLE in .env holds the CLI's placeholder" in text
    assert "<name>-<appid>; got 'uploads'" in text
    assert "CIFLOW_CALLBACK_URL must be an https:// URL" in text


def test_preflight_applies_the_components_rules_unless_validation_is_skipped() -> None:
    # A region outside multi-scf's published list: the platform's validation would refuse it
    env = {**CONFIGURED, "CIFLOW_REGION": "ap-nowhere"}
    problems = deploy.preflight(env, which=HAS_SCF)
    assert problems and all("ap-nowhere" in p and "--no-validation" in p for p in problems)
    assert deploy.preflight(env, which=HAS_SCF, no_validation=True) == []


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
    assert "CIFLOW_ROLE" in proc.stderr and "undefined" not in proc.stderr


# --- the deploy --------------------------------------------------------------------------------------

def test_first_deploy_publishes_layers_then_functions_then_redeploys_with_the_url_from_the_api(tmp_path: Path) -> None:
    # Given packaged artifacts and no callback URL yet
    scf, api, logs = FakeScf(), FakeApi(), []
    # When deploying
    code = deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, api, logs.append)
    # Then the layers go first, the functions next, and again once ListTriggers shows the Function URL
    assert code == 0
    assert scf.runs == [(["deploy", "--target", "./deploy/layers/deps"], ""),
                        (["deploy", "--target", "./deploy/layers/lib"], ""),
                        (functions(tmp_path), ""),
                        (functions(tmp_path), URL)]
    assert f"CIFLOW_CALLBACK_URL={URL}" in logs[-1]
    # And the URL was asked of the callback function, its $DEFAULT qualifier, by the component's own filters
    action, params = api.calls[0]
    assert action == "ListTriggers" and params["FunctionName"] == "ciflow-dev-ciflow-callback"
    assert params["Filters"] == [{"Name": "Type", "Values": ["http"]}, {"Name": "Qualifier", "Values": ["$DEFAULT"]}]
    # And the retry policies were set after the last functions deploy, with no dead-letter queue
    assert api.actions() == ["ListTriggers", "UpdateFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig"]
    policies = {p["FunctionName"]: p["AsyncTriggerConfig"] for a, p in api.calls[1:]}
    assert policies == {"ciflow-dev-ciflow-submit": {"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600},
                        "ciflow-dev-ciflow-reconcile": {"RetryConfig": [{"RetryNum": 0}], "MsgTTL": 600}}
    # And every artifact was unpacked where the serverless.yml files look for it
    for name in deploy.ARTIFACTS:
        assert (tmp_path / "stage" / name / name / "marker.txt").read_text() == name


def test_a_known_callback_url_needs_one_functions_deploy(tmp_path: Path) -> None:
    scf, api = FakeScf(), FakeApi()
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}, fake_dist(tmp_path), scf, api, print) == 0
    assert [args for args, _ in scf.runs].count(functions(tmp_path)) == 1


def test_a_stale_callback_url_in_env_is_reported(tmp_path: Path) -> None:
    scf, api, logs = FakeScf(), FakeApi(), []
    stale = "https://1250000000-old000.ap-guangzhou.tencentscf.com"
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": stale}, fake_dist(tmp_path), scf, api, logs.append) == 0
    assert stale in logs[-1] and f"CIFLOW_CALLBACK_URL={URL}" in logs[-1]


def test_without_a_url_from_the_api_it_says_what_to_do(tmp_path: Path) -> None:
    scf, api, logs = FakeScf(), FakeApi(triggers=[]), []
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, api, logs.append) == 1
    assert "CIFLOW_CALLBACK_URL" in logs[-1] and "make deploy" in logs[-1] and "ListTriggers" in logs[-1]
    # The functions were deployed once, and their retry policy set all the same
    assert [args for args, _ in scf.runs].count(functions(tmp_path)) == 1
    assert api.actions() == ["ListTriggers", "GetFunction", "UpdateFunctionEventInvokeConfig",
                             "UpdateFunctionEventInvokeConfig"]


def test_the_dead_letter_queue_is_set_only_when_configured(tmp_path: Path) -> None:
    api = FakeApi()
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL, "CIFLOW_DLQ_TYPE": "CMQ-QUEUE", "CIFLOW_DLQ_NAME": "ciflow-dlq"}
    assert deploy.deploy(env, fake_dist(tmp_path), FakeScf(), api, print) == 0
    dlq = [p for a, p in api.calls if a == "UpdateFunctionConfiguration"]
    assert dlq == [{"FunctionName": "ciflow-dev-ciflow-submit", "Namespace": "default",
                    "DeadLetterConfig": {"Type": "CMQ-QUEUE", "Name": "ciflow-dlq"}}]


def test_a_failed_api_call_is_reported_after_the_deploy(tmp_path: Path) -> None:
    logs: list[str] = []
    api = FakeApi(error="UpdateFunctionEventInvokeConfig")
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}
    assert deploy.deploy(env, fake_dist(tmp_path), FakeScf(), api, logs.append) == 1
    assert "UpdateFunctionEventInvokeConfig for ciflow-dev-ciflow-submit failed" in logs[-1]
    assert "ResourceNotFound.Function" in logs[-1] and "req-1" in logs[-1]


def test_a_failed_layer_deploy_stops_everything(tmp_path: Path) -> None:
    scf, api = FakeScf(code=3), FakeApi()
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, api, print) == 3
    assert len(scf.runs) == 1 and api.calls == []


def test_no_validation_reaches_every_scf_deploy_and_a_validation_refusal_is_explained(tmp_path: Path) -> None:
    scf = FakeScf()
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), scf, FakeApi(), print, no_validation=True) == 0
    assert all(args[-1] == "--noValidation" for args, _ in scf.runs)
    # When the platform's validation refuses the functions' Python3.9, the way around it is named
    logs: list[str] = []
    refused = FakeScf(code=1, output="runtime 不支持当前运行时\n可以使用 --noValidation 跳过 serverless 应用配置校验\n",
                      fail_at=3)
    assert deploy.deploy(dict(CONFIGURED), fake_dist(tmp_path), refused, FakeApi(), logs.append) == 1
    assert "DEPLOY_ARGS=--no-validation" in logs[-1]


def test_function_names_follow_multi_scf() -> None:
    names = deploy.function_names(deploy.instance())
    assert names == {"submit": "ciflow-dev-ciflow-submit", "callback": "ciflow-dev-ciflow-callback",
                     "reconcile": "ciflow-dev-ciflow-reconcile"}


def test_api_requests_with_a_parameter_the_sdk_does_not_know_are_refused() -> None:
    with pytest.raises(scf_api.ScfApiError, match="useless"):
        scf_api._call(FakeApi(), "ListTriggers", {"FunctionName": "f", "NotAParameter": 1}, "f")


# --- TDMQ deliveries: serverless.yml rendered for them ------------------------------------------------

def _triggers(deployed: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [t for t in deployed["inputs"]["triggers"] if t["type"] == kind]


def _environment(deployed: dict[str, Any], key: str) -> dict[str, str]:
    return {e["key"]: e["value"] for e in deployed["inputs"]["functions"][key]["environments"]}


def test_without_tdmq_the_functions_deployed_are_serverless_yml_as_written(tmp_path: Path) -> None:
    # Given the bundled rules (no TDMQ) and an .env that does not choose it
    scf = FakeScf()
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}, fake_dist(tmp_path), scf, FakeApi(), print) == 0
    # Then the functions' serverless.yml is the committed one, its code path made relative to where it is
    deployed, static = scf.deployed[2], deploy.instance()
    code = (tmp_path / "stage" / "functions" / deployed["inputs"]["src"]["src"]).resolve()
    assert code == (tmp_path / "stage" / "function-code").resolve()
    deployed["inputs"]["src"] = static["inputs"]["src"]
    assert deployed == static
    assert _triggers(deployed, "cmq") == []


def test_a_rule_delivering_to_a_topic_subscribes_the_callback_function_to_it(tmp_path: Path) -> None:
    # Given staged rules whose rule delivers through a TDMQ topic in the functions' region
    scf, api, logs = FakeScf(), FakeApi(), []
    dist = fake_dist(tmp_path, rules_with(TOPIC_RULE))
    # When deploying
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}, dist, scf, api, logs.append) == 0
    # Then the deployed serverless.yml has one cmq trigger, on callback, for that topic, enabled
    deployed = scf.deployed[2]
    api_calls = [p["FunctionName"] for a, p in api.calls if a == "UpdateFunctionEventInvokeConfig"]
    assert api_calls == ["ciflow-dev-ciflow-submit", "ciflow-dev-ciflow-reconcile", "ciflow-dev-ciflow-callback"]
    assert _triggers(deployed, "cmq") == [{"type": "cmq", "function": "callback",
                                           "parameters": {"name": "ciflow-results", "qualifier": "$DEFAULT",
                                                          "enable": True}}]
    # And the other triggers are untouched, and no function gets the settings' delivery variables
    assert [t["type"] for t in deployed["inputs"]["triggers"]] == ["cos", "http", "timer", "cmq"]
    assert not any(set(tdmq.DELIVERY_VARIABLES) & set(_environment(deployed, k)) for k in ("submit", "callback",
                                                                                             "reconcile"))
    assert any("topic ciflow-results (gz) for rule 'images': cmq trigger on callback" in line for line in logs)


def test_the_settings_choosing_a_queue_reach_the_submitting_functions_and_create_no_trigger(tmp_path: Path) -> None:
    # Given an .env that sends every rule's results to a CMQ queue
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL, "CIFLOW_CALLBACK_TYPE": "TDMQ",
           "CIFLOW_CALLBACK_MQ_REGION": " bj ", "CIFLOW_CALLBACK_MQ_MODE": "Queue",
           "CIFLOW_CALLBACK_MQ_NAME": "results"}
    scf, logs = FakeScf(), []
    assert deploy.deploy(env, fake_dist(tmp_path), scf, FakeApi(), logs.append) == 0
    deployed = scf.deployed[2]
    # Then submit and reconcile get the delivery settings as the functions will parse them; callback none
    chosen = {"CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "bj", "CIFLOW_CALLBACK_MQ_MODE": "Queue",
              "CIFLOW_CALLBACK_MQ_NAME": "results"}
    for key in ("submit", "reconcile"):
        assert {k: v for k, v in _environment(deployed, key).items() if k in chosen} == chosen, key
    assert not set(chosen) & set(_environment(deployed, "callback"))
    # And a queue has no push trigger: none is created, and the deploy says who finishes those jobs
    assert _triggers(deployed, "cmq") == []
    assert any("queue results (bj)" in line and "reconcile's GET /jobs" in line for line in logs)


def test_a_redeploy_without_tdmq_deploys_serverless_yml_without_the_trigger(tmp_path: Path) -> None:
    # Given a deploy with a topic rule, then the rules changed back to the Function URL
    scf = FakeScf()
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}
    assert deploy.deploy(env, fake_dist(tmp_path, rules_with(TOPIC_RULE)), scf, FakeApi(), print) == 0
    assert deploy.deploy(env, fake_dist(tmp_path), scf, FakeApi(), print) == 0
    # Then the second functions deploy lists no cmq trigger (the component removes a trigger it no longer lists)
    assert len(_triggers(scf.deployed[2], "cmq")) == 1 and _triggers(scf.deployed[5], "cmq") == []


def test_a_topic_in_another_region_stops_the_deploy_before_anything_is_published(tmp_path: Path) -> None:
    # Given a topic in Guangzhou and functions deployed to Beijing
    scf, api, logs = FakeScf(), FakeApi(), []
    env = {**CONFIGURED, "CIFLOW_REGION": "ap-beijing", "CIFLOW_CALLBACK_URL": URL}
    code = deploy.deploy(env, fake_dist(tmp_path, rules_with(TOPIC_RULE)), scf, api, logs.append)
    # Then nothing is deployed, and the message names the rule, the topic, both regions and the reason
    assert code == 1 and scf.runs == [] and api.calls == []
    assert "rule 'images'" in logs[-1] and "'ciflow-results' is in ap-guangzhou" in logs[-1]
    assert "ap-beijing" in logs[-1] and "only functions of its own region" in logs[-1]


def test_preflight_names_tdmq_settings_and_rules_it_cannot_deploy(tmp_path: Path) -> None:
    # An incomplete TDMQ choice in .env is named by its variable
    problems = deploy.preflight({**CONFIGURED, "CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_NAME": "x"},
                                which=HAS_SCF)
    assert len(problems) == 1 and "TDMQ delivery: .env: CIFLOW_CALLBACK_MQ_REGION: must be one of" in problems[0]
    # A topic outside the functions' region, in the rules the lib layer ships
    rules = tmp_path / "rules.json"
    rules.write_text(rules_with({**TOPIC_RULE, "mq_region": "sh"}), encoding="utf-8")
    problems = deploy.preflight(dict(CONFIGURED), which=HAS_SCF, rules=rules)
    assert len(problems) == 1 and "'ciflow-results' is in ap-shanghai" in problems[0]
    # A queue in another region is fine: CI publishes there and nothing is triggered
    rules.write_text(rules_with({**TOPIC_RULE, "mq_region": "sh", "mq_mode": "Queue"}), encoding="utf-8")
    assert deploy.preflight(dict(CONFIGURED), which=HAS_SCF, rules=rules) == []


@pytest.mark.parametrize("variable", ["CIFLOW_RULES_FILE", "CIFLOW_RULES"])
def test_rules_chosen_in_env_are_refused_because_they_are_not_deployed(variable: str) -> None:
    problems = deploy.preflight({**CONFIGURED, variable: "my-rules.json"}, which=HAS_SCF)
    assert len(problems) == 1 and f"{variable} is set, but not deployed" in problems[0]
    assert "layers/ciflow/ciflow/default_rules.json" in problems[0]


def test_the_lib_layer_ships_the_rules_where_make_deploy_reads_them(tmp_path: Path) -> None:
    # Given the lib layer as `make package` builds it, staged as `make deploy` stages it
    from deploy import package
    package.build_ciflow_layer(tmp_path / "layer-ciflow.zip")
    with zipfile.ZipFile(tmp_path / "layer-ciflow.zip") as zf:
        zf.extractall(tmp_path / "stage" / "layer-ciflow")
    # Then the rules the functions load are where the rendering reads them, byte for byte the bundled ones
    staged = tmp_path / "stage" / tdmq.RULES_IN_LAYER
    assert staged.read_bytes() == tdmq.DEPLOYED_RULES.read_bytes()
    # And they are the settings' default rules file, as the functions resolve it from the layer
    from ciflow.settings import DEFAULT_RULES_FILE
    assert Path(DEFAULT_RULES_FILE).resolve() == tdmq.DEPLOYED_RULES.resolve()


# --- the state bucket: where the records live -------------------------------------------------------

STATE = "ciflow-state-1250000000"


def test_without_a_state_bucket_no_function_gets_one(tmp_path: Path) -> None:
    scf, logs = FakeScf(), []
    assert deploy.deploy({**CONFIGURED, "CIFLOW_CALLBACK_URL": URL}, fake_dist(tmp_path), scf, FakeApi(),
                         logs.append) == 0
    deployed = scf.deployed[2]
    assert not any(state.VARIABLE in _environment(deployed, k) for k in deployed["inputs"]["functions"])
    assert "deploy: records: beside each object, under .ciflow/ in its bucket (CIFLOW_STATE_BUCKET unset)" in logs


def test_a_state_bucket_reaches_every_function_that_reads_records(tmp_path: Path) -> None:
    # Given an .env that keeps the records in a bucket of their own (the watched one has versioning Suspended)
    scf, logs = FakeScf(), []
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL, "CIFLOW_STATE_BUCKET": f" {STATE} "}
    # When deploying, first deploy (the URL found) and redeploy alike
    assert deploy.deploy({**env, "CIFLOW_CALLBACK_URL": ""}, fake_dist(tmp_path), scf, FakeApi(), logs.append) == 0
    # Then every functions deploy gives submit, callback and reconcile the bucket, as the settings read it
    for deployed in (scf.deployed[2], scf.deployed[3]):
        for key in ("submit", "callback", "reconcile"):
            assert _environment(deployed, key)[state.VARIABLE] == STATE, key
        # And the rest is serverless.yml as written
        static = deploy.instance()
        for fn in deployed["inputs"]["functions"].values():
            fn["environments"] = [e for e in fn["environments"] if e["key"] != state.VARIABLE]
        deployed["inputs"]["src"] = static["inputs"]["src"]
        assert deployed == static
    assert f"deploy: records: in {STATE} under .ciflow/uploads-1250000000/ (CIFLOW_STATE_BUCKET on submit, " \
           "callback, reconcile)" in logs


def test_the_state_bucket_goes_along_with_the_tdmq_settings(tmp_path: Path) -> None:
    env = {**CONFIGURED, "CIFLOW_CALLBACK_URL": URL, "CIFLOW_STATE_BUCKET": STATE, "CIFLOW_CALLBACK_TYPE": "tdmq",
           "CIFLOW_CALLBACK_MQ_REGION": "gz", "CIFLOW_CALLBACK_MQ_NAME": "results"}
    scf = FakeScf()
    assert deploy.deploy(env, fake_dist(tmp_path), scf, FakeApi(), print) == 0
    deployed = scf.deployed[2]
    assert _environment(deployed, "submit")["CIFLOW_CALLBACK_MQ_NAME"] == "results"
    assert {_environment(deployed, k)[state.VARIABLE] for k in ("submit", "callback", "reconcile")} == {STATE}
    assert [t["type"] for t in deployed["inputs"]["triggers"]] == ["cos", "http", "timer", "cmq"]


@pytest.mark.parametrize(("value", "expected"), [
    ("ciflow-state", "CIFLOW_STATE_BUCKET must be the bucket's full name, <name>-<appid>; got 'ciflow-state'"),
    ("Ciflow-State-1250000000", "<name>-<appid>; got 'Ciflow-State-1250000000'"),
    ("ciflow-state-1250000000.cos.ap-guangzhou.myqcloud.com", "<name>-<appid>"),
    ("uploads-1250000000", "CIFLOW_STATE_BUCKET must be another bucket than CIFLOW_BUCKET"),
    ("ciflow-state-1250000001", "belongs to APPID 1250000001, CIFLOW_BUCKET to 1250000000"),
])
def test_preflight_refuses_a_state_bucket_it_cannot_deploy(tmp_path: Path, value: str, expected: str) -> None:
    env = {**CONFIGURED, "CIFLOW_STATE_BUCKET": value}
    problems = deploy.preflight(env, which=HAS_SCF)
    assert len(problems) == 1 and expected in problems[0], problems
    # And the deploy itself refuses it before anything is published
    scf, logs = FakeScf(), []
    assert deploy.deploy(env, fake_dist(tmp_path), scf, FakeApi(), logs.append) == 1
    assert scf.runs == [] and expected in logs[-1]


def test_preflight_accepts_a_state_bucket_and_refuses_a_state_prefix_that_is_not_deployed() -> None:
    assert deploy.preflight({**CONFIGURED, "CIFLOW_STATE_BUCKET": STATE}, which=HAS_SCF) == []
    assert deploy.preflight({**CONFIGURED, "CIFLOW_STATE_PREFIX": ".ciflow"}, which=HAS_SCF) == []
    problems = deploy.preflight({**CONFIGURED, "CIFLOW_STATE_PREFIX": "records/"}, which=HAS_SCF)
    assert len(problems) == 1 and "CIFLOW_STATE_PREFIX is set to 'records/', but not deployed" in problems[0]


def test_serverless_yml_setting_the_state_bucket_itself_is_refused(tmp_path: Path) -> None:
    sls = deploy.instance()
    sls["inputs"]["functions"]["callback"]["environments"].append({"key": state.VARIABLE, "value": "x-1"})
    with pytest.raises(state.StateConfigError, match="already sets CIFLOW_STATE_BUCKET for callback"):
        state.render(sls, {**CONFIGURED, "CIFLOW_STATE_BUCKET": STATE})
