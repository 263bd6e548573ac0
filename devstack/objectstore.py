"""The object store: moto's S3 server, wrapped so every successful object create emits a COS event.

Requests use path-style addressing (`http://127.0.0.1:<port>/<bucket>/<key>`), which is what boto3
and the AWS CLI pick for an IP endpoint. Events are shaped like COS trigger events
(`../shared/platform.md` §1) and handed to `on_event` after the response has been produced.
"""

from __future__ import annotations

import io
import random
import re
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, quote

from ciflow.regions import SHORT_TO_FULL

FULL_TO_SHORT = {v: k for k, v in SHORT_TO_FULL.items()}
# Sub-resources whose PUT/POST does not create an object.
NON_CREATE_QUERY = {"tagging", "acl", "retention", "legal-hold", "uploads", "partNumber", "restore",
                    "select", "torrent", "attributes", "delete"}
BUCKET_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*)-(?P<appid>\d{5,})$")


def split_bucket(bucket: str) -> tuple[str, str]:
    """`photos-1250000000` → (`photos`, `1250000000`)."""
    m = BUCKET_RE.match(bucket)
    if not m:
        raise ValueError(f"bucket {bucket!r} is not named <name>-<appid>")
    return m.group("name"), m.group("appid")


def cos_event(bucket: str, region: str, key: str, size: int, meta: dict[str, str], event_name: str,
              source_ip: str = "127.0.0.1", key_encoding: str = "raw", auth: str = "") -> dict[str, Any]:
    """A COS trigger event for one object, as COS sends it."""
    name, appid = split_bucket(bucket)
    short = FULL_TO_SHORT.get(region, region)
    event_key = quote(key, safe="/") if key_encoding == "url" else key
    return {"Records": [{
        "cos": {
            "cosSchemaVersion": "1.0",
            "cosObject": {
                "url": f"http://{bucket}.cos.{region}.myqcloud.com/{quote(key, safe='/')}",
                "meta": meta,
                "vid": "",
                "key": f"/{appid}/{name}/{event_key}",
                "size": size,
            },
            "cosBucket": {"region": short, "name": name, "appid": appid},
            "cosNotificationId": "unkown",
        },
        "event": {
            "eventName": event_name,
            "eventVersion": "1.0",
            "eventTime": int(time.time()),
            "eventSource": "qcs::cos",
            "requestParameters": {"requestSourceIP": source_ip,
                                  "requestHeaders": {"Authorization": auth}},
        },
    }]}


def _multipart_key(environ: dict[str, Any], body: bytes) -> Optional[str]:
    from werkzeug.formparser import parse_form_data

    env = dict(environ)
    env["wsgi.input"] = io.BytesIO(body)
    _, form, files = parse_form_data(env)
    key = form.get("key")
    if key and "${filename}" in key:
        f = next(iter(files.values()), None)
        key = key.replace("${filename}", f.filename if f is not None and f.filename else "")
    return key


class EventingApp:
    """WSGI middleware around moto that recognises object creates and reports them."""

    def __init__(self, app: Callable[..., Any], on_create: Callable[[str, str, str, dict[str, Any]], None],
                 faults: Optional[dict[str, float]] = None):
        self.app = app
        self.on_create = on_create
        self.faults = faults if faults is not None else {}

    def _injected(self, method: str, query: dict[str, Any], environ: dict[str, Any],
                  start_response: Callable[..., Any]) -> Optional[list[bytes]]:
        """Fail a share of tagging and copy calls, the ways COS fails them."""
        if method != "PUT":
            return None
        if "tagging" in query and random.random() < self.faults.get("tagging_fail_rate", 0.0):
            body = b"<Error><Code>SlowDown</Code><Message>injected fault</Message></Error>"
            start_response("503 Service Unavailable", [("Content-Type", "application/xml"),
                                                       ("Content-Length", str(len(body)))])
            return [body]
        if environ.get("HTTP_X_AMZ_COPY_SOURCE") and random.random() < self.faults.get("copy_fail_rate", 0.0):
            # COS can answer a failed copy with 200 and an <Error> body; half the faults do that.
            body = b"<Error><Code>InternalError</Code><Message>injected fault</Message></Error>"
            status = "200 OK" if random.random() < 0.5 else "500 Internal Server Error"
            start_response(status, [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
            return [body]
        return None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # moto reads the undecoded path from RAW_URI (werkzeug's and gunicorn's name); cheroot calls it
        # REQUEST_URI. Without it moto would decode the path a second time ("%2520" → " ").
        environ.setdefault("RAW_URI", environ.get("REQUEST_URI", ""))
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        parts = path.lstrip("/").split("/", 1)
        bucket = parts[0]
        # PATH_INFO is already percent-decoded, as latin-1 text of the UTF-8 bytes (PEP 3333).
        key = parts[1].encode("latin-1").decode("utf-8", "replace") if len(parts) > 1 else ""
        kind: Optional[str] = None
        post_body: Optional[bytes] = None
        if method == "PUT" and key and not (NON_CREATE_QUERY & set(query)):
            kind = "Copy" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "Put"
        elif method == "POST" and key and "uploadId" in query:
            kind = "CompleteMultipartUpload"
        elif method == "POST" and not key and "multipart/form-data" in environ.get("CONTENT_TYPE", ""):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            post_body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(post_body)
            kind = "Post"
        injected = self._injected(method, query, environ, start_response)
        if injected is not None:
            return injected
        status_box: dict[str, str] = {}

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            status_box["status"] = status
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        body = b"".join(self.app(environ, capture))
        ok = status_box.get("status", "500")[:1] == "2" and b"<Error>" not in body[:512]
        if kind and ok:
            if kind == "Post":
                key = _multipart_key(environ, post_body or b"") or ""
            if key:
                info = {"source_ip": environ.get("REMOTE_ADDR", "127.0.0.1"),
                        "auth": environ.get("HTTP_AUTHORIZATION", "")[:64]}
                self.on_create(bucket, key, f"cos:ObjectCreated:{kind}", info)
        return [body]


class ObjectStore:
    """moto's S3 on loopback, emitting COS events through `on_event(event_dict)`."""

    def __init__(self, region: str, on_event: Callable[[dict[str, Any]], None], key_encoding: str = "raw",
                 host: str = "127.0.0.1", port: int = 0):
        self.region = region
        self.on_event = on_event
        self.key_encoding = key_encoding
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self._encode_toggle = 0
        self.faults: dict[str, float] = {"tagging_fail_rate": 0.0, "copy_fail_rate": 0.0}

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _object_info(self, bucket: str, key: str) -> tuple[int, dict[str, str]]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        obj = backend.get_object(bucket, key)
        if obj is None:
            return 0, {}
        meta = {"x-cos-request-id": uuid.uuid4().hex}
        for k, v in (obj.metadata or {}).items():
            lk = k.lower()
            if lk == "content-type":
                meta["Content-Type"] = v
            elif lk.startswith("x-amz-meta-"):
                meta["x-cos-meta-" + lk[len("x-amz-meta-"):]] = v
        meta.setdefault("Content-Type", "")
        return int(obj.size), meta

    def _on_create(self, bucket: str, key: str, event_name: str, info: dict[str, Any]) -> None:
        try:
            size, meta = self._object_info(bucket, key)
        except Exception:  # noqa: BLE001 - the event still goes out, as COS would send it
            size, meta = 0, {}
        encoding = self.key_encoding
        if encoding == "mixed":
            self._encode_toggle ^= 1
            encoding = "url" if self._encode_toggle else "raw"
        try:
            event = cos_event(bucket, self.region, key, size, meta, event_name, info["source_ip"], encoding,
                              info["auth"])
        except ValueError:
            return  # not a <name>-<appid> bucket: COS could not have a trigger on it
        self.on_event(event)

    def start(self) -> None:
        from cheroot import wsgi
        from moto.server import DomainDispatcherApplication, create_backend_app

        app = EventingApp(DomainDispatcherApplication(create_backend_app), self._on_create, self.faults)
        # cheroot keeps HTTP/1.1 connections alive, as COS does (werkzeug's development server closes
        # every connection, charging clients a TCP handshake per request) and sends header names as given.
        self._server = wsgi.Server((self.host, self.port), app, numthreads=8, server_name="ciflow-objectstore",
                                   timeout=120)
        self._server.prepare()
        self.port = self._server.bind_addr[1]
        self._thread = threading.Thread(target=self._server.serve, name="objectstore", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
