"""The demo flow end to end: real samples through the local stack, final objects and tags checked."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.demo import QUARANTINE, wait_for_final
from devstack.samples import demo_samples
from tests.conftest import Dev

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_demo_samples_reach_their_final_state(dev: Dev) -> None:
    # Given the demo's samples, uploaded under a fresh prefix
    samples = demo_samples(prefix="uploads/e2e-demo/")
    from devstack.demo import upload

    upload(dev.s3, dev.bucket, samples)
    # When every verdict has arrived
    obs = wait_for_final(dev.s3, dev.bucket, samples, timeout=60)
    assert all(o.ok for o in obs), [(o.sample.key, o.problem) for o in obs if not o.ok]
    by_key = {o.sample.key: o for o in obs}
    # Then clean images stay where they were uploaded, tagged CLEAN, user tags kept
    clean = by_key["uploads/e2e-demo/clean.png"]
    assert clean.final_key == "uploads/e2e-demo/clean.png"
    assert clean.tags["ci-status"] == "CLEAN" and clean.tags["owner"] == "alice"
    uni = by_key["uploads/e2e-demo/holiday photos/café ☕ 100%+1.png"]
    assert uni.final_key == uni.sample.key and uni.tags["ci-status"] == "CLEAN"
    # And suspicious images are in quarantine, tagged with their payload type, originals gone
    for name, kind in (("polyglot-ts.png", "MPEG-TS"), ("invoice.jpg", "ZIP"), ("banner.png", "HTML")):
        o = by_key[f"uploads/e2e-demo/{name}"]
        assert o.final_key == f"{QUARANTINE}uploads/e2e-demo/{name}"
        assert o.tags["ci-status"] == "SUSPICIOUS" and o.tags["ci-suspicious-type"] == kind
        assert not dev.exists(f"uploads/e2e-demo/{name}")
    assert dev.s3.head_object(Bucket=dev.bucket, Key=f"{QUARANTINE}uploads/e2e-demo/polyglot-ts.png")[
        "Metadata"] == {"origin": "demo"}
    # And each processed object has exactly one CI job
    for s in samples:
        assert len(dev.jobs_for(s.key)) == (0 if s.expect_status == "SKIPPED" else 1)


def test_make_demo_command_exits_zero_and_prints_every_object() -> None:
    r = subprocess.run([sys.executable, "-m", "devstack", "demo"], cwd=ROOT, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    for s in demo_samples():
        assert s.key in r.stdout
    assert "16/16 objects reached their expected final state" in r.stdout
    # the inbox rule's verdicts came back through the TDMQ topic, and the demo says so
    assert re.search(r"inbox/scan-with-zip.jpg\s+inbox\s+TDMQ topic ciflow-results \(CMQ trigger", r.stdout)
    assert re.search(r"inbox/scan.png\s+inbox\s+TDMQ topic ciflow-results", r.stdout)
    assert "quarantine/uploads/polyglot-ts.png" in r.stdout
    # videos: people moved for review, the cat labelled as a pet, nothing found in the empty one
    assert "review/uploads/videos/person.mp4" in r.stdout
    assert re.search(r"uploads/videos/cat.mp4\s+cat \(\d+", r.stdout)
    assert re.search(r"uploads/videos/empty.mp4\s+NONE", r.stdout)
    # enhanced output measured against the rule; watermark extracted; the short clip FAILED clearly
    assert "matches the rule" in r.stdout
    assert "watermark 'ciflow-demo-2026' extracted" in r.stdout
    assert "FAILED (SourceFileError.ContentUnsupported)" in r.stdout
