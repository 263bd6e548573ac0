"""The SCF API calls of `make deploy`, sent by the real tencentcloud SDK to a local stand-in of the
TencentCloud API endpoint: each request must name its action in X-TC-Action, carry exactly the
documented JSON parameters, and be signed with TC3-HMAC-SHA256 by the deployer's key (the stand-in
checks the signature as the API does)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from deploy import deploy, scf_api, tdmq

pytestmark = pytest.mark.integration

SECRET_ID, SECRET_KEY = "AKIDdeploytest", "deploy-test-key"
REGION = "ap-guangzhou"
URL = "https://1250000000-k3x9q2m1.ap-guangzhou.tencentscf.com"
AUTH = re.compile(r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>\w+)/tc3_request, "
                  r"SignedHeaders=(?P<signed>[a-z;-]+), Signature=(?P<sig>[0-9a-f]{64})$")
# The parameters each action may carry (the API's documented inputs that `make deploy` uses).
ALLOWED = {
    "UpdateFunctionEventInvokeConfig": {"FunctionName", "Namespace", "AsyncTriggerConfig"},
    "UpdateFunctionConfiguration": {"FunctionName", "Namespace", "DeadLetterConfig"},
    "ListTriggers": {"FunctionName", "Namespace", "Limit", "Offset", "Filters", "OrderBy", "Order"},
    "GetFunction": {"FunctionName", "Namespace", "Qualifier", "ShowCode"},
}


def tc3_signature(secret_key: str, date: str, service: str, string_to_sign: str) -> str:
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()
    key = mac(mac(mac(("TC3" + secret_key).encode(), date), service), "tc3_request")
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class TcApiStub:
    """A TencentCloud API endpoint on 127.0.0.1 that verifies requests and answers from `answer`."""

    def __init__(self, answer: Callable[[str, dict[str, Any]], dict[str, Any]]):
        self.answer = answer
        self.requests: list[dict[str, Any]] = []
        self.rejected: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = self.headers.get("X-TC-Action", "")
                problem = stub.verify(self.command, self.path, self.headers, body)
                if problem is None:
                    params = json.loads(body)
                    stub.requests.append({"action": action, "params": params,
                                          "region": self.headers.get("X-TC-Region"),
                                          "version": self.headers.get("X-TC-Version")})
                    response = stub.answer(action, params)
                else:
                    stub.rejected.append(problem)
                    response = {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": problem}}
                data = json.dumps({"Response": {"RequestId": f"stub-{len(stub.requests)}", **response}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def verify(self, method: str, path: str, headers: Any, body: bytes) -> Optional[str]:
        """None when the request is one the API accepts, else why not."""
        auth = AUTH.match(headers.get("Authorization", ""))
        if auth is None:
            return f"Authorization is not TC3-HMAC-SHA256: {headers.get('Authorization')!r}"
        if auth["id"] != SECRET_ID or auth["service"] != "scf":
            return f"credential scope {auth['id']}/{auth['service']}"
        timestamp = headers.get("X-TC-Timestamp", "0")
        if datetime.fromtimestamp(int(timestamp), timezone.utc).strftime("%Y-%m-%d") != auth["date"]:
            return "credential date does not match X-TC-Timestamp"
        signed = auth["signed"].split(";")
        canonical_headers = "".join(f"{h}:{headers.get(h, '').strip().lower()}\n" for h in signed)
        canonical = "\n".join([method, path, "", canonical_headers, auth["signed"], hashlib.sha256(body).hexdigest()])
        to_sign = "\n".join(["TC3-HMAC-SHA256", timestamp, f"{auth['date']}/scf/tc3_request",
                             hashlib.sha256(canonical.encode()).hexdigest()])
        if not hmac.compare_digest(tc3_signature(SECRET_KEY, auth["date"], "scf", to_sign), auth["sig"]):
            return "signature does not match"
        if "host" not in signed or "content-type" not in signed:
            return f"SignedHeaders {auth['signed']}"
        action = headers.get("X-TC-Action", "")
        if action not in ALLOWED:
            return f"unexpected action {action!r}"
        if headers.get("X-TC-Version") != "2018-04-16" or headers.get("X-TC-Region") != REGION:
            return f"version {headers.get('X-TC-Version')} region {headers.get('X-TC-Region')}"
        try:
            params = json.loads(body)
        except ValueError:
            return "body is not JSON"
        unknown = set(params) - ALLOWED[action]
        return f"{action}: unknown parameters {sorted(unknown)}" if unknown else None

    def actions(self) -> list[str]:
        return [r["action"] for r in self.requests]


def triggers_answer(triggers: list[dict[str, Any]],
                    function_triggers: Optional[list[dict[str, Any]]] = None) -> Callable[..., dict[str, Any]]:
    def answer(action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "ListTriggers":
            return {"Triggers": triggers, "TotalCount": len(triggers)}
        if action == "GetFunction":
            return {"FunctionName": params["FunctionName"], "Status": "Active", "Triggers": function_triggers or []}
        return {}
    return answer


HTTP_TRIGGER = {"ModTime": "2026-11-29 10:00:00", "Type": "http", "TriggerName": "callback-url",
                "Qualifier": "$DEFAULT", "AddTime": "2026-11-29 10:00:00", "Enable": 1, "AvailableStatus": "Available",
                "TriggerDesc": json.dumps({"AuthType": "NONE", "NetConfig": {"EnableIntranet": False,
                                                                             "EnableExtranet": True}})}


@pytest.fixture
def stub_factory() -> Iterator[Callable[..., TcApiStub]]:
    stubs: list[TcApiStub] = []

    def make(answer: Callable[[str, dict[str, Any]], dict[str, Any]]) -> TcApiStub:
        stub = TcApiStub(answer)
        stub.thread.start()
        stubs.append(stub)
        return stub

    yield make
    for stub in stubs:
        stub.server.shutdown()
        stub.server.server_close()


def sdk(stub: TcApiStub, key: str = SECRET_KEY) -> Any:
    env = {"TENCENT_SECRET_ID": SECRET_ID, "TENCENT_SECRET_KEY": key, "CIFLOW_REGION": REGION}
    return scf_api.client(env, stub.endpoint)


def test_async_retry_policy_goes_out_as_update_function_event_invoke_config(
        stub_factory: Callable[..., TcApiStub]) -> None:
    stub = stub_factory(triggers_answer([]))
    scf_api.set_async_retry(sdk(stub), "ciflow-dev-ciflow-submit", "default", scf_api.ASYNC_RETRY["submit"])
    assert stub.rejected == []
    assert stub.requests == [{"action": "UpdateFunctionEventInvokeConfig", "region": REGION, "version": "2018-04-16",
                              "params": {"FunctionName": "ciflow-dev-ciflow-submit", "Namespace": "default",
                                         "AsyncTriggerConfig": {"RetryConfig": [{"RetryNum": 2}], "MsgTTL": 21600}}}]


def test_dead_letter_queue_goes_out_as_update_function_configuration(stub_factory: Callable[..., TcApiStub]) -> None:
    stub = stub_factory(triggers_answer([]))
    scf_api.set_dead_letter(sdk(stub), "ciflow-dev-ciflow-submit", "default", "CMQ-QUEUE", "ciflow-dlq")
    assert stub.rejected == []
    assert stub.requests[0]["params"] == {"FunctionName": "ciflow-dev-ciflow-submit", "Namespace": "default",
                                          "DeadLetterConfig": {"Type": "CMQ-QUEUE", "Name": "ciflow-dlq"}}


@pytest.mark.parametrize("where", ["TriggerDesc", "undocumented field", "BoundResources"])
def test_the_function_url_is_found_wherever_the_trigger_carries_it(stub_factory: Callable[..., TcApiStub],
                                                                   where: str) -> None:
    # Which field holds the URL is not documented, so each plausible place is tried
    trigger = dict(HTTP_TRIGGER)
    if where == "TriggerDesc":
        trigger["TriggerDesc"] = json.dumps({**json.loads(trigger["TriggerDesc"]), "Url": URL + "/"})
    elif where == "undocumented field":
        trigger["UrlInfo"] = {"ExtranetUrl": URL, "IntranetUrl": URL.replace(".ap-", ".in.ap-")}
    else:
        trigger["BoundResources"] = json.dumps([{"Domain": URL}])
    stub = stub_factory(triggers_answer([trigger]))
    found = scf_api.function_url(sdk(stub), "ciflow-dev-ciflow-callback", "default", "$DEFAULT", REGION)
    assert found == URL
    assert stub.rejected == []
    assert stub.requests[0]["action"] == "ListTriggers"
    assert stub.requests[0]["params"] == {
        "FunctionName": "ciflow-dev-ciflow-callback", "Namespace": "default", "Limit": 100,
        "Filters": [{"Name": "Type", "Values": ["http"]}, {"Name": "Qualifier", "Values": ["$DEFAULT"]}]}


def test_no_url_another_region_or_a_private_url_is_not_a_function_url(stub_factory: Callable[..., TcApiStub]) -> None:
    other = dict(HTTP_TRIGGER, TriggerDesc=json.dumps({"Url": URL.replace("ap-guangzhou", "ap-shanghai")}))
    private = dict(HTTP_TRIGGER, TriggerDesc=json.dumps({"Url": URL.replace(".ap-", ".in.ap-")}))
    timer = {"Type": "timer", "TriggerName": "reconcile", "TriggerDesc": URL}
    stub = stub_factory(triggers_answer([HTTP_TRIGGER, other, private, timer], [HTTP_TRIGGER, timer]))
    assert scf_api.function_url(sdk(stub), "ciflow-dev-ciflow-callback", "default", "$DEFAULT", REGION) is None
    # Both places were asked
    assert stub.actions() == ["ListTriggers", "GetFunction"] and stub.rejected == []
    assert stub.requests[1]["params"] == {"FunctionName": "ciflow-dev-ciflow-callback", "Namespace": "default"}


def test_get_function_is_asked_when_list_triggers_shows_no_url(stub_factory: Callable[..., TcApiStub]) -> None:
    with_url = dict(HTTP_TRIGGER, TriggerDesc=json.dumps({"Url": URL}))
    other_alias = dict(HTTP_TRIGGER, Qualifier="prod",
                       TriggerDesc=json.dumps({"Url": URL.replace("k3x9q2m1", "zz99")}))
    stub = stub_factory(triggers_answer([HTTP_TRIGGER], [with_url, other_alias]))
    assert scf_api.function_url(sdk(stub), "ciflow-dev-ciflow-callback", "default", "$DEFAULT", REGION) == URL


def test_two_urls_are_refused(stub_factory: Callable[..., TcApiStub]) -> None:
    two = [dict(HTTP_TRIGGER, TriggerDesc=json.dumps({"Url": URL})),
           dict(HTTP_TRIGGER, TriggerDesc=json.dumps({"Url": URL.replace("k3x9q2m1", "zz99")}))]
    stub = stub_factory(triggers_answer(two))
    with pytest.raises(scf_api.ScfApiError, match="more than one Function URL"):
        scf_api.function_url(sdk(stub), "ciflow-dev-ciflow-callback", "default", "$DEFAULT", REGION)


def test_api_errors_name_the_action_function_and_request(stub_factory: Callable[..., TcApiStub]) -> None:
    stub = stub_factory(lambda action, params: {"Error": {"Code": "ResourceNotFound.Function",
                                                          "Message": "function not found"}})
    with pytest.raises(scf_api.ScfApiError) as exc:
        scf_api.set_async_retry(sdk(stub), "ciflow-dev-ciflow-submit", "default", scf_api.ASYNC_RETRY["submit"])
    assert ("UpdateFunctionEventInvokeConfig for ciflow-dev-ciflow-submit failed: ResourceNotFound.Function"
            in str(exc.value))
    assert "stub-1" in str(exc.value)


def test_the_stub_refuses_a_request_signed_with_another_key(stub_factory: Callable[..., TcApiStub]) -> None:
    stub = stub_factory(triggers_answer([]))
    with pytest.raises(scf_api.ScfApiError, match="AuthFailure.SignatureFailure"):
        scf_api.set_async_retry(sdk(stub, key="not-the-key"), "f", "default", scf_api.ASYNC_RETRY["submit"])
    assert stub.rejected == ["signature does not match"] and stub.requests == []


def test_make_deploy_end_to_end_against_the_stub(stub_factory: Callable[..., TcApiStub], tmp_path: Path) -> None:
    # Given a first deploy (no callback URL yet), a dead-letter queue, and an API that shows the URL
    with_url = dict(HTTP_TRIGGER, TriggerDesc=json.dumps({**json.loads(HTTP_TRIGGER["TriggerDesc"]), "Url": URL}))
    stub = stub_factory(triggers_answer([with_url]))
    env = {"TENCENT_SECRET_ID": SECRET_ID, "TENCENT_SECRET_KEY": SECRET_KEY, "CIFLOW_REGION": REGION,
           "CIFLOW_BUCKET": "uploads-1250000000", "CIFLOW_ROLE": "ciflow-functions", "CIFLOW_CALLBACK_SECRET": "s" * 32,
           "CIFLOW_DLQ_TYPE": "CMQ-QUEUE", "CIFLOW_DLQ_NAME": "ciflow-dlq", scf_api.ENDPOINT_VARIABLE: stub.endpoint}
    for name in deploy.ARTIFACTS:
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w") as zf:
            zf.writestr("x.txt", name)
            if name == "layer-ciflow":  # the rules the functions load, which decide the TDMQ triggers
                zf.write(tdmq.DEPLOYED_RULES, "ciflow/default_rules.json")
    runs: list[tuple[list[str], str]] = []

    def scf(args: list[str], child_env: Any) -> tuple[int, str]:
        runs.append((args, child_env["CIFLOW_CALLBACK_URL"]))
        return 0, ""

    logs: list[str] = []
    # When `make deploy` runs (the CLI faked, the SCF API through the SDK)
    assert deploy.deploy(env, tmp_path, scf, None, logs.append) == 0
    # Then the functions were deployed again with the URL the API showed, and the settings followed
    assert runs[-1] == (["deploy", "--target", str((tmp_path / "stage" / "functions").resolve())], URL)
    assert stub.rejected == []
    assert stub.actions() == ["ListTriggers", "UpdateFunctionEventInvokeConfig", "UpdateFunctionEventInvokeConfig",
                              "UpdateFunctionConfiguration"]
    assert f"CIFLOW_CALLBACK_URL={URL}" in logs[-1]
