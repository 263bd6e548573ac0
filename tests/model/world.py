"""A whole deployment in one process: COS, CI, the three functions and the platform around them.

`World` runs the real `Submitter`, `CallbackHandler` and `Reconciler` of `layers/ciflow/ciflow/` with their
ports injected: the real `ciflow.storage.Storage` adapter over the COS model's boto3-shaped client, and the
CI model as the `CiJobs` port. Every port call of a function goes through `World.port_call`, where a
*fault plan* can make a call of one invocation (the n-th call it makes, or the n-th call of one operation,
e.g. the first `cos.put_object_tagging`)

- `fail`        answer a transient error (503 SlowDown; RetryableError for CI) without any effect,
- `fail_after`  take effect, then answer the transient error (the response was lost),
- `replay`      take effect twice (the client re-sent a request whose response was lost),
- `stall`       hold the request before it reaches the service, until the world resumes it; meanwhile
                anything else may happen (the invocation runs in its own thread, strictly handed over,
                so a run is still deterministic),
- `crash`       kill the instance there (timeout, OOM): that call and every later one never happen.

Around the functions, the world plays the platform: COS events (documented and logged forms), SCF's async
retries of a failed submit (2 more attempts, then the dead-letter queue), CI's callbacks and their retries,
the reconcile timer, COS's clock and per-function local clocks that can be skewed.

`World` keeps a readable log of everything that happened (`scenario`), statistics (`stats`) and the
invariant checks (`check_step`, `check_quiescent`).
"""

from __future__ import annotations

import copy
import json
import threading
import time as real_time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union
from urllib.parse import quote

from botocore.exceptions import ClientError

import ciflow.applying
import ciflow.concurrency
import ciflow.records
import ciflow.storage
import ciflow.submission
import ciflow.tokens
from ciflow.completion import CallbackHandler
from ciflow.errors import RetryableError
from ciflow.log import logger
from ciflow.queue_delivery import QueueDeliveryHandler
from ciflow.reconcile import Reconciler
from ciflow.rules import RuleSet, parse_rules
from ciflow.settings import DEFAULT_RULES_FILE, Settings, load_settings
from ciflow.storage import Storage
from ciflow.submission import Submitter
from ciflow.userdata import decode as decode_user_data

from .checks import Checks, InvariantViolation
from .ci import CiJob, CiModel, http_event
from .cos import ENABLED, NEVER, SUSPENDED, CosModel, Version, error

APPID = "1250000000"
BUCKET = f"uploads-{APPID}"
STATE_BUCKET = f"ciflow-state-{APPID}"     # CIFLOW_STATE_BUCKET: a bucket that never had versioning
REGION = "ap-guangzhou"
CALLBACK_BASE = "https://cb.example.com/"
FAULT_KINDS = ("fail", "fail_after", "replay", "stall", "crash")
# The port calls a fault can target by name (the n-th of them in one invocation).
OPERATIONS = ("cos.head_object", "cos.get_object", "cos.put_object", "cos.get_object_tagging",
              "cos.put_object_tagging", "cos.delete_object_tagging", "cos.copy_object", "cos.delete_object",
              "cos.list_object_versions", "cos.list_objects_v2", "ci.create", "ci.get", "ci.get_many", "ci.find")
Target = Union[int, tuple[str, int]]   # the n-th call of the invocation, or the n-th call of one operation
Plan = dict[Target, str]
RESUME_MODES = ("continue", "land_then_crash", "drop_then_crash")
FUNCTION_TIMEOUT = {"submit": 60, "callback": 30, "reconcile": 300}   # serverless.yml
SUBMIT_ATTEMPTS = 3          # SCF: a failed async invocation is retried 2 times
CALLBACK_ATTEMPTS = 3        # CI (as the emulator): 2 retries after a 5xx or no answer


def settings_env(**overrides: str) -> dict[str, str]:
    env = {"CIFLOW_REGION": REGION, "CIFLOW_CALLBACK_SECRET": "model-secret-" + "s" * 16,
           "CIFLOW_CALLBACK_URL": CALLBACK_BASE, "CIFLOW_BUCKETS": BUCKET,
           "CIFLOW_RECONCILE_AFTER_SECONDS": "900", "CIFLOW_RECONCILE_GIVE_UP_SECONDS": "3600",
           "CIFLOW_MAX_SUBMIT_ATTEMPTS": "2"}
    env.update(overrides)
    return env


def default_rules(settings: Settings) -> RuleSet:
    with open(DEFAULT_RULES_FILE, encoding="utf-8") as fh:
        return parse_rules(fh.read(), "default", settings.state_prefix)


class Crash(BaseException):
    """The function instance died at this point (timeout, out of memory, host failure).

    A BaseException, so no `except Exception` in the library can swallow it, as none can swallow a kill."""


class Injected(Exception):
    """Marker mixin: the transient error was injected by a fault plan."""


class _Later:
    """A future that runs its call when its result is asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]):
        self._fn = fn
        self._args = args

    def result(self) -> Any:
        return self._fn(*self._args)


class SequentialExecutor:
    """Stands in for the thread pool of `ciflow.concurrency`: `settled`/`together` run their first call
    themselves, then ask each future for its result in argument order, so with this executor the calls
    of a batch run one after another in argument order, every one runs (the library's own code decides
    what happens with errors), and a run is deterministic."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Later:
        return _Later(fn, args)


CLOCK_USERS = (ciflow.records, ciflow.submission, ciflow.tokens)


class LocalTime:
    """Stands in for the `time` module in the library: `time()` is the running function's local clock."""

    def __init__(self, world: World):
        self._world = world

    def time(self) -> float:
        return self._world.local_now()

    def __getattr__(self, name: str) -> Any:
        return getattr(real_time, name)


@dataclass
class Upload:
    uid: int
    key: str
    body: bytes
    version: Version
    form: str                 # documented | logged: the shape of its COS event
    at: float
    owed: bool = False        # a submit invocation for its event returned normally: it must be finished
    deliveries: int = 0

    @property
    def etag(self) -> str:
        return self.version.etag

    def label(self) -> str:
        return f"upload#{self.uid} {self.key} <- {self.body.decode()} ({self.etag[:6]}" + (
            f", v={self.version.vid}" if self.version.vid else "") + ")"


@dataclass
class PendingEvent:
    eid: int
    upload: Upload
    event: dict[str, Any]
    attempt: int = 1          # SCF's attempt number (1 = first delivery)

    def label(self) -> str:
        return f"event#{self.eid} ({self.upload.form}, {self.upload.key} {self.upload.etag[:6]}" + (
            f", retry {self.attempt - 1}" if self.attempt > 1 else "") + ")"


@dataclass
class PendingCallback:
    cid: int
    job_id: str
    event: dict[str, Any]
    attempt: int = 1
    forged: str = ""

    def label(self) -> str:
        return f"callback#{self.cid} ({self.forged or 'job ' + self.job_id[:5]}" + (
            f", attempt {self.attempt}" if self.attempt > 1 else "") + ")"


@dataclass
class Invocation:
    iid: int
    function: str
    label: str
    plan: Plan
    started: float
    on_done: Callable[[Invocation], None]
    calls: int = 0
    per_op: Counter[str] = field(default_factory=Counter)
    dead: bool = False
    state: str = "running"          # running | stalled | done
    stalled_on: str = ""
    resume_mode: str = "continue"
    result: Any = None
    error: Optional[BaseException] = None
    fired: list[str] = field(default_factory=list)
    thread: Optional[threading.Thread] = None
    uploads_at_start: int = 0
    created: list[str] = field(default_factory=list)   # jobs CI accepted from this invocation's POST /jobs


class FaultyS3:
    """The boto3-shaped client seen by `Storage`: every call goes through `World.port_call`."""

    def __init__(self, world: World, client: Any):
        self._world = world
        self._client = client

    def __getattr__(self, name: str) -> Callable[..., Any]:
        real = getattr(self._client, name)

        def call(**kwargs: Any) -> Any:
            return self._world.port_call(f"cos.{name}", lambda: real(**kwargs),
                                         lambda: error(name, "SlowDown", 503, "injected"))
        return call


class FaultyCi:
    """The CI port seen by the functions, over the CI model, through `World.port_call`."""

    def __init__(self, world: World, model: CiModel):
        self._world = world
        self._model = model

    def _call(self, name: str, fn: Callable[[], Any]) -> Any:
        # No replays: `CiJobs` never re-sends a request blindly (it looks for an accepted job first).
        return self._world.port_call(f"ci.{name}", fn, lambda: RetryableError(f"{name}: SlowDown (injected)"),
                                     replayable=False)

    def create(self, bucket: str, job: dict[str, Any]) -> dict[str, Any]:
        return self._call("create", lambda: self._world.job_created(self._model.create(bucket, job)))

    def get(self, bucket: str, job_id: str) -> Optional[dict[str, Any]]:
        return self._call("get", lambda: self._model.get(bucket, job_id))

    def get_many(self, bucket: str, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        return self._call("get_many", lambda: self._model.get_many(bucket, job_ids))

    def find(self, bucket: str, tag: str, key: str, user_data: str) -> Optional[dict[str, Any]]:
        return self._call("find", lambda: self._model.find(bucket, tag, key, user_data))


class World:
    def __init__(self, bucket_kind: str = NEVER, env: Optional[dict[str, str]] = None, page_size: int = 2,
                 ci_reads: str = "run", tolerate: Iterable[str] = (), state_bucket: bool = False,
                 delivery: str = "url"):
        self.kind = bucket_kind
        self.cos = CosModel()
        self.clock = self.cos.clock
        self.cos.create_bucket(BUCKET, NEVER if bucket_kind == NEVER else ENABLED)
        if bucket_kind == SUSPENDED:
            self.cos.set_versioning(BUCKET, SUSPENDED)
        if state_bucket:
            self.cos.create_bucket(STATE_BUCKET, NEVER)
        self.ci = CiModel(self.cos, REGION, ci_reads)
        overrides = {"CIFLOW_STATE_BUCKET": STATE_BUCKET} if state_bucket else {}
        if delivery == "tdmq":
            overrides.update(CIFLOW_CALLBACK_TYPE="tdmq", CIFLOW_CALLBACK_MQ_REGION="gz",
                             CIFLOW_CALLBACK_MQ_NAME="ciflow-results")
        self.settings = load_settings(env or settings_env(**overrides))
        # Where the job records live: the bucket itself under the state prefix, or the state bucket.
        self.store = self.settings.state_bucket or BUCKET
        self.record_prefix = (f"{self.settings.state_prefix}{BUCKET}/" if self.settings.state_bucket
                              else self.settings.state_prefix)
        self.rules = default_rules(self.settings)
        self.storage = Storage(client=FaultyS3(self, self.cos.client(page_size)))
        self.ci_port = FaultyCi(self, self.ci)
        self.skew = {"submit": 0.0, "callback": 0.0, "reconcile": 0.0}
        self.local = threading.local()
        self.cv = threading.Condition()
        self.uploads: list[Upload] = []
        self.user_deletes: list[tuple[str, int]] = []   # (key, how many uploads there had been)
        self.by_version: dict[int, Upload] = {}
        self.uploads_at_job: dict[str, int] = {}      # job id → how many uploads there had been when CI accepted it
        self.events: list[PendingEvent] = []
        self.retries: list[PendingEvent] = []
        self.dead_letters: list[PendingEvent] = []
        self.callbacks: list[PendingCallback] = []
        self.stalled: list[Invocation] = []
        self.faults_on = True
        self.scenario: list[str] = []
        self.checks = Checks(self, frozenset(tolerate))
        self.bucket = BUCKET
        self.stats: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()
        self._n = Counter()
        self.cos.actor = self._actor
        self.cos.observers.append(self.checks.observe)
        self._saved: list[tuple[Any, str, Any]] = []

    # --- setup ------------------------------------------------------------------------------------
    def install(self) -> World:
        """Patch the library for determinism: batches of calls run in order, local clocks, quiet logs."""
        fake_time = LocalTime(self)
        executor = SequentialExecutor()
        self._patch(ciflow.concurrency, "_executor", lambda: executor)
        for mod in CLOCK_USERS:
            self._patch(mod, "time", fake_time)
        # A result that comes before its job is recorded: read the claim again once, without waiting (what a
        # wait would let a submitter do comes from the steps).
        self._patch(ciflow.applying.Completer, "RECORD_WAITS", (0.0,))
        # A fresh container: it has not yet seen COS refuse If-Match on DELETE.
        self._patch(ciflow.storage, "_delete_if_match_refused", False)
        self._saved.append((logger, "level", logger.log_level))
        logger.setLevel("CRITICAL")
        return self

    def _patch(self, obj: Any, name: str, value: Any) -> None:
        self._saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def patch(self, obj: Any, name: str, value: Any) -> None:
        """Replace `obj.name` until `uninstall` (the known-defect switches use this)."""
        self._patch(obj, name, value)

    def uninstall(self) -> None:
        for inv in list(self.stalled):
            self._resume(inv, "drop_then_crash")
        while self._saved:
            obj, name, value = self._saved.pop()
            if obj is logger and name == "level":
                logger.setLevel(value)
            else:
                setattr(obj, name, value)

    def note(self, line: str) -> None:
        self.scenario.append(f"[t={int(self.clock.now - 1_800_000_000):>6}] {line}")

    def next_id(self, what: str) -> int:
        self._n[what] += 1
        return self._n[what]

    # --- clocks -------------------------------------------------------------------------------------
    def current(self) -> Optional[Invocation]:
        return getattr(self.local, "inv", None)

    def local_now(self) -> float:
        inv = self.current()
        return self.clock.now + (self.skew[inv.function] if inv is not None else 0.0)

    def _actor(self) -> str:
        inv = self.current()
        return inv.function if inv is not None else "user"

    def advance(self, seconds: float) -> None:
        """Move COS's clock. No request outlives its function's timeout: a request still stalled when
        its instance times out lands at that moment (the least favourable case), and the instance is gone."""
        target = self.clock.now + seconds
        self.note(f"time passes: +{seconds:g} s")
        while True:
            due = sorted((inv.started + FUNCTION_TIMEOUT[inv.function], inv.iid, inv) for inv in self.stalled
                         if inv.started + FUNCTION_TIMEOUT[inv.function] <= target)
            if not due:
                break
            deadline, _, inv = due[0]
            self.clock.now = max(self.clock.now, deadline)
            self._resume(inv, "land_then_crash")
        self.clock.now = target

    def set_skew(self, function: str, seconds: float) -> None:
        self.skew[function] = float(seconds)
        self.note(f"{function}'s clock is now {seconds:+g} s off COS's")

    # --- the port-call choke point ----------------------------------------------------------------
    def _unchecked(self, name: str) -> None:
        """POST /jobs landed but its submitter never got the answer: it cannot check the key after it."""
        if name == "ci.create" and self.ci.jobs:
            self.checks.unchecked_jobs.add(next(reversed(self.ci.jobs)))

    def _died(self, inv: Invocation, name: str) -> None:
        """The invocation dies at `name`: the jobs it had POSTed may not have had the key checked after them
        (the check runs beside recording the job, and writes what it found only once both are done)."""
        inv.dead = True
        self.stats["crashes"] += 1
        self.checks.unchecked_jobs.update(inv.created)

    def port_call(self, name: str, fn: Callable[[], Any], transient: Callable[[], BaseException],
                  replayable: bool = True) -> Any:
        inv = self.current()
        if inv is None:
            return fn()
        if inv.dead:
            raise Crash(name)
        index = inv.calls
        inv.calls += 1
        nth = inv.per_op[name]
        inv.per_op[name] += 1
        kind = (inv.plan.get(index) or inv.plan.get((name, nth))) if self.faults_on else None
        if kind == "replay" and not replayable:
            kind = None
        self.stats[f"port calls ({inv.function})"] += 1
        if name == "ci.create":
            post = fn

            def fn() -> Any:
                out = post()
                inv.created.append(next(reversed(self.ci.jobs)))
                return out
        if kind is None:
            return fn()
        inv.fired.append(f"{kind}@{index}:{name}")
        self.stats[f"faults: {kind}"] += 1
        self.stats["faults injected"] += 1
        self.reached[f"fault {kind} on {name} in {inv.function}"] += 1
        if kind == "crash":
            self._died(inv, name)
            raise Crash(name)
        if kind == "stall":
            mode = self._stall(inv, name)
            if mode == "drop_then_crash":
                self._died(inv, name)
                raise Crash(name)
            result = fn()
            if mode == "land_then_crash":
                self._died(inv, name)
                raise Crash(name)
            return result
        if kind == "fail":
            raise transient()
        if kind == "fail_after":
            fn()
            self._unchecked(name)
            raise transient()
        if kind == "replay":
            try:
                fn()
            except (ClientError, RetryableError):
                pass
            return fn()
        raise AssertionError(f"unknown fault kind {kind}")

    # --- invocations --------------------------------------------------------------------------------
    def invoke(self, function: str, label: str, body: Callable[[], Any], plan: Plan,
               on_done: Callable[[Invocation], None]) -> Invocation:
        inv = Invocation(self.next_id("invocation"), function, label, dict(plan) if self.faults_on else {},
                         self.clock.now, on_done, uploads_at_start=len(self.uploads))
        self.stats[f"invocations ({function})"] += 1
        if "stall" in inv.plan.values():
            inv.thread = threading.Thread(target=self._run, args=(inv, body), daemon=True,
                                          name=f"model-{function}-{inv.iid}")
            with self.cv:
                inv.thread.start()
                while inv.state == "running":
                    self.cv.wait()
        else:
            self._run(inv, body)
        self._settle(inv)
        return inv

    def _run(self, inv: Invocation, body: Callable[[], Any]) -> None:
        self.local.inv = inv
        try:
            inv.result = body()
        except BaseException as exc:  # noqa: BLE001 - judged by on_done in the main thread
            inv.error = exc
        finally:
            self.local.inv = None
            with self.cv:
                inv.state = "done"
                self.cv.notify_all()

    def _stall(self, inv: Invocation, name: str) -> str:
        with self.cv:
            inv.state = "stalled"
            inv.stalled_on = name
            self.cv.notify_all()
            while inv.state == "stalled":
                self.cv.wait()
        return inv.resume_mode

    def _settle(self, inv: Invocation) -> None:
        if inv.state == "stalled":
            self.stalled.append(inv)
            self.stats["stalls"] += 1
            self.note(f"  … {inv.function}#{inv.iid} stalls on {inv.stalled_on}")
            return
        if inv.thread is not None:
            inv.thread.join()
        inv.on_done(inv)

    def resume(self, index: int, mode: str = "continue") -> None:
        inv = self.stalled[index % len(self.stalled)]
        self._resume(inv, mode)

    def _resume(self, inv: Invocation, mode: str) -> None:
        if mode == "continue" and self.clock.now - inv.started > FUNCTION_TIMEOUT[inv.function]:
            mode = "land_then_crash"   # past the function's timeout: the request lands, the instance is gone
        self.stalled.remove(inv)
        self.note(f"{inv.function}#{inv.iid} resumes ({mode.replace('_', ' ')}) at {inv.stalled_on}")
        with self.cv:
            inv.resume_mode = mode
            inv.state = "running"
            self.cv.notify_all()
            while inv.state == "running":
                self.cv.wait()
        self._settle(inv)

    def _unexpected(self, inv: Invocation) -> None:
        exc = inv.error
        if exc is not None and not isinstance(exc, (Crash, RetryableError)):
            self.checks.unexpected(f"{inv.function}#{inv.iid}", exc)

    # --- users --------------------------------------------------------------------------------------
    def upload(self, key: str, body: bytes, form: str = "documented", content_type: str = "image/png") -> Upload:
        v = self.cos.put(BUCKET, key, body, content_type)
        up = Upload(self.next_id("upload"), key, body, v, form, self.clock.now)
        self.uploads.append(up)
        self.by_version[id(v)] = up
        ev = PendingEvent(self.next_id("event"), up, self._cos_event(up))
        self.events.append(ev)
        self.note(f"user: {up.label()}; COS emits {ev.label()}")
        return up

    def delete(self, key: str) -> None:
        self.cos.delete(BUCKET, key)
        self.user_deletes.append((key, len(self.uploads)))
        self.note(f"user: delete {key}")

    def _cos_event(self, up: Upload) -> dict[str, Any]:
        name = BUCKET[: -(len(APPID) + 1)]
        logged = up.form == "logged"
        meta = {"x-cos-request-id": f"req{up.uid}", "Content-Type": up.version.content_type if logged else ""}
        if logged:
            meta.update({"ETag": f'"{up.etag}"', "x-cos-storage-class": "STANDARD"})
        bucket: dict[str, Any] = {"region": "gz", "name": name, "appid": APPID}
        if logged:
            bucket.update({"cosRegion": REGION, "s3Region": REGION})
        event: dict[str, Any] = {"eventName": "cos:ObjectCreated:Put", "eventVersion": "1.0",
                                 "eventTime": int(up.at), "eventSource": "qcs::cos"}
        if logged:
            event["reqid"] = f"req{up.uid}"
        return {"Records": [{"cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": {"url": f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{quote(up.key)}", "meta": meta,
                          "vid": up.version.vid if logged else "", "key": f"/{APPID}/{name}/{up.key}",
                          "size": len(up.body)},
            "cosBucket": bucket, "cosNotificationId": "unkown"}, "event": event}]}

    # --- COS events and SCF's async retries ---------------------------------------------------------
    def deliver_event(self, index: int, plan: Optional[Plan] = None, from_retries: bool = False) -> None:
        queue = self.retries if from_retries else self.events
        ev = queue.pop(index % len(queue))
        self._submit(ev, plan or {})

    def duplicate_event(self, index: int) -> None:
        ev = self.events[index % len(self.events)]
        dup = PendingEvent(self.next_id("event"), ev.upload, copy.deepcopy(ev.event))
        self.events.append(dup)
        self.note(f"COS delivers {ev.label()} again later, as {dup.label()}")

    def drop_event(self, index: int) -> None:
        ev = self.events.pop(index % len(self.events))
        self.note(f"{ev.label()} is never delivered")

    def _submit(self, ev: PendingEvent, plan: Plan) -> None:
        submitter = Submitter(self.storage, self.ci_port, self.settings, self.rules)
        ev.upload.deliveries += 1
        self.note(f"submit#{self._n['invocation'] + 1} runs for {ev.label()}" + _plan_text(plan))

        def done(inv: Invocation) -> None:
            self._unexpected(inv)
            if inv.error is None:
                ev.upload.owed = True
                results = [f"{r['status']}" + (f" ({r['reason']})" if r.get("reason") else "")
                           for r in inv.result.get("results", [])]
                for r in inv.result.get("results", []):
                    self.reached[f"submit: {r['status']}"] += 1
                self.note(f"  → submit returned: {', '.join(results) or 'nothing'}{_fired(inv)}")
                return
            why = "crashed" if isinstance(inv.error, Crash) else f"failed ({inv.error})"
            self.reached[f"submit: {'crash' if isinstance(inv.error, Crash) else 'retry'}"] += 1
            if ev.attempt < SUBMIT_ATTEMPTS:
                again = PendingEvent(ev.eid, ev.upload, ev.event, ev.attempt + 1)
                self.retries.append(again)
                self.note(f"  → submit {why}{_fired(inv)}; SCF will retry it")
            else:
                self.dead_letters.append(ev)
                self.stats["dead letters"] += 1
                self.note(f"  → submit {why}{_fired(inv)}; retries used up: dead-letter queue")

        self.invoke("submit", ev.label(), lambda: submitter.handle(copy.deepcopy(ev.event)), plan, done)

    # --- CI -------------------------------------------------------------------------------------------
    def job_created(self, detail: dict[str, Any]) -> dict[str, Any]:
        job = self.ci.jobs[detail["JobId"]]
        ud = decode_user_data(job.user_data)
        self.uploads_at_job[job.job_id] = len(self.uploads)
        self.stats["jobs created"] += 1
        self.note(f"  CI accepts job {job.job_id[:5]} for {job.key} ({ud.etag[:6] if ud else '?'}"
                  f", attempt {ud.attempt if ud else '?'})")
        self.checks.job_accepted(job)
        return detail

    def ci_finish(self, index: int) -> Optional[CiJob]:
        jobs = self.ci.unfinished()
        if not jobs:
            return None
        j = self.ci.finish(jobs[index % len(jobs)].job_id)
        read = "nothing (object absent)" if j.read_body is None else f"{j.read_body.decode()} ({j.read_etag[:6]})"
        self.note(f"CI runs job {j.job_id[:5]} on {j.key}: reads {read} → {j.state}")
        self.reached[f"CI job {j.state}"] += 1
        echo = self.next_id("echo") % 3 == 0
        if self.ci.by_queue(j):
            cid = self.next_id("callback")
            cb = PendingCallback(cid, j.job_id, {"Records": [self.ci.queue_message(j, f"msg{cid}", echo)]})
            self.callbacks.append(cb)
            self.note(f"  CI publishes {cb.label()} to TDMQ" + (" (echoing UserData)" if echo else ""))
        elif j.callback_url:
            cb = PendingCallback(self.next_id("callback"), j.job_id,
                                 self.ci.callback_request(j, echo_user_data=echo))
            self.callbacks.append(cb)
            self.note(f"  CI sends {cb.label()}" + (" (echoing UserData)" if echo else ""))
        return j

    def ci_lose(self, index: int) -> None:
        jobs = self.ci.unfinished()
        if jobs:
            j = jobs[index % len(jobs)]
            self.ci.lose(j.job_id)
            self.stats["jobs lost"] += 1
            self.note(f"CI loses job {j.job_id[:5]} ({j.key})")

    # --- callbacks ----------------------------------------------------------------------------------
    def deliver_callback(self, index: int, plan: Optional[Plan] = None) -> None:
        cb = self.callbacks.pop(index % len(self.callbacks))
        if "Records" in cb.event:
            self._deliver_messages(cb, index, plan or {})
            return
        handler = CallbackHandler(self.storage, self.ci_port, self.settings, self.rules)
        self.note(f"callback#{self._n['invocation'] + 1} runs for {cb.label()}" + _plan_text(plan or {}))

        def done(inv: Invocation) -> None:
            self._unexpected(inv)
            status = 0
            if inv.error is None:
                status = int(inv.result["statusCode"])
                body = json.loads(inv.result["body"])
                shown = [r.get("status", "?") for r in body.get("results", [])] or [body.get("error", "")]
                self.reached[f"callback: HTTP {status}"] += 1
                for r in body.get("results", []):
                    self.reached[f"callback: {r.get('status')}"] += 1
                self.note(f"  → callback answered {status}: {', '.join(map(str, shown))}{_fired(inv)}")
                if cb.forged and status < 400 and any(r.get("status") not in ("not-final",)
                                                      for r in body.get("results", [])):
                    self.reached["forged callback acted on (with CI's own answer)"] += 1
            else:
                self.reached["callback: no answer"] += 1
                self.note(f"  → callback gave no answer ({type(inv.error).__name__}){_fired(inv)}")
            if (status == 0 or status >= 500) and cb.attempt < CALLBACK_ATTEMPTS and not cb.forged:
                self.callbacks.append(PendingCallback(cb.cid, cb.job_id, cb.event, cb.attempt + 1))
                self.note(f"  CI will retry {cb.label()}")

        self.invoke("callback", cb.label(), lambda: handler.handle(copy.deepcopy(cb.event)), plan or {}, done)

    def _deliver_messages(self, first: PendingCallback, index: int, plan: Plan) -> None:
        """SCF's CMQ topic trigger: an odd pick merges the next pending message into the same event (SCF
        may merge several). A failed invocation is retried like any asynchronous one, then dropped."""
        batch = [first]
        if index % 2 and self.callbacks and "Records" in self.callbacks[0].event:
            batch.append(self.callbacks.pop(0))
        event = {"Records": [r for cb in batch for r in cb.event["Records"]]}
        handler = QueueDeliveryHandler(self.storage, self.ci_port, self.settings, self.rules)
        labels = " + ".join(cb.label() for cb in batch)
        self.note(f"callback#{self._n['invocation'] + 1} runs for the TDMQ message(s) {labels}" + _plan_text(plan))

        def done(inv: Invocation) -> None:
            self._unexpected(inv)
            if inv.error is None:
                shown = [r.get("status", "?") for r in inv.result.get("results", [])]
                for status in shown:
                    self.reached[f"queue delivery: {status}"] += 1
                self.note(f"  → messages handled: {', '.join(map(str, shown))}{_fired(inv)}")
                return
            self.reached["queue delivery: retry"] += 1
            again = [cb for cb in batch if cb.attempt < SUBMIT_ATTEMPTS]
            for cb in again:
                self.callbacks.append(PendingCallback(cb.cid, cb.job_id, cb.event, cb.attempt + 1))
            self.note(f"  → failed ({type(inv.error).__name__}){_fired(inv)}; SCF retries {len(again)} message(s)")

        self.invoke("callback", labels, lambda: handler.handle(copy.deepcopy(event)), plan, done)

    def duplicate_callback(self, index: int) -> None:
        cb = self.callbacks[index % len(self.callbacks)]
        dup = PendingCallback(self.next_id("callback"), cb.job_id, copy.deepcopy(cb.event), cb.attempt, cb.forged)
        self.callbacks.append(dup)
        self.note(f"{cb.label()} is sent twice; the copy is {dup.label()}")

    def drop_callback(self, index: int) -> None:
        cb = self.callbacks.pop(index % len(self.callbacks))
        self.note(f"{cb.label()} is lost")

    FORGERIES = ("no-token", "other-token", "unknown-job", "fake-verdict", "other-key")

    def forge_callback(self, kind: str, index: int) -> None:
        """A request anyone could send to the callback URL (TDMQ has none: its topic is CAM-governed)."""
        jobs = list(self.ci.jobs.values())
        if not jobs or self.settings.delivery.is_queue:
            return
        j = jobs[index % len(jobs)]
        other = jobs[(index + 1) % len(jobs)]
        token = _token(j.callback_url)
        detail = copy.deepcopy(j.detail)
        detail["Operation"].pop("UserData", None)
        query = {"t": token}
        if kind == "no-token":
            query = {}
        elif kind == "other-token":
            query = {"t": _token(other.callback_url)}
        elif kind == "unknown-job":
            detail["JobId"] = "f" * 32
        elif kind == "fake-verdict":
            # The sender claims a verdict CI never gave; only CI's own answer may count.
            detail["State"] = "Success"
            detail["Operation"]["ImageInspectResult"] = {"State": "Success", "ProcessResult": {
                "Suspicious": "true", "SuspiciousType": "FORGED"}}
        elif kind == "other-key":
            detail["Input"]["Object"] = other.key if other.key != j.key else j.key + ".x"
        body = _to_xml({"EventName": "TaskFinish", "JobsDetail": detail})
        event = http_event(CALLBACK_BASE, body)
        event["queryString"] = {k: v for k, v in query.items() if v}
        cb = PendingCallback(self.next_id("callback"), j.job_id, event, forged=kind)
        self.callbacks.append(cb)
        self.note(f"someone posts a forged {cb.label()} about job {j.job_id[:5]}")

    # --- reconcile ------------------------------------------------------------------------------------
    def reconcile(self, plan: Optional[Plan] = None) -> None:
        reconciler = Reconciler(self.storage, self.ci_port, self.settings, self.rules)
        self.note(f"reconcile#{self._n['invocation'] + 1} runs" + _plan_text(plan or {}))

        def done(inv: Invocation) -> None:
            self._unexpected(inv)
            if inv.error is None:
                s = inv.result
                counts = {k: v for k, v in s.__dict__.items() if k != "details" and v}
                for d in s.details:
                    self.reached[f"reconcile: {d['outcome']}"] += 1
                self.note(f"  → reconcile finished: {counts or 'nothing to do'}{_fired(inv)}")
            else:
                self.reached["reconcile: interrupted"] += 1
                self.note(f"  → reconcile stopped ({type(inv.error).__name__}: {inv.error}){_fired(inv)}")

        self.invoke("reconcile", "timer", reconciler.run, plan or {}, done)

    # --- quiescence ---------------------------------------------------------------------------------
    def quiesce(self, rounds: int = 12) -> None:
        """No more faults. Stalled requests finish (past their timeout they land, and the instance is
        gone), SCF's retries and never-dropped events are delivered, CI finishes every job it still has
        and its callbacks arrive, and the reconcile timer runs with time passing, until nothing is left."""
        self.note("— quiescence: no more faults; everything pending runs to its end —")
        self.faults_on = False
        while self.stalled:
            self._resume(self.stalled[0], "continue")
        for _ in range(rounds):
            while self.retries or self.events:
                self.deliver_event(0, from_retries=bool(self.retries))
            while self.ci.unfinished() or self.callbacks:
                if self.ci.unfinished():
                    self.ci_finish(0)
                while self.callbacks:
                    self.deliver_callback(0)
            if not self.markers() and not self.ci.unfinished() and not self.retries and not self.events:
                break
            self.advance(self.settings.reconcile_after_seconds + 1)
            self.reconcile()
        self.note("— quiescent —")

    def markers(self) -> list[str]:
        return [k for k, _ in self.cos.listing(self.store, f"{self.record_prefix}pending/")]

    # --- invariants -----------------------------------------------------------------------------------
    def check_step(self) -> None:
        fatal = self.checks.settle()
        if fatal:
            raise InvariantViolation(fatal, self.scenario)

    def check_quiescent(self, keys: list[str]) -> None:
        self.checks.quiescent(keys)
        self.check_step()


def _token(url: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return (parse_qs(urlsplit(url).query).get("t") or [""])[0]


def _to_xml(doc: dict[str, Any]) -> str:
    from .ci import _xml

    return _xml("Response", doc)


def _plan_text(plan: Plan) -> str:
    if not plan:
        return ""

    def where(target: Target) -> str:
        return f"call {target}" if isinstance(target, int) else f"{target[0]} #{target[1] + 1}"

    return " with faults " + ", ".join(f"{kind} at {where(t)}" for t, kind in sorted(plan.items(), key=str))


def _fired(inv: Invocation) -> str:
    return f" [faults fired: {', '.join(inv.fired)}]" if inv.fired else ""
