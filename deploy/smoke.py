"""`make smoke`: check a deployed ciflow end to end with two uploads.

It uploads a clean PNG and a PNG with a ZIP archive appended to the watched prefix of the bucket in
`.env`, through COS's S3 endpoint (`https://cos.<region>.myqcloud.com`, virtual-hosted, SigV4) with
the deployer's keys, then waits for the verdicts: the clean image tagged `ci-status=CLEAN` in place,
the polyglot tagged `ci-status=SUSPICIOUS` under the quarantine prefix. Without credentials or a
bucket it says what is missing and exits 0, so it is safe to run anywhere.

    python -m deploy.smoke [--endpoint URL] [--timeout S] [--env-file PATH]
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import struct
import sys
import time
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from . import dotenv

REQUIRED = ["TENCENT_SECRET_ID", "TENCENT_SECRET_KEY", "CIFLOW_BUCKET", "CIFLOW_REGION"]


# --- the two uploads -----------------------------------------------------------------------------

def png(width: int = 16, height: int = 16) -> bytes:
    """A small, valid RGB PNG (stdlib only)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 16 % 256, y * 16 % 256, 160))
                    for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


def zip_archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("payload.txt", (2020, 1, 1, 0, 0, 0)), b"ciflow smoke test payload\n" * 8)
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    key: str
    body: bytes
    status: str
    location: str  # where the object must end up


def cases(prefix: str, quarantine_prefix: str, run_id: str) -> list[Case]:
    base = f"{prefix}ciflow-smoke/{run_id}/"
    return [Case(f"{base}clean.png", png(), "CLEAN", f"{base}clean.png"),
            Case(f"{base}polyglot.png", png() + zip_archive(), "SUSPICIOUS", f"{quarantine_prefix}{base}polyglot.png")]


# --- talking to COS ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    bucket: str
    region: str
    endpoint: str
    secret_id: str
    secret_key: str
    token: Optional[str] = None


def target_from_env(env: dict[str, str], endpoint: Optional[str] = None) -> Optional[Target]:
    if dotenv.missing(env, REQUIRED):
        return None
    region = env["CIFLOW_REGION"].strip()
    return Target(env["CIFLOW_BUCKET"].strip(), region, endpoint or f"https://cos.{region}.myqcloud.com",
                  env["TENCENT_SECRET_ID"].strip(), env["TENCENT_SECRET_KEY"].strip(),
                  env.get("TENCENT_TOKEN", "").strip() or None)


def s3_client(t: Target) -> Any:
    """boto3 on COS: virtual-hosted addressing (path-style only for an IP endpoint such as the local stack)."""
    import boto3
    from botocore.config import Config

    host = urlsplit(t.endpoint).hostname or ""
    try:
        ipaddress.ip_address(host)
        style = "path"
    except ValueError:
        style = "path" if host == "localhost" else "virtual"
    config = Config(region_name=t.region, signature_version="s3v4", s3={"addressing_style": style},
                    request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", endpoint_url=t.endpoint, aws_access_key_id=t.secret_id,
                                          aws_secret_access_key=t.secret_key, aws_session_token=t.token,
                                          config=config)


def status_at(s3: Any, bucket: str, key: str) -> Optional[str]:
    """The object's ci-status tag; None when it has none or does not exist."""
    from botocore.exceptions import ClientError

    try:
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    except ClientError:
        return None
    return next((t["Value"] for t in tags if t["Key"] == "ci-status"), None)


def run(s3: Any, bucket: str, todo: list[Case], timeout: float, poll: float = 3.0,
        log: Callable[[str], None] = print) -> bool:
    """Upload every case, then wait until each has its expected status at its expected location."""
    for case in todo:
        s3.put_object(Bucket=bucket, Key=case.key, Body=case.body, ContentType="image/png")
        log(f"uploaded  {case.key} ({len(case.body)} bytes)")
    pending = list(todo)
    deadline = time.monotonic() + timeout
    while pending:
        for case in list(pending):
            if status_at(s3, bucket, case.location) == case.status:
                log(f"ok        {case.location}: ci-status={case.status}")
                pending.remove(case)
        if pending and time.monotonic() > deadline:
            for case in pending:
                have, source = status_at(s3, bucket, case.location), status_at(s3, bucket, case.key)
                log(f"TIMEOUT   {case.location}: want ci-status={case.status}, have {have!r} "
                    f"(the upload {case.key} has {source!r})")
            return False
        if pending:
            time.sleep(poll)
    return True


def watched_and_quarantine() -> tuple[str, str]:
    """The first watched prefix and the quarantine prefix of the bundled rules (what the functions use)."""
    from ciflow.rules import parse_rules
    from ciflow.settings import DEFAULT_RULES_FILE

    rules = parse_rules(Path(DEFAULT_RULES_FILE).read_text(encoding="utf-8"), DEFAULT_RULES_FILE)
    return rules.watched_prefixes[0], rules.quarantine_prefix


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.smoke", description=__doc__.split("\n\n")[0])
    p.add_argument("--endpoint", help="S3 endpoint (default https://cos.<region>.myqcloud.com)")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for both verdicts")
    p.add_argument("--poll", type=float, default=3.0, help="seconds between tag checks")
    p.add_argument("--env-file", type=Path, default=dotenv.ENV_FILE)
    ns = p.parse_args(argv)
    env = dotenv.load(ns.env_file)
    target = target_from_env(env, ns.endpoint)
    if target is None:
        absent = dotenv.missing(env, REQUIRED)
        print(f"smoke: skipped, nothing to test against: {', '.join(absent)} not set. Put them in "
              f"{ns.env_file.name} (see .env.example) to check a deployed stack.")
        return 0
    prefix, quarantine = watched_and_quarantine()
    print(f"smoke: bucket {target.bucket} at {target.endpoint}")
    ok = run(s3_client(target), target.bucket, cases(prefix, quarantine, uuid.uuid4().hex[:12]),
             ns.timeout, ns.poll)
    print("smoke: passed" if ok else "smoke: FAILED (see the function logs in the SCF console)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
