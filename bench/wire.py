"""A delay proxy on loopback that also reads the HTTP it carries, so requests are counted on the wire.

    python bench/wire.py --upstream s3=127.0.0.1:PORT --upstream ci=127.0.0.1:PORT

prints one JSON line `{"s3": port, "ci": port, "control": port}` and serves until stdin closes.

Each upstream gets a listening port on 127.0.0.1. Every byte is relayed as it arrives, delayed by D/2
on the way to the server and D/2 on the way back (a round trip costs D, like a network path with a
one-way latency of D/2): a request and its response cost D, a PUT that waits for `100 Continue` costs
2·D, and a new connection costs one more D before its first byte is delivered (the TCP handshake the
real network charges, which loopback does not). Bandwidth is unlimited.

The proxy parses the HTTP/1.1 it relays (request line, headers, Content-Length or chunked bodies,
interim 1xx answers, bodiless answers to HEAD, 204 and 304) and records one *exchange* per request:
when its first byte left the client, when its last response byte reached the client (after the
delay), its method, path, status, whether it waited for `100 Continue`, and whether it opened its
connection. Times are CLOCK_MONOTONIC, the same clock in every process of this machine, so the bench
can attribute exchanges to the invocation that was running.

The control port (HTTP): `POST /delay?ms=D`; `GET /exchanges` (JSON, `?clear=1` empties the log);
and a callback sink: any `POST /sink/...` is answered 200 and kept, `GET /callbacks?clear=1` hands the
kept requests back (CI's callbacks, as sent, without a function receiving them).

It runs in its own process so its threads cost nothing to the process whose CPU is measured.
"""

from __future__ import annotations

import argparse
import itertools
import json
import queue
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

_ids = itertools.count(1)


class Exchange:
    __slots__ = ("id", "upstream", "conn", "method", "target", "start", "sent", "end", "status", "continued",
                 "new_conn", "expect")

    def __init__(self, upstream: str, conn: int, method: str, target: str, start: float, new_conn: bool,
                 expect: bool):
        self.id = next(_ids)
        self.upstream, self.conn, self.method, self.target = upstream, conn, method, target
        self.start, self.sent, self.end = start, 0.0, 0.0
        self.status = 0
        self.continued = False
        self.new_conn = new_conn
        self.expect = expect

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}


class Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: list[Exchange] = []

    def add(self, ex: Exchange) -> None:
        with self.lock:
            self.done.append(ex)

    def take(self, clear: bool) -> list[dict[str, Any]]:
        with self.lock:
            out = [e.as_dict() for e in self.done]
            if clear:
                self.done = []
        return out


def _headers(block: bytes) -> tuple[str, dict[str, str]]:
    lines = block.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return lines[0], headers


class _Body:
    """Counts a message body off the stream: Content-Length, chunked, none, or up to the close."""

    def __init__(self, headers: dict[str, str], none: bool) -> None:
        self.chunked = not none and "chunked" in headers.get("transfer-encoding", "").lower()
        self.left = 0 if none or self.chunked else int(headers.get("content-length", "0") or 0)
        self.until_close = (not none and not self.chunked and "content-length" not in headers)
        self.state = "size"     # chunked: size | data | crlf | trailer
        self.line = b""

    def feed(self, data: bytes) -> tuple[bool, bytes]:
        """Consume body bytes; (finished, what is left over after the body)."""
        if self.until_close:
            return False, b""
        if not self.chunked:
            n = min(self.left, len(data))
            self.left -= n
            return self.left == 0, data[n:]
        i = 0
        while i < len(data):
            if self.state == "data":
                n = min(self.left, len(data) - i)
                self.left -= n
                i += n
                if self.left == 0:
                    self.state = "crlf"
                continue
            j = data.find(b"\n", i)
            if j < 0:
                self.line += data[i:]
                return False, b""
            line, self.line = (self.line + data[i:j]).rstrip(b"\r"), b""
            i = j + 1
            if self.state == "crlf":
                self.state = "size"
            elif self.state == "size":
                size = int(line.split(b";")[0] or b"0", 16)
                if size == 0:
                    self.state = "trailer"
                else:
                    self.left, self.state = size, "data"
            elif self.state == "trailer" and line == b"":
                return True, data[i:]
        return False, b""


class _Connection:
    """One client connection and its upstream: two delayed pumps, and the HTTP read off both."""

    def __init__(self, proxy: Proxy, client: socket.socket, accepted: float) -> None:
        self.proxy, self.client = proxy, client
        self.conn = next(_ids)
        self.server = socket.create_connection(proxy.upstream)
        for s in (client, self.server):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.open_at = accepted + proxy.delay  # the handshake's round trip
        self.inflight: list[Exchange] = []      # requests whose answers have not been read yet
        self.lock = threading.Lock()
        self.first = True
        self.req_buf, self.req_body, self.req_ex, self.req_start = b"", None, None, accepted
        self.resp_buf, self.resp_body = b"", None
        self.closed = 0

    def start(self) -> None:
        up: queue.Queue = queue.Queue()
        down: queue.Queue = queue.Queue()
        for target in (lambda: self._read(self.client, up, self._parse_request),
                       lambda: self._write(up, self.server),
                       lambda: self._read(self.server, down, self._parse_response),
                       lambda: self._write(down, self.client)):
            threading.Thread(target=target, daemon=True).start()

    # -- pumps --
    def _read(self, src: socket.socket, out: queue.Queue, parse: Any) -> None:
        try:
            while True:
                data = src.recv(65536)
                now = time.monotonic()
                if not data:
                    break
                finished = parse(data, now)
                out.put((max(now + self.proxy.delay / 2, self.open_at), data, finished))
        except OSError:
            pass
        out.put((time.monotonic(), b"", []))

    def _write(self, inq: queue.Queue, dst: socket.socket) -> None:
        try:
            while True:
                at, data, finished = inq.get()
                wait = at - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    break
                dst.sendall(data)
                now = time.monotonic()
                for ex in finished:
                    ex.end = now
                    self.proxy.log.add(ex)
        except OSError:
            pass
        with self.lock:
            self.closed += 1
            if self.closed == 2:
                for s in (self.client, self.server):
                    try:
                        s.close()
                    except OSError:
                        pass

    # -- HTTP, read as it passes --
    def _parse_request(self, data: bytes, now: float) -> list:
        if self.req_body is None and not self.req_buf:
            self.req_start = now  # the first bytes of a new request
        buf = self.req_buf + data
        while buf:
            if self.req_body is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                line, headers = _headers(buf[:end])
                method, _, rest = line.partition(" ")
                ex = Exchange(self.proxy.name, self.conn, method, rest.rsplit(" ", 1)[0], self.req_start,
                              self.first, "100-continue" in headers.get("expect", "").lower())
                self.first = False
                with self.lock:
                    self.inflight.append(ex)
                self.req_ex, self.req_body = ex, _Body(headers, none=False)
                self.req_body.until_close = False  # a request without a length has no body
                buf = buf[end + 4:]
            done, buf = self.req_body.feed(buf)
            if not done:
                break
            self.req_ex.sent = now
            self.req_body = self.req_ex = None
            self.req_start = now  # a pipelined request may follow in the same bytes
        self.req_buf = buf if self.req_body is None else b""
        return []

    def _parse_response(self, data: bytes, now: float) -> list:
        finished = []
        buf = self.resp_buf + data
        while buf:
            if self.resp_body is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                line, headers = _headers(buf[:end])
                buf = buf[end + 4:]
                status = int(line.split(" ", 2)[1])
                with self.lock:
                    ex = self.inflight[0] if self.inflight else None
                if ex is None:
                    continue
                if 100 <= status < 200:
                    ex.continued = ex.continued or status == 100
                    continue
                ex.status = status
                none = ex.method == "HEAD" or status in (204, 304)
                self.resp_body = _Body(headers, none)
            done, buf = self.resp_body.feed(buf)
            if done:
                with self.lock:
                    finished.append(self.inflight.pop(0))
                self.resp_body = None
            else:
                break
        self.resp_buf = buf if self.resp_body is None else b""
        return finished


class Proxy:
    def __init__(self, name: str, upstream: tuple[str, int], log: Log, delay: float = 0.0) -> None:
        self.name, self.upstream, self.log, self.delay = name, upstream, log, delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                _Connection(self, client, time.monotonic()).start()
            except OSError:
                client.close()


def _control(proxies: list[Proxy], log: Log) -> ThreadingHTTPServer:
    callbacks: list[dict[str, Any]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            clear = parse_qs(url.query).get("clear") == ["1"]
            if url.path == "/exchanges":
                self._send(log.take(clear))
            elif url.path == "/callbacks":
                with lock:
                    out = list(callbacks)
                    if clear:
                        callbacks.clear()
                self._send(out)
            else:
                self._send({"delay_ms": proxies[0].delay * 1000})

        def do_POST(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if url.path == "/delay":
                ms = float(parse_qs(url.query)["ms"][0])
                for p in proxies:
                    p.delay = ms / 1000
                self._send({"delay_ms": ms})
            else:
                with lock:
                    callbacks.append({"path": url.path, "query": url.query, "body": body.decode("utf-8", "replace"),
                                      "headers": {k.lower(): v for k, v in self.headers.items()}})
                self._send({"ok": True})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--upstream", action="append", default=[], help="name=host:port")
    ns = p.parse_args(argv)
    log = Log()
    proxies = []
    for spec in ns.upstream:
        name, _, addr = spec.partition("=")
        host, _, port = addr.rpartition(":")
        proxies.append(Proxy(name, (host, int(port)), log))
    control = _control(proxies, log)
    for px in proxies:
        threading.Thread(target=px.serve, daemon=True).start()
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(json.dumps({**{px.name: px.port for px in proxies}, "control": control.server_address[1]}), flush=True)
    sys.stdin.read()  # serve until the bench closes our stdin (or exits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
