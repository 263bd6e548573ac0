"""`make demo`: start the local stack, upload real samples, wait for every verdict, print a table."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .process import StackProcess
from .samples import Sample, demo_samples

QUARANTINE = "quarantine/"


@dataclass
class Observation:
    sample: Sample
    final_key: Optional[str] = None
    tags: Dict[str, str] = field(default_factory=dict)
    ok: bool = False
    problem: str = ""


def s3_client(env: Dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                                      response_checksum_validation="when_required"))


def upload(s3: Any, bucket: str, samples: List[Sample]) -> None:
    for s in samples:
        kwargs: Dict[str, Any] = {"Bucket": bucket, "Key": s.key, "Body": s.body}
        if s.content_type:
            kwargs["ContentType"] = s.content_type
        if s.tags:
            kwargs["Tagging"] = s.tags
        if s.metadata:
            kwargs["Metadata"] = s.metadata
        s3.put_object(**kwargs)


def _tags(s3: Any, bucket: str, key: str) -> Optional[Dict[str, str]]:
    try:
        return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
    except s3.exceptions.ClientError:
        return None
    except Exception:  # noqa: BLE001 - missing object surfaces as a generic ClientError subclass
        return None


def observe(s3: Any, bucket: str, sample: Sample) -> Observation:
    obs = Observation(sample)
    want = sample.expect_status
    expected_key = sample.expected_key(QUARANTINE)
    tags = _tags(s3, bucket, expected_key)
    if tags is None:
        obs.problem = f"{expected_key} does not exist"
        return obs
    obs.final_key, obs.tags = expected_key, tags
    if want == "SKIPPED":
        obs.ok = not any(k.startswith("ci-") for k in tags)
        obs.problem = "" if obs.ok else "was processed"
        return obs
    status = tags.get("ci-status")
    if status != want:
        obs.problem = f"ci-status={status}"
        return obs
    if want == "SUSPICIOUS":
        if tags.get("ci-suspicious-type") != sample.expect_type:
            obs.problem = f"type={tags.get('ci-suspicious-type')}"
            return obs
        if _tags(s3, bucket, sample.key) is not None:
            obs.problem = "original still present"
            return obs
    if want == "FAILED" and sample.expect_type and tags.get("ci-reason") != sample.expect_type:
        obs.problem = f"reason={tags.get('ci-reason')}"
        return obs
    obs.ok = True
    return obs


def wait_for_final(s3: Any, bucket: str, samples: List[Sample], timeout: float) -> List[Observation]:
    deadline = time.time() + timeout
    while True:
        obs = [observe(s3, bucket, s) for s in samples]
        if all(o.ok for o in obs) or time.time() > deadline:
            return obs
        time.sleep(0.25)


def _fmt_tags(tags: Dict[str, str]) -> str:
    shown = {k: v for k, v in tags.items() if k != "ci-job-id"}
    return ", ".join(f"{k}={v}" for k, v in shown.items()) or "-"


def print_table(obs: List[Observation], out: Any = sys.stdout) -> None:
    rows = [("KEY", "JOB ID", "VERDICT", "TAGS", "FINAL LOCATION", "OK")]
    for o in obs:
        status = o.tags.get("ci-status", "SKIPPED" if o.sample.expect_status == "SKIPPED" else "-")
        detail = o.tags.get("ci-suspicious-type") or o.tags.get("ci-reason") or ""
        verdict = f"{status} ({detail})" if detail else status
        rows.append((o.sample.key, o.tags.get("ci-job-id", "-"), verdict, _fmt_tags(o.tags),
                     o.final_key or "-", "yes" if o.ok else f"NO: {o.problem}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)


def run_demo(ns: Any) -> int:
    os.makedirs(".demo-out", exist_ok=True)
    log = os.path.abspath(os.path.join(".demo-out", "devstack.log"))
    print("Starting the local stack (object store, CI emulator, SCF runner)...")
    with StackProcess(log_path=log) as env:
        s3 = s3_client(env)
        bucket = env["CIFLOW_DEV_BUCKET"]
        samples = demo_samples()
        print(f"Uploading {len(samples)} files to {bucket} at {env['AWS_ENDPOINT_URL']} ...")
        started = time.time()
        upload(s3, bucket, samples)
        obs = wait_for_final(s3, bucket, samples, ns.timeout)
        took = time.time() - started
    print()
    print_table(obs)
    failed = [o for o in obs if not o.ok]
    print(f"\n{len(obs) - len(failed)}/{len(obs)} objects reached their expected final state in {took:.1f}s."
          f" Stack log: {os.path.relpath(log)}")
    if failed:
        print("Demo FAILED: " + "; ".join(f"{o.sample.key}: {o.problem}" for o in failed))
        return 1
    return 0
