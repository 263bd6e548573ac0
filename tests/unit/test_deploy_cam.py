"""The CAM policy is generated from the library's SDK calls, so the two cannot drift."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import cam

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
