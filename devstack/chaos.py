"""`make chaos`: every fault scenario against the local stack, with a table of what happened.

Each scenario gets its own key prefix and its own fault switches (CI emulator, object store,
runner), uploads a mix of clean and polyglot images, waits for every object to settle, and then
checks each one against the state its content calls for:

- lost:            the object never reached a final status (still PENDING, or vanished);
- duplicate jobs:  more than one job that CI knows for one (object version, rule);
- wrong actions:   a clean image quarantined or tagged SUSPICIOUS, a suspicious one left in place or
                   tagged CLEAN, an action applied to content other than what was inspected, or
                   anything a forged callback changed.
"""

from __future__ import annotations

import json
import random
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from .demo import s3_client
from .emulator.xmlutil import to_xml
from .process import StackProcess
from .samples import _png, mpegts_stream, zip_archive

QUARANTINE = "quarantine/"
MAX_SUBMIT_ATTEMPTS = 3  # CIFLOW_MAX_SUBMIT_ATTEMPTS's default, which the stack keeps


@dataclass
class Scenario:
    name: str
    ci: dict[str, Any] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)
    mutate: str = ""        # "" | overwrite | delete | forge


SCENARIOS = [
    Scenario("baseline"),
    Scenario("duplicate events x3", dev={"event_copies": 3}),
    Scenario("callbacks dropped 40%", ci={"callback_drop_rate": 0.4}),
    Scenario("callbacks duplicated+reordered", ci={"callback_duplicate_rate": 0.6, "callback_jitter": 1.5}),
    Scenario("callbacks delayed 2s", ci={"callback_delay": 2.0}),
    Scenario("CI throttling 429/503 25%", ci={"throttle_rate": 0.25}),
    Scenario("CI accepts then 5xx 40%", ci={"accept_then_fail_rate": 0.4}),
    Scenario("CI loses jobs 25%", ci={"lose_job_rate": 0.25}),
    Scenario("storage tag/copy faults", dev={"tagging_fail_rate": 0.25, "copy_fail_rate": 0.3}),
    Scenario("overwrite while inspecting", mutate="overwrite"),
    Scenario("delete while inspecting", mutate="delete"),
    Scenario("forged callbacks", mutate="forge"),
]
CI_RESET = {k: 0.0 for k in ("throttle_rate", "accept_then_fail_rate", "lose_job_rate", "callback_drop_rate",
                             "callback_duplicate_rate", "callback_delay", "callback_jitter")}
DEV_RESET = {"event_copies": 1, "tagging_fail_rate": 0.0, "copy_fail_rate": 0.0}


@dataclass
class Upload:
    key: str
    body: bytes
    suspicious: bool
    deleted: bool = False
    etag: str = ""


@dataclass
class Row:
    name: str
    uploads: int = 0
    events: int = 0
    jobs: int = 0
    callbacks: int = 0
    correct: int = 0
    lost: int = 0
    duplicate_jobs: int = 0
    wrong_actions: int = 0
    notes: list[str] = field(default_factory=list)


class Chaos:
    def __init__(self, env: dict[str, str], per_scenario: int, timeout: float):
        self.env = env
        self.s3 = s3_client(env)
        self.bucket = env["CIFLOW_DEV_BUCKET"]
        self.per = per_scenario
        self.timeout = timeout

    # --- admin plumbing ------------------------------------------------------------------------
    def _json(self, url: str, body: Optional[dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.load(r)

    def lost_jobs(self) -> list[dict[str, str]]:
        return self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "lost")

    def configure(self, ci: dict[str, Any], dev: dict[str, Any]) -> None:
        self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "config", {**CI_RESET, **ci})
        self._json(self.env["CIFLOW_DEV_CONFIG"], {**DEV_RESET, **dev})

    # --- one scenario --------------------------------------------------------------------------
    def body(self, i: int, suspicious: bool) -> bytes:
        base = _png(size=48, seed=i)
        if not suspicious:
            return base
        return base + (mpegts_stream(8) if i % 2 else zip_archive())

    def run(self, n: int, sc: Scenario) -> Row:
        prefix = f"uploads/chaos/{n:02d}-{sc.name.split()[0]}/"
        self.configure(sc.ci, sc.dev)
        uploads = [Upload(f"{prefix}img {i} ☕.png", b"", suspicious=(i % 3 == 0)) for i in range(self.per)]
        for i, u in enumerate(uploads):
            u.body = self.body(i + n * 1000, u.suspicious)

        def put(u: Upload) -> None:
            u.etag = self.s3.put_object(Bucket=self.bucket, Key=u.key, Body=u.body)["ETag"].strip('"')
            if sc.mutate == "overwrite":
                # New content right behind the first: flip its verdict; the old job must not act on it.
                u.suspicious = not u.suspicious
                u.body = self.body(hash(u.key) % 10_000 + 7, u.suspicious)
                u.etag = self.s3.put_object(Bucket=self.bucket, Key=u.key, Body=u.body)["ETag"].strip('"')
            elif sc.mutate == "delete" and uploads.index(u) % 2 == 0:
                self.s3.delete_object(Bucket=self.bucket, Key=u.key)
                u.deleted = True

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, uploads))
        forged_ok = True
        if sc.mutate == "forge":
            forged_ok = self.forge(uploads)
        self.settle(uploads)
        self.configure({}, {})
        return self.measure(sc, prefix, uploads, forged_ok)

    def settle(self, uploads: list[Upload]) -> None:
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if all(self.state(u)[0] for u in uploads):
                return
            time.sleep(0.5)

    def _tags(self, key: str) -> Optional[dict[str, str]]:
        try:
            return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=self.bucket, Key=key)["TagSet"]}
        except Exception:  # noqa: BLE001 - absent
            return None

    def _etag(self, key: str) -> Optional[str]:
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')
        except Exception:  # noqa: BLE001 - absent
            return None

    def state(self, u: Upload) -> tuple[bool, bool, str]:
        """(settled, correct, note) for one upload."""
        here, there = self._tags(u.key), self._tags(QUARANTINE + u.key)
        if here is not None and here.get("ci-status") == "FAILED" and here.get("ci-reason") == "JobLost":
            # Correct only when CI really lost every submission (reconcile's limit), not one less.
            lost = sum(1 for j in self.lost_jobs() if j["object"] == u.key)
            return True, lost >= MAX_SUBMIT_ATTEMPTS, f"JobLost after {lost} lost submissions"
        if u.deleted:
            # Nothing may resurrect a deleted upload; a correct quarantine before the delete is fine.
            if here is not None:
                return True, False, "deleted object reappeared"
            if there is not None and (not u.suspicious or there.get("ci-status") != "SUSPICIOUS"):
                return True, False, "deleted clean object quarantined"
            return True, True, ""
        if u.suspicious:
            if there is None or there.get("ci-status") != "SUSPICIOUS":
                if here is not None and here.get("ci-status") == "CLEAN":
                    return True, False, "suspicious image tagged CLEAN"
                return False, False, "not quarantined yet"
            if self._etag(QUARANTINE + u.key) != u.etag:
                return True, False, "quarantined content differs from the inspected content"
            if here is not None:
                return False, False, "original still present"
            return True, True, ""
        if there is not None:
            return True, False, "clean image quarantined"
        if here is None:
            return True, False, "clean image vanished"
        status = here.get("ci-status")
        if status == "SUSPICIOUS":
            return True, False, "clean image tagged SUSPICIOUS"
        if status != "CLEAN":
            return False, False, f"ci-status={status}"
        return True, True, ""

    def forge(self, uploads: list[Upload]) -> bool:
        """POST forged callbacks: foreign tokens, swapped job ids, verdicts flipped under real tokens."""
        time.sleep(1.0)
        jobs = self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "jobs")
        mine = [j for j in jobs.values() if j["detail"]["Input"]["Object"] in {u.key for u in uploads}]
        rejected = True
        for j in mine:
            d = json.loads(json.dumps(j["detail"]))
            token = j["request"]["CallBack"].split("?", 1)[1]
            others = [o for o in mine if o["detail"]["JobId"] != d["JobId"]] or [j]
            other = random.choice(others)["detail"]
            forged_bodies = [(d, "t=v1.9999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), (d, "")]
            if other["JobId"] != d["JobId"]:
                forged_bodies.append((other, token))
            swapped = json.loads(json.dumps(d))
            swapped["JobId"] = other["JobId"]
            if other["JobId"] != d["JobId"]:
                forged_bodies.append((swapped, token))
            for body, query in forged_bodies:
                status = self._post(to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": body}), query)
                rejected &= status in (401, 403)
            # Under a real token, a flipped verdict is overruled by what CI reports.
            flipped = json.loads(json.dumps(d))
            if isinstance(flipped["Operation"].get("ImageInspectResult"), dict):
                pr = flipped["Operation"]["ImageInspectResult"].setdefault("ProcessResult", {})
                pr["Suspicious"] = "false" if str(pr.get("Suspicious")) == "true" else "true"
                self._post(to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": flipped}), token)
        return rejected

    def _post(self, body: str, query: str) -> int:
        req = urllib.request.Request(self.env["CIFLOW_CALLBACK_URL"] + "?" + query, data=body.encode(),
                                     method="POST", headers={"Content-Type": "application/xml"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def measure(self, sc: Scenario, prefix: str, uploads: list[Upload], forged_ok: bool) -> Row:
        row = Row(sc.name, uploads=len(uploads) * (2 if sc.mutate == "overwrite" else 1))
        events = self._json(self.env["CIFLOW_DEV_RUNNER_ADMIN"].replace("invocations", "events"))["events"]
        row.events = sum(e["copies"] for e in events if any(prefix in (k or "") and QUARANTINE not in (k or "")
                                                              for k in e["keys"]))
        jobs = self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "jobs")
        per_version: dict[tuple[str, str], int] = {}
        for j in jobs.values():
            obj = j["detail"]["Input"]["Object"]
            if not obj.startswith(prefix):
                continue
            row.jobs += 1
            row.callbacks += sum(1 for c in j["callbacks"] if c.get("status") == 200)
            # One job per (object version, rule): the attempt number (n=) does not make a new version.
            ud = ";".join(p for p in j["detail"]["Operation"].get("UserData", "").split(";") if not p.startswith("n="))
            per_version[(obj, ud)] = per_version.get((obj, ud), 0) + 1
        row.duplicate_jobs = sum(n - 1 for n in per_version.values() if n > 1)
        for u in uploads:
            settled, correct, note = self.state(u)
            if correct:
                row.correct += 1
            elif not settled:
                row.lost += 1
                row.notes.append(f"{u.key}: {note}")
            else:
                row.wrong_actions += 1
                row.notes.append(f"{u.key}: {note}")
        if not forged_ok:
            row.wrong_actions += 1
            row.notes.append("a forged callback was accepted")
        return row


HEADER = ("scenario", "uploads", "events", "jobs", "callbacks", "correct", "lost", "dup jobs", "wrong")


def table(rows: list[Row]) -> str:
    data = [HEADER] + [(r.name, r.uploads, r.events, r.jobs, r.callbacks, f"{r.correct}/{len(r.notes) + r.correct}",
                        r.lost, r.duplicate_jobs, r.wrong_actions) for r in rows]
    widths = [max(len(str(row[i])) for row in data) for i in range(len(HEADER))]
    lines = []
    for n, row in enumerate(data):
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_chaos(per_scenario: int = 30, timeout: float = 90, scenarios: Optional[list[Scenario]] = None,
              out: Callable[[str], None] = print) -> tuple[list[Row], dict[str, int]]:
    scenarios = scenarios or SCENARIOS
    with StackProcess(["--reconcile-every", "1", "--reconcile-after", "3"]) as env:
        chaos = Chaos(env, per_scenario, timeout)
        rows = []
        for n, sc in enumerate(scenarios):
            started = time.time()
            row = chaos.run(n, sc)
            rows.append(row)
            out(f"  {sc.name:<34} done in {time.time() - started:5.1f}s")
    totals = {"lost": sum(r.lost for r in rows), "duplicate_jobs": sum(r.duplicate_jobs for r in rows),
              "wrong_actions": sum(r.wrong_actions for r in rows)}
    return rows, totals


def main(ns: Any) -> int:
    print(f"Running {len(SCENARIOS)} scenarios x {ns.per_scenario} uploads against the local stack...")
    rows, totals = run_chaos(ns.per_scenario, ns.timeout)
    print()
    print(table(rows))
    for r in rows:
        for note in r.notes[:5]:
            print(f"  ! {r.name}: {note}")
    print()
    print(f"lost={totals['lost']} duplicate_jobs={totals['duplicate_jobs']} wrong_actions={totals['wrong_actions']}")
    sys.stdout.flush()
    return 0 if not any(totals.values()) else 1
