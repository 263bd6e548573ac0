"""Upload → submit → CI emulator → callback → tags/quarantine, observed through the real clients."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from devstack.samples import _jpeg, _png, mpegts_stream, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration

ODD_KEYS = [
    "with space/a b.png",
    "plus+sign.png",
    "percent%41literal.png",
    "percent%20encoded-looking.png",
    "ünïcödé/画像 ☕.png",
    "deep/nested/dir/x.png",
]


def test_clean_png_is_tagged_clean_in_place_and_request_matches_the_docs(dev: Dev, prefix: str) -> None:
    # Given a clean PNG with a user tag
    key = f"{prefix}clean.png"
    etag = dev.put(key, _png(), ContentType="image/png", Tagging="owner=alice")
    # When the pipeline runs
    tags = dev.wait_status(key, "CLEAN")
    # Then the user tag survives, the status tags are merged, and the object did not move
    assert tags["owner"] == "alice"
    assert tags["ci-rule"] == "images"
    assert not dev.exists("quarantine/" + key)
    # And CI received exactly one documented ImageInspect request for it
    reqs = dev.ci_requests_for(key)
    assert len(reqs) == 1
    req = reqs[0]
    assert req["method"] == "POST" and req["path"] == "/jobs" and req["status"] == 200
    assert req["bucket"] == dev.bucket
    body = req["request"]
    assert body["Tag"] == "ImageInspect"
    assert body["Operation"]["JobLevel"] == "0"
    assert body["Operation"]["UserData"] == f"ciflow:1;r=images;e={etag}"
    assert body["CallBackFormat"] == "XML"
    cb = urlsplit(body["CallBack"])
    assert f"{cb.scheme}://{cb.netloc}/" == dev.callback_url
    assert parse_qs(cb.query)["t"][0].startswith("v1.")
    assert tags["ci-job-id"] == req["job_id"]


def test_suspicious_image_is_quarantined_with_tags_and_metadata(dev: Dev, prefix: str) -> None:
    # Given a PNG with an MPEG-TS stream appended, uploaded with user metadata and tags
    key = f"{prefix}poly.png"
    clean_len = len(_png(seed=3))
    dev.put(key, _png(seed=3) + mpegts_stream(), ContentType="image/png", Tagging="owner=bob&team=red",
            Metadata={"origin": "test"})
    # When the pipeline runs, Then the object ends in quarantine, tagged SUSPICIOUS with its payload type
    qkey = "quarantine/" + key
    tags = dev.wait_status(qkey, "SUSPICIOUS")
    assert tags["ci-suspicious-type"] == "MPEG-TS"
    assert tags["owner"] == "bob" and tags["team"] == "red"
    head = dev.s3.head_object(Bucket=dev.bucket, Key=qkey)
    assert head["Metadata"] == {"origin": "test"}
    assert head["ContentType"] == "image/png"
    dev.wait_for(lambda: not dev.exists(key), what="original deleted")
    # And the detector's byte ranges are the real ones
    job = dev.jobs_for(key)[0]["detail"]
    pr = job["Operation"]["ImageInspectResult"]["ProcessResult"]
    assert pr["SuspiciousBeginByte"] == clean_len
    assert pr["SuspiciousSize"] == len(mpegts_stream())
    # And the move into quarantine/ did not start a job
    assert dev.jobs_for(qkey) == []
    skipped = [i for i in dev.invocations("submit") if i.get("ok") and any(
        r["key"] == qkey for r in i["result"]["results"])]
    assert skipped and skipped[0]["result"]["results"][0]["reason"] == "in the quarantine prefix"


def test_jpeg_with_zip_is_quarantined(dev: Dev, prefix: str) -> None:
    key = f"{prefix}invoice.jpg"
    dev.put(key, _jpeg() + zip_archive(), ContentType="image/jpeg")
    tags = dev.wait_status("quarantine/" + key, "SUSPICIOUS")
    assert tags["ci-suspicious-type"] == "ZIP"


@pytest.mark.parametrize("name", ODD_KEYS)
def test_odd_keys_raw_in_events(dev: Dev, prefix: str, name: str) -> None:
    key = prefix + name
    dev.put(key, _png(seed=5), ContentType="image/png")
    dev.wait_status(key, "CLEAN")
    assert len(dev.jobs_for(key)) == 1


@pytest.fixture(scope="module")
def dev_url_keys():
    """A stack whose COS events carry percent-encoded keys (the other plausible form)."""
    yield from start_dev("--key-encoding", "url")


@pytest.mark.parametrize("name", ODD_KEYS)
def test_odd_keys_percent_encoded_in_events(dev_url_keys: Dev, prefix: str, name: str) -> None:
    key = prefix + name
    dev_url_keys.put(key, _png(seed=6) + zip_archive(), ContentType="image/png")
    dev_url_keys.wait_status("quarantine/" + key, "SUSPICIOUS")
    assert len(dev_url_keys.jobs_for(key)) == 1


def test_keys_outside_rules_are_skipped_without_a_job(dev: Dev, prefix: str) -> None:
    # Given a folder placeholder, a key outside the watched prefix, and a non-image under it
    folder = f"{prefix}folder/"
    outside = f"elsewhere/{prefix}x.png"
    text = f"{prefix}notes.txt"
    dev.put(folder, b"")
    dev.put(outside, _png())
    dev.put(text, b"hello", ContentType="text/plain")
    reasons = {}

    def seen() -> bool:
        for inv in dev.invocations("submit"):
            for r in (inv.get("result") or {}).get("results", []):
                reasons[r["key"]] = r.get("reason")
        return all(k in reasons for k in (folder, outside, text))

    dev.wait_for(seen, what="three skip results")
    # Then each is skipped with its reason, and CI never saw them
    assert reasons[folder] == "folder placeholder"
    assert reasons[outside] == "outside the watched prefixes"
    assert reasons[text] == "no rule matches"
    for k in (folder, outside, text):
        assert dev.jobs_for(k) == []
        assert "ci-status" not in (dev.tags(k) or {})


def test_non_image_and_oversized_fail_like_ci(dev: Dev, prefix: str) -> None:
    bad = f"{prefix}fake.png"
    big = f"{prefix}huge.png"
    dev.put(bad, b"not an image at all", ContentType="image/png")
    dev.put(big, _png() + b"\0" * (33 * 1024 * 1024), ContentType="image/png")
    assert dev.wait_status(bad, "FAILED")["ci-reason"] == "UnsupportedImageFormat"
    assert dev.wait_status(big, "FAILED", timeout=40)["ci-reason"] == "InputFileTooLarge"
    assert dev.exists(bad) and dev.exists(big)


def test_tag_limit_keeps_every_user_tag(dev: Dev, prefix: str) -> None:
    # Given an image that already carries 8 user tags
    key = f"{prefix}tagged.png"
    user = {f"u{i}": f"v{i}" for i in range(8)}
    dev.put(key, _png(), Tagging="&".join(f"{k}={v}" for k, v in user.items()))
    tags = dev.wait_status(key, "CLEAN")
    # Then all 8 survive, and only the highest-priority status tags were added (10 in total)
    assert {k: tags[k] for k in user} == user
    assert len(tags) == 10
    assert set(tags) - set(user) == {"ci-status", "ci-job-id"}


def test_function_error_is_retried_by_the_runner(dev: Dev, prefix: str) -> None:
    # Given CI answers the next POST /jobs with 503, more often than one invocation tries (three times):
    # the first invocation fails, and SCF's retries (two) finish the work
    dev.ci_config(fail_next_creates=5)
    key = f"{prefix}retry.png"
    dev.put(key, _png(seed=11))
    # Then SCF's retry delivers the event again and the object still ends CLEAN with one job
    dev.wait_status(key, "CLEAN", timeout=30)
    assert len(dev.jobs_for(key)) == 1
    attempts = [i for i in dev.invocations("submit")
                if any(r.get("key") == key for r in (i.get("result") or {}).get("results", []))
                or key in i.get("error", "")]
    assert any(not i["ok"] for i in attempts)
    assert any(i["ok"] and i["attempt"] == 2 for i in attempts)


@pytest.fixture(scope="module")
def dev_triple():
    """A stack that delivers every COS event three times at once."""
    yield from start_dev("--event-copies", "3")


def test_each_event_delivered_three_times_makes_one_job(dev_triple: Dev, prefix: str) -> None:
    keys = [f"{prefix}{i}.png" for i in range(5)]
    for i, k in enumerate(keys):
        dev_triple.put(k, _png(seed=i) + (zip_archive() if i % 2 else b""))
    for i, k in enumerate(keys):
        final = "quarantine/" + k if i % 2 else k
        dev_triple.wait_status(final, "SUSPICIOUS" if i % 2 else "CLEAN")
    for k in keys:
        assert len(dev_triple.jobs_for(k)) == 1
