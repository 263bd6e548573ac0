"""serverless.yml (and the layer instances) checked against the code they deploy, offline.

The environment of each function is derived from the code here: the modules its handler loads, the
settings fields those modules read, and the variables behind those fields.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ciflow.errors import ConfigError
from ciflow.rules import parse_rules
from ciflow.settings import DEFAULT_RULES_FILE, ENV_VARS, load_settings
from deploy import component_rules, deploy, scf_api, state, tdmq

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "ciflow" / "ciflow"
ENV_REF = re.compile(r"\$\{env:(\w+)\}")
# Variables a deployment must supply although the settings have a default, because the default is
# wrong for a deployment. Everything else the settings read keeps its documented default.
NO_DEPLOYABLE_DEFAULT = {
    "CIFLOW_CALLBACK_URL": "empty means jobs are submitted without a callback",
    "CIFLOW_BUCKETS": "empty means any bucket, and a reconcile that scans no bucket at all",
}
# The probe values used to find which Settings field each variable sets.
PROBE_BASE = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "s" * 32}
PROBES = {"CIFLOW_REGION": "ap-shanghai", "CIFLOW_CALLBACK_SECRET": "t" * 32,
          "CIFLOW_CALLBACK_URL": "https://probe.example", "CIFLOW_BUCKETS": "probe-1250000000"}
# The delivery settings (TDMQ for every rule without its own): deployed only when `.env` chooses
# them (deploy/tdmq.py), to the functions whose code reads what they set. Each is probed from a
# complete choice, since one alone does not parse.
DELIVERY_PROBE = {"CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz",
                  "CIFLOW_CALLBACK_MQ_MODE": "Queue", "CIFLOW_CALLBACK_MQ_NAME": "probe"}
DELIVERY_CHANGES = {"CIFLOW_CALLBACK_TYPE": "url", "CIFLOW_CALLBACK_MQ_REGION": "bj",
                    "CIFLOW_CALLBACK_MQ_MODE": "Topic", "CIFLOW_CALLBACK_MQ_NAME": "probe2"}


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sls() -> dict[str, Any]:
    return load(ROOT / "serverless.yml")


@pytest.fixture(scope="module")
def functions(sls: dict[str, Any]) -> dict[str, Any]:
    return sls["inputs"]["functions"]


def modules_loaded_by(handler_file: Path) -> list[Path]:
    """The ciflow modules a handler imports, directly or through each other (lazy imports too)."""
    todo, seen = [handler_file], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level or base.startswith("ciflow"):
                    base = base.removeprefix("ciflow").lstrip(".")
                    names = [base] if base else [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("ciflow.") for a in node.names if a.name.startswith("ciflow.")]
            todo += [LIBRARY / f"{n.split('.')[0]}.py" for n in names if (LIBRARY / f"{n.split('.')[0]}.py").exists()]
    return sorted(p for p in seen if p.parent == LIBRARY)


def fields_of(variable: str) -> set[str]:
    """The Settings fields `variable` sets, found by changing it and watching load_settings."""
    before, after = load_settings(PROBE_BASE), load_settings({**PROBE_BASE, variable: PROBES[variable]})
    return {f for f in vars(before) if getattr(before, f) != getattr(after, f)}


def delivery_fields(variable: str) -> set[str]:
    """The Settings fields `variable`, one of the delivery settings, sets."""
    base = {**PROBE_BASE, **DELIVERY_PROBE}
    before, after = load_settings(base), load_settings({**base, variable: DELIVERY_CHANGES[variable]})
    return {f for f in vars(before) if getattr(before, f) != getattr(after, f)}


def required_variables() -> set[str]:
    """Variables without which load_settings refuses to start (the SCF runtime's TENCENTCLOUD_REGION
    is not documented as set, so it is not counted on)."""
    out = set()
    for var in PROBE_BASE:
        with pytest.raises(ConfigError):
            load_settings({k: v for k, v in PROBE_BASE.items() if k != var})
        out.add(var)
    return out


def fields_read(modules: list[Path]) -> set[str]:
    fields = set(vars(load_settings(PROBE_BASE)))
    return {node.attr for m in modules if m.name != "settings.py"
            for node in ast.walk(ast.parse(m.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and node.attr in fields}


def fields_read_by(function_key: str, sls: dict[str, Any]) -> set[str]:
    handler = sls["inputs"]["functions"][function_key]["handler"].rpartition(".")[0]
    return fields_read(modules_loaded_by(ROOT / f"{handler}.py"))


def needed_environment(function_key: str, sls: dict[str, Any]) -> set[str]:
    read = fields_read_by(function_key, sls)
    return required_variables() | {v for v in NO_DEPLOYABLE_DEFAULT if fields_of(v) & read}


def needed_delivery_environment(function_key: str, sls: dict[str, Any]) -> set[str]:
    """The delivery settings the function's code reads, deployed when `.env` chooses TDMQ."""
    read = fields_read_by(function_key, sls)
    return {v for v in tdmq.DELIVERY_VARIABLES if delivery_fields(v) & read}


def test_serverless_yml_is_a_multi_scf_instance_on_python39(sls: dict[str, Any]) -> None:
    assert sls["component"] == "multi-scf"
    assert sls["inputs"]["runtime"] == "Python3.9"
    assert set(sls["inputs"]["functions"]) == {"submit", "callback", "reconcile"}


def test_every_handler_exists_and_is_callable(functions: dict[str, Any]) -> None:
    # Given the handlers serverless.yml names (module path relative to the code root, then the function)
    for name, fn in functions.items():
        module_path, _, attr = fn["handler"].rpartition(".")
        source = ROOT / f"{module_path}.py"
        assert source.is_file(), f"{name}: handler module {source.relative_to(ROOT)} does not exist"
        # When the module is imported with the ciflow layer on the path (pytest's pythonpath)
        spec = importlib.util.spec_from_file_location(f"deploycheck_{name}", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        # Then it has the entry point, callable
        assert callable(getattr(module, attr, None)), f"{name}: {fn['handler']} is not callable"


def test_functions_have_memory_timeout_role_and_layers(functions: dict[str, Any]) -> None:
    for name, fn in functions.items():
        assert 64 <= fn["memorySize"] <= 3072, name
        assert 1 <= fn["timeout"] <= 900, name
        assert fn["role"] == "${env:CIFLOW_ROLE}", name
        assert [layer["name"] for layer in fn["layers"]] == ["ciflow-deps", "ciflow-lib"], name


def test_no_input_that_multi_scf_ignores_or_mishandles(sls: dict[str, Any]) -> None:
    # `environment` is replaced by `environments` (empty by default); retryNum/msgTTL only apply with
    # asyncRunEnable (another execution mode); an empty deadLetter still sends DeadLetterConfig: {}.
    ignored = {"environment", "retryNum", "msgTTL", "deadLetter", "asyncRunEnable"}
    assert not ignored & set(sls["inputs"])
    for name, fn in sls["inputs"]["functions"].items():
        assert not ignored & set(fn), f"{name}: {ignored & set(fn)}"


def test_the_async_retry_policy_covers_exactly_the_asynchronously_invoked_functions(sls: dict[str, Any]) -> None:
    # COS and timer triggers invoke asynchronously; a Function URL synchronously
    async_functions = {t["function"] for t in sls["inputs"]["triggers"] if t["type"] in ("cos", "timer")}
    assert set(scf_api.ASYNC_RETRY) == async_functions == {"submit", "reconcile"}
    # The COS-triggered submit: SCF's 2 retries, events kept for the 6-hour maximum, then the DLQ
    assert scf_api.ASYNC_RETRY["submit"] == scf_api.RetryPolicy(retry_num=2, msg_ttl=21600)
    # The timer-driven reconcile is not retried: the next tick redoes the work
    assert scf_api.ASYNC_RETRY["reconcile"].retry_num == 0
    assert 60 <= scf_api.ASYNC_RETRY["reconcile"].msg_ttl <= 21600


def test_a_topic_trigger_makes_callback_asynchronous_and_it_gets_a_retry_policy(sls: dict[str, Any],
                                                                                  tmp_path: Path) -> None:
    # Given serverless.yml rendered for a rule delivering to a topic (SCF's CMQ topic trigger invokes
    # asynchronously, platform.md §2)
    chosen = tdmq.Selection(uses=(tdmq.Use("rule 'images'", "gz", "Topic", "ciflow-results"),))
    rendered = tdmq.render(sls, chosen, tmp_path)
    async_functions = {t["function"] for t in rendered["inputs"]["triggers"] if t["type"] in ("cos", "timer", "cmq")}
    # Then callback is asynchronous too, and make deploy has a policy for it: a batch that raised is delivered
    # again (applying twice changes nothing), within the six hours SCF keeps an event
    assert async_functions == set(scf_api.ASYNC_RETRY) | {tdmq.RECEIVING_FUNCTION}
    assert scf_api.TOPIC_TRIGGERED_RETRY.retry_num >= 1 and scf_api.TOPIC_TRIGGERED_RETRY.msg_ttl == 21600


def test_the_probes_find_the_settings_behind_each_variable() -> None:
    # The derivation below rests on these: the fields each variable sets, and the two required ones
    assert {v: fields_of(v) for v in PROBES} == {
        "CIFLOW_REGION": {"region", "s3_endpoint"}, "CIFLOW_CALLBACK_SECRET": {"callback_secret"},
        "CIFLOW_CALLBACK_URL": {"callback_url"}, "CIFLOW_BUCKETS": {"buckets"}}
    assert required_variables() == {"CIFLOW_REGION", "CIFLOW_CALLBACK_SECRET"}
    assert set(NO_DEPLOYABLE_DEFAULT) <= set(ENV_VARS) and set(PROBES) <= set(ENV_VARS)
    # And each delivery setting sets the delivery, and nothing else
    assert {v: delivery_fields(v) for v in tdmq.DELIVERY_VARIABLES} == {v: {"delivery"} for v in DELIVERY_PROBE}
    assert set(tdmq.DELIVERY_VARIABLES) <= set(ENV_VARS)


def test_each_function_gets_exactly_the_variables_its_code_needs(functions: dict[str, Any],
                                                                 sls: dict[str, Any]) -> None:
    for key, fn in functions.items():
        # Given the variables serverless.yml deploys for the function
        deployed = [e["key"] for e in fn["environments"]]
        assert len(deployed) == len(set(deployed)), f"{key}: repeated keys {deployed}"
        # Then they are the required ones plus those whose field its modules read and whose default
        # does not suit a deployment, no more and no fewer
        assert set(deployed) == needed_environment(key, sls), key
    # Which, as of this code, means the callback alone does without the callback URL
    assert {k: needed_environment(k, sls) for k in functions} == {
        "submit": {"CIFLOW_REGION", "CIFLOW_BUCKETS", "CIFLOW_CALLBACK_URL", "CIFLOW_CALLBACK_SECRET"},
        "callback": {"CIFLOW_REGION", "CIFLOW_BUCKETS", "CIFLOW_CALLBACK_SECRET"},
        "reconcile": {"CIFLOW_REGION", "CIFLOW_BUCKETS", "CIFLOW_CALLBACK_URL", "CIFLOW_CALLBACK_SECRET"},
    }


def test_the_delivery_settings_go_to_exactly_the_functions_whose_code_reads_them(functions: dict[str, Any],
                                                                               sls: dict[str, Any]) -> None:
    # Given the functions whose modules read what the delivery settings set
    readers = {k for k in functions if needed_delivery_environment(k, sls)}
    # Then those are the functions deploy/tdmq.py gives them to: the ones that submit jobs
    assert readers == set(tdmq.SUBMITTING_FUNCTIONS) == {"submit", "reconcile"}
    assert all(needed_delivery_environment(k, sls) == set(tdmq.DELIVERY_VARIABLES) for k in readers)
    assert tdmq.RECEIVING_FUNCTION == "callback" and tdmq.RECEIVING_FUNCTION not in readers


@pytest.mark.parametrize("mode", ["Topic", "Queue"])
def test_rendered_for_tdmq_each_function_gets_exactly_the_variables_its_code_needs(
        sls: dict[str, Any], tmp_path: Path, mode: str) -> None:
    # Given serverless.yml rendered for an .env that chooses TDMQ for every rule
    env = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz",
           "CIFLOW_CALLBACK_MQ_MODE": mode, "CIFLOW_CALLBACK_MQ_NAME": "ciflow-results"}
    rendered = tdmq.render(sls, tdmq.selection(env), tmp_path / "functions")
    for key, fn in rendered["inputs"]["functions"].items():
        deployed = [e["key"] for e in fn["environments"]]
        # Then each function has what it needs anyway, plus the delivery settings its code reads
        assert len(deployed) == len(set(deployed)), f"{key}: repeated keys {deployed}"
        assert set(deployed) == needed_environment(key, sls) | needed_delivery_environment(key, sls), key
        # And their values are the choice as the settings parse it
        values = {e["key"]: e["value"] for e in fn["environments"] if e["key"] in tdmq.DELIVERY_VARIABLES}
        chosen = {k: v for k, v in env.items() if k in tdmq.DELIVERY_VARIABLES}
        assert values == (chosen if needed_delivery_environment(key, sls) else {}), key
    # And only a topic subscribes the callback function
    cmq = [t for t in rendered["inputs"]["triggers"] if t["type"] == "cmq"]
    assert [(t["function"], t["parameters"]["name"]) for t in cmq] == (
        [("callback", "ciflow-results")] if mode == "Topic" else [])


def state_fields() -> set[str]:
    """The Settings fields CIFLOW_STATE_BUCKET sets."""
    before = load_settings(PROBE_BASE)
    after = load_settings({**PROBE_BASE, state.VARIABLE: "probe-state-1250000000"})
    return {f for f in vars(before) if getattr(before, f) != getattr(after, f)}


def test_the_state_bucket_goes_to_exactly_the_functions_whose_code_reads_records(functions: dict[str, Any],
                                                                               sls: dict[str, Any]) -> None:
    # Given the field CIFLOW_STATE_BUCKET sets, and nothing else
    assert state_fields() == {"state_bucket"} and state.VARIABLE in ENV_VARS
    # Then the functions whose modules read it are those deploy/state.py gives it to: all three
    readers = {k for k in functions if state_fields() & fields_read_by(k, sls)}
    assert readers == set(state.RECORD_FUNCTIONS) == {"submit", "callback", "reconcile"}
    # And it has no place in serverless.yml as written: it is deployed only when .env sets it
    assert not [k for k, fn in functions.items() if state.VARIABLE in [e["key"] for e in fn["environments"]]]


@pytest.mark.parametrize("chosen", [tdmq.Selection(), tdmq.Selection(settings_env=dict(zip(
    tdmq.DELIVERY_VARIABLES, ("tdmq", "gz", "Queue", "q"))))], ids=["url", "tdmq settings"])
def test_rendered_for_a_state_bucket_each_function_gets_exactly_the_variables_its_code_needs(
        sls: dict[str, Any], tmp_path: Path, chosen: tdmq.Selection) -> None:
    # Given serverless.yml rendered as make deploy renders it, for an .env with a state bucket
    env = {"CIFLOW_BUCKET": "uploads-1250000000", state.VARIABLE: " ciflow-state-1250000000 "}
    rendered = state.render(tdmq.render(sls, chosen, tmp_path / "functions"), env)
    for key, fn in rendered["inputs"]["functions"].items():
        deployed = {e["key"]: e["value"] for e in fn["environments"]}
        reads = bool(state_fields() & fields_read_by(key, sls))
        delivery = needed_delivery_environment(key, sls) if chosen.settings_env else set()
        # Then each function has what it needs anyway, plus the state bucket when its code reads records
        assert len(deployed) == len(fn["environments"]), key
        assert set(deployed) == needed_environment(key, sls) | delivery | ({state.VARIABLE} if reads else set()), key
        # And its value is the bucket as the settings read it
        assert not reads or load_settings({**PROBE_BASE, state.VARIABLE: deployed[state.VARIABLE]}).state_bucket == \
            "ciflow-state-1250000000" == deployed[state.VARIABLE], key


def test_the_derivation_sees_a_module_that_starts_reading_a_field(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a copy of the library where the callback's path starts minting callback URLs
    lib = tmp_path / "ciflow"
    lib.mkdir()
    for p in LIBRARY.glob("*.py"):
        (lib / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    completion = lib / "completion.py"
    completion.write_text(completion.read_text(encoding="utf-8")
                          + "\n\ndef _probe(self):\n    return self.settings.callback_url\n", encoding="utf-8")
    monkeypatch.setitem(globals(), "LIBRARY", lib)
    # Then the callback needs CIFLOW_CALLBACK_URL too, which serverless.yml does not give it
    sls = load(ROOT / "serverless.yml")
    assert "CIFLOW_CALLBACK_URL" in needed_environment("callback", sls)


def test_every_deployed_variable_is_a_documented_setting_with_its_value_from_env(functions: dict[str, Any]) -> None:
    sources = {"CIFLOW_REGION": "CIFLOW_REGION", "CIFLOW_BUCKETS": "CIFLOW_BUCKET",
               "CIFLOW_CALLBACK_URL": "CIFLOW_CALLBACK_URL", "CIFLOW_CALLBACK_SECRET": "CIFLOW_CALLBACK_SECRET"}
    for key, fn in functions.items():
        for e in fn["environments"]:
            assert e["key"] in ENV_VARS, f"{key}: {e['key']} is not a setting"
            assert e["value"] == f"${{env:{sources[e['key']]}}}", f"{key}: {e['key']} = {e['value']!r}"


def test_every_trigger_names_an_existing_function(sls: dict[str, Any], functions: dict[str, Any]) -> None:
    triggers = sls["inputs"]["triggers"]
    assert {t["type"] for t in triggers} == {"cos", "http", "timer"}
    for trigger in triggers:
        targets = [a["function"] for a in trigger["parameters"].get("apis", [])] or [trigger["function"]]
        for target in targets:
            assert target in functions, f"{trigger['type']} trigger names unknown function {target!r}"


def test_trigger_wiring(sls: dict[str, Any]) -> None:
    by_type = {t["type"]: t for t in sls["inputs"]["triggers"]}
    assert by_type["cos"]["function"] == "submit"
    assert by_type["cos"]["parameters"]["events"] == "cos:ObjectCreated:*"
    assert by_type["cos"]["parameters"]["bucket"] == "${env:CIFLOW_BUCKET}.cos.${env:CIFLOW_REGION}.myqcloud.com"
    assert by_type["http"]["function"] == "callback"
    assert by_type["http"]["parameters"]["netConfig"]["enableExtranet"] is True
    assert by_type["http"]["parameters"]["authType"] == "NONE"  # the token in the URL authenticates
    assert by_type["http"]["parameters"]["qualifier"] == "$DEFAULT"
    assert by_type["timer"]["function"] == "reconcile"
    # SCF cron has seconds first and a year last
    assert len(by_type["timer"]["parameters"]["cronExpression"].split()) == 7


def test_cos_trigger_prefixes_are_exactly_the_rules_watched_prefixes(sls: dict[str, Any]) -> None:
    # Given the bundled rules
    rules = parse_rules(Path(DEFAULT_RULES_FILE).read_text(encoding="utf-8"), DEFAULT_RULES_FILE)
    # When the COS triggers' prefixes are collected
    cos = [t["parameters"]["filter"] for t in sls["inputs"]["triggers"] if t["type"] == "cos"]
    prefixes = sorted(f["prefix"] for f in cos)
    # Then they are the watched prefixes, nothing broader (quarantine and state writes never fire)
    assert prefixes == sorted(rules.watched_prefixes)
    for p in prefixes:
        assert p, "an empty prefix would watch the whole bucket, quarantine included"
        assert not p.startswith(rules.quarantine_prefix) and not rules.quarantine_prefix.startswith(p)
        assert not p.startswith(".ciflow/")
    assert all(f["suffix"] == "" for f in cos)


def test_per_user_values_come_from_env_and_are_documented_in_env_example() -> None:
    text = (ROOT / "serverless.yml").read_text(encoding="utf-8")
    for layer in deploy.LAYER_TARGETS:
        text += (ROOT / layer / "serverless.yml").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert sorted(set(ENV_REF.findall(text))) == deploy.referenced_variables()
    for var in deploy.referenced_variables():
        assert re.search(rf"^{var}=", example, re.M), f"{var} is used by serverless.yml but not in .env.example"
    # And no bucket, APPID or secret is written into the files themselves
    assert not re.search(r"\b\d{10}\b", text), "a literal APPID in serverless.yml"


def test_layers_and_code_point_at_the_staged_artifacts(sls: dict[str, Any]) -> None:
    # The functions' code is what `make deploy` stages from dist/function-code.zip
    assert (ROOT / sls["inputs"]["src"]["src"]).resolve() == deploy.DIST / "stage" / "function-code"
    # And each layer instance publishes a staged layer zip under the name the functions attach
    published = {}
    for target in deploy.LAYER_TARGETS:
        doc = load(ROOT / target / "serverless.yml")
        assert doc["component"] == "layer" and doc["app"] == sls["app"] and doc["stage"] == sls["stage"]
        staged = (ROOT / target / doc["inputs"]["src"]).resolve()
        assert staged.parent == deploy.DIST / "stage" and staged.name in deploy.ARTIFACTS
        published[doc["inputs"]["name"]] = doc["name"]
    for fn in sls["inputs"]["functions"].values():
        for layer in fn["layers"]:
            instance = published[layer["name"]]
            assert layer["version"] == f"${{output:${{stage}}:${{app}}:{instance}.version}}"


# --- the components' published input rules and the layer component's code ---------------------------

def test_the_only_rule_conflicts_are_the_known_python39_risk() -> None:
    # Given serverless.yml and both layer instances, resolved with .env.example as the CLI would
    from deploy import dotenv
    env = dotenv.read(ROOT / ".env.example")
    findings = component_rules.project_findings(ROOT, list(deploy.LAYER_TARGETS), env)
    # Then nothing breaks a rule, except Python3.9 missing from both components' allow-lists
    assert [f for f in findings if f.level != "risk"] == []
    assert sorted(f.where for f in findings) == [
        "deploy/layers/deps/serverless.yml inputs.runtimes[0]",
        "deploy/layers/lib/serverless.yml inputs.runtimes[0]",
        "serverless.yml inputs.runtime",
    ]
    assert all("Python3.9" in f.message and "--no-validation" in f.message for f in findings)


def test_layer_instances_use_only_the_inputs_the_layer_component_reads() -> None:
    for target in deploy.LAYER_TARGETS:
        inputs = load(ROOT / target / "serverless.yml")["inputs"]
        assert set(inputs) <= component_rules.LAYER_INPUTS_READ, target
        assert {"src", "name", "runtimes", "region"} <= set(inputs), target


def test_layer_rules_catch_what_the_component_would_mishandle() -> None:
    good = load(ROOT / deploy.LAYER_TARGETS[0] / "serverless.yml")
    cases = {
        "compatibleRuntimes": ({"compatibleRuntimes": ["Python3.9"]}, "never reads 'compatibleRuntimes'"),
        "runtimes": ({"runtimes": None}, "Nodejs10.15"),
        "name": ({"name": "9-starts-with-a-digit"}, "does not match"),
        "runtimes[0]": ({"runtimes": ["Python3.10x"]}, "is not allowed"),
        "src": ({"src": None}, "required by the component"),
    }
    for what, (change, expected) in cases.items():
        inputs = {k: v for k, v in {**good["inputs"], **change}.items() if v is not None}
        findings = component_rules.layer_findings({**good, "inputs": inputs}, file="x.yml")
        assert any(f.level == "error" and expected in f.message for f in findings), (what, findings)


def test_multi_scf_rules_and_runtime_compatibility() -> None:
    sls = load(ROOT / "serverless.yml")
    # A region outside the published list is an error once `.env` resolves it
    found = component_rules.multi_scf_findings(sls, {"CIFLOW_REGION": "ap-nowhere"})
    assert any(f.level == "error" and "'ap-nowhere' is not allowed" in f.message for f in found)
    # A memory size off the 128 MB steps is a warning (the rule says level: warning)
    odd = {**sls, "inputs": {**sls["inputs"], "functions": {"submit": {**sls["inputs"]["functions"]["submit"],
                                                                        "memorySize": 200}}}}
    assert any(f.level == "warning" and "200" in f.message for f in component_rules.multi_scf_findings(odd))
    # A layer that does not list the functions' runtime cannot be attached
    layers = {load(ROOT / t / "serverless.yml")["inputs"]["name"]: load(ROOT / t / "serverless.yml")
              for t in deploy.LAYER_TARGETS}
    assert component_rules.runtime_findings(sls, layers) == []
    lib = layers["ciflow-lib"]
    layers["ciflow-lib"] = {**lib, "inputs": {**lib["inputs"], "runtimes": ["Python3.7"]}}
    assert len(component_rules.runtime_findings(sls, layers)) == 3


def test_the_vendored_rules_are_the_components_own() -> None:
    for component, version in (("multi-scf", "0.3.14"), ("layer", "0.1.7")):
        text = (component_rules.COMPONENTS / f"{component}.yml").read_text(encoding="utf-8")
        doc = yaml.safe_load(text)
        assert doc["name"] == component and str(doc["version"]) == version
        assert re.search(r"serverless\.component\.yml at [0-9a-f]{40}", text)
    assert "Python3.9" not in component_rules.load_rules("multi-scf")["runtime"]["allow"]
    assert "Python3.9" not in component_rules.load_rules("layer")["runtimes"]["items"][0]["allow"]
