"""The whole local stack in one process: object store, CI emulator, SCF runner.

`Stack.start()` sets the functions' environment exactly as `serverless.yml` would in the cloud,
pointing the endpoints at loopback; nothing else differs.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .emulator.cossign import Credential
from .emulator.server import CiEmulator
from .objectstore import COPY_LIMIT_BYTES, VERSIONING, ObjectStore, Switches
from .runner import AsyncInvoker, FunctionHost, HttpTrigger, Timer, WorkerFunctionHost
from .tdmq import DEFAULTS as TDMQ_DEFAULTS
from .tdmq import CmqBroker

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
    event_form: str = "documented"     # documented | logged: which fields COS events carry
    if_none_match: str = "ignore"      # honour | ignore | reject: S3's If-None-Match: * on PUT
    delete_if_match: str = "ignore"    # honour | ignore | reject: S3's If-Match on DELETE Object
    s3_copy_conditions: str = "honour"  # honour | ignore: x-amz-copy-source-if-(none-)match
    copy_limit_bytes: int = COPY_LIMIT_BYTES  # PUT Object - Copy's single-copy limit
    # Bucket (short name) -> Enabled | Suspended. Suspended buckets had versioning Enabled first.
    versioning: dict[str, str] = field(default_factory=dict)
    # The CI emulator's callback_user_data (omit | echo); None keeps the emulator's default.
    callback_user_data: Optional[str] = None
    # Function name -> seconds its clock runs ahead (negative: behind).
    clock_offsets: dict[str, float] = field(default_factory=dict)
    reconcile_every: float = 2.0       # the reconcile timer's period in seconds (0 = off)
    reconcile_after: int = 10          # CIFLOW_RECONCILE_AFTER_SECONDS for the functions
    # Run the functions from packaged artifacts laid out under function_root (var/user, opt), each in
    # worker processes of function_python (e.g. CPython 3.9, SCF's runtime) instead of in-process.
    function_python: Optional[str] = None
    function_root: Optional[str] = None
    # Keep the object store but deliver no COS events, as for objects uploaded before any trigger
    # existed (what `python -m ciflow backfill` is for).
    no_trigger: bool = False
    # Keep the functions' records in this bucket (short name; created, never versioned) instead of beside
    # each object: CIFLOW_STATE_BUCKET, for buckets whose versioning is Suspended.
    state_bucket: Optional[str] = None


FUNCTIONS = ("submit", "callback", "reconcile")


def checked_versioning(values: Any, buckets: list[str]) -> dict[str, str]:
    if not isinstance(values, dict):
        raise ValueError("versioning: expected an object of bucket -> Enabled|Suspended")
    for bucket, status in values.items():
        if bucket not in buckets:
            raise ValueError(f"versioning: {bucket!r} is not one of the stack's buckets ({', '.join(buckets)})")
        if status not in VERSIONING:
            raise ValueError(f"versioning for {bucket}: expected one of {', '.join(VERSIONING)}, got {status!r}")
    return dict(values)


def checked_clock_offsets(values: Any) -> dict[str, float]:
    if not isinstance(values, dict):
        raise ValueError("clock_offsets: expected an object of function -> seconds")
    out = {}
    for name, seconds in values.items():
        if name not in FUNCTIONS:
            raise ValueError(f"clock_offsets: {name!r} is not a function ({', '.join(FUNCTIONS)})")
        try:
            if isinstance(seconds, bool):
                raise TypeError
            out[name] = float(seconds)
        except (TypeError, ValueError):
            raise ValueError(f"clock_offsets for {name}: expected seconds, got {seconds!r}") from None
        if not math.isfinite(out[name]):
            raise ValueError(f"clock_offsets for {name}: expected seconds, got {seconds!r}")
    return out


class InspectionLog:
    """Which content each CI job read: the ETag of every GetObject of the job's input, as the job ran.

    The emulator keeps no such record, so its S3 client and its job processors are observed from here
    (read-only): a processor runs on one thread, and every GetObject it makes on that thread is its own.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self.attached = False

    def attach(self, emulator: CiEmulator) -> None:
        try:
            client = emulator.s3()
            client.meta.events.register("provide-client-params.s3.GetObject", self._params)
            client.meta.events.register("after-call.s3.GetObject", self._after)
            for tag, processor in list(emulator.processors.items()):
                emulator.processors[tag] = self._observed(processor)
        except AttributeError:
            return  # an emulator without these hooks: chaos reports the audit as unavailable
        self.attached = True

    def _observed(self, processor: Any) -> Any:
        def run(emu: Any, job: Any) -> Any:
            self._local.job = job
            try:
                return processor(emu, job)
            finally:
                self._local.job = None

        return run

    @staticmethod
    def _params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["devstack_object"] = (params.get("Bucket"), params.get("Key"))

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        job = getattr(self._local, "job", None)
        if job is None or getattr(http_response, "status_code", 500) >= 300:
            return
        inp = job.detail.get("Input", {})
        if context.get("devstack_object") != (inp.get("BucketId", job.bucket), inp.get("Object")):
            return
        etag = str((parsed or {}).get("ETag") or "").strip('"')
        with self._lock:
            entry = self.jobs.setdefault(job.job_id, {"bucket": inp.get("BucketId"), "object": inp.get("Object"),
                                                      "etags": []})
            if etag and etag not in entry["etags"]:
                entry["etags"].append(etag)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"attached": self.attached, "jobs": json.loads(json.dumps(self.jobs))}


class Stack:
    def __init__(self, options: Optional[StackOptions] = None):
        self.o = options or StackOptions()
        checked_versioning(self.o.versioning, self.o.buckets)
        checked_clock_offsets(self.o.clock_offsets)
        self.secret_id = "AKIDdev" + secrets.token_hex(12)
        self.secret_key = secrets.token_hex(20)
        self.token = "tok" + secrets.token_hex(24)
        self.callback_secret = secrets.token_urlsafe(24)
        if self.o.function_python and self.o.function_root:
            self.host: FunctionHost = WorkerFunctionHost(self.o.region, self.o.appid, self.o.context_style,
                                                         self.o.function_python, self.o.function_root)
        else:
            self.host = FunctionHost(self.o.region, self.o.appid, self.o.context_style)
        self.host.clock_offsets.update(self.o.clock_offsets)
        self.invoker = AsyncInvoker(self.host, "submit", copies=self.o.event_copies)
        self.broker = CmqBroker(self.o.appid)
        on_event = (lambda _event: None) if self.o.no_trigger else self.invoker.deliver
        switches = Switches()
        switches.update({"key_encoding": self.o.key_encoding, "event_form": self.o.event_form,
                         "if_none_match": self.o.if_none_match, "s3_copy_conditions": self.o.s3_copy_conditions,
                         "delete_if_match": self.o.delete_if_match,
                         "copy_limit_bytes": self.o.copy_limit_bytes})
        self.store = ObjectStore(self.o.region, on_event, switches=switches)
        self.emulator: Optional[CiEmulator] = None
        self.inspections = InspectionLog()
        self.trigger = HttpTrigger(self.host, "callback", self.o.event_shape)
        self.trigger.on_admin = self.admin
        self.trigger.invoker = self.invoker
        self.timer = Timer(self.host, "reconcile", self.o.reconcile_every)

    def admin(self, path: str, method: str, body: bytes) -> Any:
        """Loopback-only admin paths under `/_devstack/`:

        - `config`: the object store's switches and faults, `event_copies`, `versioning` (bucket -> Enabled |
          Suspended; like COS, versioning once on stays on) and `clock_offsets` (function -> seconds).
          POST changes the given ones; a bad value raises ValueError and changes nothing.
        - `stalls`: writes the object store is holding right now (injected stalls), and one-shot holds not
          yet met. POST {"bucket", "key", "seconds", "match"?} holds the next tag write of that key whose body
          matches the regex `match`.
        - `inspections`: which content (ETag) each CI job read.
        - `history`: what the object store saw happen to each key (reads with the content they showed, writes,
          and deletes with the content they removed; see `devstack/objectstore/history.py`). A POST body
          {"bucket"?, "prefix"?} narrows it down; it changes nothing.
        - `tdmq`: what CI published to CMQ topics and queues, and what the topic trigger delivered. POST
          {"topic", "body"} publishes a message of one's own.
        """
        if path == "/_devstack/tdmq":
            if method == "POST":  # publish a message of one's own (tests: forged or foreign messages)
                msg = json.loads(body or b"{}")
                if not isinstance(msg, dict) or not isinstance(msg.get("body"), str):
                    raise ValueError('expected {"topic", "body"}')
                self.broker.publish(self.o.region, "Topic", str(msg.get("topic") or "ciflow-results"), msg["body"])
            return self.broker.snapshot()
        if path == "/_devstack/stalls":
            if method == "POST":
                self.hold(body)
            return {"stalled": self.store.stalled(), "holds": self.store.holds()}
        if path == "/_devstack/inspections":
            return self.inspections.snapshot()
        if path == "/_devstack/history":
            return {"keys": self.store.history(**self.history_filter(body))}
        if path != "/_devstack/config":
            return None
        if method == "POST":
            try:
                values = json.loads(body or b"{}")
            except ValueError:
                raise ValueError("the body is not JSON") from None
            if not isinstance(values, dict):
                raise ValueError("expected a JSON object of settings")
            self.configure(values)
        return self.config()

    def history_filter(self, body: bytes) -> dict[str, str]:
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            raise ValueError("the body is not JSON") from None
        if not isinstance(spec, dict) or set(spec) - {"bucket", "prefix"} or not all(
                isinstance(v, str) for v in spec.values()):
            raise ValueError('expected {"bucket"?, "prefix"?} with string values')
        return {"bucket": self.full_bucket_name(spec.get("bucket", "")), "prefix": spec.get("prefix", "")}

    def full_bucket_name(self, bucket: Any) -> Any:
        """A bucket's short name (as `--buckets` gives it) as its full `<name>-<appid>`; anything else as is."""
        return f"{bucket}-{self.o.appid}" if bucket in self.o.buckets else bucket

    def hold(self, body: bytes) -> None:
        try:
            spec = json.loads(body or b"{}")
        except ValueError:
            raise ValueError("the body is not JSON") from None
        if not isinstance(spec, dict) or set(spec) - {"bucket", "key", "seconds", "match"}:
            raise ValueError('expected {"bucket", "key", "seconds", "match"?}')
        bucket = self.full_bucket_name(spec.get("bucket"))
        if bucket not in self.bucket_names:
            raise ValueError(f"bucket: expected one of {', '.join(self.o.buckets)}, got {spec.get('bucket')!r}")
        if not isinstance(spec.get("key"), str) or not spec["key"]:
            raise ValueError("key: expected an object key")
        self.store.hold_tag_write(bucket, spec["key"], spec.get("seconds"), spec.get("match") or "")

    def config(self) -> dict[str, Any]:
        versioning = {b: self.store.versioning(f"{b}-{self.o.appid}") for b in self.o.buckets}
        return {"event_copies": self.invoker.copies, **self.store.settings(), **self.broker.config,
                "versioning": {b: v for b, v in versioning.items() if v},
                "clock_offsets": {k: v for k, v in self.host.clock_offsets.items() if v}}

    def configure(self, values: dict[str, Any]) -> None:
        """Apply settings at run time, all or none (ValueError names the first bad one)."""
        values = dict(values)
        copies = values.pop("event_copies", None)
        if copies is not None and (isinstance(copies, bool) or not isinstance(copies, int) or copies < 1):
            raise ValueError(f"event_copies: expected a whole number >= 1, got {copies!r}")
        versioning = checked_versioning(values.pop("versioning", {}), self.o.buckets)
        offsets = checked_clock_offsets(values.pop("clock_offsets", {}))
        mq = {k: values.pop(k) for k in list(values) if k in TDMQ_DEFAULTS}
        self.broker.configure(dict(mq), validate_only=True)
        self.store.configure(values)  # validates everything it is given before changing anything
        self.broker.configure(mq)
        if copies is not None:
            self.invoker.copies = copies
        for bucket, status in versioning.items():
            self.store.set_versioning(f"{bucket}-{self.o.appid}", status)
        self.host.clock_offsets.update(offsets)

    @property
    def state_bucket_name(self) -> str:
        return f"{self.o.state_bucket}-{self.o.appid}" if self.o.state_bucket else ""

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
        if self.state_bucket_name:
            env["CIFLOW_STATE_BUCKET"] = self.state_bucket_name
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
        ci_config = {} if self.o.callback_user_data is None else {"callback_user_data": self.o.callback_user_data}
        self.emulator = CiEmulator(self.o.region, [Credential(self.secret_id, self.secret_key, self.token)],
                                   self.store.endpoint, config=ci_config)
        self.inspections.attach(self.emulator)
        # CallBackType=TDMQ: CI publishes to CMQ; a topic's trigger invokes the callback function.
        self.emulator.mq_publisher = self.broker.publish
        self.broker.default_subscriber = lambda event: self.host.invoke("callback", event)
        self.emulator.start()
        self.trigger.start()
        os.environ.update(self.function_env())
        self.timer.start()
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.store.endpoint, region_name=self.o.region,
                          aws_access_key_id="devstack", aws_secret_access_key="devstack")
        for b in self.bucket_names + ([self.state_bucket_name] if self.state_bucket_name else []):
            s3.create_bucket(Bucket=b, CreateBucketConfiguration={"LocationConstraint": self.o.region})
        for b, status in self.o.versioning.items():
            self.store.set_versioning(f"{b}-{self.o.appid}", status, s3)
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
