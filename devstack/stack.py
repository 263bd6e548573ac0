"""The whole local stack in one process: object store, CI emulator, SCF runner.

`Stack.start()` sets the functions' environment exactly as `serverless.yml` would in the cloud,
pointing the endpoints at loopback; nothing else differs.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .emulator.cossign import Credential
from .emulator.server import CiEmulator
from .objectstore import ObjectStore
from .runner import AsyncInvoker, FunctionHost, HttpTrigger, Timer, WorkerFunctionHost

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class StackOptions:
    appid: str = "1250000000"
    region: str = "ap-guangzhou"
    buckets: list[str] = field(default_factory=lambda: ["uploads", "other"])
    key_encoding: str = "raw"          # raw | url | mixed: how keys appear in COS events
    callback_format: str = "XML"
    event_shape: str = "function-url"  # function-url | apigw
    context_style: str = "object"      # object | dict
    rules_file: Optional[str] = None
    event_copies: int = 1              # deliver each COS event N times (at-least-once)
    reconcile_every: float = 2.0       # the reconcile timer's period in seconds (0 = off)
    reconcile_after: int = 10          # CIFLOW_RECONCILE_AFTER_SECONDS for the functions
    # Run the functions from packaged artifacts laid out under function_root (var/user, opt), each in
    # worker processes of function_python (e.g. CPython 3.9, SCF's runtime) instead of in-process.
    function_python: Optional[str] = None
    function_root: Optional[str] = None
    # Keep the object store but deliver no COS events, as for objects uploaded before any trigger
    # existed (what `python -m ciflow backfill` is for).
    no_trigger: bool = False


class Stack:
    def __init__(self, options: Optional[StackOptions] = None):
        self.o = options or StackOptions()
        self.secret_id = "AKIDdev" + secrets.token_hex(12)
        self.secret_key = secrets.token_hex(20)
        self.token = "tok" + secrets.token_hex(24)
        self.callback_secret = secrets.token_urlsafe(24)
        if self.o.function_python and self.o.function_root:
            self.host: FunctionHost = WorkerFunctionHost(self.o.region, self.o.appid, self.o.context_style,
                                                         self.o.function_python, self.o.function_root)
        else:
            self.host = FunctionHost(self.o.region, self.o.appid, self.o.context_style)
        self.invoker = AsyncInvoker(self.host, "submit", copies=self.o.event_copies)
        on_event = (lambda _event: None) if self.o.no_trigger else self.invoker.deliver
        self.store = ObjectStore(self.o.region, on_event, self.o.key_encoding)
        self.emulator: Optional[CiEmulator] = None
        self.trigger = HttpTrigger(self.host, "callback", self.o.event_shape)
        self.trigger.on_admin = self.admin
        self.trigger.invoker = self.invoker
        self.timer = Timer(self.host, "reconcile", self.o.reconcile_every)

    def admin(self, path: str, method: str, body: bytes) -> Any:
        """`/_devstack/config`: fault switches of the object store and the runner, settable per run."""
        if path != "/_devstack/config":
            return None
        if method == "POST":
            values = json.loads(body or b"{}")
            if "event_copies" in values:
                self.invoker.copies = int(values.pop("event_copies"))
            self.store.faults.update({k: float(v) for k, v in values.items() if k in self.store.faults})
        return {"event_copies": self.invoker.copies, **self.store.faults}

    @property
    def bucket_names(self) -> list[str]:
        return [f"{b}-{self.o.appid}" for b in self.o.buckets]

    def function_env(self) -> dict[str, str]:
        """What serverless.yml sets for the functions, with loopback endpoints."""
        assert self.emulator is not None
        env = {
            "TENCENTCLOUD_SECRETID": self.secret_id,
            "TENCENTCLOUD_SECRETKEY": self.secret_key,
            "TENCENTCLOUD_SESSIONTOKEN": self.token,
            "TENCENTCLOUD_REGION": self.o.region,
            "CIFLOW_REGION": self.o.region,
            "CIFLOW_CALLBACK_URL": self.trigger.url,
            "CIFLOW_CALLBACK_SECRET": self.callback_secret,
            "CIFLOW_CALLBACK_FORMAT": self.o.callback_format,
            "CIFLOW_BUCKETS": ",".join(self.bucket_names),
            "CIFLOW_S3_ENDPOINT": self.store.endpoint,
            "CIFLOW_CI_ENDPOINT": self.emulator.endpoint,
            "POWERTOOLS_SERVICE_NAME": "ciflow",
            "CIFLOW_RECONCILE_AFTER_SECONDS": str(self.o.reconcile_after),
        }
        if self.o.rules_file:
            env["CIFLOW_RULES_FILE"] = str(Path(self.o.rules_file).resolve())
        return env

    def client_env(self) -> dict[str, str]:
        """What a user's S3 client needs (the AWS CLI and boto3 read these names)."""
        return {
            "AWS_ENDPOINT_URL": self.store.endpoint,
            "AWS_ACCESS_KEY_ID": "devstack",
            "AWS_SECRET_ACCESS_KEY": "devstack",
            "AWS_DEFAULT_REGION": self.o.region,
            "CIFLOW_DEV_BUCKET": self.bucket_names[0],
            "CIFLOW_DEV_BUCKETS": ",".join(self.bucket_names),
            "CIFLOW_DEV_CI_ADMIN": f"{self.emulator.endpoint}/_emulator/" if self.emulator else "",
            "CIFLOW_DEV_RUNNER_ADMIN": f"{self.trigger.url}_devstack/invocations",
            "CIFLOW_DEV_CONFIG": f"{self.trigger.url}_devstack/config",
        }

    def start(self) -> Stack:
        self.invoker.start()
        self.store.start()
        self.emulator = CiEmulator(self.o.region, [Credential(self.secret_id, self.secret_key, self.token)],
                                   self.store.endpoint)
        self.emulator.start()
        self.trigger.start()
        os.environ.update(self.function_env())
        self.timer.start()
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.store.endpoint, region_name=self.o.region,
                          aws_access_key_id="devstack", aws_secret_access_key="devstack")
        for b in self.bucket_names:
            s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": self.o.region})
        return self

    def stop(self) -> None:
        self.timer.stop()
        self.trigger.stop()
        if self.emulator is not None:
            self.emulator.stop()
        self.store.stop()
        self.invoker.stop()
        self.host.close()

    def env(self) -> dict[str, str]:
        return {**self.function_env(), **self.client_env()}


def write_env_file(path: str, env: dict[str, str]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        for k, v in env.items():
            fh.write(f"{k}={v}\n")
    os.replace(tmp, path)


def read_env_file(path: str) -> dict[str, str]:
    env = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            k, sep, v = line.rstrip("\n").partition("=")
            if sep:
                env[k] = v
    return env
