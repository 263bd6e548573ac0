"""`make chaos`: every fault scenario against the local stack, with a table of what happened.

Each scenario gets its own key prefix and its own fault switches (CI emulator, object store,
runner), uploads a mix of clean and polyglot images, waits for every object to settle, and then
checks each one against the state its content calls for:

- lost:            the object never reached a final status (still PENDING, or vanished);
- duplicate jobs:  more than one job that CI knows for one (object version, rule), where every write is a
                   version of its own, also when it writes bytes written before;
- wrong actions:   a clean image quarantined or tagged SUSPICIOUS, a suspicious one left in place or
                   tagged CLEAN, an action applied to content other than what was inspected, or
                   anything a forged callback changed.
- platform limits: a clean image that vanished because the DELETE of a move removed it, where the object
                   store's history of the key shows the documented limit "delete against a concurrent
                   upload" (docs/reliability.md, Known limits): the clean content was written after the
                   last read of the key, which showed the suspicious content being moved, and the DELETE came
                   within LIMIT_WINDOW seconds of that read. COS has no conditional DELETE on a bucket
                   without versioning, so no function can close that window. Counted apart, not as a wrong
                   action; any other vanishing is a wrong action.

After that it audits what a glance at the final tags cannot see, each finding a wrong action:
extra copies of an object (a second copy, a leftover original, suspicious bytes still readable by
VersionId on a versioned bucket), pending markers left under the state prefix, a `ci-job-id` tag
naming a job that inspected other content (from the stack's record of what each job read), and
states that change in the seconds after the object looked settled.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .chaos_limits import VANISHED, concurrent_upload_deleted
from .chaos_report import table
from .demo import s3_client
from .emulator.xmlutil import to_xml
from .process import StackProcess
from .samples import _png, mpegts_stream, zip_archive

QUARANTINE = "quarantine/"
MAX_SUBMIT_ATTEMPTS = 3  # CIFLOW_MAX_SUBMIT_ATTEMPTS's default, which the stack keeps
RECHECK_AFTER = 3.0      # seconds after settling at which every state is checked again
BUCKETS = "uploads,other,versioned,suspended"
STACK_ARGS = ["--reconcile-every", "1", "--reconcile-after", "3", "--buckets", BUCKETS,
              "--versioning", "versioned=Enabled", "--versioning", "suspended=Suspended"]
VERDICT_WRITE = r"<Key>ci-status</Key>\s*<Value>(CLEAN|SUSPICIOUS|FAILED)</Value>"
PENDING_WRITE = r"<Key>ci-status</Key>\s*<Value>PENDING</Value>"
Finding = tuple[str, str]


@dataclass
class Scenario:
    name: str
    ci: dict[str, Any] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)
    # "" | overwrite | delete | forge | reupload | aba | overwrite-in-stall
    mutate: str = ""
    bucket: str = ""        # bucket short name; "" is the stack's first
    about: str = ""         # what it exercises, when the name does not say it all
    # Every callback must be applied at once (answered 2xx), not left to reconcile.
    callbacks_applied: bool = False
    stack: tuple[str, ...] = ()  # extra `serve` flags: the scenario runs on a stack of its own


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
    Scenario("same bytes again after verdict", mutate="reupload",
             about="every key settles (clean: tagged; suspicious: quarantined), then the same bytes are uploaded "
                   "to the same key again"),
    Scenario("A-B-A on one key", mutate="aba",
             about="content A, then B with the opposite verdict, then A again, each ~0.7 s apart"),
    Scenario("state writes 5xx bursts", dev={"state_fail_rate": 0.25, "state_fail_burst": 4},
             about="a quarter of the writes under the state prefix start a burst of four 5xx answers for that "
                   "record, more than the SDK's retries"),
    Scenario("state writes stalled 2s", dev={"state_stall_seconds": 2.0, "state_stall_rate": 0.3}),
    Scenario("tag write stalled, key overwritten", mutate="overwrite-in-stall",
             about="the submit path's PENDING tag write (even uploads) or the verdict's tag write (odd uploads) "
                   "of content A is held 3 s, and the key is overwritten with B meanwhile"),
    Scenario("versioned bucket, events x3", bucket="versioned", dev={"event_copies": 3}),
    Scenario("conditional create not honoured", bucket="suspended",
             dev={"event_copies": 3, "if_none_match": "ignore"}, stack=("--state-bucket", "state"),
             about="versioning Suspended (so x-cos-forbid-overwrite has no effect there) and If-None-Match "
                   "ignored, with every event delivered 3 times; the records are kept in a state bucket that "
                   "never had versioning (CIFLOW_STATE_BUCKET), as docs/reliability.md says to"),
    Scenario("reconcile clock +400s", dev={"clock_offsets": {"reconcile": 400}, "state_stall_seconds": 1.5,
                                           "state_stall_rate": 0.5},
             about="reconcile's clock runs 400 s ahead while half the record writes take 1.5 s, so reconcile "
                   "meets submissions in flight"),
    Scenario("CI 429/503 60% sustained", ci={"throttle_rate": 0.6}),
    Scenario("callbacks without UserData", ci={"callback_user_data": "omit"}, callbacks_applied=True,
             about="callbacks in the documented shape, without Operation.UserData; each must be applied when it "
                   "arrives, not left to reconcile"),
    Scenario("TDMQ topic: messages dropped, duplicated, reordered",
             dev={"mq_drop_rate": 0.3, "mq_duplicate_rate": 0.5, "mq_reorder": 1.5, "mq_body": "envelope"},
             stack=("--rules", str(Path(__file__).resolve().parent / "chaos_tdmq_rules.json")),
             about="the image rule delivers its verdicts through a CMQ topic (CallBackType=TDMQ); the topic drops "
                   "30% of the messages, delivers half twice, and reorders them within 1.5 s"),
]


@dataclass
class Version:
    body: bytes
    suspicious: bool
    etag: str = ""


@dataclass
class Upload:
    key: str
    body: bytes
    suspicious: bool
    bucket: str = ""
    deleted: bool = False
    etag: str = ""
    history: list[Version] = field(default_factory=list)   # every content written to the key, in order

    def write(self, s3: Any, body: bytes, suspicious: bool) -> None:
        self.body, self.suspicious = body, suspicious
        self.etag = s3.put_object(Bucket=self.bucket, Key=self.key, Body=body)["ETag"].strip('"')
        self.history.append(Version(body, suspicious, self.etag))

    @property
    def suspicious_etags(self) -> set[str]:
        return {v.etag for v in self.history if v.suspicious}


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
    audited: int = 0        # of the wrong actions, how many the audits found
    limits: int = 0         # clean images lost to the documented delete-against-a-concurrent-upload limit
    skipped: str = ""       # why the scenario could not run on this stack
    notes: list[str] = field(default_factory=list)
    keys: int = 0


class Chaos:
    def __init__(self, env: dict[str, str], per_scenario: int, timeout: float):
        self.env = env
        self.s3 = s3_client(env)
        self.buckets = env["CIFLOW_DEV_BUCKETS"].split(",")
        self.bucket = env["CIFLOW_DEV_BUCKET"]
        self.state_prefix = env.get("CIFLOW_STATE_PREFIX") or ".ciflow/"
        self.state_bucket = env.get("CIFLOW_STATE_BUCKET", "")  # records of every bucket there, when set
        self.per = per_scenario
        self.timeout = timeout
        self.marker_grace = 15.0   # seconds reconcile gets to drop the pending markers it may drop
        self.ci_defaults = self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "config")
        defaults = self._json(self.env["CIFLOW_DEV_CONFIG"])
        defaults.pop("versioning", None)
        defaults["clock_offsets"] = {"submit": 0, "callback": 0, "reconcile": 0}
        self.dev_defaults = defaults

    # --- admin plumbing ------------------------------------------------------------------------
    def _json(self, url: str, body: Optional[Any] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{url}: {e.code} {e.read()[:300]!r}") from None

    def _dev(self, path: str, body: Optional[Any] = None) -> Any:
        return self._json(self.env["CIFLOW_DEV_CONFIG"].replace("/_devstack/config", f"/_devstack/{path}"), body)

    def lost_jobs(self) -> list[dict[str, str]]:
        return self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "lost")

    def configure(self, ci: dict[str, Any], dev: dict[str, Any]) -> None:
        self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "config", {**self.ci_defaults, **ci})
        self._json(self.env["CIFLOW_DEV_CONFIG"], {**self.dev_defaults, **dev})

    def bucket_named(self, short: str) -> str:
        if not short:
            return self.bucket
        return next(b for b in self.buckets if b.rsplit("-", 1)[0] == short)

    # --- one scenario --------------------------------------------------------------------------
    def body(self, i: int, suspicious: bool) -> bytes:
        base = _png(size=48, seed=i)
        if not suspicious:
            return base
        return base + (mpegts_stream(8) if i % 2 else zip_archive())

    def unsupported(self, sc: Scenario) -> str:
        missing = sorted(set(sc.ci) - set(self.ci_defaults))
        return f"the CI emulator has no {', '.join(missing)} switch" if missing else ""

    def run(self, n: int, sc: Scenario) -> Row:
        prefix = f"uploads/chaos/{n:02d}-{re.sub(r'[^A-Za-z0-9]+', '-', sc.name).strip('-')[:24]}/"
        why = self.unsupported(sc)
        if why:
            return Row(sc.name, skipped=why)
        bucket = self.bucket_named(sc.bucket)
        self.configure(sc.ci, sc.dev)
        uploads = [Upload(f"{prefix}img {i} ☕.png", b"", suspicious=(i % 3 == 0), bucket=bucket)
                   for i in range(self.per)]
        seeds = {u.key: i + n * 1000 for i, u in enumerate(uploads)}

        def other(u: Upload) -> tuple[bytes, bool]:
            """Content for the same key with the opposite verdict."""
            return self.body(seeds[u.key] + 500, not u.suspicious), not u.suspicious

        def put(u: Upload) -> None:
            i = seeds[u.key]
            u.write(self.s3, self.body(i, u.suspicious), u.suspicious)
            if sc.mutate == "overwrite":
                # New content right behind the first: flip its verdict; the old job must not act on it.
                u.write(self.s3, *other(u))
            elif sc.mutate == "delete" and i % 2 == 0:
                self.s3.delete_object(Bucket=u.bucket, Key=u.key)
                u.deleted = True
            elif sc.mutate == "aba":
                first = u.history[0]
                time.sleep(0.7)
                u.write(self.s3, *other(u))
                time.sleep(0.7)
                u.write(self.s3, first.body, first.suspicious)
            elif sc.mutate == "overwrite-in-stall":
                self._overwrite_in_stall(u, i, other)

        if sc.mutate == "overwrite-in-stall":
            for u in uploads:
                # A clean A's verdict is a tag write on the key itself; a suspicious one's is a move.
                verdict = seeds[u.key] % 2 == 1 and not u.suspicious
                self._dev("stalls", {"bucket": u.bucket, "key": u.key, "seconds": 3.0,
                                     "match": VERDICT_WRITE if verdict else PENDING_WRITE})
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, uploads))
        forged_ok = True
        if sc.mutate == "forge":
            forged_ok = self.forge(uploads)
        if sc.mutate == "reupload":
            self.settle(uploads)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda u: u.write(self.s3, u.body, u.suspicious), uploads))
        self.settle(uploads)
        row = self.measure(sc, prefix, uploads, forged_ok)
        self.configure({}, {})
        return row

    def _overwrite_in_stall(self, u: Upload, i: int, other: Callable[[Upload], tuple[bytes, bool]]) -> None:
        """Overwrite the key while the hold on its tag write is in force (set before the first upload)."""
        deadline = time.time() + min(self.timeout, 30)
        while time.time() < deadline:
            if any(s["bucket"] == u.bucket and s["key"] == u.key for s in self._dev("stalls")["stalled"]):
                u.write(self.s3, *other(u))
                return
            time.sleep(0.1)
        # The held write never came (the functions did not write tags for A): overwrite anyway.
        u.write(self.s3, *other(u))

    def settle(self, uploads: list[Upload]) -> None:
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if all(self.state(u)[0] for u in uploads):
                return
            time.sleep(0.5)

    def _tags(self, bucket: str, key: str) -> Optional[dict[str, str]]:
        try:
            return {t["Key"]: t["Value"] for t in self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}
        except Exception:  # noqa: BLE001 - absent
            return None

    def _etag(self, bucket: str, key: str) -> Optional[str]:
        try:
            return self.s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        except Exception:  # noqa: BLE001 - absent
            return None

    def state(self, u: Upload) -> tuple[bool, bool, str]:
        """(settled, correct, note) for one upload."""
        here, there = self._tags(u.bucket, u.key), self._tags(u.bucket, QUARANTINE + u.key)
        if here is not None and here.get("ci-status") == "FAILED" and here.get("ci-reason") == "JobLost":
            # Correct only when CI really lost every submission (reconcile's limit), not one less.
            lost = sum(1 for j in self.lost_jobs() if j["object"] == u.key and j["bucket"] == u.bucket)
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
            if self._etag(u.bucket, QUARANTINE + u.key) != u.etag:
                return True, False, "quarantined content differs from the inspected content"
            if here is not None:
                return False, False, "original still present"
            return True, True, ""
        if there is not None and self._etag(u.bucket, QUARANTINE + u.key) not in u.suspicious_etags:
            return True, False, "clean image quarantined"
        if here is None:
            return True, False, VANISHED
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

    # --- measuring -----------------------------------------------------------------------------
    def measure(self, sc: Scenario, prefix: str, uploads: list[Upload], forged_ok: bool) -> Row:
        row = Row(sc.name, uploads=sum(len(u.history) for u in uploads), keys=len(uploads))
        events = self._dev("events")["events"]
        row.events = sum(e["copies"] for e in events if any(prefix in (k or "") and QUARANTINE not in (k or "")
                                                              for k in e["keys"]))
        jobs = self._json(self.env["CIFLOW_DEV_CI_ADMIN"] + "jobs")
        # One job per object version and rule. Every write is a new version, also of bytes written before; the
        # attempt number (n=) of a resubmission does not make one.
        writes: dict[tuple[str, str, str], int] = {}
        for u in uploads:
            for v in u.history:
                writes[(u.bucket, u.key, v.etag)] = writes.get((u.bucket, u.key, v.etag), 0) + 1
        per_content: dict[tuple[str, str, str, str], int] = {}
        for j in jobs.values():
            obj = j["detail"]["Input"]["Object"]
            if not obj.startswith(prefix):
                continue
            row.jobs += 1
            row.callbacks += sum(1 for c in j["callbacks"] if c.get("status") == 200)
            op = (j.get("request") or {}).get("Operation") or j["detail"]["Operation"]
            parts = str(op.get("UserData", "")).split(";")
            etag = next((p[2:] for p in parts if p.startswith("e=")), None)
            rule = next((p[2:] for p in parts if p.startswith("r=")), "")
            content = etag if etag is not None else ";".join(p for p in parts if not p.startswith("n="))
            version = (j["detail"]["Input"].get("BucketId", ""), obj, content, rule)
            per_content[version] = per_content.get(version, 0) + 1
        for (bucket, obj, content, rule), n in sorted(per_content.items()):
            allowed = writes.get((bucket, obj, content), 1)
            if n > allowed:
                row.duplicate_jobs += n - allowed
                row.notes.append(f"{obj}: {n} {rule or ''} jobs for {allowed} write(s) of {content}")
        if sc.callbacks_applied:
            refused = self.refused_callbacks(prefix, jobs)
            row.notes.extend(refused)
            row.wrong_actions += len(refused)
        measured = time.time()
        good: list[Upload] = []
        for u in uploads:
            settled, correct, note = self.state(u)
            if correct:
                row.correct += 1
                good.append(u)
            elif not settled:
                row.lost += 1
                row.notes.append(f"{u.key}: {note}")
            elif note == VANISHED and (limit := self.platform_limit(u)):
                row.limits += 1
                row.notes.append(f"{u.key}: platform limit: {limit}")
            else:
                row.wrong_actions += 1
                row.notes.append(f"{u.key}: {note}")
        if not forged_ok:
            row.wrong_actions += 1
            row.notes.append("a forged callback was accepted")
        findings = self.audit(prefix, uploads, good)
        findings += self.recheck(good, measured)
        row.audited = len(findings)
        row.wrong_actions += len(findings)
        row.correct -= len({key for key, _ in findings} & {u.key for u in good})
        row.notes.extend(f"audit: {key}: {text}" for key, text in findings)
        return row

    def platform_limit(self, u: Upload) -> str:
        """Why the vanishing of `u`'s clean content is the documented limit, by the store's history of the key;
        "" when the history does not show it."""
        keys = self._dev("history", {"bucket": u.bucket, "prefix": u.key})["keys"]
        entries = next((k["entries"] for k in keys if k["key"] == u.key), [])
        return concurrent_upload_deleted(entries, u.etag, u.suspicious_etags)

    @staticmethod
    def refused_callbacks(prefix: str, jobs: dict[str, Any]) -> list[str]:
        out = []
        for job_id, j in jobs.items():
            if not j["detail"]["Input"]["Object"].startswith(prefix):
                continue
            refused = [c["status"] for c in j["callbacks"] if c.get("status") and not 200 <= c["status"] < 300]
            if refused:
                out.append(f"the callback of job {job_id} was answered {refused[0]}: the verdict waited for reconcile")
        return out

    # --- audits --------------------------------------------------------------------------------
    def recheck(self, good: list[Upload], measured: float) -> list[Finding]:
        """The same states a few seconds later: nothing may change once an object looked settled."""
        time.sleep(max(0.0, measured + RECHECK_AFTER - time.time()))
        findings: list[Finding] = []
        for u in good:
            _, correct, note = self.state(u)
            if not correct:
                findings.append((u.key, f"changed {RECHECK_AFTER:g}s after it settled: {note or 'not settled'}"))
        return findings

    def audit(self, prefix: str, uploads: list[Upload], good: list[Upload]) -> list[Finding]:
        """(upload key, what is wrong) for each finding."""
        return self.extra_copies(prefix, uploads) + self.leftover_markers(good) + self.job_tags(good)

    def _keys_containing(self, bucket: str, part: str) -> set[str]:
        """Every current key of `bucket` that contains `part`, outside the state prefix."""
        tops = self.s3.list_objects_v2(Bucket=bucket, Delimiter="/")
        found: set[str] = set()
        for top in [p["Prefix"] for p in tops.get("CommonPrefixes", [])] + [""]:
            if top == self.state_prefix:
                continue
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=top, **({} if top else {"Delimiter": "/"}))
            for page in pages:
                found.update(o["Key"] for o in page.get("Contents", []) if part in o["Key"])
        return found

    def extra_copies(self, prefix: str, uploads: list[Upload]) -> list[Finding]:
        findings: list[Finding] = []
        for bucket in sorted({u.bucket for u in uploads}):
            mine = [u for u in uploads if u.bucket == bucket]
            expected = {u.key for u in mine} | {QUARANTINE + u.key for u in mine}
            for key in sorted(self._keys_containing(bucket, prefix) - expected):
                owner = next((u.key for u in mine if key.endswith(u.key)), key)
                findings.append((owner, f"an extra copy at {key}"))
            if not self.s3.get_bucket_versioning(Bucket=bucket).get("Status"):
                continue
            for u in mine:
                versions = self.s3.list_object_versions(Bucket=bucket, Prefix=u.key).get("Versions", [])
                readable = [v for v in versions if v["Key"] == u.key and v["ETag"].strip('"') in u.suspicious_etags]
                if readable:
                    findings.append((u.key, "suspicious bytes still readable by VersionId under the original key "
                                            f"({len(readable)} version(s))"))
        return findings

    def leftover_markers(self, good: list[Upload]) -> list[Finding]:
        """Pending markers of settled uploads, once reconcile had time to drop the ones it may drop."""
        digests = {hashlib.sha256(u.key.encode("utf-8")).hexdigest()[:32]: u for u in good}
        by_bucket: dict[str, list[Upload]] = {}
        for u in good:
            by_bucket.setdefault(u.bucket, []).append(u)
        left: dict[str, str] = {}
        deadline = time.time() + self.marker_grace
        while True:
            left = {}
            for bucket, mine in by_bucket.items():
                keys = {u.key for u in mine}
                store, prefix = self.records_of(bucket)
                pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=store, Prefix=f"{prefix}pending/")
                for page in pages:
                    for o in page.get("Contents", []):
                        owner = next((d for d in digests if d in o["Key"]), None)
                        if owner is not None and digests[owner].key in keys:
                            left[o["Key"]] = digests[owner].key
                            continue
                        doc = self._record(store, o["Key"])
                        if doc.get("key") in keys:
                            left[o["Key"]] = doc["key"]
            if not left or time.time() > deadline:
                break
            time.sleep(1.0)
        return [(key, f"pending marker left behind ({marker})") for marker, key in sorted(left.items())]

    def records_of(self, bucket: str) -> tuple[str, str]:
        """Where the functions keep `bucket`'s records: (bucket, prefix)."""
        if self.state_bucket:
            return self.state_bucket, f"{self.state_prefix}{bucket}/"
        return bucket, self.state_prefix

    def _record(self, bucket: str, key: str) -> dict[str, Any]:
        try:
            doc = json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except Exception:  # noqa: BLE001 - gone or not JSON: nothing to match
            return {}
        return doc if isinstance(doc, dict) else {}

    def job_tags(self, good: list[Upload]) -> list[Finding]:
        """A ci-job-id must name a job that inspected the content it is attached to."""
        inspected = self._dev("inspections")
        if not inspected.get("attached"):
            return []
        read = inspected["jobs"]
        findings: list[Finding] = []
        for u in good:
            for key in (u.key, QUARANTINE + u.key):
                tags = self._tags(u.bucket, key)
                job = (tags or {}).get("ci-job-id")
                if not job or job not in read or not read[job]["etags"]:
                    continue
                etag = self._etag(u.bucket, key)
                if etag not in read[job]["etags"]:
                    findings.append((u.key, f"ci-job-id {job} on {key} names a job that inspected other content"))
        return findings


def run_chaos(per_scenario: int = 30, timeout: float = 90, scenarios: Optional[list[Scenario]] = None,
              out: Callable[[str], None] = print) -> tuple[list[Row], dict[str, int]]:
    scenarios = scenarios or SCENARIOS
    rows: dict[str, Row] = {}
    for extra in dict.fromkeys(sc.stack for sc in scenarios):
        with StackProcess(list(STACK_ARGS) + list(extra)) as env:
            chaos = Chaos(env, per_scenario, timeout)
            for sc in [s for s in scenarios if s.stack == extra]:
                started = time.time()
                row = chaos.run(SCENARIOS.index(sc) if sc in SCENARIOS else len(SCENARIOS) + len(rows), sc)
                rows[sc.name] = row
                out(f"  {sc.name:<36} {'skipped: ' + row.skipped if row.skipped else 'done in'} "
                    f"{'' if row.skipped else f'{time.time() - started:5.1f}s'}")
    rows = [rows[sc.name] for sc in scenarios]
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
        if r.skipped:
            print(f"  ! {r.name}: skipped: {r.skipped}")
    print()
    print(f"lost={totals['lost']} duplicate_jobs={totals['duplicate_jobs']} wrong_actions={totals['wrong_actions']}")
    limits = sum(r.limits for r in rows)
    if limits:
        print(f"platform_limits={limits}: clean images a move's DELETE removed right after they were written, "
              "shown by the store's history (counted apart; docs/reliability.md, Known limits)")
    sys.stdout.flush()
    return 0 if not any(totals.values()) and not any(r.skipped for r in rows) else 1
