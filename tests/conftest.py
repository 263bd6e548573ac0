"""Shared fixtures: the local stack in a child process, and helpers that observe it over HTTP."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional

import pytest

from devstack.demo import s3_client
from devstack.process import StackProcess


class Dev:
    """A handle on one running local stack."""

    def __init__(self, env: Dict[str, str]):
        self.env = env
        self.s3 = s3_client(env)
        self.bucket = env["CIFLOW_DEV_BUCKET"]
        self.buckets = env["CIFLOW_DEV_BUCKETS"].split(",")
        self.callback_url = env["CIFLOW_CALLBACK_URL"]

    # --- object store -------------------------------------------------------------------------
    def put(self, key: str, body: bytes, bucket: Optional[str] = None, **kwargs: Any) -> str:
        r = self.s3.put_object(Bucket=bucket or self.bucket, Key=key, Body=body, **kwargs)
        return r["ETag"].strip('"')

    def tags(self, key: str, bucket: Optional[str] = None) -> Optional[Dict[str, str]]:
        try:
            r = self.s3.get_object_tagging(Bucket=bucket or self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - absent object
            return None
        return {t["Key"]: t["Value"] for t in r["TagSet"]}

    def exists(self, key: str, bucket: Optional[str] = None) -> bool:
        try:
            self.s3.head_object(Bucket=bucket or self.bucket, Key=key)
            return True
        except Exception:  # noqa: BLE001
            return False

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 40, what: str = "condition") -> Any:
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def wait_status(self, key: str, status: str, bucket: Optional[str] = None, timeout: float = 40) -> Dict[str, str]:
        return self.wait_for(lambda: (t := self.tags(key, bucket)) and t.get("ci-status") == status and t,
                             timeout, f"{key} ci-status={status}")

    # --- CI emulator and runner admin ---------------------------------------------------------
    def _get(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.load(r)

    def ci_requests(self) -> List[Dict[str, Any]]:
        return self._get(self.env["CIFLOW_DEV_CI_ADMIN"] + "requests")

    def ci_requests_for(self, key: str) -> List[Dict[str, Any]]:
        """POST /jobs requests, as the emulator received them, whose Input.Object is `key`."""
        out = []
        for r in self.ci_requests():
            req = r.get("request")
            inp = req.get("Input") if isinstance(req, dict) else None
            if isinstance(inp, dict) and inp.get("Object") == key:
                out.append(r)
        return out

    def ci_jobs(self) -> Dict[str, Any]:
        return self._get(self.env["CIFLOW_DEV_CI_ADMIN"] + "jobs")

    def ci_config(self, **values: Any) -> Dict[str, Any]:
        req = urllib.request.Request(self.env["CIFLOW_DEV_CI_ADMIN"] + "config", method="POST",
                                     data=json.dumps(values).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def invocations(self, function: Optional[str] = None) -> List[Dict[str, Any]]:
        inv = self._get(self.env["CIFLOW_DEV_RUNNER_ADMIN"])["invocations"]
        return [i for i in inv if function is None or i["function"] == function]

    def jobs_for(self, key: str, bucket: Optional[str] = None) -> List[Dict[str, Any]]:
        b = bucket or self.bucket
        return [j for j in self.ci_jobs().values()
                if j["detail"]["Input"]["Object"] == key and j["detail"]["Input"]["BucketId"] == b]

    def post_callback(self, body: bytes, query: str = "", ctype: str = "application/xml") -> tuple:
        url = self.callback_url + (("?" + query) if query else "")
        req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")


def start_dev(*args: str) -> Iterator[Dev]:
    proc = StackProcess(list(args))
    env = proc.start()
    try:
        yield Dev(env)
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def dev() -> Iterator[Dev]:
    """The default local stack: XML callbacks, Function URL events, raw keys in COS events."""
    yield from start_dev()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A fresh key prefix under the watched `uploads/`, so tests never see each other's objects."""
    return f"uploads/{request.node.name[:40]}-{uuid.uuid4().hex[:6]}/"
