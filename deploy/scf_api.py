"""What `make deploy` sets through the SCF API itself, because `multi-scf` does not (docs/deploy.md):

- **async retries**: the component reads `retryNum`/`msgTTL` but applies them only in the
  long-running `asyncRunEnable` mode, so the policy is set with `UpdateFunctionEventInvokeConfig`;
- **the dead-letter queue**: an empty `deadLetter` block would still send `DeadLetterConfig: {}`,
  so the queue is set with `UpdateFunctionConfiguration`, and only when one is configured;
- **the callback's Function URL**: nothing in the deploy output carries it, so it is read back
  with `ListTriggers` (and, failing that, `GetFunction`'s trigger details).

Deploy time only: tencentcloud-sdk-python-scf is in requirements-dev.txt, never in a layer.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional
from urllib.parse import urlsplit

from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.scf.v20180416 import models
from tencentcloud.scf.v20180416.scf_client import ScfClient

# A public Function URL: https://<appid>-<urlid>.<region>.tencentscf.com (platform.md §4). The
# private one has `.in.` before the region and never matches.
PUBLIC_FUNCTION_URL = re.compile(r"https://(\d+)-([0-9a-z]+)\.([a-z0-9-]+)\.tencentscf\.com(?![\w.-])")
# Overrides the API endpoint (scf.tencentcloudapi.com), e.g. http://127.0.0.1:8080 for a local stub.
ENDPOINT_VARIABLE = "CIFLOW_SCF_API_ENDPOINT"


class ScfApiError(Exception):
    """An SCF API call failed; the message names the action and the function."""


@dataclass(frozen=True)
class RetryPolicy:
    """SCF's async-invocation policy: retries after a function error, and how long an event waits."""

    retry_num: int
    msg_ttl: int  # seconds


#: The async retry policy of each asynchronously invoked function. The callback is invoked
#: synchronously (Function URL), so it has none.
ASYNC_RETRY = {
    # COS invokes submit asynchronously: an error is retried twice, and an event waits up to six
    # hours, then goes to the dead-letter queue when one is configured. Submission is idempotent.
    "submit": RetryPolicy(retry_num=2, msg_ttl=21600),
    # The next timer tick redoes reconcile's work, so a failed run is not retried.
    "reconcile": RetryPolicy(retry_num=0, msg_ttl=600),
}
# A CMQ topic trigger invokes callback asynchronously too (deploy/tdmq.py adds one when a TDMQ topic
# is in use). A batch with a transient failure raises so that it is delivered again, and applying a
# result twice changes nothing: retried twice, an event waits up to six hours. Reconcile finishes
# whatever is still lost after that.
TOPIC_TRIGGERED_RETRY = RetryPolicy(retry_num=2, msg_ttl=21600)


def client(env: Mapping[str, str], endpoint: Optional[str] = None) -> ScfClient:
    """An SCF client for CIFLOW_REGION with the deployer's keys from `.env`.

    `endpoint` (or CIFLOW_SCF_API_ENDPOINT) replaces scf.tencentcloudapi.com: `https://host` or
    `http://host:port`, or a bare host (HTTPS).
    """
    endpoint = endpoint or env.get(ENDPOINT_VARIABLE) or None
    http = HttpProfile(reqTimeout=30)
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ScfApiError(f"{ENDPOINT_VARIABLE}: expected http(s)://host[:port], got {endpoint!r}")
        http.protocol = http.scheme = parts.scheme
        http.endpoint = parts.netloc
    cred = credential.Credential(env["TENCENT_SECRET_ID"], env["TENCENT_SECRET_KEY"],
                                 env.get("TENCENT_TOKEN") or None)
    return ScfClient(cred, env["CIFLOW_REGION"], ClientProfile(httpProfile=http))


def _call(scf: ScfClient, action: str, params: dict[str, Any], function: str) -> dict[str, Any]:
    """Send `action` and return the raw `Response` object, undocumented fields included (the typed
    response models drop fields they do not know). The request goes through the SDK's typed model
    first, so a parameter name the API does not have fails here instead of being sent."""
    request = getattr(models, f"{action}Request")()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the models warn about, and drop, unknown fields
        try:
            request.from_json_string(json.dumps(params))
        except Warning as exc:
            raise ScfApiError(f"{action}: {exc}") from None
    try:
        body = scf.call(action, request._serialize())
    except TencentCloudSDKException as exc:
        raise ScfApiError(f"{action} for {function} failed: {exc.code}: {exc.message} "
                          f"(RequestId {exc.requestId})") from None
    return json.loads(body)["Response"]


def set_async_retry(scf: ScfClient, function: str, namespace: str, policy: RetryPolicy) -> None:
    """UpdateFunctionEventInvokeConfig: retries after a function error and the event's time to live."""
    _call(scf, "UpdateFunctionEventInvokeConfig", {
        "FunctionName": function, "Namespace": namespace,
        "AsyncTriggerConfig": {"RetryConfig": [{"RetryNum": policy.retry_num}], "MsgTTL": policy.msg_ttl},
    }, function)


def set_dead_letter(scf: ScfClient, function: str, namespace: str, kind: str, name: str) -> None:
    """UpdateFunctionConfiguration with only DeadLetterConfig: where events go once retries run out."""
    _call(scf, "UpdateFunctionConfiguration", {
        "FunctionName": function, "Namespace": namespace, "DeadLetterConfig": {"Type": kind, "Name": name},
    }, function)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
        try:
            parsed = json.loads(value)
        except ValueError:
            return
        if not isinstance(parsed, str):
            yield from _strings(parsed)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def function_urls(triggers: list[dict[str, Any]], region: str) -> list[str]:
    """The public Function URLs of `region` found anywhere in http triggers' details.

    Which field of the trigger carries the URL is not documented (platform.md §4/§6), so every
    string in the trigger, and in its TriggerDesc parsed as JSON, is searched.
    """
    found = set()
    for trigger in triggers:
        if trigger.get("Type") != "http":
            continue
        for text in _strings(trigger):
            for m in PUBLIC_FUNCTION_URL.finditer(text):
                if m.group(3) == region:
                    found.add(f"https://{m.group(1)}-{m.group(2)}.{m.group(3)}.tencentscf.com")
    return sorted(found)


def list_http_triggers(scf: ScfClient, function: str, namespace: str, qualifier: str) -> list[dict[str, Any]]:
    """ListTriggers filtered as the components' toolkit does for a Function URL: Type=http, Qualifier."""
    resp = _call(scf, "ListTriggers", {
        "FunctionName": function, "Namespace": namespace, "Limit": 100,
        "Filters": [{"Name": "Type", "Values": ["http"]}, {"Name": "Qualifier", "Values": [qualifier]}],
    }, function)
    triggers = resp.get("Triggers")
    return [t for t in triggers if isinstance(t, dict)] if isinstance(triggers, list) else []


def function_triggers(scf: ScfClient, function: str, namespace: str, qualifier: str) -> list[dict[str, Any]]:
    """GetFunction's trigger list, those bound to `qualifier` (or to no stated qualifier)."""
    resp = _call(scf, "GetFunction", {"FunctionName": function, "Namespace": namespace}, function)
    triggers = resp.get("Triggers")
    return [t for t in triggers if isinstance(t, dict) and t.get("Qualifier") in (None, "", qualifier)] \
        if isinstance(triggers, list) else []


def function_url(scf: ScfClient, function: str, namespace: str, qualifier: str, region: str) -> Optional[str]:
    """The function's public Function URL for `qualifier`, or None when the API shows none: first
    from ListTriggers, then from GetFunction's trigger details.

    Raises ScfApiError when a call fails or when the triggers show more than one URL.
    """
    urls = function_urls(list_http_triggers(scf, function, namespace, qualifier), region)
    if not urls:
        urls = function_urls(function_triggers(scf, function, namespace, qualifier), region)
    if len(urls) > 1:
        raise ScfApiError(f"{function} has more than one Function URL for {qualifier}: {', '.join(urls)}")
    return urls[0] if urls else None
