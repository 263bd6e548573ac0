"""The CI emulator speaks the documented /jobs API to the real cos-python-sdk-v5 client."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests
from qcloud_cos import CosConfig, CosS3Client
from qcloud_cos.cos_exception import CosServiceError

from devstack.samples import _png
from tests.conftest import Dev

pytestmark = pytest.mark.integration


def sdk(dev: Dev, secret_key: str = None, token: str = "keep") -> CosS3Client:
    ep = urlsplit(dev.env["CIFLOW_CI_ENDPOINT"])
    cfg = CosConfig(Region=dev.env["CIFLOW_REGION"], SecretId=dev.env["TENCENTCLOUD_SECRETID"],
                    SecretKey=secret_key or dev.env["TENCENTCLOUD_SECRETKEY"],
                    Token=dev.env["TENCENTCLOUD_SESSIONTOKEN"] if token == "keep" else token,
                    Scheme="http", IP=ep.hostname, Port=ep.port)
    return CosS3Client(cfg, retry=0)


def job(key: str, **op) -> dict:
    return {"Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0", **op},
            "CallBack": "no"}


def test_sdk_creates_and_queries_a_job(dev: Dev, prefix: str) -> None:
    key = f"{prefix}x.png"
    dev.put(key, _png())
    resp = sdk(dev).ci_create_media_jobs(Bucket=dev.bucket, Jobs=job(key, UserData="hello"), Lst={},
                                         ContentType="application/xml")
    d = resp["JobsDetail"][0]
    assert d["State"] == "Submitted" and d["Tag"] == "ImageInspect" and d["Code"] == "Success"
    assert d["Input"] == {"BucketId": dev.bucket, "Object": key, "Region": dev.env["CIFLOW_REGION"]}
    assert d["Operation"]["UserData"] == "hello"
    assert d["JobId"].startswith("c") and len(d["JobId"]) == 33
    got = dev.wait_for(lambda: (r := sdk(dev).ci_get_media_jobs(Bucket=dev.bucket, JobIDs=d["JobId"]))
                       and r["JobsDetail"][0]["State"] == "Success" and r, what="job success")
    pr = got["JobsDetail"][0]["Operation"]["ImageInspectResult"]["ProcessResult"]
    assert pr["Suspicious"] == "false" and pr["PicType"] == "png" and int(pr["PicSize"]) == len(_png())
    # A job is only visible in its own bucket
    other = sdk(dev).ci_get_media_jobs(Bucket=dev.buckets[1], JobIDs=d["JobId"])
    assert other.get("JobsDetail", []) == [] and other["NonExistJobIds"] == d["JobId"]
    # List by tag, newest first, paged
    listed = sdk(dev).ci_list_media_jobs(Bucket=dev.bucket, Tag="ImageInspect", States="Success", Size=100)
    assert d["JobId"] in [j["JobId"] for j in listed["JobsDetail"]]
    assert all(j["State"] == "Success" for j in listed["JobsDetail"])


@pytest.mark.parametrize("kind", ["secret", "token-missing", "token-wrong"])
def test_bad_signature_is_rejected_with_error_xml(dev: Dev, kind: str) -> None:
    client = {"secret": lambda: sdk(dev, secret_key="wrong-secret-key"),
              "token-missing": lambda: sdk(dev, token=None),
              "token-wrong": lambda: sdk(dev, token="not-the-token")}[kind]()
    with pytest.raises(CosServiceError) as ei:
        client.ci_create_media_jobs(Bucket=dev.bucket, Jobs=job("uploads/a.png"), Lst={},
                                    ContentType="application/xml")
    assert ei.value.get_status_code() == 403
    assert ei.value.get_error_code() in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
    if kind == "secret":
        assert ei.value.get_error_code() == "SignatureDoesNotMatch"


def test_unsigned_request_gets_documented_error_xml(dev: Dev) -> None:
    ep = urlsplit(dev.env["CIFLOW_CI_ENDPOINT"])
    r = requests.post(f"http://{ep.netloc}/jobs", data=b"<Request/>", timeout=5,
                      headers={"Host": f"{dev.bucket}.ci.ap-guangzhou.myqcloud.com"})
    assert r.status_code == 403
    assert r.text.startswith("<Error><Code>AccessDenied</Code><Message>")
    assert "<Resource>" in r.text
    assert "<RequestId>" in r.text and "<TraceId>" in r.text


@pytest.mark.parametrize("mutate,code", [
    (lambda j: j["Operation"].update(JobLevel="3"), "InvalidArgument"),
    (lambda j: j["Operation"].update(UserData="é non-ascii"), "InvalidArgument"),
    (lambda j: j["Operation"].update(UserData="x" * 1025), "InvalidArgument"),
    (lambda j: j.update(CallBackFormat="YAML"), "InvalidArgument"),
    (lambda j: j.update(CallBack="ftp://example"), "InvalidArgument"),
    (lambda j: j.update(CallBackType="TDMQ"), "MissingContent"),
    (lambda j: j["Input"].pop("Object"), "MissingContent"),
    (lambda j: j.update(Tag="NoSuchJob"), "InvalidArgument"),
    (lambda j: j["Operation"].update(ImageInspect={"AutoProcess": "maybe"}), "InvalidArgument"),
    (lambda j: j["Operation"].update(ImageInspect={"AutoProcess": "true", "ProcessType": "Burn"}), "InvalidArgument"),
])
def test_invalid_requests_are_rejected_per_the_docs(dev: Dev, mutate, code: str) -> None:
    j = job("uploads/any.png")
    mutate(j)
    with pytest.raises(CosServiceError) as ei:
        sdk(dev).ci_create_media_jobs(Bucket=dev.bucket, Jobs=j, Lst={}, ContentType="application/xml")
    assert ei.value.get_status_code() == 400
    assert ei.value.get_error_code() == code


def test_longest_valid_userdata_is_accepted(dev: Dev) -> None:
    j = job("uploads/any.png", UserData="~" * 1024)
    d = sdk(dev).ci_create_media_jobs(Bucket=dev.bucket, Jobs=j, Lst={}, ContentType="application/xml")
    assert d["JobsDetail"][0]["Operation"]["UserData"] == "~" * 1024


def test_auto_process_backup_moves_like_ci(dev: Dev, prefix: str) -> None:
    from devstack.samples import zip_archive

    key = f"{prefix}auto.png"
    dev.put(key, _png() + zip_archive())
    j = job(key, ImageInspect={"AutoProcess": "true", "ProcessType": "BackupObject"})
    jid = sdk(dev).ci_create_media_jobs(Bucket=dev.bucket, Jobs=j, Lst={},
                                        ContentType="application/xml")["JobsDetail"][0]["JobId"]
    dev.wait_for(lambda: dev.exists("abnormal_images_backup/" + key), what="CI backup copy")
    d = dev.wait_for(lambda: (r := sdk(dev).ci_get_media_jobs(Bucket=dev.bucket, JobIDs=jid)["JobsDetail"][0])
                     and r["State"] == "Success" and r, what="job success")
    assert not dev.exists(key)
    assert d["Operation"]["ImageInspectResult"]["ProcessResult"]["AutoProcessResult"]["Code"] == "Success"
