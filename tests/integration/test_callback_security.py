"""Forged, replayed and hostile callbacks change nothing."""

from __future__ import annotations

import json
from typing import Dict, Tuple
from urllib.parse import urlsplit

import pytest

from devstack.emulator.xmlutil import to_xml
from devstack.samples import _png, zip_archive
from tests.conftest import Dev

pytestmark = pytest.mark.integration


def _finished(dev: Dev, key: str, bucket: str, status: str) -> Tuple[Dict, str]:
    """Upload, wait for the verdict, and return (the job as CI reports it, its callback query)."""
    final = "quarantine/" + key if status == "SUSPICIOUS" else key
    dev.put(key, _png(seed=21) + (zip_archive() if status == "SUSPICIOUS" else b""), bucket=bucket)
    dev.wait_status(final, status, bucket=bucket)
    if final != key:  # a move finishes with the delete of the original
        dev.wait_for(lambda: not dev.exists(key, bucket), what="original deleted after the move")
    job = dev.jobs_for(key, bucket)[0]
    return job["detail"], urlsplit(job["request"]["CallBack"]).query


def _body(detail: Dict) -> bytes:
    return to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": detail}).encode()


def _snapshot(dev: Dev, keys, bucket=None):
    return {k: dev.tags(k, bucket) for k in keys}


@pytest.fixture
def finished_pair(dev: Dev, prefix: str):
    """A clean job in the main bucket and a clean job in the other bucket."""
    a, qa = _finished(dev, f"{prefix}a.png", dev.buckets[0], "CLEAN")
    b, qb = _finished(dev, f"{prefix}b.png", dev.buckets[1], "CLEAN")
    return a, qa, b, qb


def test_missing_token_is_401_and_changes_nothing(dev: Dev, finished_pair) -> None:
    a, qa, _, _ = finished_pair
    key = a["Input"]["Object"]
    before = _snapshot(dev, [key])
    forged = json.loads(json.dumps(a))
    forged["Operation"]["ImageInspectResult"]["ProcessResult"]["Suspicious"] = "true"
    status, body = dev.post_callback(_body(forged))
    assert status == 401
    assert _snapshot(dev, [key]) == before


def test_wrong_token_is_403_and_changes_nothing(dev: Dev, finished_pair) -> None:
    a, qa, _, _ = finished_pair
    key = a["Input"]["Object"]
    before = _snapshot(dev, [key])
    token = qa.split("=", 1)[1]
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    for q in ("t=garbage", "t=v1.99999999999.abc", f"t={tampered}"):
        status, _ = dev.post_callback(_body(a), q)
        assert status == 403, q
    assert _snapshot(dev, [key]) == before


def test_valid_token_for_another_buckets_job_is_403(dev: Dev, finished_pair) -> None:
    a, qa, b, qb = finished_pair
    ka, kb = a["Input"]["Object"], b["Input"]["Object"]
    before_a = _snapshot(dev, [ka])
    before_b = _snapshot(dev, [kb], dev.buckets[1])
    # A's real token, with B's real job as the body
    assert dev.post_callback(_body(b), qa)[0] == 403
    # A's real token and A's identity, but B's job id (CI must not confirm it in A's bucket)
    swapped = json.loads(json.dumps(a))
    swapped["JobId"] = b["JobId"]
    assert dev.post_callback(_body(swapped), qa)[0] == 403
    assert _snapshot(dev, [ka]) == before_a
    assert _snapshot(dev, [kb], dev.buckets[1]) == before_b


def test_forged_verdict_under_a_real_token_is_overruled_by_ci(dev: Dev, finished_pair) -> None:
    # Given a real token and a body claiming SUSPICIOUS for a clean image
    a, qa, _, _ = finished_pair
    key = a["Input"]["Object"]
    forged = json.loads(json.dumps(a))
    forged["Operation"]["ImageInspectResult"]["ProcessResult"].update(Suspicious="true", SuspiciousType="ZIP")
    status, resp = dev.post_callback(_body(forged), qa)
    # Then the callback acts on what CI reports (CLEAN), not on the body
    assert status == 200 and resp["results"][0]["outcome"] == "CLEAN"
    assert dev.tags(key)["ci-status"] == "CLEAN"
    assert dev.exists(key) and not dev.exists("quarantine/" + key)


def test_replayed_callback_is_idempotent(dev: Dev, prefix: str) -> None:
    # Given a suspicious image that was already quarantined
    d, q = _finished(dev, f"{prefix}s.png", dev.bucket, "SUSPICIOUS")
    key = d["Input"]["Object"]
    qkey = "quarantine/" + key
    before = _snapshot(dev, [qkey])
    # When the real callback is delivered twice more
    for _ in range(2):
        status, resp = dev.post_callback(_body(d), q)
        assert status == 200
        assert resp["results"][0]["status"] == "already-applied"
    # Then nothing changes: still one quarantined copy, same tags, original absent
    assert _snapshot(dev, [qkey]) == before
    assert not dev.exists(key)
    assert not dev.exists(f"quarantine/{d['JobId']}/{key}")


@pytest.mark.parametrize("body,code", [
    (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
     b"<Response><JobsDetail><JobId>&b;</JobId></JobsDetail></Response>", 400),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><Response>&e;</Response>', 400),
    (b"<Response><JobsDetail>", 400),
    (b'{"JobsDetail": ', 400),
    (b"\xff\xfe\x00garbage", 400),
    (b"", 400),
    (b'{"JobsDetail": {"JobId": 5}}', 400),
    (b"plain words", 415),
    (b"<Response>" + b"x" * (2 * 1024 * 1024) + b"</Response>", 413),
])
def test_hostile_bodies_get_4xx_and_change_nothing(dev: Dev, finished_pair, body: bytes, code: int) -> None:
    a, qa, _, _ = finished_pair
    key = a["Input"]["Object"]
    before = _snapshot(dev, [key])
    status, _ = dev.post_callback(body, qa)
    assert status == code
    assert _snapshot(dev, [key]) == before
