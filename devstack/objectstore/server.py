"""The object store: moto's S3 behind COS's rules (`cos.py`), on cheroot, emitting a COS event per create.

Requests use path-style addressing (`http://127.0.0.1:<port>/<bucket>/<key>`), which is what boto3 and
the AWS CLI pick for an IP endpoint. Events are shaped like COS trigger events (`events.py`) and handed
to `on_event` after the response has been produced.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from .cos import CosLayer, Hold, versioning_status
from .events import Created, cos_event
from .switches import VERSIONING, Faults, Switches, as_dict


class ObjectStore:
    """moto's S3 on loopback with COS's rules, emitting COS events through `on_event(event_dict)`."""

    def __init__(self, region: str, on_event: Callable[[dict[str, Any]], None], key_encoding: str = "raw",
                 host: str = "127.0.0.1", port: int = 0, switches: Optional[Switches] = None,
                 state_prefix: str = ".ciflow/"):
        self.region = region
        self.on_event = on_event
        self.switches = switches or Switches()
        if key_encoding != self.switches.key_encoding:
            self.switches.update({"key_encoding": key_encoding})
        self.faults = Faults()
        self.state_prefix = state_prefix
        self.host = host
        self.port = port
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None
        self._encode_toggle = 0
        self._toggle_lock = threading.Lock()
        self.layer: Optional[CosLayer] = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- settings --------------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        return {**as_dict(self.switches), **as_dict(self.faults)}

    def configure(self, values: dict[str, Any]) -> None:
        """Change switches and faults; ValueError (and nothing changed) when any value is bad."""
        switch_names, fault_names = set(as_dict(self.switches)), set(as_dict(self.faults))
        unknown = set(values) - switch_names - fault_names
        if unknown:
            raise ValueError(f"unknown object store setting(s) {', '.join(sorted(unknown))}; known: "
                             f"{', '.join(sorted(switch_names | fault_names))}")
        trial_switches, trial_faults = Switches(**as_dict(self.switches)), Faults(**as_dict(self.faults))
        trial_switches.update({k: v for k, v in values.items() if k in switch_names})
        trial_faults.update({k: v for k, v in values.items() if k in fault_names})
        for k in switch_names & set(values):
            setattr(self.switches, k, getattr(trial_switches, k))
        for k in fault_names & set(values):
            setattr(self.faults, k, getattr(trial_faults, k))

    def stalled(self) -> list[dict[str, Any]]:
        """Writes held by an injected stall right now."""
        if self.layer is None:
            return []
        with self.layer._faults_lock:
            return [{"kind": k, "bucket": b, "key": key, "count": n} for (k, b, key), n in self.layer.stalled.items()]

    def holds(self) -> list[dict[str, Any]]:
        """One-shot holds not yet met."""
        if self.layer is None:
            return []
        with self.layer._faults_lock:
            return [as_dict(h) for h in self.layer.holds]

    def history(self, bucket: str = "", prefix: str = "") -> list[dict[str, Any]]:
        """What the store saw happen to each key of `bucket` under `prefix` (`history.History.snapshot`)."""
        if self.layer is None:
            return []
        return self.layer.history.snapshot(bucket, prefix)

    def hold_tag_write(self, bucket: str, key: str, seconds: float, match: str = "") -> None:
        """Hold the next PUT ?tagging of `key` whose body matches the regex `match` for `seconds`; it is then
        applied to whatever the key holds by that time."""
        import re

        if self.layer is None:
            raise ValueError("the object store is not running")
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 < seconds <= 600:
            raise ValueError(f"seconds: expected 0 < seconds <= 600, got {seconds!r}")
        try:
            re.compile(match)
        except (re.error, TypeError):
            raise ValueError(f"match: not a regular expression: {match!r}") from None
        with self.layer._faults_lock:
            self.layer.holds.append(Hold(bucket, key, float(seconds), match))

    # --- buckets ---------------------------------------------------------------------------------
    def set_versioning(self, bucket: str, status: str, client: Any = None) -> None:
        """Turn versioning on (Enabled) or pause it (Suspended) over the S3 API, as a user would. Like COS,
        a bucket whose versioning was ever on stays versioned; Suspended is reached through Enabled."""
        if status not in VERSIONING:
            raise ValueError(f"versioning for {bucket}: expected one of {', '.join(VERSIONING)}, got {status!r}")
        s3 = client or self.client()
        if status == "Suspended" and versioning_status(bucket) is None:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})

    def versioning(self, bucket: str) -> Optional[str]:
        return versioning_status(bucket)

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=self.region,
                            aws_access_key_id="devstack", aws_secret_access_key="devstack")

    # --- events ----------------------------------------------------------------------------------
    def _on_create(self, bucket: str, key: str, event_name: str, made: Created, info: dict[str, Any]) -> None:
        encoding = self.switches.key_encoding
        if encoding == "mixed":
            with self._toggle_lock:
                self._encode_toggle ^= 1
                encoding = "url" if self._encode_toggle else "raw"
        try:
            event = cos_event(bucket, self.region, key, made.size, made.meta, event_name, info["source_ip"],
                              encoding, info["auth"], form=self.switches.event_form, etag=made.etag,
                              version_id=made.version_id, storage_class=made.storage_class)
        except ValueError:
            return  # not a <name>-<appid> bucket: COS could not have a trigger on it
        self.on_event(event)

    # --- server ----------------------------------------------------------------------------------
    def start(self) -> None:
        from cheroot import wsgi
        from moto.server import DomainDispatcherApplication, create_backend_app

        self.layer = CosLayer(DomainDispatcherApplication(create_backend_app), self._on_create, self.switches,
                              self.faults, self.state_prefix)
        # cheroot keeps HTTP/1.1 connections alive, as COS does (werkzeug's development server closes
        # every connection, charging clients a TCP handshake per request) and sends header names as given.
        self._server = wsgi.Server((self.host, self.port), self.layer, numthreads=8,
                                   server_name="ciflow-objectstore", timeout=120)
        self._server.prepare()
        self.port = self._server.bind_addr[1]
        self._thread = threading.Thread(target=self._server.serve, name="objectstore", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
