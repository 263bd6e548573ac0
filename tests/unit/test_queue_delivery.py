"""TDMQ delivery: rules and settings choose it, submit asks CI for it, and the callback function
takes SCF's CMQ topic-trigger event in every plausible wrapping, trusting only CI's answer."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any, Optional

import pytest

from ciflow.delivery import URL, Delivery, parse_delivery
from ciflow.errors import ConfigError, RequestRejected, RetryableError
from ciflow.jobs import build_job
from ciflow.queue_delivery import QueueDeliveryHandler, is_queue_event, message_claims
from ciflow.rules import parse_rules
from ciflow.settings import load_settings

BUCKET = "uploads-1250000000"
UD = "ciflow:1;r=images;e=0123456789abcdef0123456789abcdef"
BASE_ENV = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "s" * 20}
TDMQ = Delivery("tdmq", "gz", "Topic", "ciflow-results")


def detail(job_id: str = "c" + "1" * 32, key: str = "uploads/a.png", user_data: Optional[str] = UD) -> dict:
    d: dict[str, Any] = {"JobId": job_id, "State": "Success", "Tag": "ImageInspect", "Code": "Success",
                         "Input": {"BucketId": BUCKET, "Object": key, "Region": "ap-guangzhou"},
                         "Operation": {"ImageInspectResult": {"State": "Success", "ProcessResult": {
                             "Suspicious": "false"}}}}
    if user_data is not None:
        d["Operation"]["UserData"] = user_data
    return d


def xml_body(d: dict) -> str:
    from devstack.emulator.xmlutil import to_xml

    return to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": d})


def json_body(d: dict) -> str:
    return json.dumps({"EventName": "TaskFinish", "JobsDetail": [d]})


def cmq_event(*bodies: str, msg_tag: Any = "tag1,tag2") -> dict:
    return {"Records": [{"CMQ": {"type": "topic", "topicOwner": 1250000000, "topicName": "ciflow-results",
                                 "subscriptionName": "ciflow", "publishTime": "2026-11-29T10:00:00.000Z",
                                 "msgId": f"m{i}", "requestId": "r", "msgBody": b, "msgTag": msg_tag}}
                        for i, b in enumerate(bodies)]}


# --- choosing the delivery ------------------------------------------------------------------------

def test_parse_delivery_accepts_url_and_a_valid_tdmq_config() -> None:
    assert parse_delivery("url", "d") == (URL, [])
    d, problems = parse_delivery({"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "ciflow-results"},
                                 "d")
    assert d == TDMQ and problems == []


@pytest.mark.parametrize("raw, where", [
    ({"type": "tdmq", "mq_region": "ap-guangzhou", "mq_mode": "Topic", "mq_name": "q"}, "d.mq_region"),
    ({"type": "tdmq", "mq_region": "gz", "mq_mode": "Fanout", "mq_name": "q"}, "d.mq_mode"),
    ({"type": "tdmq", "mq_region": "gz", "mq_mode": "Queue", "mq_name": "9bad"}, "d.mq_name"),
    ({"type": "tdmq", "mq_region": "gz", "mq_mode": "Queue", "mq_name": "q", "x": 1}, "d"),
    ("http", "d"),
])
def test_parse_delivery_names_the_field_at_fault(raw: Any, where: str) -> None:
    d, problems = parse_delivery(raw, "d")
    assert d is None and where in [w for w, _ in problems]


def test_settings_choose_tdmq_globally_and_name_a_missing_variable() -> None:
    s = load_settings({**BASE_ENV, "CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz",
                       "CIFLOW_CALLBACK_MQ_NAME": "ciflow-results"})
    assert s.delivery == TDMQ
    assert load_settings(BASE_ENV).delivery == URL
    with pytest.raises(ConfigError, match="CIFLOW_CALLBACK_MQ_NAME"):
        load_settings({**BASE_ENV, "CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "gz"})
    with pytest.raises(ConfigError, match="CIFLOW_CALLBACK_TYPE"):
        load_settings({**BASE_ENV, "CIFLOW_CALLBACK_TYPE": "sqs"})


def rules(delivery: Any = None) -> Any:
    rule: dict[str, Any] = {"name": "images", "job": "ImageInspect", "prefixes": ["uploads/"]}
    if delivery is not None:
        rule["delivery"] = delivery
    return parse_rules(json.dumps({"rules": [rule]}), "rules.json")


def test_a_rule_chooses_its_own_delivery_and_submit_asks_ci_for_it() -> None:
    rule = rules({"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "ciflow-results"}).rules[0]
    job = build_job(rule, "uploads/a.png", UD, "https://cb.example/?t=x", "XML")
    assert job["CallBackType"] == "TDMQ" and "CallBack" not in job
    assert job["CallBackMqConfig"] == {"MqRegion": "gz", "MqMode": "Topic", "MqName": "ciflow-results"}
    # the settings' choice applies to rules without one, and the rule's own wins
    plain = rules().rules[0]
    assert build_job(plain, "k", UD, "https://cb.example/?t=x", "XML", delivery=TDMQ)["CallBackType"] == "TDMQ"
    assert build_job(plain, "k", UD, "https://cb.example/?t=x", "XML")["CallBack"].startswith("https://")


def test_a_bad_rule_delivery_is_reported_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"rules\[0\]\.delivery\.mq_mode"):
        rules({"type": "tdmq", "mq_region": "gz", "mq_mode": "x", "mq_name": "q"})


# --- what a message may look like -------------------------------------------------------------------

@pytest.mark.parametrize("wrap", [
    lambda b: b,                                                  # the callback body itself
    lambda b: json.dumps({"msgBody": b}),                         # inside a JSON envelope
    lambda b: json.dumps({"Message": base64.b64encode(b.encode()).decode()}),  # base64 in an envelope
    lambda b: json.dumps({"outer": json.dumps({"Body": b})}),     # an envelope in an envelope
], ids=["plain", "envelope", "base64-envelope", "nested-envelope"])
@pytest.mark.parametrize("fmt", [xml_body, json_body], ids=["xml", "json"])
def test_message_claims_finds_the_jobs_in_every_plausible_wrapping(wrap: Any, fmt: Any) -> None:
    claims = message_claims(wrap(fmt(detail(user_data=None))), 1024 * 1024)
    assert [(c.job_id, c.bucket, c.key) for c in claims] == [("c" + "1" * 32, BUCKET, "uploads/a.png")]


@pytest.mark.parametrize("body", ["", "not a document", "{}", json.dumps({"msgBody": "nope"}), 42,
                                  "<!DOCTYPE x [<!ENTITY a 'b'>]><Response/>"])
def test_a_message_naming_no_job_is_rejected(body: Any) -> None:
    with pytest.raises(RequestRejected):
        message_claims(body, 1024 * 1024)


def test_is_queue_event_tells_the_cmq_trigger_from_http() -> None:
    assert is_queue_event(cmq_event("x"))
    assert not is_queue_event({"httpMethod": "POST", "body": ""})
    assert not is_queue_event({"Records": [{"cos": {}}]})


# --- the handler: CI's answer is the authority --------------------------------------------------------

class FakeCi:
    def __init__(self, jobs: dict[str, dict]):
        self.jobs = jobs
        self.fail_once: set[str] = set()
        self.asked: list[str] = []

    def get(self, bucket: str, job_id: str) -> Optional[dict]:
        self.asked.append(job_id)
        if job_id in self.fail_once:
            self.fail_once.discard(job_id)
            raise RetryableError("GET /jobs: 503")
        d = self.jobs.get(job_id)
        return d if d is not None and d["Input"]["BucketId"] == bucket else None


class Recorder:
    def __init__(self) -> None:
        self.completed: list[str] = []

    def complete(self, bucket: str, d: dict) -> dict:
        self.completed.append(d["JobId"])
        return {"job_id": d["JobId"], "status": "applied"}


def handler(ci: FakeCi, buckets: tuple = (BUCKET,)) -> tuple[QueueDeliveryHandler, Recorder]:
    settings = replace(load_settings(BASE_ENV), buckets=buckets)
    h = QueueDeliveryHandler(storage=object(), ci=ci, settings=settings, rules=rules())  # type: ignore[arg-type]
    h.completer = Recorder()  # type: ignore[assignment]
    return h, h.completer  # type: ignore[return-value]


def test_every_record_of_a_merged_batch_is_handled_and_a_bad_one_does_not_sink_the_rest() -> None:
    a, b = detail("c" + "a" * 32), detail("c" + "b" * 32, key="uploads/b.png")
    h, rec = handler(FakeCi({a["JobId"]: a, b["JobId"]: b}))
    out = h.handle(cmq_event(xml_body(a), "garbage", json.dumps({"msgBody": json_body(b)}), msg_tag=["t1"]))
    assert rec.completed == [a["JobId"], b["JobId"]]
    assert [r["status"] for r in out["results"]] == ["applied", "dropped", "applied"]


def test_a_forged_message_changes_nothing_because_ci_disagrees() -> None:
    real = detail("c" + "c" * 32)
    forged = detail("c" + "c" * 32, key="uploads/other.png")       # a real job id, another object
    unknown = detail("c" + "d" * 32)                                # a job CI never had
    h, rec = handler(FakeCi({real["JobId"]: real}))
    out = h.handle(cmq_event(xml_body(forged), xml_body(unknown)))
    assert rec.completed == [] and [r["status"] for r in out["results"]] == ["dropped", "dropped"]


def test_a_message_about_another_buckets_job_is_dropped_without_asking_ci() -> None:
    other = detail("c" + "e" * 32)
    other["Input"]["BucketId"] = "private-1250000001"
    ci = FakeCi({other["JobId"]: other})
    h, rec = handler(ci)
    out = h.handle(cmq_event(xml_body(other)))
    assert rec.completed == [] and ci.asked == [] and out["results"][0]["status"] == "dropped"


def test_a_job_that_is_not_ours_is_dropped() -> None:
    foreign = detail("c" + "f" * 32, user_data="someone else's")
    h, rec = handler(FakeCi({foreign["JobId"]: foreign}))
    assert h.handle(cmq_event(xml_body(foreign)))["results"][0]["status"] == "dropped" and rec.completed == []


def test_a_transient_failure_raises_for_redelivery_after_the_rest_of_the_batch() -> None:
    a, b = detail("c" + "1" * 32), detail("c" + "2" * 32, key="uploads/b.png")
    ci = FakeCi({a["JobId"]: a, b["JobId"]: b})
    ci.fail_once.add(a["JobId"])
    h, rec = handler(ci)
    with pytest.raises(RetryableError):
        h.handle(cmq_event(xml_body(a), xml_body(b)))
    assert rec.completed == [b["JobId"]]
    # SCF redelivers the batch: the failed one completes, the other converges (completing is idempotent)
    h.handle(cmq_event(xml_body(a), xml_body(b)))
    assert rec.completed == [b["JobId"], a["JobId"], b["JobId"]]


def test_batches_inside_batches_never_deadlock_the_pool() -> None:
    # Reconcile checks jobs a few at a time, and each check sends its own requests together. With every
    # worker busy on an outer call (they meet at a barrier), an inner batch must still finish.
    import threading

    from ciflow.concurrency import MAX_WORKERS, together

    outer = MAX_WORKERS + 1           # one runs in the caller's thread, the rest fill the pool
    barrier = threading.Barrier(outer, timeout=5)

    def work() -> int:
        barrier.wait()
        return sum(together(*[(lambda i=i: i) for i in range(4)]))

    done: list[Any] = []
    t = threading.Thread(target=lambda: done.append(together(*[work for _ in range(outer)])), daemon=True)
    t.start()
    t.join(timeout=10)
    assert not t.is_alive(), "nested batches deadlocked the pool"
    assert done == [[6] * outer]
