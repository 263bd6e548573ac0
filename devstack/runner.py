"""Invoke the functions the way SCF does.

- `FunctionHost` loads `functions/<name>.py` with the layer on the path, as SCF does with
  `/var/user` (code) and `/opt` (layers), and calls `main_handler(event, context)`.
- `AsyncInvoker` is the COS trigger: asynchronous delivery, and a function error is retried twice.
- `HttpTrigger` is the Function URL: each HTTP request becomes a Function URL event (or the legacy
  API Gateway event) and the function's response becomes the HTTP response.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import queue
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
        self._lock = threading.Lock()
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
        try:
            result = self.handler(name)(event, self.context(name, request_id))
            entry.update(ok=True, result=result)
            return result
        except Exception as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                         traceback=traceback.format_exc(limit=5))
            raise
        finally:
            entry["duration_ms"] = round((time.time() - started) * 1000, 2)
            with self._lock:
                self.invocations.append(entry)


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
                    out = trigger.on_admin(path, self.command, body)
                else:
                    out = None
                data = json.dumps(out, default=str).encode()
                self.send_response(200 if out is not None else 404)
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
