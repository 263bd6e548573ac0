"""serverless.yml (and the layer instances) checked against the code they deploy, offline."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ciflow.rules import parse_rules
from ciflow.settings import DEFAULT_RULES_FILE, ENV_VARS
from deploy import deploy

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "ciflow" / "ciflow"
# Set by the SCF runtime itself (platform.md §5), never by serverless.yml.
SCF_PROVIDED = {"TENCENTCLOUD_REGION", "TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY",
                "TENCENTCLOUD_SESSIONTOKEN"}
ENV_REF = re.compile(r"\$\{env:(\w+)\}")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sls() -> dict[str, Any]:
    return load(ROOT / "serverless.yml")


@pytest.fixture(scope="module")
def functions(sls: dict[str, Any]) -> dict[str, Any]:
    return sls["inputs"]["functions"]


def modules_the_functions_load() -> list[Path]:
    """The ciflow modules the handlers import, directly or through each other."""
    todo = [p for p in (ROOT / "functions").glob("*.py")]
    seen: set[Path] = set()
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


def env_names_read_by_functions() -> dict[str, str]:
    """Every environment variable name the functions' modules read, with where: `env.get("X")`,
    `os.environ.get("X")`, `os.getenv("X")`, `environ["X"]`, and helpers called as `f(env, "X", ...)`."""
    found = {}
    for path in modules_the_functions_load():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Call):
                func = node.func
                is_get = isinstance(func, ast.Attribute) and func.attr in ("get", "getenv")
                receiver = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
                if is_get and receiver in ("env", "os.environ", "os") and node.args:
                    name = node.args[0]
                elif len(node.args) >= 2 and isinstance(node.args[0], ast.Name) and node.args[0].id == "env":
                    name = node.args[1]
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in ("env", "os.environ"):
                name = node.slice
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.setdefault(name.value, f"{path.name}:{node.lineno}")
    return found


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


def test_functions_have_memory_timeout_role_env_and_layers(functions: dict[str, Any]) -> None:
    for name, fn in functions.items():
        assert 64 <= fn["memorySize"] <= 3072, name
        assert 1 <= fn["timeout"] <= 900, name
        assert fn["role"] == "${env:CIFLOW_ROLE}", name
        assert fn["environment"]["variables"], name
        assert [layer["name"] for layer in fn["layers"]] == ["ciflow-deps", "ciflow-lib"], name


def test_async_functions_have_retry_and_dead_letter_settings(functions: dict[str, Any]) -> None:
    # The COS-triggered submit: SCF's 2 retries, events kept for the 6-hour maximum, then the DLQ
    submit = functions["submit"]
    assert submit["retryNum"] == 2 and submit["msgTTL"] == 21600
    assert submit["deadLetter"] == {"type": "${env:CIFLOW_DLQ_TYPE}", "name": "${env:CIFLOW_DLQ_NAME}"}
    # The timer-driven reconcile is not retried: the next tick redoes the work
    assert functions["reconcile"]["retryNum"] == 0 and 60 <= functions["reconcile"]["msgTTL"] <= 21600


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


def test_every_setting_is_set_in_serverless_yml_or_documented_as_optional(functions: dict[str, Any]) -> None:
    # Given everything the functions' modules read from the environment
    assert {"settings.py", "log.py", "storage.py", "ci.py"} <= {p.name for p in modules_the_functions_load()}
    read = env_names_read_by_functions()
    assert "CIFLOW_CALLBACK_SECRET" in read and "POWERTOOLS_SERVICE_NAME" in read
    for name, fn in functions.items():
        variables = fn["environment"]["variables"]
        for var, where in read.items():
            if var in SCF_PROVIDED:
                continue
            # Then each is documented in ENV_VARS (no drift between code and docs) ...
            doc = ENV_VARS.get(var)
            assert doc is not None or var in variables, f"{var} ({where}) is neither in ENV_VARS nor set for {name}"
            # ... and a required one is set for every function
            if doc is not None and not doc.startswith("optional"):
                assert var in variables, f"{name}: required {var} ({where}) is not set in serverless.yml"
        # And nothing is set that the library does not read
        assert set(variables) <= set(read), f"{name}: sets unknown {set(variables) - set(read)}"
    # And ENV_VARS lists nothing the code no longer reads
    assert set(ENV_VARS) <= set(read), f"ENV_VARS documents unread {set(ENV_VARS) - set(read)}"


def test_per_user_values_come_from_env_and_are_documented_in_env_example(sls: dict[str, Any]) -> None:
    text = (ROOT / "serverless.yml").read_text(encoding="utf-8")
    for layer in deploy.LAYER_TARGETS:
        text += (ROOT / layer / "serverless.yml").read_text(encoding="utf-8")
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for var in sorted(set(ENV_REF.findall(text))):
        assert re.search(rf"^{var}=", example, re.M), f"{var} is used by serverless.yml but not in .env.example"
    # And no bucket, APPID or secret is written into the file itself
    assert not re.search(r"\b\d{10}\b", text), "a literal APPID in serverless.yml"


def test_layers_and_code_point_at_the_staged_artifacts(sls: dict[str, Any]) -> None:
    # The functions' code is what `make deploy` stages from dist/function-code.zip
    assert (ROOT / sls["inputs"]["src"]["src"]).resolve() == deploy.DIST / "stage" / "function-code"
    # And each layer instance publishes a staged layer zip under the name the functions attach
    published = {}
    for target in deploy.LAYER_TARGETS:
        doc = load(ROOT / target / "serverless.yml")
        assert doc["component"] == "layer" and doc["app"] == sls["app"] and doc["stage"] == sls["stage"]
        assert doc["inputs"]["runtimes"] == ["Python3.9"]
        staged = (ROOT / target / doc["inputs"]["src"]).resolve()
        assert staged.parent == deploy.DIST / "stage" and staged.name in deploy.ARTIFACTS
        published[doc["inputs"]["name"]] = doc["name"]
    for layer in sls["inputs"]["functions"]["submit"]["layers"]:
        instance = published[layer["name"]]
        assert layer["version"] == f"${{output:${{stage}}:${{app}}:{instance}.version}}"
