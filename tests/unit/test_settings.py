"""Settings from an explicit environment (ciflow.settings)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from ciflow.errors import ConfigError
from ciflow.rules import parse_rules
from ciflow.settings import (
    DEFAULT_RULES_FILE,
    ENV_VARS,
    CiEndpoint,
    Credentials,
    current_credentials,
    load_settings,
    parse_ci_endpoint,
)

SECRET = "s" * 16
BASE = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": SECRET}

# Provided by the SCF runtime itself (platform.md §5), so never listed among the deployment's variables.
PLATFORM_VARS = {"TENCENTCLOUD_REGION"}


def env(**over: str) -> dict[str, str]:
    out = dict(BASE)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def config_error(e: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as exc:
        load_settings(e)
    return str(exc.value)


# -------------------------------------------------------------------- defaults


def test_minimal_environment_defaults():
    # Given only the required variables
    s = load_settings(env())
    # Then every other setting has its documented default
    assert s.region == "ap-guangzhou"
    assert s.callback_secret == SECRET
    assert s.callback_url == ""
    assert s.callback_format == "XML"
    assert s.token_ttl_seconds == 7 * 24 * 3600
    assert s.max_callback_bytes == 1024 * 1024
    assert s.buckets == ()
    assert s.rules_source == DEFAULT_RULES_FILE
    assert s.rules_text == Path(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    assert s.s3_endpoint == "https://cos.ap-guangzhou.myqcloud.com"
    assert s.ci_endpoint == CiEndpoint(scheme="https")
    assert s.state_prefix == ".ciflow/"
    assert s.http_timeout == 10.0


def test_explicit_env_ignores_process_environment(monkeypatch):
    # Given a process environment that sets a variable the explicit env does not
    monkeypatch.setenv("CIFLOW_CALLBACK_FORMAT", "JSON")
    monkeypatch.setenv("CIFLOW_STATE_PREFIX", "elsewhere/")
    # When settings are loaded from the explicit env
    s = load_settings(env())
    # Then only the explicit env counts
    assert s.callback_format == "XML"
    assert s.state_prefix == ".ciflow/"


def test_all_variables_set():
    # Given every variable set
    e = env(
        CIFLOW_REGION="cd",
        CIFLOW_CALLBACK_URL="https://1253960000-abc.cd.tencentscf.com/",
        CIFLOW_CALLBACK_FORMAT="json",
        CIFLOW_TOKEN_TTL_SECONDS="3600",
        CIFLOW_MAX_CALLBACK_BYTES="65536",
        CIFLOW_BUCKETS=" photos-1250000000, ,docs-1250000000,",
        CIFLOW_RULES='{"rules":[{"name":"r","job":"ImageInspect","prefixes":["in/"]}]}',
        CIFLOW_S3_ENDPOINT="http://127.0.0.1:5000",
        CIFLOW_CI_ENDPOINT="http://127.0.0.1:9000",
        CIFLOW_STATE_PREFIX="state",
        CIFLOW_HTTP_TIMEOUT="2.5",
    )
    # When loaded
    s = load_settings(e)
    # Then each is parsed and normalised
    assert s.region == "ap-chengdu"
    assert s.callback_url == "https://1253960000-abc.cd.tencentscf.com/"
    assert s.callback_format == "JSON"
    assert (s.token_ttl_seconds, s.max_callback_bytes) == (3600, 65536)
    assert s.buckets == ("photos-1250000000", "docs-1250000000")
    assert s.rules_source == "CIFLOW_RULES"
    assert parse_rules(s.rules_text).rules[0].name == "r"
    assert s.s3_endpoint == "http://127.0.0.1:5000"
    assert s.ci_endpoint == CiEndpoint(scheme="http", ip="127.0.0.1", port=9000)
    assert s.state_prefix == "state/"
    assert s.http_timeout == 2.5


def test_rules_file_is_read(tmp_path):
    # Given a rules file path
    path = tmp_path / "rules.json"
    path.write_text('{"rules":[{"name":"f","job":"ImageInspect","prefixes":["in/"]}]}', encoding="utf-8")
    # When loaded
    s = load_settings(env(CIFLOW_RULES_FILE=str(path)))
    # Then its text and path are the rules source
    assert s.rules_source == str(path)
    assert s.rules_text == path.read_text(encoding="utf-8")


# ---------------------------------------------------------------------- region


@pytest.mark.parametrize("value, expected", [
    ("gz", "ap-guangzhou"), ("cd", "ap-chengdu"), ("bj", "ap-beijing"), ("sh", "ap-shanghai"),
    ("cq", "ap-chongqing"), (" GZ ", "ap-guangzhou"), ("ap-singapore", "ap-singapore"),
])
def test_region_short_code_mapped(value, expected):
    # Given CIFLOW_REGION as a short code or full name
    s = load_settings(env(CIFLOW_REGION=value))
    # Then the full name is used, including in the default S3 endpoint
    assert s.region == expected
    assert s.s3_endpoint == f"https://cos.{expected}.myqcloud.com"


def test_region_falls_back_to_runtime_region():
    # Given no CIFLOW_REGION but the runtime's TENCENTCLOUD_REGION
    s = load_settings(env(CIFLOW_REGION=None, TENCENTCLOUD_REGION="ap-nanjing"))
    # Then the runtime region is used
    assert s.region == "ap-nanjing"


def test_ciflow_region_wins_over_runtime_region():
    s = load_settings(env(CIFLOW_REGION="sh", TENCENTCLOUD_REGION="ap-nanjing"))
    assert s.region == "ap-shanghai"


# -------------------------------------------------------------------- errors


@pytest.mark.parametrize("over, variable", [
    ({"CIFLOW_REGION": None}, "CIFLOW_REGION"),
    ({"CIFLOW_REGION": ""}, "CIFLOW_REGION"),
    ({"CIFLOW_CALLBACK_SECRET": None}, "CIFLOW_CALLBACK_SECRET"),
    ({"CIFLOW_CALLBACK_SECRET": "s" * 15}, "CIFLOW_CALLBACK_SECRET"),
    ({"CIFLOW_CALLBACK_FORMAT": "yaml"}, "CIFLOW_CALLBACK_FORMAT"),
    ({"CIFLOW_CALLBACK_URL": "ftp://example.com/cb"}, "CIFLOW_CALLBACK_URL"),
    ({"CIFLOW_CALLBACK_URL": "example.com/cb"}, "CIFLOW_CALLBACK_URL"),
    ({"CIFLOW_TOKEN_TTL_SECONDS": "a week"}, "CIFLOW_TOKEN_TTL_SECONDS"),
    ({"CIFLOW_TOKEN_TTL_SECONDS": "59"}, "CIFLOW_TOKEN_TTL_SECONDS"),
    ({"CIFLOW_TOKEN_TTL_SECONDS": str(90 * 24 * 3600 + 1)}, "CIFLOW_TOKEN_TTL_SECONDS"),
    ({"CIFLOW_MAX_CALLBACK_BYTES": "1023"}, "CIFLOW_MAX_CALLBACK_BYTES"),
    ({"CIFLOW_MAX_CALLBACK_BYTES": str(6 * 1024 * 1024 + 1)}, "CIFLOW_MAX_CALLBACK_BYTES"),
    ({"CIFLOW_MAX_CALLBACK_BYTES": "1MB"}, "CIFLOW_MAX_CALLBACK_BYTES"),
    ({"CIFLOW_RULES_FILE": "/nonexistent/ciflow/rules.json"}, "CIFLOW_RULES_FILE"),
    ({"CIFLOW_HTTP_TIMEOUT": "ten"}, "CIFLOW_HTTP_TIMEOUT"),
    ({"CIFLOW_CI_ENDPOINT": "ftp://ci.example.com"}, "CIFLOW_CI_ENDPOINT"),
    ({"CIFLOW_CI_ENDPOINT": "http://"}, "CIFLOW_CI_ENDPOINT"),
])
def test_bad_variable_is_named(over, variable):
    # Given one missing or invalid variable
    message = config_error(env(**over))
    # Then the ConfigError starts with that variable's name
    assert message.startswith(f"{variable}: ")


@pytest.mark.parametrize("value", ["60", str(90 * 24 * 3600)])
def test_token_ttl_bounds_are_inclusive(value):
    assert load_settings(env(CIFLOW_TOKEN_TTL_SECONDS=value)).token_ttl_seconds == int(value)


def test_secret_of_exactly_16_characters_is_enough():
    assert load_settings(env(CIFLOW_CALLBACK_SECRET="x" * 16)).callback_secret == "x" * 16


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_unusable_http_timeout_is_rejected(value):
    # Given a timeout no HTTP client can use
    # Then it is a ConfigError naming the variable, at cold start rather than on the first call
    assert config_error(env(CIFLOW_HTTP_TIMEOUT=value)).startswith("CIFLOW_HTTP_TIMEOUT: ")


# ----------------------------------------------------------------- CI endpoint


@pytest.mark.parametrize("raw, expected", [
    ("http://127.0.0.1:9000", CiEndpoint(scheme="http", ip="127.0.0.1", port=9000)),
    ("https://ci-emulator.local", CiEndpoint(scheme="https", ip="ci-emulator.local", port=None)),
    (" http://localhost:8080 ", CiEndpoint(scheme="http", ip="localhost", port=8080)),
    ("ci.internal.example.com", CiEndpoint(domain="ci.internal.example.com")),
    ("", CiEndpoint()),
    ("   ", CiEndpoint()),
])
def test_ci_endpoint(raw, expected):
    # Given CIFLOW_CI_ENDPOINT as a URL, a bare domain, or empty
    # Then a URL selects IP/port mode, a bare domain selects EndpointCi mode
    assert parse_ci_endpoint(raw) == expected
    assert load_settings(env(CIFLOW_CI_ENDPOINT=raw)).ci_endpoint == expected


@pytest.mark.parametrize("raw", ["http://127.0.0.1:notaport", "http://127.0.0.1:99999"])
def test_ci_endpoint_bad_port_is_config_error(raw):
    # Given a CI endpoint URL with an invalid port
    # Then it is a ConfigError naming the variable
    with pytest.raises(ConfigError) as exc:
        parse_ci_endpoint(raw)
    assert str(exc.value).startswith("CIFLOW_CI_ENDPOINT: ")


def test_ci_endpoint_bad_ipv6_host_is_config_error():
    # Given a CI endpoint URL whose bracketed host is never closed
    # Then it is a ConfigError naming the variable, not a bare ValueError
    with pytest.raises(ConfigError) as exc:
        parse_ci_endpoint("http://[::1:9000")
    assert str(exc.value).startswith("CIFLOW_CI_ENDPOINT: ")


# ----------------------------------------------------------------- credentials


def test_current_credentials():
    # Given the role's temporary credentials in the environment
    e = {"TENCENTCLOUD_SECRETID": "AKIDexample", "TENCENTCLOUD_SECRETKEY": "key", "TENCENTCLOUD_SESSIONTOKEN": "tok"}
    # Then they are returned as they are now
    assert current_credentials(e) == Credentials("AKIDexample", "key", "tok")


def test_credentials_without_session_token():
    # Given permanent keys (no session token, or an empty one)
    e = {"TENCENTCLOUD_SECRETID": "AKIDexample", "TENCENTCLOUD_SECRETKEY": "key", "TENCENTCLOUD_SESSIONTOKEN": ""}
    # Then the token is None
    assert current_credentials(e).token is None


def test_credentials_follow_rotation():
    # Given credentials that rotate between two calls
    first = current_credentials({"TENCENTCLOUD_SECRETID": "id1", "TENCENTCLOUD_SECRETKEY": "k1"})
    second = current_credentials({"TENCENTCLOUD_SECRETID": "id2", "TENCENTCLOUD_SECRETKEY": "k2"})
    # Then each call reflects the environment at that moment
    assert (first.secret_id, second.secret_id) == ("id1", "id2")


@pytest.mark.parametrize("e", [
    {},
    {"TENCENTCLOUD_SECRETID": "AKIDexample"},
    {"TENCENTCLOUD_SECRETKEY": "key"},
    {"TENCENTCLOUD_SECRETID": "", "TENCENTCLOUD_SECRETKEY": "key"},
])
def test_missing_credentials(e):
    # Given no role credentials
    # Then a ConfigError names the variables
    with pytest.raises(ConfigError) as exc:
        current_credentials(e)
    assert "TENCENTCLOUD_SECRETID" in str(exc.value)


# -------------------------------------------------------------------- ENV_VARS


def _keys_read_by_source() -> set[str]:
    src = inspect.getsource(load_settings)
    return set(re.findall(r'env\.get\("([A-Z0-9_]+)"', src)) | set(re.findall(r'_int\(env, "([A-Z0-9_]+)"', src))


class RecordingEnv(dict):
    """A mapping that remembers every key asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)


def test_env_vars_lists_every_variable_in_the_source():
    # Given the variable names that load_settings' source reads
    read = _keys_read_by_source()
    # Then the scan found them (guards the regex) and every one but the runtime's own is documented
    assert {"CIFLOW_REGION", "CIFLOW_CALLBACK_SECRET", "CIFLOW_TOKEN_TTL_SECONDS"} <= read
    assert read - PLATFORM_VARS - set(ENV_VARS) == set()


def test_env_vars_lists_every_variable_read_at_runtime():
    # Given an environment that records what is read, with every optional path exercised
    e = RecordingEnv(env(CIFLOW_REGION=None, TENCENTCLOUD_REGION="gz"))
    # When settings are loaded
    load_settings(e)
    # Then every variable asked for (but the runtime's own) is in ENV_VARS
    assert e.asked - PLATFORM_VARS - set(ENV_VARS) == set()
    assert "CIFLOW_HTTP_TIMEOUT" in e.asked


def test_env_vars_has_no_stale_entries():
    # Given the documented variables
    # Then each one is actually read by load_settings
    assert set(ENV_VARS) - _keys_read_by_source() == set()


def test_env_vars_say_whether_required():
    # Every entry starts with whether it is required, so the deploy checks can tell
    for name, text in ENV_VARS.items():
        assert text.startswith(("required", "optional")), name


def test_the_rules_follow_the_settings_after_a_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    # The rules are cached per process like the settings; a reset of the settings reaches them too,
    # although the settings module does not know the rules module (it sits below it).
    import json

    from ciflow.rules import get_rules
    from ciflow.settings import get_settings, reset_settings

    with open(DEFAULT_RULES_FILE, encoding="utf-8") as fh:
        doc = json.load(fh)
    for k, v in BASE.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CIFLOW_RULES", json.dumps(doc))
    reset_settings()
    try:
        first = get_rules()
        assert get_rules() is first                       # cached
        doc["rules"][0]["name"] = "renamed"
        monkeypatch.setenv("CIFLOW_RULES", json.dumps(doc))
        assert get_rules() is first                       # the environment is read once per cold start
        reset_settings()
        assert [r.name for r in get_rules().rules] == ["renamed"]
        assert get_settings().rules_text == json.dumps(doc)
        monkeypatch.setenv("CIFLOW_STATE_PREFIX", "state/")
        reset_settings()
        assert get_rules().quarantine_prefix == first.quarantine_prefix and get_settings().state_prefix == "state/"
    finally:
        monkeypatch.undo()
        reset_settings()
