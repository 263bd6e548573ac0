"""Verdicts through TDMQ (CallBackType=TDMQ) on the local stack: CI publishes each result to a CMQ
topic, and the topic trigger hands it to the callback function as SCF's CMQ event. The message is an
untrusted hint; CI's GET /jobs is the authority."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from devstack.emulator.xmlutil import to_xml
from devstack.samples import _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration
TOPIC = "ciflow-results"


@pytest.fixture(scope="module")
def mq_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """A stack whose image rule delivers through a TDMQ topic (XML), and a second rule for JSON."""
    rule: dict[str, Any] = {"name": "images", "job": "ImageInspect", "prefixes": ["uploads/"],
                            "delivery": {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": TOPIC},
                            "outcomes": {"SUSPICIOUS": {"actions": ["quarantine"]}}}
    json_rule = {**rule, "name": "images-json", "prefixes": ["json/"], "callback_format": "JSON"}
    queue_rule = {**rule, "name": "images-queue", "prefixes": ["queued/"],
                  "delivery": {"type": "tdmq", "mq_region": "gz", "mq_mode": "Queue", "mq_name": "results-q"}}
    path = Path(tmp_path_factory.mktemp("rules")) / "rules.json"
    path.write_text(json.dumps({"rules": [rule, json_rule, queue_rule]}))
    yield from start_dev("--rules", str(path), "--reconcile-every", "0")


def tdmq(dev: Dev, publish: Any = None) -> dict[str, Any]:
    url = dev.env["CIFLOW_DEV_CONFIG"].replace("/config", "/tdmq")
    data = json.dumps(publish).encode() if publish is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def configure(dev: Dev, **values: Any) -> None:
    req = urllib.request.Request(dev.env["CIFLOW_DEV_CONFIG"], data=json.dumps(values).encode(), method="POST")
    urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture(autouse=True)
def reset(mq_dev: Dev) -> Iterator[None]:
    yield
    configure(mq_dev, mq_body="plain", mq_msg_tag="string", mq_batch=4, mq_batch_window=0.05,
              mq_drop_rate=0.0, mq_duplicate_rate=0.0, mq_reorder=0.0, tagging_fail_rate=0.0,
              tagging_stall_seconds=0.0)
    mq_dev.ci_config(callback_user_data="omit")


def delivered(dev: Dev, job_id: str) -> list[dict[str, Any]]:
    return [d for d in tdmq(dev)["deliveries"] if d["job_id"] == job_id]


def settled_deliveries(dev: Dev, job_id: str) -> list[dict[str, Any]]:
    """The job's deliveries once the last one is recorded as delivered. The broker records an outcome
    when the invocation returns, a moment after the function's last write is visible."""
    return dev.wait_for(lambda: (d := delivered(dev, job_id)) and d[-1]["outcome"] == "delivered" and d,
                        what=f"job {job_id} recorded as delivered")


@pytest.mark.parametrize("body", ["plain", "envelope"])
@pytest.mark.parametrize("fmt_prefix", ["uploads/", "json/"], ids=["xml", "json"])
@pytest.mark.parametrize("msg_tag", ["string", "array"])
def test_verdicts_arrive_through_the_topic_in_every_wrapping(mq_dev: Dev, prefix: str, body: str, fmt_prefix: str,
                                                            msg_tag: str) -> None:
    configure(mq_dev, mq_body=body, mq_msg_tag=msg_tag)
    base = prefix.replace("uploads/", fmt_prefix, 1)
    clean, bad = f"{base}clean.png", f"{base}bad.png"
    mq_dev.put(clean, _png(seed=1))
    mq_dev.put(bad, _png(seed=2) + zip_archive())
    assert mq_dev.wait_status(clean, "CLEAN")["ci-rule"] in ("images", "images-json")
    tags = mq_dev.wait_status("quarantine/" + bad, "SUSPICIOUS")
    assert tags["ci-suspicious-type"] == "ZIP"
    mq_dev.wait_for(lambda: not mq_dev.exists(bad), what="the move's delete")
    # Each job asked CI for TDMQ, no HTTP callback was sent, and the topic trigger delivered it
    for key in (clean, bad):
        (job,) = mq_dev.jobs_for(key)
        assert job["request"]["CallBackType"] == "TDMQ" and "CallBack" not in job["request"]
        assert job["request"]["CallBackMqConfig"] == {"MqRegion": "gz", "MqMode": "Topic", "MqName": TOPIC}
        assert [d["outcome"] for d in settled_deliveries(mq_dev, job["detail"]["JobId"])] == ["delivered"]
        assert [c["status"] for c in job["callbacks"]] == ["published"]
    assert not [i for i in mq_dev.invocations("callback") if "httpMethod" in json.dumps(i.get("result") or {})]


def test_merged_batches_are_handled_record_by_record(mq_dev: Dev, prefix: str) -> None:
    configure(mq_dev, mq_batch=8, mq_batch_window=1.5)
    keys = [f"{prefix}b{i}.png" for i in range(6)]
    for i, key in enumerate(keys):
        mq_dev.put(key, _png(seed=10 + i) + (zip_archive() if i % 2 else b""))
    for i, key in enumerate(keys):
        if i % 2:
            mq_dev.wait_status("quarantine/" + key, "SUSPICIOUS")
        else:
            mq_dev.wait_status(key, "CLEAN")
    batches = {d["batch"] for k in keys for j in mq_dev.jobs_for(k)
               for d in settled_deliveries(mq_dev, j["detail"]["JobId"])}
    assert max(batches) > 1, batches


def test_a_failed_delivery_is_delivered_again_and_applied_once(mq_dev: Dev, prefix: str) -> None:
    # Given tag writes fail often, so the callback function raises and the trigger redelivers
    configure(mq_dev, tagging_fail_rate=0.6, mq_redeliveries=6)
    key = f"{prefix}redeliver.png"
    mq_dev.put(key, _png(seed=30) + zip_archive())
    mq_dev.wait_status("quarantine/" + key, "SUSPICIOUS", timeout=60)
    (job,) = mq_dev.jobs_for(key)
    outcomes = [d["outcome"] for d in settled_deliveries(mq_dev, job["detail"]["JobId"])]
    assert outcomes[-1] == "delivered"
    assert len(mq_dev.jobs_for(key)) == 1
    mq_dev.wait_for(lambda: not mq_dev.exists(key), what="the move's delete")


def test_a_slow_tag_write_beside_post_does_not_hold_back_the_record_of_the_job(mq_dev: Dev, prefix: str) -> None:
    # Given every tag write held for 5 s: the PENDING write beside POST /jobs lands long after CI answered,
    # and the result comes meanwhile (no reconcile runs on this stack)
    configure(mq_dev, tagging_stall_seconds=5.0)
    key = f"{prefix}slow-tags.png"
    mq_dev.put(key, _png(seed=50))
    # Then the job was recorded as soon as CI accepted it: the result finds it, and its verdict is applied
    # (a result that finds the job unrecorded for 3 s is left to reconcile)
    mq_dev.wait_status(key, "CLEAN", timeout=40)
    seen = [r for i in mq_dev.invocations("callback") for r in (i.get("result") or {}).get("results", [])
            if r.get("key") == key]
    assert seen and all(r.get("status") != "deferred" for r in seen), seen


def test_duplicated_and_reordered_messages_leave_the_same_state(mq_dev: Dev, prefix: str) -> None:
    configure(mq_dev, mq_duplicate_rate=1.0, mq_reorder=0.5)
    key = f"{prefix}dup.png"
    mq_dev.put(key, _png(seed=40) + zip_archive())
    mq_dev.wait_status("quarantine/" + key, "SUSPICIOUS")
    (job,) = mq_dev.jobs_for(key)
    mq_dev.wait_for(lambda: len(delivered(mq_dev, job["detail"]["JobId"])) >= 2, what="both copies")
    listed = mq_dev.s3.list_objects_v2(Bucket=mq_dev.bucket, Prefix="quarantine/" + prefix).get("Contents", [])
    assert [o["Key"] for o in listed] == ["quarantine/" + key]


def forged(detail: dict[str, Any], **changes: Any) -> str:
    d = json.loads(json.dumps(detail))
    d["Input"].update(changes)
    d.get("Operation", {}).pop("UserData", None)
    return to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": d})


def test_forged_messages_change_nothing_because_ci_disagrees(mq_dev: Dev, prefix: str) -> None:
    # Given a clean upload and a real finished job
    key, other = f"{prefix}victim.png", f"{prefix}innocent.png"
    mq_dev.put(key, _png(seed=50))
    mq_dev.put(other, _png(seed=51))
    mq_dev.wait_status(key, "CLEAN")
    mq_dev.wait_status(other, "CLEAN")
    (job,) = mq_dev.jobs_for(key)
    detail = job["detail"]
    # When someone publishes messages claiming the job is about another object, or a job CI never had
    fake = json.loads(json.dumps(detail))
    fake["JobId"] = "c" + "0" * 32
    for body in (forged(detail, Object=other), forged(fake),
                 forged(detail, BucketId="private-1250000001"), "not a callback at all"):
        tdmq(mq_dev, {"topic": TOPIC, "body": body})
    mq_dev.wait_for(lambda: len([d for d in tdmq(mq_dev)["deliveries"] if not d["job_id"]]) >= 4, what="forgeries")
    # Then nothing changed: the other object is still clean and in place, and no job was created
    assert mq_dev.tags(other)["ci-status"] == "CLEAN" and mq_dev.exists(other)
    assert len(mq_dev.jobs_for(other)) == 1
    results = [r for i in mq_dev.invocations("callback") for r in (i.get("result") or {}).get("results", [])]
    assert len([r for r in results if r.get("status") == "dropped"]) >= 4


def test_a_queue_mode_result_waits_in_the_queue_and_reconcile_applies_it(mq_dev: Dev, prefix: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key = prefix.replace("uploads/", "queued/", 1) + "q.png"
    mq_dev.put(key, _png(seed=60) + zip_archive())
    mq_dev.wait_status(key, "PENDING")
    mq_dev.wait_for(lambda: key in json.dumps(tdmq(mq_dev)["queues"]) or tdmq(mq_dev)["queues"].get("results-q"),
                    what="the message in the queue")
    # Nothing polls a queue: reconcile's GET /jobs finishes the job
    from ciflow import settings as settings_mod
    from ciflow.reconcile import Reconciler

    for k, v in mq_dev.env.items():
        if k.startswith(("CIFLOW_", "TENCENTCLOUD_")) and not k.startswith("CIFLOW_DEV_"):
            monkeypatch.setenv(k, v)
    settings_mod.reset_settings()
    from dataclasses import replace

    try:
        mq_dev.wait_for(lambda: mq_dev.jobs_for(key)[0]["detail"]["State"] == "Success", what="job done")
        import time

        time.sleep(1.2)
        Reconciler(settings=replace(settings_mod.get_settings(), reconcile_after_seconds=0)).run([mq_dev.bucket])
    finally:
        settings_mod.reset_settings()
    assert mq_dev.tags("quarantine/" + key)["ci-status"] == "SUSPICIOUS"
