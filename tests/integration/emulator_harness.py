"""An in-process CI emulator over a moto object store, and raw HTTP to it signed as the real SDK signs.

The signature comes from cos-python-sdk-v5's own `CosS3Auth`, so a raw request is exactly what the SDK
would have sent except for the bytes a test chooses to break.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import urlencode

import boto3
import requests
from botocore.config import Config
from defusedxml import ElementTree
from moto.server import ThreadedMotoServer
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_auth import CosS3Auth

from devstack.emulator.cossign import Credential
from devstack.emulator.server import CiEmulator
from devstack.emulator.xmlutil import element_to_dict

REGION = "ap-guangzhou"
BUCKET = "test-1250000000"
SECRET_ID = "AKIDharness0000000000000000"
SECRET_KEY = "harness-secret-key"
TOKEN = "harness-token"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def xml(self) -> tuple[str, Any]:
        """(root tag, content as a dict) of an XML body."""
        root = ElementTree.fromstring(self.body, forbid_dtd=True)
        return root.tag, element_to_dict(root)


class Emulator:
    """A CiEmulator on loopback with its own moto server; `ci` is a signed raw-HTTP client for it."""

    def __init__(self, **config: Any):
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.s3_endpoint = f"http://{host}:{port}"
        self.s3 = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name=REGION,
                               aws_access_key_id="testing", aws_secret_access_key="testing",
                               config=Config(s3={"addressing_style": "path"}))
        try:
            self.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
        except self.s3.exceptions.BucketAlreadyOwnedByYou:
            pass  # moto keeps one backend per process: an earlier harness made it
        self.emu = CiEmulator(REGION, [Credential(SECRET_ID, SECRET_KEY, TOKEN)], self.s3_endpoint)
        self.emu.config.update(config)
        self.emu.start()
        self.ci = RawCi(self.emu.host, self.emu.port)

    def sdk(self) -> CosS3Client:
        """The real SDK, pointed at the emulator as `ciflow.ci` does it (IP/Port, no SDK retries)."""
        cfg = CosConfig(Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Token=TOKEN, Scheme="http",
                        IP=self.emu.host, Port=self.emu.port)
        return CosS3Client(cfg, retry=0)

    def stop(self) -> None:
        self.emu.stop()
        self.moto.stop()


class RawCi:
    """Raw HTTP/1.1 to the emulator, each request signed by the SDK's CosS3Auth."""

    def __init__(self, host: str, port: int, bucket: str = BUCKET):
        self.address = (host, port)
        self.host_header = f"{bucket}.ci.{REGION}.myqcloud.com"
        self._conf = CosConfig(Region=REGION, SecretId=SECRET_ID, SecretKey=SECRET_KEY, Token=TOKEN)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(*self.address, timeout=10)

    def signed_headers(self, method: str, path: str, params: Optional[dict[str, str]] = None,
                       body: bytes = b"") -> dict[str, str]:
        """The headers the SDK would send: Host, Content-Type, the token and the q-sign Authorization."""
        params = params or {}
        url = f"http://{self.host_header}{path}" + (f"?{urlencode(params)}" if params else "")
        headers = {"Host": self.host_header, "Content-Type": "application/xml", "x-ci-security-token": TOKEN}
        prepared = requests.Request(method, url, headers=headers, data=body).prepare()
        CosS3Auth(self._conf, path, params=params)(prepared)
        return {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}

    def request(self, method: str, path: str, params: Optional[dict[str, str]] = None, body: bytes = b"",
                conn: Optional[http.client.HTTPConnection] = None, raw_path: Optional[str] = None) -> Response:
        """Send one signed request; `conn` keeps the connection alive between calls.

        `raw_path` is what goes on the request line (e.g. with `%2C`), `path` what is signed."""
        own = conn is None
        c = conn or self.connection()
        try:
            target = (raw_path or path) + (f"?{urlencode(params)}" if params else "")
            c.request(method, target, body=body or None, headers=self.signed_headers(method, path, params, body))
            r = c.getresponse()
            return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            if own:
                c.close()


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CallbackReceiver:
    """A loopback HTTP server that records every POST it gets and answers 200."""

    calls: list[Received] = field(default_factory=list)
    _server: Optional[ThreadingHTTPServer] = None
    _event: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> CallbackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                return

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._event:
                    receiver.calls.append(Received(self.path, dict(self.headers.items()), body))
                    receiver._event.notify_all()
                out = json.dumps({"ok": True}).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def wait_for(self, match: Callable[[Received], bool], timeout: float = 20) -> Received:
        """The first call `match` accepts, waiting for it up to `timeout` seconds."""
        with self._event:
            if not self._event.wait_for(lambda: any(match(c) for c in self.calls), timeout):
                raise AssertionError(f"no matching callback among {len(self.calls)} received")
            return next(c for c in self.calls if match(c))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
