"""End to end: N uploads at a stated concurrency through the whole local pipeline.

Latency is measured per object from the moment its upload returned to the moment the callback
function finished applying its verdict (the runner records when each invocation ends, on the
same clock). Throughput is uploads per second from the first upload to the last verdict.
"""

import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def _json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.load(r)


def run(env: dict, uploads: int, concurrency: int, timeout: float = 300) -> dict:
    from devstack.demo import s3_client
    from devstack.samples import _png, zip_archive

    s3 = s3_client(env)
    bucket = env["CIFLOW_DEV_BUCKET"]
    bodies = [_png(size=64, seed=i) + (zip_archive() if i % 4 == 0 else b"") for i in range(uploads)]
    keys = [f"uploads/e2e/{i:05d}.png" for i in range(uploads)]
    done_at: dict = {}

    def put(i: int) -> float:
        s3.put_object(Bucket=bucket, Key=keys[i], Body=bodies[i], ContentType="image/png")
        return time.time()

    started = time.time()
    with ThreadPoolExecutor(concurrency) as pool:
        uploaded = dict(zip(keys, pool.map(put, range(uploads))))
    deadline = time.time() + timeout
    while len(done_at) < uploads and time.time() < deadline:
        time.sleep(0.5)
        for inv in _json(env["CIFLOW_DEV_RUNNER_ADMIN"])["invocations"]:
            if inv["function"] != "callback" or not inv.get("ok"):
                continue
            body = json.loads(inv["result"]["body"]) if isinstance(inv.get("result"), dict) else {}
            for r in body.get("results", []):
                key = r.get("final_key") or ""
                key = key[len("quarantine/"):] if key.startswith("quarantine/uploads/e2e/") else key
                if key in uploaded and key not in done_at and r.get("outcome"):
                    done_at[key] = inv["started"] + inv["duration_ms"] / 1000
    lat = sorted(done_at[k] - uploaded[k] for k in done_at)
    finished = max(done_at.values()) if done_at else time.time()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))] if lat else float("nan")

    return {"uploads": uploads, "concurrency": concurrency, "completed": len(done_at),
            "throughput_per_s": round(len(done_at) / (finished - started), 2),
            "p50_ms": round(pct(50) * 1000, 1), "p95_ms": round(pct(95) * 1000, 1),
            "max_ms": round((lat[-1] if lat else 0) * 1000, 1)}
