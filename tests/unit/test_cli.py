"""The operator CLI without a stack: argument values, rate limit, progress bar, checkpoint and resume,
status, explain and check-config over in-memory storage and CI ports."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pytest

from ciflow import cli
from ciflow.jobs import build_job
from ciflow.operations.check_config import check_config
from ciflow.operations.context import Context, OperatorError
from ciflow.operations.explain import explain, redact_token
from ciflow.operations.parallel import TokenBucket
from ciflow.operations.runs import PrefixRun, listing_prefixes, parse_rate, parse_since, run_keys
from ciflow.operations.status import status
from ciflow.operations.walker import DUP_LIVE, SKIP_DONE, SKIP_SINCE, Counts, Walker
from ciflow.records import RecordId, Records
from ciflow.rules import parse_rules
from ciflow.settings import DEFAULT_RULES_FILE, load_settings
from ciflow.userdata import UserData
from tests.model.ports import ModelStorage

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "uploads-1250000000"
ENV = {
    "CIFLOW_REGION": "ap-guangzhou",
    "CIFLOW_CALLBACK_SECRET": "s" * 24,
    "CIFLOW_CALLBACK_URL": "https://cb.example.com/",
    "CIFLOW_BUCKETS": f"{BUCKET},other-1250000000",
    "TENCENTCLOUD_SECRETID": "AKIDx",
    "TENCENTCLOUD_SECRETKEY": "k",
}


# --- in-memory ports: the real Storage adapter over the COS model (tests/model/), and a CI stub --------

class FakeCi:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.interrupt_at: Optional[int] = None   # raise KeyboardInterrupt on this create (1-based)

    def create(self, bucket: str, job: dict[str, Any]) -> dict[str, Any]:
        if self.interrupt_at is not None and len(self.created) + 1 == self.interrupt_at:
            raise KeyboardInterrupt
        self.created.append(job)
        return {"JobId": f"job{len(self.created)}"}

    def find(self, *args: Any) -> None:
        return None

    def get(self, *args: Any) -> None:
        return None

    def keys(self) -> list[str]:
        return [j["Input"]["Object"] for j in self.created]


@pytest.fixture
def ctx() -> Context:
    settings = load_settings(ENV)
    rules = parse_rules(Path(DEFAULT_RULES_FILE).read_text(), "default", settings.state_prefix)
    return Context(settings, rules, ModelStorage(BUCKET, "other-1250000000"), FakeCi(), BUCKET)  # type: ignore[arg-type]


def walker(ctx: Context, **kw: Any) -> Walker:
    kw.setdefault("workers", 1)
    return Walker(ctx, **kw)


def backfill(ctx: Context, prefix: str = "uploads/", **kw: Any):
    restart = kw.pop("restart", False)
    run = PrefixRun(ctx, walker(ctx, **kw), "backfill", prefix, since=kw.get("since"), restart=restart)
    return run, run.execute()


# --- argument values and helpers --------------------------------------------------------------

@pytest.mark.parametrize("text,per_second", [("20", 20), ("20/s", 20), ("0.5/s", 0.5), ("300/min", 5),
                                             ("120/m", 2), ("3600/h", 1), (" 7 / s ", 7)])
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "fast", "0", "-1/s", "5/day", "1/s/s"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(OperatorError, match="--rate"):
        parse_rate(text)


def test_parse_since() -> None:
    utc = timezone.utc
    assert parse_since("2024-05-01") == datetime(2024, 5, 1, tzinfo=utc)
    assert parse_since("2024-05-01T08:00:00Z") == datetime(2024, 5, 1, 8, tzinfo=utc)
    assert parse_since("2024-05-01T08:00:00+08:00") == datetime(2024, 5, 1, 0, tzinfo=utc)
    assert parse_since(None) is None
    with pytest.raises(OperatorError, match="--since"):
        parse_since("last tuesday")


def test_token_bucket_holds_the_rate() -> None:
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    tb = TokenBucket(2.0, clock=lambda: now[0], sleep=sleep)
    waits = [tb.acquire() for _ in range(6)]
    # A burst of one second's worth, then one token every 1/rate seconds
    assert waits[:2] == [0, 0]
    assert waits[2:] == pytest.approx([0.5] * 4)
    assert now[0] == pytest.approx(2.0)
    now[0] += 10            # idle time refills only up to the burst
    assert [tb.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.5])


def test_listing_prefixes_only_list_what_rules_watch() -> None:
    watched = ("uploads/", "uploads/deep/", "media/")
    assert listing_prefixes("", watched) == ["media/", "uploads/"]
    assert listing_prefixes("up", watched) == ["uploads/"]
    assert listing_prefixes("uploads/a/", watched) == ["uploads/a/"]
    assert listing_prefixes("uploads/deep/x", watched) == ["uploads/deep/x"]
    assert listing_prefixes("docs/", watched) == []


def test_redact_token_keeps_the_rest_of_the_url() -> None:
    assert redact_token("https://h/p?a=1&t=v1.9.abc&b=2") == "https://h/p?a=1&t=REDACTED&b=2"
    assert redact_token("https://h/?t=v1.9.abc") == "https://h/?t=REDACTED"


# --- progress bar -----------------------------------------------------------------------------

class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def counts(**kw: int) -> Counts:
    c = Counts()
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_progress_redraws_one_line_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    now = [0.0]
    err = Tty()
    p = cli.Progress(err, "backfill uploads/", clock=lambda: now[0])
    p.counting(0)
    p.start(10)
    for i in range(1, 11):
        now[0] += 0.5
        p.update(counts(seen=i, submitted=i - 1, skipped=1))
    p.finish(counts(seen=10, submitted=9, skipped=1))
    text = err.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")        # one line, redrawn in place
    assert text.count("\r") >= 11 and "\x1b[K" in text
    last = text.rsplit("\r", 1)[1]
    assert "[########################] 100% 10/10" in last
    assert "submitted 9" in last and "skipped 1" in last and "errors 0" in last
    assert "ETA" in text.split("\r")[3]


def test_progress_on_a_narrow_terminal_keeps_the_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    err = Tty()
    p = cli.Progress(err, "backfill uploads/some/long/prefix/")
    p.start(4)
    p.finish(counts(seen=4, submitted=3, skipped=1))
    last = err.getvalue().rsplit("\r", 1)[1]
    assert last.startswith("[####") and "submitted 3 | duplicate 0 | skipped 1" in last
    assert len(last.rstrip("\n").replace("\x1b[K", "")) < 100


def test_progress_prints_periodic_plain_lines_otherwise() -> None:
    now = [0.0]
    err = io.StringIO()
    p = cli.Progress(err, "backfill uploads/", every=5.0, clock=lambda: now[0])
    p.start(100)
    for i in range(1, 101):
        now[0] += 0.25                                          # 25 s in all: a line every 5 s
        p.update(counts(seen=i, submitted=i))
    p.finish(counts(seen=100, submitted=100))
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    assert lines[0] == "backfill uploads/: 100 object(s) to examine"
    assert len(lines) == 6                    # the header, then one line every 5 s (the last one is 100%)
    assert lines[-1] != lines[-2]             # the final line is not printed twice
    assert "[##########--------------]  40% 40/100 | submitted 40" in lines[2]
    assert lines[-1].startswith("backfill uploads/ [########################] 100% 100/100 | submitted 100")


# --- backfill ---------------------------------------------------------------------------------

def seed(ctx: Context) -> dict[str, str]:
    s = ctx.storage
    return {k: s.add(k, body=k.encode(), content_type=ct) for k, ct in [  # type: ignore[attr-defined]
        ("uploads/a.png", "image/png"), ("uploads/b.jpg", "image/jpeg"), ("uploads/noext", "image/gif"),
        ("uploads/readme.txt", "text/plain"), ("uploads/dir/", "application/x-directory"),
        ("other/c.png", "image/png"), ("quarantine/uploads/q.png", "image/png")]}


def test_backfill_submits_like_the_submit_function_and_a_second_run_submits_nothing(ctx: Context) -> None:
    etags = seed(ctx)
    _, report = backfill(ctx)
    c = report.counts
    # Only the watched prefix is listed; the same skip reasons and matching as the submit function
    assert (c.seen, c.submitted, c.skipped, c.errors) == (5, 3, 2, 0)
    assert c.skipped_by_reason == {"no rule matches": 1, "folder placeholder": 1}
    assert sorted(ctx.ci.keys()) == ["uploads/a.png", "uploads/b.jpg", "uploads/noext"]  # by content type too
    job = ctx.ci.created[0]
    assert job["Operation"]["UserData"] == UserData("images", etags["uploads/a.png"]).encode()
    assert ctx.storage.get_tags(BUCKET, "uploads/a.png") == {"ci-status": "PENDING", "ci-rule": "images"}
    assert report.complete and not report.errors
    # A second run: every job is in flight (claims with job ids), so nothing is resubmitted
    _, again = backfill(ctx)
    assert (again.counts.submitted, again.counts.duplicate) == (0, 3)
    assert again.counts.duplicate_by_reason == {DUP_LIVE: 3}
    assert len(ctx.ci.created) == 3
    # Once results exist, they are skipped as done
    records = Records(ctx.storage, BUCKET, ".ciflow/")
    for key in ("uploads/a.png", "uploads/b.jpg", "uploads/noext"):
        records.write_result(RecordId(key, ctx.storage.etag(key), "images"), outcome="CLEAN", job_id="j")
    _, third = backfill(ctx)
    assert third.counts.skipped_by_reason[SKIP_DONE] == 3 and third.counts.submitted == 0


def test_backfill_since_filters_by_last_modified(ctx: Context) -> None:
    old = datetime(2023, 1, 1, tzinfo=timezone.utc)
    ctx.storage.add("uploads/old.png", b"1", modified=old)
    ctx.storage.add("uploads/new.png", b"2", modified=old + timedelta(days=400))
    _, report = backfill(ctx, since=parse_since("2024-01-01"))
    assert report.counts.skipped_by_reason == {SKIP_SINCE: 1}
    assert ctx.ci.keys() == ["uploads/new.png"]


def test_dry_run_submits_nothing_and_writes_nothing(ctx: Context) -> None:
    seed(ctx)
    before = {k: dict(v) for k, v in ctx.storage.objects.items()}
    _, report = backfill(ctx, dry_run=True)
    assert report.counts.submitted == 3 and report.counts.jobs == 3 and report.dry_run
    assert ctx.ci.created == [] and ctx.storage.writes == []
    assert ctx.storage.objects == before      # not even a checkpoint


def test_a_stale_claim_is_taken_over_and_a_live_one_is_a_duplicate(ctx: Context) -> None:
    etag = ctx.storage.add("uploads/stale.png", b"s")
    ctx.storage.add("uploads/live.png", b"l")
    records = Records(ctx.storage, BUCKET, ".ciflow/")
    stale = RecordId("uploads/stale.png", etag, "images")
    records.create_claim(stale, records.new_claim(stale))
    # the submitter died ten minutes ago (by COS's clock: the claim's Last-Modified)
    ctx.storage.set_age(stale.path(".ciflow/", "jobs"), 600)
    live = RecordId("uploads/live.png", ctx.storage.etag("uploads/live.png"), "images")
    records.create_claim(live, records.new_claim(live))  # just now
    _, report = backfill(ctx)
    assert (report.counts.submitted, report.counts.duplicate) == (1, 1)
    assert ctx.ci.keys() == ["uploads/stale.png"]


def test_rescan_forces_a_new_job_when_a_result_exists(ctx: Context) -> None:
    etag = ctx.storage.add("uploads/a.png", b"a")
    backfill(ctx)
    rid = RecordId("uploads/a.png", etag, "images")
    Records(ctx.storage, BUCKET, ".ciflow/").write_result(rid, outcome="CLEAN", job_id="job1")
    report, outcomes = run_keys(walker(ctx, force=True), ["uploads/a.png", "uploads/a.png", "uploads/gone.png"])
    assert [o.status for o in outcomes] == ["submitted", "skipped"]
    assert outcomes[1].reason == "object not found"
    assert ctx.ci.keys() == ["uploads/a.png", "uploads/a.png"]
    assert ctx.ci.created[1]["Operation"]["UserData"] == UserData("images", etag, attempt=2).encode()
    assert Records(ctx.storage, BUCKET, ".ciflow/").read_result(rid) is None   # superseded until the callback


def test_errors_are_kept_in_the_checkpoint_and_retried_by_the_next_run(ctx: Context) -> None:
    for k in ("a", "b", "c"):
        ctx.storage.add(f"uploads/{k}.png", k.encode())
    ctx.storage.fail_head["uploads/b.png"] = 1
    run, report = backfill(ctx)
    assert (report.counts.submitted, report.counts.errors) == (2, 1)
    assert list(report.errors) == ["uploads/b.png"] and "ConnectionResetError" in report.errors["uploads/b.png"]
    cp = json.loads(ctx.storage.get(BUCKET, run.key))
    assert run.key.startswith(".ciflow/backfill/") and cp["complete"] and cp["last_key"] == "uploads/c.png"
    assert cp["errors"][0]["key"] == "uploads/b.png"
    # The next run retries only the failed key, then continues after the last one (nothing new)
    _, again = backfill(ctx)
    assert again.retried == 1 and again.resumed_after == "uploads/c.png"
    assert (again.counts.seen, again.counts.submitted, again.counts.errors) == (1, 1, 0)
    cp = json.loads(ctx.storage.get(BUCKET, run.key))
    assert cp["errors"] == [] and cp["counts"]["submitted"] == 3 and cp["runs"] == 2
    # A finished, clean backfill is not resumed: the next run starts over (and finds everything in flight)
    _, third = backfill(ctx)
    assert third.resumed_after is None and third.counts.duplicate == 3


def test_an_interrupted_backfill_resumes_after_the_last_finished_key(ctx: Context) -> None:
    keys = [f"uploads/{i:02d}.png" for i in range(6)]
    for k in keys:
        ctx.storage.add(k, k.encode())
    ctx.ci.interrupt_at = 3                      # Ctrl-C while submitting the third object
    run = PrefixRun(ctx, walker(ctx), "backfill", "uploads/")
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    cp = json.loads(ctx.storage.get(BUCKET, run.key))
    assert cp["last_key"] == keys[1] and not cp["complete"]
    ctx.ci.interrupt_at = None
    _, report = backfill(ctx)
    assert report.resumed_after == keys[1]
    # The interrupted object's claim was made before the interrupt, so it is taken over later by
    # reconcile or the next run; the rest are submitted
    assert report.counts.seen == 4 and report.counts.submitted == 3
    assert ctx.ci.keys() == keys[:2] + keys[3:]
    # --restart ignores an unfinished checkpoint
    _, fresh = backfill(ctx, restart=True)
    assert fresh.resumed_after is None and fresh.counts.seen == 6


def test_a_run_stops_after_too_many_errors_in_a_row(ctx: Context) -> None:
    for i in range(30):
        ctx.storage.add(f"uploads/{i:02d}.png", str(i).encode())
        ctx.storage.fail_head[f"uploads/{i:02d}.png"] = 1
    run, report = backfill(ctx)
    assert not report.complete and "10 errors in a row" in report.stopped
    assert report.counts.errors == 10 and ctx.ci.created == []
    assert len(json.loads(ctx.storage.get(BUCKET, run.key))["errors"]) == 10


def test_parallel_workers_keep_listing_order_for_the_checkpoint(ctx: Context) -> None:
    keys = [f"uploads/{i:03d}.png" for i in range(50)]
    for k in keys:
        ctx.storage.add(k, k.encode())
    run = PrefixRun(ctx, Walker(ctx, workers=8), "backfill", "uploads/")
    report = run.execute()
    assert report.counts.submitted == 50 and sorted(ctx.ci.keys()) == keys
    assert json.loads(ctx.storage.get(BUCKET, run.key))["last_key"] == keys[-1]


def test_a_prefix_no_rule_watches_is_refused(ctx: Context) -> None:
    with pytest.raises(OperatorError, match="no rule watches keys under 'docs/'"):
        backfill(ctx, prefix="docs/")


# --- status -----------------------------------------------------------------------------------

def test_status_counts_by_tag_and_lists_old_pending_jobs(ctx: Context) -> None:
    s = ctx.storage
    s.add("uploads/clean.png", b"1", tags={"ci-status": "CLEAN", "owner": "a"})
    s.add("uploads/failed.png", b"2", tags={"ci-status": "FAILED"})
    s.add("uploads/new.png", b"3")
    s.add("uploads/labelled.mp4", b"4", tags={"ci-status": "LABELLED"})
    s.add("uploads/old.png", b"5")
    s.add("uploads/young.png", b"6")
    s.add("uploads/orphan.png", b"7", tags={"ci-status": "PENDING", "ci-rule": "images"})
    s.add("quarantine/uploads/bad.png", b"8", tags={"ci-status": "SUSPICIOUS"})
    s.add(".ciflow/jobs/x.json", b"{}")
    records = Records(s, BUCKET, ".ciflow/")
    for key, age in (("uploads/old.png", 1000), ("uploads/young.png", 10)):
        rid = RecordId(key, s.etag(key), "images")
        records.create_claim(rid, records.new_claim(rid))
        records.update_claim(rid, job_id=f"job-{key[8:-4]}")
        # ages come from COS's clock: the claim's Last-Modified
        s.set_age(rid.path(".ciflow/", "jobs"), age)
        s.put_tags(BUCKET, key, {"ci-status": "PENDING", "ci-rule": "images"})
    writes = len(s.writes)
    r = status(ctx, "uploads/", older_than=60, now=2000)
    assert r.counts == {"PENDING": 3, "CLEAN": 1, "SUSPICIOUS": 0, "FAILED": 1, "LABELLED": 1, "untagged": 1}
    assert r.total == 7 and r.quarantine_counts is None
    assert [(p.key, p.job_id, round(p.age) if p.age else p.age) for p in r.pending] == [
        ("uploads/orphan.png", "", None), ("uploads/old.png", "job-old", 1000)]
    assert r.pending[0].note == "no unfinished claim for this ETag"
    r = status(ctx, "", include_quarantine=True, now=2000)
    assert r.total == 7 and r.quarantine_prefix == "quarantine/" and r.quarantine_counts["SUSPICIOUS"] == 1
    assert {p.key for p in r.pending} == {"uploads/old.png", "uploads/young.png", "uploads/orphan.png"}
    assert len(s.writes) == writes              # status writes nothing
    out = io.StringIO()
    cli.render_status(cli.IO(out, io.StringIO()), r)
    assert "job-young" in out.getvalue() and "quarantine uploads-1250000000/quarantine/" in out.getvalue()


# --- explain ----------------------------------------------------------------------------------

def test_explain_shows_the_exact_request_and_has_no_side_effects(ctx: Context) -> None:
    etag = ctx.storage.add("uploads/a.png", b"a", tags={"owner": "alice"})
    writes = list(ctx.storage.writes)
    e = explain(ctx, "uploads/a.png", now=1_700_000_000)
    assert ctx.storage.writes == writes and ctx.ci.created == []
    assert e["object"]["etag"] == etag and e["skipped"] is None
    assert e["rules"] == [{"name": "images", "job": "ImageInspect", "matches": True,
                           "why": "under 'uploads/', suffix '.png'"}]
    (job,) = e["jobs"]
    assert job["state"] == "new" and job["request_for"] == "upload event or backfill"
    expected = build_job(ctx.rules.rules[0], "uploads/a.png", UserData("images", etag).encode(),
                         f"https://cb.example.com/?t=REDACTED&r=images&e={etag}", "XML", BUCKET, "ap-guangzhou")
    assert job["request"] == expected
    assert job["outcomes"]["SUSPICIOUS"]["actions"] == ["quarantine"]
    assert "quarantine/uploads/a.png" in job["outcomes"]["SUSPICIOUS"]["effects"][0]
    assert ["ci-suspicious-type", "<payload type>"] in job["outcomes"]["SUSPICIOUS"]["tags"]
    # What the CLI then submits is exactly that request (token aside)
    backfill(ctx)
    sent = dict(ctx.ci.created[0], CallBack=redact_token(ctx.ci.created[0]["CallBack"]))
    assert sent == expected
    again = explain(ctx, "uploads/a.png")
    assert again["jobs"][0]["state"] == "live" and "duplicate" in again["jobs"][0]["on_upload"]
    assert "n=2" in again["jobs"][0]["request"]["Operation"]["UserData"]   # what a rescan would send


def test_explain_without_an_object_and_the_skip_reasons(ctx: Context) -> None:
    e = explain(ctx, "uploads/x.bin", content_type="image/webp")
    assert e["object"] == {"exists": False} and e["content_type_from"] == "--content-type"
    assert e["rules"][0]["matches"] and "content type 'image/webp'" in e["rules"][0]["why"]
    assert "<etag>" in e["jobs"][0]["request"]["Operation"]["UserData"]
    e = explain(ctx, "uploads/x.bin", head=False)
    assert e["object"] is None and e["skipped"] == "no rule matches"
    assert "the suffix is not one of" in e["rules"][0]["why"]
    assert explain(ctx, "quarantine/uploads/a.png")["skipped"] == "in the quarantine prefix"
    assert explain(ctx, "docs/a.png")["skipped"] == "outside the watched prefixes (uploads/)"
    ctx.bucket = "stranger-1250000000"
    assert explain(ctx, "uploads/a.png")["skipped"] == "bucket is not in CIFLOW_BUCKETS"


# --- check-config -----------------------------------------------------------------------------

def write_rules(tmp_path: Path, doc: Any) -> str:
    p = tmp_path / "rules.json"
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(p)


BAD_RULES = {"rules": [{"name": "bad name", "job": "Nope", "prefixes": ["quarantine/"],
                        "outcomes": {"SUSPICIOUS": {"actions": ["zap"]}}},
                       {"name": "ok", "job": "ImageInspect", "prefixes": ["a/"], "job_level": 7}]}


def test_check_config_reports_every_problem_with_its_location(tmp_path: Path) -> None:
    rules = write_rules(tmp_path, BAD_RULES)
    env = {"CIFLOW_CALLBACK_SECRET": "short", "CIFLOW_HTTP_TIMEOUT": "soon", "CIFLOW_BUCKETS": "Not A Bucket",
           "CIFLOW_RULES_FILE": rules, "CIFLOW_CALLBACK_FORMAT": "YAML"}
    r = check_config(env)
    assert [p.where for p in r.errors] == [
        "CIFLOW_REGION", "CIFLOW_CALLBACK_SECRET", "CIFLOW_CALLBACK_FORMAT", "CIFLOW_HTTP_TIMEOUT",
        "CIFLOW_CALLBACK_URL", "CIFLOW_BUCKETS",
        f"{rules}: rules[0].name", f"{rules}: rules[0].job", f"{rules}: rules[0].outcomes.SUSPICIOUS.actions[0]",
        f"{rules}: rules[1].job_level", f"{rules}: rules[0].prefixes[0]"]
    assert any("overlaps the quarantine_prefix" in p.message for p in r.errors)
    assert r.settings is None and r.rules is None


def test_check_config_cli_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(ENV) + ["CIFLOW_RULES", "CIFLOW_RULES_FILE"]:
        monkeypatch.delenv(k, raising=False)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    code, out, _ = run(["check-config"])
    assert code == 0 and "configuration OK" in out and "images: ImageInspect on uploads/" in out
    bad = write_rules(tmp_path, BAD_RULES)
    code, out, _ = run(["check-config", "--rules", bad])
    assert code == 1 and f"error: {bad}: rules[1].job_level: must be 0, 1 or 2 (got 7)" in out
    assert "5 problem(s)" in out
    code, out, _ = run(["check-config", "--rules", write_rules(tmp_path, "{not json")])
    assert code == 1 and "not valid JSON" in out
    code, out, _ = run(["check-config", "--rules", str(tmp_path / "missing.json"), "--json"])
    doc = json.loads(out)
    assert code == 1 and not doc["ok"] and doc["problems"][0]["message"].startswith("cannot read")
    # --rules-only checks a file without any environment
    for k in ENV:
        monkeypatch.delenv(k)
    code, out, _ = run(["check-config", "--rules-only", "--rules", DEFAULT_RULES_FILE])
    assert code == 0 and "settings" not in out
    code, out, _ = run(["check-config"])
    assert code == 1 and "error: CIFLOW_REGION: not set" in out
    assert "warning: TENCENTCLOUD_SECRETID/TENCENTCLOUD_SECRETKEY: not set" in out


# --- main: errors are one line, no traceback --------------------------------------------------

def run(argv: list[str]) -> tuple[int, str, str]:
    from ciflow.settings import reset_settings

    reset_settings()
    out, err = io.StringIO(), io.StringIO()
    try:
        code = cli.main(argv, out, err)
    finally:
        reset_settings()
    return code, out.getvalue(), err.getvalue()


def test_expected_problems_are_one_line_and_exit_non_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("CIFLOW_CALLBACK_SECRET", "short")
    code, out, err = run(["status", "--prefix", "uploads/"])
    assert (code, out) == (2, "")
    assert err == "python -m ciflow status: configuration error: CIFLOW_CALLBACK_SECRET: must be set to at least " \
                  "16 characters\n"
    monkeypatch.setenv("CIFLOW_CALLBACK_SECRET", "s" * 24)
    monkeypatch.setenv("CIFLOW_RULES", json.dumps(BAD_RULES))
    code, _, err = run(["explain", "uploads/a.png"])
    assert code == 2 and err.count("\n") == 1 and "(and 4 more; `python -m ciflow check-config`" in err
    monkeypatch.delenv("CIFLOW_RULES")
    code, _, err = run(["backfill", "--prefix", "uploads/", "--bucket", "stranger-1250000000"])
    assert code == 2 and "is not in CIFLOW_BUCKETS" in err
    code, _, err = run(["backfill", "--prefix", "uploads/", "--rate", "lots"])
    assert code == 2 and err.count("\n") == 1 and "--rate" in err
    monkeypatch.setenv("CIFLOW_BUCKETS", "")
    code, _, err = run(["status", "--prefix", "uploads/"])
    assert code == 2 and "no bucket: pass --bucket or set CIFLOW_BUCKETS" in err
    # A network failure is one line too (nothing listens on port 1)
    monkeypatch.setenv("CIFLOW_S3_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("CIFLOW_HTTP_TIMEOUT", "1")
    code, _, err = run(["status", "--prefix", "uploads/", "--bucket", BUCKET])
    assert code == 1 and err.count("\n") == 1 and "error: LIST uploads/: EndpointConnectionError" in err
    assert "Traceback" not in err
    code, _, err = run(["rescan"])
    assert code == 2 and "give either KEY... or --prefix P" in err


def test_the_module_entry_point_runs_and_importing_it_does_not() -> None:
    import importlib

    importlib.import_module("ciflow.__main__")     # the 3.9 layout check imports every module
    proc = subprocess.run([sys.executable, "-m", "ciflow", "--help"], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "layers" / "ciflow"), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 0
    for command in ("backfill", "rescan", "status", "explain", "check-config"):
        assert command in proc.stdout


def test_check_config_online_with_a_state_bucket_requires_it_never_versioned() -> None:
    from ciflow.operations.check_config import bucket_problems

    class Versions:
        def __init__(self, states: dict[str, str]):
            self.states = states

        def versioning(self, bucket: str) -> str:
            return self.states[bucket]

    store = Versions({"a-1250000000": "Suspended", "state-1250000000": ""})
    found = bucket_problems(store, ["a-1250000000"], "state-1250000000")
    assert [p.severity for p in found] == ["info"] and "CIFLOW_STATE_BUCKET" in found[0].message
    store.states["state-1250000000"] = "Suspended"
    found = bucket_problems(store, ["a-1250000000"], "state-1250000000")
    assert [(p.where, p.severity) for p in found][-1] == ("CIFLOW_STATE_BUCKET", "error")
    # Without a state bucket, a Suspended bucket is a warning that names the remedy
    found = bucket_problems(store, ["a-1250000000"])
    assert found[0].severity == "warning" and "CIFLOW_STATE_BUCKET" in found[0].message
