"""The CAM policy is generated from the library's SDK calls, so the two cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import cam, state, tdmq

ENV = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_APPID": "1250000000", "CIFLOW_BUCKET": "uploads-1250000000",
       "CIFLOW_OWNER_UIN": "100000000001"}


def test_every_sdk_call_in_the_library_is_mapped() -> None:
    # Given every method the library calls on a COS or CI client
    calls = cam.sdk_calls()
    names = {c.name for c in calls}
    # Then the scan sees both SDKs (a broken scan would find nothing and pass vacuously) ...
    assert {"head_object", "put_object_tagging", "copy_object", "ci_create_media_jobs"} <= names
    # ... and each maps to CAM actions
    assert cam.required_actions(calls)


def test_committed_policy_is_what_the_generator_writes() -> None:
    committed = json.loads(cam.POLICY.read_text(encoding="utf-8"))
    assert committed == cam.generate(), "deploy/cam-policy.json is stale: run `make cam-policy` and review the diff"


def test_policy_grants_exactly_the_actions_the_calls_need() -> None:
    doc = cam.generate(ENV)
    assert cam.policy_actions(doc) == cam.required_actions(cam.sdk_calls())


def test_resources_are_scoped_to_the_bucket_and_ciflow_prefixes() -> None:
    # Given the policy for a concrete bucket
    doc = cam.generate(ENV)

    def statement(action: str) -> dict:
        return next(s for s in doc["statement"] if any(a.startswith(action) for a in s["action"]))

    # Then object actions reach only the watched, quarantine and state prefixes
    assert statement("name/cos:DeleteObject")["resource"] == [
        "qcs::cos:ap-guangzhou:uid/1250000000:uploads-1250000000/uploads/*",
        "qcs::cos:ap-guangzhou:uid/1250000000:uploads-1250000000/quarantine/*",
        "qcs::cos:ap-guangzhou:uid/1250000000:uploads-1250000000/.ciflow/*",
    ]
    # And listing (bucket-level) is limited to the same prefixes by condition
    listing = statement("name/cos:GetBucket")
    assert listing["action"] == ["name/cos:GetBucket", "name/cos:GetBucketObjectVersions"]
    assert listing["condition"]["string_like"]["cos:prefix"] == ["uploads/*", "quarantine/*", ".ciflow/*"]
    # And the bucket's configuration is readable (a request that carries no prefix, so no condition)
    config = statement("name/cos:GetBucketVersioning")
    assert config["action"] == ["name/cos:GetBucketVersioning"] and "condition" not in config
    assert config["resource"] == ["qcs::cos:ap-guangzhou:uid/1250000000:uploads-1250000000/*"]
    # And CI actions reach only this bucket, and only CI_QCSRole can be passed
    assert statement("name/ci:")["resource"] == ["qcs::ci:ap-guangzhou:uid/1250000000:bucket/uploads-1250000000/*"]
    assert statement("name/cam:PassRole")["resource"] == ["qcs::cam::uin/100000000001:roleName/CI_QCSRole"]


def test_an_unmapped_call_fails_with_its_name_and_location(tmp_path: Path) -> None:
    # Given library code that calls an SDK method the table does not know
    (tmp_path / "ports.py").write_text(
        "class P:\n"
        "    def restore(self, b, k):\n"
        "        return self.client.restore_object(Bucket=b, Key=k)\n"
        "    def jobs(self, b):\n"
        "        return self._client.ci_create_media_jobs(Bucket=b)\n"
        "    def local(self):\n"
        "        return self.storage.copy('a', 'b')\n"  # not an SDK client: ignored
        "    def aliased(self, s3):\n"
        "        return s3.get_object_acl(Bucket='b', Key='k')\n"  # an S3 operation on any receiver
    )
    # When the policy's actions are derived
    calls = cam.sdk_calls(tmp_path)
    assert [c.name for c in calls] == ["restore_object", "ci_create_media_jobs", "get_object_acl"]
    with pytest.raises(cam.UnmappedCall) as err:
        cam.required_actions(calls)
    # Then the message names the call and where it is
    assert "restore_object" in str(err.value) and "ports.py:3" in str(err.value)
    assert "ci_create_media_jobs" not in str(err.value)


def test_raw_requests_are_named_by_method_and_path(tmp_path: Path) -> None:
    (tmp_path / "ci.py").write_text(
        "def find(client, conf, b):\n"
        "    url = conf.uri(bucket=b, path='/jobs')\n"
        "    return client.send_request(method='GET', url=url, bucket=b)\n"
        "def other(client):\n"
        "    return client.send_request(method='POST', url=u)\n"
    )
    assert [c.name for c in cam.sdk_calls(tmp_path)] == ["send_request GET /jobs", "send_request"]


def test_calls_in_sub_packages_are_found(tmp_path: Path) -> None:
    # Given an SDK call in a sub-package of the library (ciflow/operations/...)
    (tmp_path / "operations").mkdir()
    (tmp_path / "operations" / "walk.py").write_text(
        "def walk(client, b):\n"
        "    return client.restore_object(Bucket=b, Key='k')\n"
    )
    # Then the policy generator sees it, named by its path
    calls = cam.sdk_calls(tmp_path)
    assert [c.name for c in calls] == ["restore_object"]
    assert calls[0].where.endswith("operations/walk.py:2")


# --- TDMQ deliveries ------------------------------------------------------------------------------------

TDMQ_ENV = {**ENV, "CIFLOW_REGION": "ap-guangzhou"}


def rules_with(tmp_path: Path, delivery: dict) -> Path:
    doc = json.loads(tdmq.DEPLOYED_RULES.read_text(encoding="utf-8"))
    doc["rules"][0]["delivery"] = delivery
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_functions_role_needs_nothing_for_tdmq(tmp_path: Path) -> None:
    # Given rules whose results go through a topic (a trigger invokes callback; reconcile reads no queue)
    rules = rules_with(tmp_path, {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "results"})
    # Then the functions' policy is the same as without, and grants nothing on TDMQ or CMQ
    doc = cam.generate(TDMQ_ENV, rules)
    assert doc == cam.generate(TDMQ_ENV)
    assert not [a for a in cam.policy_actions(doc) if a.split(":")[0] in ("tdmq", "cmq", "cmqtopic", "cmqqueue")]


def test_committed_tdmq_policies_are_what_the_generator_writes() -> None:
    for who, name in cam.TDMQ_POLICIES.items():
        committed = json.loads((cam.POLICY.parent / name).read_text(encoding="utf-8"))
        assert committed == cam.generate_tdmq()[who], f"deploy/{name} is stale: run `make cam-policy`"


def test_a_topic_needs_ci_to_publish_to_it_and_the_deployer_to_subscribe_callback(tmp_path: Path) -> None:
    # Given a rule delivering to a topic
    rules = rules_with(tmp_path, {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "results"})
    docs = cam.generate_tdmq(TDMQ_ENV, rules)
    topic = ["qcs::tdmq:ap-guangzhou:uin/100000000001:topic/results",
             "qcs::tdmq:ap-guangzhou:uin/100000000001:cmqtopic/results"]
    # Then CI may publish to that topic, and nothing else
    assert docs["ci"]["statement"] == [{"effect": "allow", "action": ["name/tdmq:PublishCmqMsg"], "resource": topic}]
    # And whoever creates the trigger may subscribe to that topic and remove the subscription
    assert docs["trigger"]["statement"] == [
        {"effect": "allow", "action": ["name/tdmq:CreateCmqSubscribe"], "resource": topic},
        {"effect": "allow", "action": ["name/tdmq:DeleteCmqSubscribe"],
         "resource": ["qcs::tdmq:ap-guangzhou:uin/100000000001:subscription/results/*"]}]


def test_a_queue_needs_ci_to_send_to_it_and_no_trigger(tmp_path: Path) -> None:
    # Given the settings choosing a queue in another region (CI publishes there; nothing is triggered)
    env = {**TDMQ_ENV, "CIFLOW_CALLBACK_TYPE": "tdmq", "CIFLOW_CALLBACK_MQ_REGION": "bj",
           "CIFLOW_CALLBACK_MQ_MODE": "Queue", "CIFLOW_CALLBACK_MQ_NAME": "results-q"}
    docs = cam.generate_tdmq(env)
    assert docs == {"ci": {"version": "2.0", "statement": [
        {"effect": "allow", "action": ["name/tdmq:SendCmqMsg"],
         "resource": ["qcs::tdmq:ap-beijing:uin/100000000001:queue/results-q",
                      "qcs::tdmq:ap-beijing:uin/100000000001:cmqqueue/results-q"]}]}}


def test_without_tdmq_nothing_more_is_granted() -> None:
    assert cam.generate_tdmq(TDMQ_ENV) == {}


def test_make_cam_policy_writes_one_policy_per_principal_and_drops_stale_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cam, "POLICY", tmp_path / "deploy" / "cam-policy.json")
    monkeypatch.setattr(cam, "FILLED", tmp_path / "dist" / "cam-policy.json")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in TDMQ_ENV.items()), encoding="utf-8")
    topic = rules_with(tmp_path, {"type": "tdmq", "mq_region": "gz", "mq_mode": "Topic", "mq_name": "results"})
    # Given a topic rule: the filled policies for CI and for the trigger are written, and said to be for whom
    assert cam.main(["--env-file", str(env_file), "--rules", str(topic)]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == [
        "cam-policy-tdmq-ci.json", "cam-policy-tdmq-trigger.json", "cam-policy.json"]
    assert "CI's role CI_QCSRole" in out and "the identity that deploys" in out
    # When the rules change back to the Function URL, the TDMQ policies go away
    assert cam.main(["--env-file", str(env_file)]) == 0
    assert sorted(p.name for p in (tmp_path / "dist").iterdir()) == ["cam-policy.json"]
    # And a topic in another region is refused, naming it
    topic.write_text(topic.read_text(encoding="utf-8").replace('"gz"', '"sh"'), encoding="utf-8")
    assert cam.main(["--env-file", str(env_file), "--rules", str(topic)]) == 1
    assert "'results' is in ap-shanghai" in capsys.readouterr().err


# --- the state bucket ---------------------------------------------------------------------------------

STATE = "ciflow-state-1250000000"


def test_without_a_state_bucket_the_records_are_granted_in_the_watched_bucket_as_committed() -> None:
    # Given no CIFLOW_STATE_BUCKET, and the committed placeholder policy
    committed = json.loads(cam.POLICY.read_text(encoding="utf-8"))
    filled = json.loads(cam.render(committed).replace("<Region>", "ap-guangzhou").replace("<APPID>", "1250000000")
                        .replace("<BucketName-APPID>", "uploads-1250000000").replace("<OwnerUin>", "100000000001"))
    # Then the filled policy is the committed template with the values put in, naming no other bucket
    assert cam.generate(ENV) == filled == cam.generate({**ENV, "CIFLOW_STATE_BUCKET": " "})
    assert STATE not in cam.render(filled)


def test_a_state_bucket_gets_the_record_operations_on_its_state_prefix() -> None:
    # Given the records kept in a bucket of their own
    doc = cam.generate({**ENV, "CIFLOW_STATE_BUCKET": STATE})
    without = cam.generate(ENV)
    objects, listing = without["statement"][0], without["statement"][1]
    records = f"qcs::cos:ap-guangzhou:uid/1250000000:{STATE}"
    # Then the watched bucket keeps its grants (the operator's checkpoints stay under its state prefix)
    assert doc["statement"][:2] == [objects, listing]
    # And the state bucket gets the same object actions on the state prefix, and listing limited to it
    assert doc["statement"][2] == {"effect": "allow", "action": objects["action"], "resource": [f"{records}/.ciflow/*"]}
    assert doc["statement"][3] == {"effect": "allow", "action": listing["action"], "resource": [f"{records}/*"],
                                   "condition": {"string_like": {"cos:prefix": [".ciflow/*"]}}}
    # And everything else is as without it: the same actions, configuration, CI and PassRole grants
    assert doc["statement"][4:] == without["statement"][2:]
    assert cam.policy_actions(doc) == cam.policy_actions(without)
    # Which covers every record operation the library makes: the claim, markers, results and the listing
    assert {"cos:PutObject", "cos:GetObject", "cos:DeleteObject", "cos:GetBucket"} <= cam.policy_actions(doc)


@pytest.mark.parametrize(("change", "expected"), [
    ({"CIFLOW_STATE_BUCKET": "ciflow-state"}, "<name>-<appid>; got 'ciflow-state'"),
    ({"CIFLOW_STATE_BUCKET": "uploads-1250000000"}, "another bucket than CIFLOW_BUCKET"),
    ({"CIFLOW_STATE_BUCKET": "ciflow-state-1250000001"}, "belongs to APPID 1250000001"),
    ({"CIFLOW_STATE_PREFIX": "records/"}, "CIFLOW_STATE_PREFIX is set to 'records/', but not deployed"),
])
def test_a_record_location_that_cannot_be_deployed_is_refused(change: dict[str, str], expected: str) -> None:
    with pytest.raises(state.StateConfigError, match=expected.replace("(", r"\(")):
        cam.generate({**ENV, **change})


def test_make_cam_policy_fills_in_the_state_bucket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cam, "POLICY", tmp_path / "deploy" / "cam-policy.json")
    monkeypatch.setattr(cam, "FILLED", tmp_path / "dist" / "cam-policy.json")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in {**ENV, "CIFLOW_STATE_BUCKET": STATE}.items()),
                        encoding="utf-8")
    # Given a state bucket in .env: the template stays the committed one, the filled policy grants the bucket
    assert cam.main(["--env-file", str(env_file)]) == 0
    assert json.loads((tmp_path / "deploy" / "cam-policy.json").read_text(encoding="utf-8")) == cam.generate()
    filled = json.loads((tmp_path / "dist" / "cam-policy.json").read_text(encoding="utf-8"))
    assert filled == cam.generate({**ENV, "CIFLOW_STATE_BUCKET": STATE})
    assert f"the records: in {STATE} under .ciflow/" in capsys.readouterr().out
    # And a state bucket in another form is refused, naming it, with nothing filled in
    (tmp_path / "dist" / "cam-policy.json").unlink()
    env_file.write_text(env_file.read_text(encoding="utf-8").replace(STATE, "ciflow-state"), encoding="utf-8")
    assert cam.main(["--env-file", str(env_file)]) == 1
    assert "CIFLOW_STATE_BUCKET must be the bucket's full name" in capsys.readouterr().err
    assert not (tmp_path / "dist" / "cam-policy.json").exists()
