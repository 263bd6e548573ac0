"""`make demo`: start the local stack, upload real samples, wait for every verdict, print a table."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .process import StackProcess
from .samples import Sample, demo_samples, media_samples, tdmq_samples

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


def upload(s3: Any, bucket: str, samples: List[Sample]) -> Dict[str, str]:
    """Upload every sample; returns key → ETag."""
    etags = {}
    for s in samples:
        kwargs: Dict[str, Any] = {"Bucket": bucket, "Key": s.key, "Body": s.body}
        if s.content_type:
            kwargs["ContentType"] = s.content_type
        if s.tags:
            kwargs["Tagging"] = s.tags
        if s.metadata:
            kwargs["Metadata"] = s.metadata
        etags[s.key] = s3.put_object(**kwargs)["ETag"].strip('"')
    return etags


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
    if want == "SUSPICIOUS" and tags.get("ci-suspicious-type") != sample.expect_type:
        obs.problem = f"type={tags.get('ci-suspicious-type')}"
        return obs
    if want == "FAILED" and sample.expect_type and tags.get("ci-reason") != sample.expect_type:
        obs.problem = f"reason={tags.get('ci-reason')}"
        return obs
    for k, v in (sample.expect_tags or {}).items():
        if tags.get(k) != v:
            obs.problem = f"{k}={tags.get(k)}"
            return obs
    if expected_key != sample.key and _tags(s3, bucket, sample.key) is not None:
        obs.problem = "original still present"
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


def _print_rows(rows: List[tuple], out: Any) -> None:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)


def print_table(obs: List[Observation], out: Any = sys.stdout) -> None:
    rows = [("KEY", "JOB ID", "VERDICT", "TAGS", "FINAL LOCATION", "OK")]
    for o in obs:
        status = o.tags.get("ci-status", "SKIPPED" if o.sample.expect_status == "SKIPPED" else "-")
        detail = o.tags.get("ci-suspicious-type") or o.tags.get("ci-reason") or ""
        verdict = f"{status} ({detail})" if detail else status
        rows.append((o.sample.key, o.tags.get("ci-job-id", "-"), verdict, _fmt_tags(o.tags),
                     o.final_key or "-", "yes" if o.ok else f"NO: {o.problem}"))
    _print_rows(rows, out)


def read_result(s3: Any, bucket: str, key: str, etag: str, rule: str) -> Dict[str, Any]:
    """ciflow's result record for (key, ETag, rule): labels, scores, outputs."""
    import json

    from ciflow.records import RecordId

    try:
        body = s3.get_object(Bucket=bucket, Key=RecordId(key, etag, rule).path(".ciflow/", "results"))["Body"]
    except Exception:  # noqa: BLE001 - no result (yet)
        return {}
    return json.loads(body.read())


def probe(data: bytes) -> Dict[str, Any]:
    """Measure a video with PyAV: codec, size, frame rate, duration."""
    import io

    import av

    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        rate = float(v.average_rate or v.base_rate or 0)
        duration = float(c.duration / 1_000_000) if c.duration else 0.0
        return {"codec": v.codec_context.name, "width": v.codec_context.width, "height": v.codec_context.height,
                "fps": round(rate, 2), "duration": round(duration, 1), "format": c.format.name}


def print_media(s3: Any, bucket: str, obs: List[Observation], rules: Dict[str, Any], etags: Dict[str, str],
                out: Any = sys.stdout) -> List[str]:
    """Labels and scores of video detections, and the measured properties of every output object."""
    problems: List[str] = []
    rows: List[tuple] = [("VIDEO", "LABELS (score, first seen)", "FINAL LOCATION")]
    for o in obs:
        if o.sample.rule != "videos":
            continue
        res = read_result(s3, bucket, o.sample.key, etags[o.sample.key], "videos")
        labels = ", ".join(f"{lb['name']} ({lb['score']:.0f}, {lb['first_seen']:g}s)" for lb in res.get("labels", []))
        rows.append((o.sample.key, labels or "NONE", o.final_key or "-"))
    print("\nVideo object detection:", file=out)
    _print_rows(rows, out)
    rows = [("SOURCE", "OUTPUT", "MEASURED", "EXPECTED", "CHECK")]
    for o in obs:
        if o.sample.rule not in ("enhance-raw", "watermark-publish") or o.tags.get("ci-status") != "SUCCESS":
            continue
        out_key = o.tags.get("ci-output", "")
        try:
            data = s3.get_object(Bucket=bucket, Key=out_key)["Body"].read()
        except Exception:  # noqa: BLE001
            problems.append(f"{o.sample.key}: output {out_key} is missing")
            continue
        m = probe(data)
        measured = f"{m['codec']} {m['width']}x{m['height']} {m['fps']:g}fps {m['duration']:g}s"
        if o.sample.rule == "enhance-raw":
            v = rules["enhance-raw"]["video_enhance"]["Transcode"]["Video"]
            want = {"codec": "h264", "width": int(v["Width"]), "height": int(v["Height"]), "fps": float(v["Fps"])}
            ok = all(m[k] == want[k] for k in want)
            expected = f"h264 {want['width']}x{want['height']} {want['fps']:g}fps"
            check = "matches the rule" if ok else "DIFFERS from the rule"
        else:
            import tempfile

            from .emulator.media_jobs import extract_digital_watermark

            with tempfile.NamedTemporaryFile(suffix=".mp4") as fh:
                fh.write(data)
                fh.flush()
                found = extract_digital_watermark(fh.name)
            want_msg = rules["watermark-publish"]["digital_watermark"]["message"]
            ok = found == want_msg
            expected = f"watermark {want_msg!r}"
            check = f"watermark {found!r} extracted" if ok else f"watermark NOT found ({found!r})"
        if not ok:
            problems.append(f"{o.sample.key}: {check}")
        rows.append((o.sample.key, out_key, measured, expected, check))
    print("\nOutputs:", file=out)
    _print_rows(rows, out)
    return problems


def print_deliveries(env: Dict[str, str], obs: List[Observation], rules: Dict[str, Any],
                     out: Any = sys.stdout) -> List[str]:
    """How each verdict reached the callback function: the Function URL, or a TDMQ topic's trigger."""
    import json
    import time
    import urllib.request

    wanted_jobs = {o.tags.get("ci-job-id") for o in obs
                   if o.tags.get("ci-job-id") and (rules.get(o.sample.rule) or {}).get("delivery")}
    deadline = time.monotonic() + 10
    while True:
        # The broker records a delivery when the invocation returns, a moment after its last write
        with urllib.request.urlopen(env["CIFLOW_DEV_CONFIG"].replace("/config", "/tdmq"), timeout=10) as r:
            tdmq = json.load(r)
        delivered = {d["job_id"]: d for d in tdmq["deliveries"] if d["outcome"] == "delivered"}
        if wanted_jobs <= set(delivered) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    topics = {p["job_id"]: p["name"] for p in tdmq["published"]}
    rows = [("KEY", "RULE", "VERDICT DELIVERED THROUGH")]
    problems = []
    by_url = 0
    for o in obs:
        job = o.tags.get("ci-job-id")
        wanted = (rules.get(o.sample.rule) or {}).get("delivery")
        if not job:
            continue
        if wanted and job not in delivered:
            problems.append(f"{o.sample.key}: the rule asks for TDMQ, but its verdict did not come through the topic")
        if not wanted and job in topics:
            problems.append(f"{o.sample.key}: published to TDMQ, though its rule asks for the URL")
        if job in delivered:
            d = delivered[job]
            rows.append((o.sample.key, o.sample.rule, f"TDMQ topic {topics.get(job, '?')} (CMQ trigger, "
                                                      f"{d['batch']} message(s) in the event, attempt {d['attempt']})"))
        else:
            by_url += 1
    print("\nVerdicts that arrived through TDMQ (rules with \"delivery\": tdmq):", file=out)
    _print_rows(rows, out)
    print(f"The other {by_url} arrived as HTTP callbacks on the Function URL.", file=out)
    return problems


DEMO_RULES = os.path.join(os.path.dirname(__file__), "demo_rules.json")


def run_demo(ns: Any) -> int:
    import json
    import tempfile

    os.makedirs(".demo-out", exist_ok=True)
    log = os.path.abspath(os.path.join(".demo-out", "devstack.log"))
    print("Building sample images and videos...")
    with tempfile.TemporaryDirectory(prefix="ciflow-demo-") as work:
        samples = demo_samples() + tdmq_samples() + media_samples(work)
    with open(DEMO_RULES, encoding="utf-8") as fh:
        rules = {r["name"]: r for r in json.load(fh)["rules"]}
    print(f"Starting the local stack (object store, CI emulator, SCF runner) with {os.path.relpath(DEMO_RULES)}...")
    with StackProcess(["--rules", DEMO_RULES], log_path=log) as env:
        s3 = s3_client(env)
        bucket = env["CIFLOW_DEV_BUCKET"]
        print(f"Uploading {len(samples)} files to {bucket} at {env['AWS_ENDPOINT_URL']} ...")
        started = time.time()
        etags = upload(s3, bucket, samples)
        obs = wait_for_final(s3, bucket, samples, ns.timeout)
        took = time.time() - started
        print()
        print_table(obs)
        problems = print_media(s3, bucket, obs, rules, etags)
        problems += print_deliveries(env, obs, rules)
    failed = [o for o in obs if not o.ok]
    print(f"\n{len(obs) - len(failed)}/{len(obs)} objects reached their expected final state in {took:.1f}s."
          f" Stack log: {os.path.relpath(log)}")
    if failed or problems:
        print("Demo FAILED: " + "; ".join([f"{o.sample.key}: {o.problem}" for o in failed] + problems))
        return 1
    return 0
