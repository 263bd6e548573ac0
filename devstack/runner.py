"""Invoke the functions the way SCF does.

- `FunctionHost` loads `functions/<name>.py` with the layer on the path, as SCF does with
  `/var/user` (code) and `/opt` (layers), and calls `main_handler(event, context)`.
- `WorkerFunctionHost` (`--function-python`) runs each function instead in worker processes of
  another interpreter, from packaged artifacts laid out as SCF lays them out (`worker.py`).
- `AsyncInvoker` is the COS trigger: asynchronous delivery, and a function error is retried twice.
- `HttpTrigger` is the Function URL: each HTTP request becomes a Function URL event (or the legacy
  API Gateway event) and the function's response becomes the HTTP response.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.util
import json
import os
import platform
import queue
import select
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "worker.py"


@dataclass
class ScfContext:
    """The fields SCF's Python context carries (see platform.md §5)."""

    request_id: str
    function_name: str
    function_version: str = "$LATEST"
    namespace: str = "default"
    memory_limit_in_mb: int = 256
    time_limit_in_ms: int = 30000
    tencentcloud_region: str = ""
    tencentcloud_appid: str = ""


class FunctionHost:
    def __init__(self, region: str, appid: str, context_style: str = "object"):
        self.region = region
        self.appid = appid
        self.context_style = context_style
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self.invocations: list[dict[str, Any]] = []
        # Called with each finished invocation's record (`make dev` narrates them).
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()
        self.runtime: dict[str, Any] = {"python": platform.python_version(), "executable": sys.executable}
        # Seconds added to a function's clock (`time.time()` as the function's own code reads it).
        self.clock_offsets: dict[str, float] = {}
        self._offset_pool: Optional[WorkerPool] = None
        for p in (str(ROOT / "layers" / "ciflow"), str(ROOT / "functions")):
            if p not in sys.path:
                sys.path.insert(0, p)

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        if name not in self._handlers:
            spec = importlib.util.spec_from_file_location(f"scf_{name}", ROOT / "functions" / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            self._handlers[name] = module.main_handler
        return self._handlers[name]

    def context(self, name: str, request_id: str) -> Any:
        ctx = ScfContext(request_id, name, tencentcloud_region=self.region, tencentcloud_appid=self.appid)
        return ctx.__dict__.copy() if self.context_style == "dict" else ctx

    def invoke(self, name: str, event: Any, request_id: Optional[str] = None, attempt: int = 1) -> Any:
        request_id = request_id or str(uuid.uuid4())
        started = time.time()
        entry: dict[str, Any] = {"function": name, "request_id": request_id, "attempt": attempt,
                                 "started": started}
        offset = float(self.clock_offsets.get(name) or 0.0)
        if offset:
            entry["clock_offset"] = offset
        try:
            result = self._run(name, event, self.context(name, request_id), offset)
            entry.update(ok=True, result=result)
            return result
        except Exception as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                         traceback=getattr(exc, "remote_traceback", None) or traceback.format_exc(limit=5))
            raise
        finally:
            entry["duration_ms"] = round((time.time() - started) * 1000, 2)
            entry["runtime"] = self._offset_pool.hello if offset and self._offset_pool else self.runtime
            with self._lock:
                self.invocations.append(entry)
            for observe in list(self.observers):
                try:
                    observe(entry)
                except Exception:  # noqa: BLE001 - narration must never break an invocation
                    traceback.print_exc()

    def _run(self, name: str, event: Any, context: Any, clock_offset: float) -> Any:
        if not clock_offset:
            return self.handler(name)(event, context)
        # In-process functions share this process's clock, so a function whose clock runs ahead or behind
        # runs in a worker process of this interpreter, from the source tree, with its clock offset there.
        with self._lock:
            if self._offset_pool is None:
                self._offset_pool = WorkerPool(functools.partial(_Worker.from_source, ROOT), self.context_style)
        return self._offset_pool.call(name, event, context, clock_offset)

    def close(self) -> None:
        """Release the function instances (in-process functions hold none)."""
        with self._lock:
            pool, self._offset_pool = self._offset_pool, None
        if pool is not None:
            pool.close()


class FunctionError(Exception):
    """The function raised (or failed to initialise) in its worker process."""

    def __init__(self, message: str, remote_traceback: str = ""):
        super().__init__(message)
        self.remote_traceback = remote_traceback


def scf_environment(root: Path) -> dict[str, str]:
    """This process's environment as a function under `root` sees it: `root/var/user` and `root/opt`
    on PYTHONPATH, and nothing that would leak this machine's Python or virtualenv into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=f"{root / 'var' / 'user'}{os.pathsep}{root / 'opt'}", TENCENTCLOUD_RUNENV="SCF",
               PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    return env


class _Worker:
    """One function instance: a `worker.py` process serving one invocation at a time."""

    def __init__(self, command: list[str], env: dict[str, str], timeout: float):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True,
                                     encoding="utf-8")
        self.hello = self._read(timeout)  # which Python and which ciflow the instance runs

    @classmethod
    def packaged(cls, python: str, root: Path, name: str, timeout: float = 120) -> _Worker:
        """From packaged artifacts under `root`. -S: no site-packages of that interpreter, so every
        dependency must come from the layers."""
        return cls([python, "-S", str(WORKER), str(root / "var" / "user"), name], scf_environment(root), timeout)

    @classmethod
    def from_source(cls, root: Path, name: str, timeout: float = 120) -> _Worker:
        """From the source tree, with this interpreter and its site-packages."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(PYTHONPATH=str(root / "layers" / "ciflow"), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
        return cls([sys.executable, str(WORKER), str(root), name], env, timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise FunctionError(f"function instance {'timed out' if not ready else 'exited'} "
                                f"(exit code {self.proc.poll()})")
        return json.loads(line)

    def call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def stop(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class WorkerPool:
    """Function instances in worker processes. Like SCF, an instance serves one invocation at a time, and
    concurrent invocations get more instances. A function error or timeout is raised as FunctionError."""

    def __init__(self, spawn: Callable[[str], _Worker], context_style: str, timeout: float = 120):
        self.spawn = spawn
        self.context_style = context_style
        self.timeout = timeout
        self.hello: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._idle: dict[str, list[_Worker]] = {}
        self._workers: list[_Worker] = []

    def call(self, name: str, event: Any, context: Any, clock_offset: float = 0.0) -> Any:
        fields = context if isinstance(context, dict) else dataclasses.asdict(context)
        with self._lock:
            idle = self._idle.setdefault(name, [])
            worker = idle.pop() if idle else None
        if worker is None:
            worker = self.spawn(name)
            with self._lock:
                self._workers.append(worker)
                self.hello = worker.hello
        request = {"event": event, "context": fields, "context_style": self.context_style}
        if clock_offset:
            request["clock_offset"] = clock_offset
        try:
            answer = worker.call(request, self.timeout)
        except Exception:
            worker.stop()
            raise
        with self._lock:
            self._idle.setdefault(name, []).append(worker)
        if not answer.get("ok"):
            raise FunctionError(answer.get("error", "function error"), answer.get("traceback", ""))
        return answer.get("result")

    def close(self) -> None:
        with self._lock:
            workers, self._workers, self._idle = self._workers, [], {}
        for worker in workers:
            worker.stop()


class WorkerFunctionHost(FunctionHost):
    """Functions from packaged artifacts under `root` (`var/user`, `opt`), run by `python` in worker
    processes (`WorkerPool`), so retries work as before."""

    def __init__(self, region: str, appid: str, context_style: str, python: str, root: str,
                 timeout: float = 120):
        super().__init__(region, appid, context_style)
        self.python = python
        self.root = Path(root).resolve()
        self.timeout = timeout
        self.pool = WorkerPool(lambda name: _Worker.packaged(self.python, self.root, name, self.timeout),
                               context_style, timeout)

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        return functools.partial(self.pool.call, name)

    def _run(self, name: str, event: Any, context: Any, clock_offset: float) -> Any:
        try:
            return self.pool.call(name, event, context, clock_offset)
        finally:
            self.runtime = self.pool.hello or self.runtime

    def close(self) -> None:
        self.pool.close()
        super().close()


class AsyncInvoker:
    """COS → submit: asynchronous, at-least-once, function errors retried `retries` times."""

    def __init__(self, host: FunctionHost, function: str, retries: int = 2, retry_delay: float = 0.3,
                 workers: int = 4, copies: int = 1):
        self.host = host
        self.function = function
        self.retries = retries
        self.retry_delay = retry_delay
        self.copies = copies
        self.events: list[dict[str, Any]] = []
        self._queue: queue.Queue[Optional[dict[str, Any]]] = queue.Queue()
        self._pending = 0
        self._cv = threading.Condition()
        self._threads = [threading.Thread(target=self._work, name=f"scf-async-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def deliver(self, event: dict[str, Any]) -> None:
        """Accept an event (as COS hands it to SCF) for asynchronous invocation."""
        request_id = str(uuid.uuid4())
        with self._cv:
            self.events.append({"request_id": request_id, "event": event, "time": time.time(),
                                "copies": self.copies})
            self._pending += self.copies
        for _ in range(self.copies):
            self._queue.put({"request_id": request_id, "event": event})

    def idle(self, timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: self._pending == 0, timeout)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            for attempt in range(1, self.retries + 2):
                try:
                    self.host.invoke(self.function, item["event"], item["request_id"], attempt)
                    break
                except Exception:  # noqa: BLE001 - SCF retries any function error
                    if attempt <= self.retries:
                        time.sleep(self.retry_delay * attempt)
            with self._cv:
                self._pending -= 1
                self._cv.notify_all()


class Timer:
    """A timer trigger: invokes `function` every `interval` seconds with SCF's timer event."""

    def __init__(self, host: FunctionHost, function: str, interval: float, name: str = "reconcile"):
        self.host = host
        self.function = function
        self.interval = interval
        self.name = name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"scf-timer-{name}", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def fire(self) -> Any:
        event = {"Type": "Timer", "TriggerName": self.name,
                 "Time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Message": ""}
        return self.host.invoke(self.function, event)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.fire()
            except Exception:  # noqa: BLE001, S110 - the host logged the failed run; the next one retries
                pass


def function_url_event(method: str, path: str, query: str, headers: dict[str, str], body: bytes,
                       remote: str, shape: str = "function-url") -> dict[str, Any]:
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode(), True
    q = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(query, keep_blank_values=True).items()}
    hdrs = {k.lower(): v for k, v in headers.items()}
    if shape == "apigw":
        return {"requestContext": {"serviceId": "service-local", "path": path, "httpMethod": method,
                                   "requestId": str(uuid.uuid4()), "sourceIp": remote, "stage": "release"},
                "headers": hdrs, "body": text, "isBase64Encoded": b64, "pathParameters": {},
                "queryStringParameters": q, "headerParameters": {}, "stageVariables": {"stage": "release"},
                "path": path, "queryString": q, "httpMethod": method}
    hdrs["x-scf-remote-addr"] = remote
    return {"body": text, "headers": hdrs, "httpMethod": method, "path": path, "queryString": q,
            "isBase64Encoded": b64}


class HttpTrigger:
    """A Function URL on loopback for one function."""

    def __init__(self, host: FunctionHost, function: str, shape: str = "function-url",
                 bind: str = "127.0.0.1", port: int = 0):
        self.fhost = host
        self.function = function
        self.shape = shape
        self.bind = bind
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self._server: Optional[ThreadingHTTPServer] = None
        # Extra loopback-only admin paths under /_devstack/ (set by the stack).
        self.on_admin: Optional[Callable[[str, str, bytes], Any]] = None
        self.invoker: Optional[AsyncInvoker] = None  # exposes delivered COS events under /_devstack/events

    @property
    def url(self) -> str:
        return f"http://{self.bind}:{self.port}/"

    def start(self) -> None:
        trigger = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def _handle(self) -> None:
                parts = urlsplit(self.path)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                if parts.path.startswith("/_devstack/"):
                    return self._admin(parts.path, body)
                event = function_url_event(self.command, parts.path, parts.query, dict(self.headers.items()),
                                           body, self.client_address[0], trigger.shape)
                try:
                    resp = trigger.fhost.invoke(trigger.function, event)
                    status = int(resp.get("statusCode", 200))
                    out = resp.get("body", "") or ""
                    data = base64.b64decode(out) if resp.get("isBase64Encoded") else str(out).encode()
                    headers = resp.get("headers") or {}
                except Exception:  # noqa: BLE001 - an unhandled function error is a 502 at the URL
                    status, data, headers = 502, b'{"error":"function error"}', {"Content-Type": "application/json"}
                trigger.requests.append({"path": parts.path, "status": status, "time": time.time()})
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() != "content-length":
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return None

            def _admin(self, path: str, body: bytes) -> None:
                if path == "/_devstack/invocations":
                    out: Any = {"invocations": trigger.fhost.invocations}
                elif path == "/_devstack/events" and trigger.invoker is not None:
                    out = {"events": [{"request_id": e["request_id"], "copies": e["copies"], "time": e["time"],
                                       "keys": [r.get("cos", {}).get("cosObject", {}).get("key")
                                                for r in e["event"].get("Records", [])]}
                                      for e in trigger.invoker.events]}
                elif trigger.on_admin is not None:
                    try:
                        out = trigger.on_admin(path, self.command, body)
                    except ValueError as exc:  # a bad setting: say which, change nothing
                        return self._answer(400, {"error": str(exc)})
                else:
                    out = None
                return self._answer(200 if out is not None else 404, out)

            def _answer(self, status: int, out: Any) -> None:
                data = json.dumps(out, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_DELETE = _handle  # noqa: N815

        self._server = ThreadingHTTPServer((self.bind, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="scf-url", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
