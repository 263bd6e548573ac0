"""Reconcile at 10, 100 and 1,000 pending jobs whose callbacks were lost, at D ms per round trip.

`python bench/reconcile_scale.py <out.json> [--sizes 10,100,1000] [--delay 20]`

Seeding is real: uploads submitted by the real submit handler (at D=0, four at a time), CI runs every
job, and its callbacks go to the proxy's sink, where they are dropped. Every job then has a claim, a
pending marker and a finished job in CI, and nothing applied: what reconcile exists for. The timer
handler (`functions/reconcile.py`, its default cap per run) then runs at D ms per round trip, with
`CIFLOW_RECONCILE_AFTER_SECONDS=0` so every marker is due, until no marker is left.

Per size: runs needed, wall and CPU per run, the requests on the wire by kind (listing, claim reads,
CI queries, the rest: applying the verdicts) and per pending job; and starvation: after each capped
run, no marker left behind may be older (by COS's Last-Modified) than one that was served.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from latency import PREFIX, critical_path, stack_behind_wire  # noqa: E402

STATE = ".ciflow/"


def kind(e: dict[str, Any]) -> str:
    if e["upstream"] == "ci":
        return "ci_query" if e["method"] == "GET" else "ci_other"
    target = e["target"]
    if e["method"] == "GET" and ("list-type=" in target or "prefix=" in target):
        return "list"
    if e["method"] == "GET" and f"/{STATE}jobs/" in target:
        return "claim_read"
    return "apply"


def markers(s3: Any, bucket: str) -> dict[str, float]:
    """Pending marker → Last-Modified (epoch seconds), read straight from the store."""
    out: dict[str, float] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{STATE}pending/"):
        for o in page.get("Contents", []):
            out[o["Key"]] = o["LastModified"].timestamp()
    return out


def seed(env: dict[str, str], wire: Any, n: int, tag: str) -> None:
    """`n` uploads submitted for real; their callbacks are caught and dropped."""
    import submit
    from latency import cos_event_for

    from devstack.demo import s3_client
    from devstack.samples import _png, zip_archive

    s3 = s3_client(env)
    bucket = env["CIFLOW_DEV_BUCKET"]
    wire.delay(0)

    def one(i: int) -> None:
        key = f"{PREFIX}reconcile/{tag}/{i:05d}.png"
        body = _png(size=16, seed=i) + (zip_archive() if i % 10 == 9 else b"")
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="image/png")["ETag"]
        result = submit.main_handler(cos_event_for(env, key, len(body), etag, "documented"), {})
        assert result["results"][0]["status"] == "submitted", result

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(n)))
    caught = 0
    deadline = time.time() + 600
    while caught < n and time.time() < deadline:  # every job finished in CI, its callback dropped
        caught += sum(f"reconcile/{tag}/" in cb["body"] for cb in wire.callbacks())
        time.sleep(0.5)
    if caught < n:
        raise RuntimeError(f"only {caught} of {n} jobs finished")
    wire.exchanges()


def reconcile_until_done(env: dict[str, str], wire: Any, delay: float, n: int) -> dict[str, Any]:
    import reconcile

    from devstack.demo import s3_client

    s3 = s3_client(env)
    bucket = env["CIFLOW_DEV_BUCKET"]
    wire.delay(delay)
    runs: list[dict[str, Any]] = []
    starved: list[str] = []
    before = markers(s3, bucket)
    if len(before) != n:
        raise RuntimeError(f"{len(before)} pending markers, expected {n}")
    while before and len(runs) < 10:
        w0, c0 = time.perf_counter(), time.process_time()
        summary = reconcile.main_handler({"Type": "Timer"}, {})
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        time.sleep(0.2)
        exchanges = wire.exchanges()
        after = markers(s3, bucket)
        served = set(before) - set(after)
        if served and after and min(after.values()) < max(before[k] for k in served):
            starved.append(f"run {len(runs) + 1}: {sum(v < max(before[k] for k in served) for v in after.values())} "
                           "markers left behind are older than one served")
        by_kind: dict[str, int] = {}
        for e in exchanges:
            by_kind[kind(e)] = by_kind.get(kind(e), 0) + 1
        runs.append({"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "served": len(served), "left": len(after),
                     "requests": len(exchanges), "by_kind": by_kind, "round_trips": critical_path(exchanges)[0],
                     "summary": {k: summary.get(k) for k in ("checked", "applied", "resubmitted", "failed", "gone",
                                                             "waiting", "errors", "young", "deferred")}})
        if not served:
            break
        before = after
    total = sum(r["requests"] for r in runs)
    kinds: dict[str, int] = {}
    for r in runs:
        for k, v in r["by_kind"].items():
            kinds[k] = kinds.get(k, 0) + v
    check = kinds.get("list", 0) + kinds.get("claim_read", 0) + kinds.get("ci_query", 0)
    return {"pending": n, "runs": runs, "left": runs[-1]["left"] if runs else n, "starved": starved,
            "requests": total, "requests_per_job": round(total / n, 2),
            "check_requests_per_job": round(check / n, 2),
            "apply_requests_per_job": round(kinds.get("apply", 0) / n, 2),
            "wall_s": round(sum(r["wall_s"] for r in runs), 2), "by_kind": kinds}


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--delay", type=float, default=20)
    ns = p.parse_args(argv)
    out: dict[str, Any] = {"delay_ms": ns.delay, "sizes": {}}
    with stack_behind_wire() as (env, wire):
        os.environ["CIFLOW_RECONCILE_AFTER_SECONDS"] = "0"
        from ciflow.settings import reset_settings

        reset_settings()
        for n in [int(x) for x in ns.sizes.split(",")]:
            print(f"  reconcile: seeding {n} pending jobs ...", file=sys.stderr, flush=True)
            seed(env, wire, n, f"n{n}-{os.getpid()}")
            print(f"  reconcile: {n} pending at D = {ns.delay:g} ms ...", file=sys.stderr, flush=True)
            out["sizes"][str(n)] = reconcile_until_done(env, wire, ns.delay, n)
    Path(ns.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
