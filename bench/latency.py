"""What an event costs on the wire: requests, critical round trips, wall and CPU, at D ms per round trip.

`python bench/latency.py <out.json> [--events N] [--delays 0,5,20]` starts the local stack (no COS
trigger, no timer) and the delay proxy (`wire.py`) in their own processes, points the functions'
object-store and CI endpoints at the proxy, and invokes, in this process and interleaved event by event:

- ours:  the real submit handler on a COS event (documented form, and the logged form that carries
         `meta.ETag`), then the real callback handler on the callback CI sent (caught by the proxy's
         sink, so no function received it), for clean images and for polyglots (quarantine);
- naive: `bench/naive/` plain SDK handlers on other uploads, one request after another, keeping the
         user's tags (GET tags, PUT merged tags, POST /jobs; GET /jobs, GET tags, then PUT merged tags
         or, for quarantine, a copy that carries them and a delete): the budgets' reference;
- naive, overwrites tags: the same without reading the tags first (PUT tags, POST /jobs; GET /jobs,
         PUT tags, and copy + delete for quarantine), which drops the user's tags: shown, never judged;
- floor: POST /jobs alone; GET /jobs alone;
- protocol floor (submit, both event forms): the requests a submit that keeps the records' guarantees
         cannot overlap, one after another and nothing else (HEAD when the event names no ETag, create the
         claim, POST /jobs, record the job): what no handler with those guarantees can go below.

Every upload carries a user tag (`USER_TAG`); the run ends by checking that ours and the naive
handler kept it and that the overwriting handler lost it, and that every verdict was applied.

Per invocation: wall (perf_counter), CPU of this process (process_time: handler and its I/O threads;
the stack and the proxy run elsewhere), and the exchanges the proxy saw start while it ran: their
number, and the critical path (the longest chain of exchanges each of which started after the
previous one ended; a PUT that waited for `100 Continue` counts two). The first WARMUP events of each
kind are not counted (warm container: clients built, connections open).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, Optional
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "functions"), str(ROOT / "layers" / "ciflow"), str(ROOT), str(ROOT / "bench"),
                str(ROOT / "bench" / "naive")]

WARMUP = 3
PREFIX = "bench/"
USER_TAG = ("owner", "bench-user")  # set by the uploader; a handler must not lose it
RULES = {"version": 1, "rules": [{"name": "bench-images", "job": "ImageInspect", "prefixes": [PREFIX],
                                  "suffixes": [".png"], "outcomes": {"SUSPICIOUS": {"actions": ["quarantine"]}}}]}


# --- the proxy process and what it saw ---------------------------------------------------------------

class Wire:
    """The delay proxy (`wire.py`) in its own process, with its control port."""

    def __init__(self, upstreams: dict[str, str]):
        args = [a for name, addr in upstreams.items() for a in ("--upstream", f"{name}={addr}")]
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "wire.py"), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.ports = json.loads(self.proc.stdout.readline())
        self.control = f"http://127.0.0.1:{self.ports['control']}"

    def _call(self, path: str, method: str = "GET") -> Any:
        req = urllib.request.Request(self.control + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def delay(self, ms: float) -> None:
        self._call(f"/delay?ms={ms}", "POST")

    def exchanges(self) -> list[dict[str, Any]]:
        return self._call("/exchanges?clear=1")

    def callbacks(self) -> list[dict[str, Any]]:
        return self._call("/callbacks?clear=1")

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def critical_path(exchanges: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """The heaviest chain of exchanges in which each started after the previous one ended (weight 1,
    2 for a request that waited for `100 Continue`): the round trips nothing could overlap."""
    exs = sorted(exchanges, key=lambda e: (e["end"], e["start"]))
    best: list[tuple[int, list[dict[str, Any]]]] = []
    for i, e in enumerate(exs):
        weight = 2 if e["continued"] else 1
        prev = max((best[j] for j in range(i) if exs[j]["end"] <= e["start"]), key=lambda b: b[0], default=(0, []))
        best.append((prev[0] + weight, [*prev[1], e]))
    return max(best, key=lambda b: b[0], default=(0, []))


def describe(e: dict[str, Any], t0: float) -> str:
    """One exchange for a trace: when, what, how long (ms from the invocation's start)."""
    target = re.sub(r"[?&](X-Amz|x-id)[^&]*", "", e["target"])
    target = re.sub(r"/(jobs|pending|results)/[^/]+/[0-9a-f]{32}/", r"/\1/<rule>/<h>/", target)
    flags = "".join([" [100-continue]" if e["continued"] else "", " [new connection]" if e["new_conn"] else ""])
    return (f"{(e['start'] - t0) * 1000:7.1f} → {(e['end'] - t0) * 1000:7.1f} ms  {e['upstream']:<2} "
            f"{e['method']:<6} {target[:90]} {e['status']}{flags}")


# --- events -----------------------------------------------------------------------------------------

def cos_event_for(env: dict[str, str], key: str, size: int, etag: str, form: str) -> dict[str, Any]:
    from devstack.objectstore import cos_event

    kwargs: dict[str, Any] = {}
    if "form" in inspect.signature(cos_event).parameters:
        kwargs = {"form": form, "etag": etag}
    elif form != "documented":
        raise RuntimeError("this local stack's cos_event has no `form`: the logged event form is not available")
    return cos_event(env["CIFLOW_DEV_BUCKET"], env["CIFLOW_REGION"], key, size, {"Content-Type": "image/png"},
                     "cos:ObjectCreated:Put", **kwargs)


def callback_event(cb: dict[str, Any]) -> dict[str, Any]:
    """CI's callback, as a Function URL hands it to the function."""
    headers = dict(cb["headers"])
    headers["x-scf-remote-addr"] = "127.0.0.1"
    return {"body": cb["body"], "headers": headers, "httpMethod": "POST", "path": cb["path"],
            "queryString": dict(parse_qsl(cb["query"], keep_blank_values=True)), "isBase64Encoded": False}


# --- one run at one delay ---------------------------------------------------------------------------

class Bench:
    def __init__(self, env: dict[str, str], wire: Wire):
        self.env, self.wire = env, wire
        from devstack.demo import s3_client

        self.s3 = s3_client(env)  # uploads and checks go straight to the store, not through the proxy
        self.bucket = env["CIFLOW_DEV_BUCKET"]
        import callback
        import floor
        import naive_callback
        import naive_overwrite_callback
        import naive_overwrite_submit
        import naive_submit
        import submit

        ctx = {"request_id": "bench", "function_name": "bench"}
        self.handlers: dict[str, Callable[[Any], Any]] = {
            "submit:ours": lambda e: submit.main_handler(e, ctx),
            "submit:naive": lambda e: naive_submit.main_handler(e, ctx),
            "submit:overwrite": lambda e: naive_overwrite_submit.main_handler(e, ctx),
            "submit:floor": lambda e: floor.submit(e, ctx),
            "submit:floor-recorded": lambda e: floor.submit_recorded(e, ctx),
            "callback:ours": lambda e: callback.main_handler(e, ctx),
            "callback:naive": lambda e: naive_callback.main_handler(e, ctx),
            "callback:overwrite": lambda e: naive_overwrite_callback.main_handler(e, ctx),
            "callback:floor": lambda e: floor.callback(e, ctx),
        }

    def upload(self, key: str, suspicious: bool, seed: int) -> tuple[int, str]:
        from devstack.samples import _png, zip_archive

        body = _png(size=32, seed=seed) + (zip_archive() if suspicious else b"")
        r = self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="image/png",
                               Tagging=f"{USER_TAG[0]}={USER_TAG[1]}")
        return len(body), r["ETag"]

    def invoke(self, name: str, event: Any, check: Callable[[Any], bool]) -> dict[str, Any]:
        fn = self.handlers[name]
        t0, c0 = time.monotonic(), time.process_time()
        w0 = time.perf_counter()
        result = fn(event)
        wall = time.perf_counter() - w0
        cpu = time.process_time() - c0
        t1 = time.monotonic()
        if not check(result):
            raise RuntimeError(f"{name}: unexpected result {result!r}")
        return {"t0": t0, "t1": t1, "wall_ms": wall * 1000, "cpu_ms": cpu * 1000}

    def run(self, delay: float, events: int, tag: str) -> dict[str, list[dict[str, Any]]]:
        """`events` + WARMUP invocations of every kind at `delay` ms; the samples of each kind."""
        self.wire.delay(delay)
        n = events + WARMUP
        objects: dict[str, list[tuple[str, int, str]]] = {}
        plan = {"ours-documented": False, "ours-logged": True, "naive-clean": False, "naive-suspicious": True,
                "overwrite-clean": False, "overwrite-suspicious": True, "floor": False,
                "floor-documented": False, "floor-logged": False}
        for i in range(n):
            for kind, suspicious in plan.items():
                key = f"{PREFIX}{tag}/{kind}/{i:04d}.png"
                size, etag = self.upload(key, suspicious, seed=zlib.crc32(key.encode()) & 0xFFFF)
                objects.setdefault(kind, []).append((key, size, etag))
        self.wire.exchanges()
        self.wire.callbacks()
        samples: dict[str, list[dict[str, Any]]] = {}
        # submit: ours on both event forms (clean uploads get the documented form, polyglots the logged
        # one; the content does not change what submit does), each naive handler on both kinds (they
        # read nothing from the event beyond the key), the floor and the protocol floors on clean ones
        submit_plan = [("ours-documented", "submit:ours", "ours-documented", "documented"),
                       ("ours-logged", "submit:ours", "ours-logged", "logged"),
                       ("naive", "submit:naive", "naive-clean", "documented"),
                       ("naive", "submit:naive", "naive-suspicious", "documented"),
                       ("overwrite", "submit:overwrite", "overwrite-clean", "documented"),
                       ("overwrite", "submit:overwrite", "overwrite-suspicious", "documented"),
                       ("floor", "submit:floor", "floor", "documented"),
                       ("floor-recorded-documented", "submit:floor-recorded", "floor-documented", "documented"),
                       ("floor-recorded-logged", "submit:floor-recorded", "floor-logged", "logged")]
        submitted = {
            "ours": lambda r: r["results"][0]["status"] == "submitted",
            "naive": lambda r: len(r["jobs"]) == 1,
            "overwrite": lambda r: len(r["jobs"]) == 1,
            "floor": lambda r: bool(r),
        }
        for i in range(n):
            rot = submit_plan[i % len(submit_plan):] + submit_plan[:i % len(submit_plan)]
            for label, handler, kind, form in rot:
                key, size, etag = objects[kind][i]
                event = cos_event_for(self.env, key, size, etag, form)
                s = self.invoke(handler, event, submitted[label.split("-")[0]])
                s.update(event="submit", variant=label, key=key, warm=i >= WARMUP)
                samples.setdefault(f"submit:{label}", []).append(s)
        self.attribute(samples)
        callbacks = self.await_callbacks({key for v in objects.values() for key, _, _ in v})
        callback_plan = [("ours-clean", "callback:ours", "ours-documented", "CLEAN"),
                         ("ours-suspicious", "callback:ours", "ours-logged", "SUSPICIOUS"),
                         ("naive-clean", "callback:naive", "naive-clean", "CLEAN"),
                         ("naive-suspicious", "callback:naive", "naive-suspicious", "SUSPICIOUS"),
                         ("overwrite-clean", "callback:overwrite", "overwrite-clean", "CLEAN"),
                         ("overwrite-suspicious", "callback:overwrite", "overwrite-suspicious", "SUSPICIOUS"),
                         ("floor", "callback:floor", "floor", None)]

        def applied(outcome: Optional[str], label: str) -> Callable[[Any], bool]:
            if label == "floor":
                return lambda r: r == "Success"
            if label.startswith(("naive", "overwrite")):
                return lambda r: r["statusCode"] == 200 and json.loads(r["body"])["outcome"] == outcome
            return lambda r: (r["statusCode"] == 200
                              and json.loads(r["body"])["results"][0].get("outcome") == outcome)

        for i in range(n):
            rot = callback_plan[i % len(callback_plan):] + callback_plan[:i % len(callback_plan)]
            for label, handler, kind, outcome in rot:
                key = objects[kind][i][0]
                s = self.invoke(handler, callback_event(callbacks[key]), applied(outcome, label))
                s.update(event="callback", variant=label, key=key, warm=i >= WARMUP)
                samples.setdefault(f"callback:{label}", []).append(s)
        self.attribute(samples)
        self.check_final_state(objects)
        return samples

    def attribute(self, samples: dict[str, list[dict[str, Any]]]) -> None:
        """Give every invocation the exchanges that started while it ran."""
        time.sleep(0.2)
        exchanges = self.wire.exchanges()
        for runs in samples.values():
            for s in runs:
                if "requests" in s:
                    continue
                mine = [e for e in exchanges if s["t0"] <= e["start"] <= s["t1"]]
                rt, chain = critical_path(mine)
                s.update(requests=len(mine), round_trips=rt, continued=sum(e["continued"] for e in mine),
                         new_connections=sum(e["new_conn"] for e in mine),
                         trace=[describe(e, s["t0"]) for e in sorted(mine, key=lambda e: e["start"])],
                         chain=[describe(e, s["t0"]) for e in chain])

    def await_callbacks(self, keys: set[str], timeout: float = 180) -> dict[str, dict[str, Any]]:
        """The callbacks CI sent for `keys`, once every job has finished (keyed by object key)."""
        got: dict[str, dict[str, Any]] = {}
        deadline = time.time() + timeout
        while len(got) < len(keys) and time.time() < deadline:
            for cb in self.wire.callbacks():
                m = re.search(r"<Object>([^<]*)</Object>", cb["body"])
                if m and m.group(1) in keys:
                    got[m.group(1)] = cb
            if len(got) < len(keys):
                time.sleep(0.3)
        if len(got) < len(keys):
            raise RuntimeError(f"only {len(got)} of {len(keys)} callbacks arrived")
        return got

    def check_final_state(self, objects: dict[str, list[tuple[str, int, str]]]) -> None:
        """Every handler did its work: clean uploads tagged, polyglots in quarantine (and only there).
        Ours and the naive handler kept the user's tag; the overwriting handler lost it (as its label says)."""
        for kind in ("ours-documented", "ours-logged", "naive-clean", "naive-suspicious", "overwrite-clean",
                     "overwrite-suspicious"):
            for key, _, _ in objects[kind]:
                quarantined = kind in ("ours-logged", "naive-suspicious", "overwrite-suspicious")
                where = "quarantine/" + key if quarantined else key
                tags = {t["Key"]: t["Value"] for t in
                        self.s3.get_object_tagging(Bucket=self.bucket, Key=where)["TagSet"]}
                want = "SUSPICIOUS" if quarantined else "CLEAN"
                if tags.get("ci-status") != want:
                    raise RuntimeError(f"{kind} {where}: ci-status {tags.get('ci-status')!r}, expected {want}")
                kept = tags.get(USER_TAG[0]) == USER_TAG[1]
                if kept == kind.startswith("overwrite"):
                    raise RuntimeError(f"{kind} {where}: the user's tag {'kept' if kept else 'lost'}: {tags}")
                if quarantined:
                    try:
                        self.s3.head_object(Bucket=self.bucket, Key=key)
                    except Exception as exc:
                        if "404" not in str(exc) and "Not Found" not in str(exc):
                            raise
                    else:
                        raise RuntimeError(f"{kind} {key}: still at its upload key after quarantine")


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    warm = [s for s in samples if s["warm"]]

    def med(k: str) -> float:
        return round(statistics.median(s[k] for s in warm), 2)

    rts = sorted(s["round_trips"] for s in warm)
    reqs = sorted(s["requests"] for s in warm)
    typical = sorted(warm, key=lambda s: s["wall_ms"])[len(warm) // 2]
    return {"events": len(warm), "wall_ms": med("wall_ms"), "cpu_ms": med("cpu_ms"),
            "wall_ms_p90": round(sorted(s["wall_ms"] for s in warm)[int(0.9 * (len(warm) - 1))], 2),
            "requests": statistics.median(reqs), "requests_max": reqs[-1],
            "round_trips": statistics.median(rts), "round_trips_max": rts[-1],
            "continued": statistics.median(s["continued"] for s in warm),
            "trace": typical["trace"], "chain": typical["chain"]}


@contextlib.contextmanager
def stack_behind_wire() -> Iterator[tuple[dict[str, str], Wire]]:
    """The local stack (no COS trigger, no timer) and the delay proxy in front of its object store and
    CI emulator, with this process's environment set as the functions' (endpoints on the proxy,
    callbacks to the proxy's sink, the bench rules)."""
    from devstack.process import StackProcess

    stack = StackProcess(["--no-trigger", "--reconcile-every", "0"])
    env = stack.start()
    wire = None
    try:
        wire = Wire({"s3": env["CIFLOW_S3_ENDPOINT"].split("://", 1)[1],
                     "ci": env["CIFLOW_CI_ENDPOINT"].split("://", 1)[1]})
        for k, v in env.items():
            if k.startswith(("CIFLOW_", "TENCENTCLOUD_", "POWERTOOLS_")) and not k.startswith("CIFLOW_DEV_"):
                os.environ[k] = v
        os.environ.update({
            "CIFLOW_S3_ENDPOINT": f"http://127.0.0.1:{wire.ports['s3']}",
            "CIFLOW_CI_ENDPOINT": f"http://127.0.0.1:{wire.ports['ci']}",
            "CIFLOW_CALLBACK_URL": f"http://127.0.0.1:{wire.ports['control']}/sink/",
            "CIFLOW_RULES": json.dumps(RULES),
        })
        os.environ.pop("CIFLOW_RULES_FILE", None)
        from ciflow.settings import reset_settings

        reset_settings()
        yield env, wire
    finally:
        if wire is not None:
            wire.stop()
        stack.stop()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--events", type=int, default=15)
    p.add_argument("--delays", default="0,5,20")
    ns = p.parse_args(argv)
    with stack_behind_wire() as (env, wire):
        bench = Bench(env, wire)
        out: dict[str, Any] = {"events": ns.events, "warmup": WARMUP, "delays": {}}
        for d in [float(x) for x in ns.delays.split(",")]:
            print(f"  D = {d:g} ms ...", file=sys.stderr, flush=True)
            samples = bench.run(d, ns.events, f"d{d:g}-{os.getpid()}")
            out["delays"][f"{d:g}"] = {name: summarise(runs) for name, runs in samples.items()}
    Path(ns.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
