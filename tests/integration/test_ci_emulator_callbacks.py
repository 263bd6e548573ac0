"""The emulator's callbacks, under every setting of the switches for what CI leaves unverified.

`callback_user_data` (omit | echo) × `callback_query` (keep | drop | reencode) × the body format
(XML | JSON): each job's callback is received over HTTP and checked against the documented shape.
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from defusedxml import ElementTree

from devstack.emulator.callbacks import CHOICES, DEFAULTS, callback_url
from devstack.emulator.xmlutil import element_to_dict
from devstack.samples import _png
from tests.integration.emulator_harness import BUCKET, CallbackReceiver, Emulator, Received

pytestmark = pytest.mark.integration
KEY = "uploads/cb.png"
USER_DATA = "ciflow:1;r=images;e=0123456789abcdef"
TOKEN_PATH = "/cb/path-token"
QUERY = "t=abc.DEF-_~&x=1"


@pytest.fixture(scope="module")
def env():
    e = Emulator()
    e.s3.put_object(Bucket=BUCKET, Key=KEY, Body=_png())
    receiver = CallbackReceiver().start()
    yield e, receiver
    receiver.stop()
    e.stop()


def submit(e: Emulator, receiver: CallbackReceiver, fmt: str) -> str:
    job = {"Tag": "ImageInspect", "Input": {"Object": KEY},
           "Operation": {"UserData": USER_DATA, "JobLevel": "0"},
           "CallBack": f"{receiver.url}{TOKEN_PATH}?{QUERY}", "CallBackFormat": fmt, "CallBackType": "Url"}
    resp = e.sdk().ci_create_media_jobs(Bucket=BUCKET, Jobs=job, Lst={}, ContentType="application/xml")
    return resp["JobsDetail"][0]["JobId"]


def received_for(receiver: CallbackReceiver, job_id: str) -> Received:
    return receiver.wait_for(lambda c: job_id.encode() in c.body)


def parse(call: Received, fmt: str) -> dict[str, Any]:
    """JobsDetail of a callback body, whichever format."""
    if fmt == "JSON":
        assert call.headers["Content-Type"] == "application/json"
        doc = json.loads(call.body)
        assert doc["EventName"] == "TaskFinish"
        return doc["JobsDetail"]
    assert call.headers["Content-Type"] == "application/xml"
    root = ElementTree.fromstring(call.body, forbid_dtd=True)
    assert root.tag == "Response"
    doc = element_to_dict(root)
    assert doc["EventName"] == "TaskFinish"
    return doc["JobsDetail"]


@pytest.mark.parametrize("user_data,query,fmt",
                         list(itertools.product(CHOICES["callback_user_data"], CHOICES["callback_query"],
                                                ("XML", "JSON"))))
def test_callback_shape_under_every_switch_setting(env, user_data: str, query: str, fmt: str) -> None:
    e, receiver = env
    e.emu.configure({"callback_user_data": user_data, "callback_query": query})
    try:
        job_id = submit(e, receiver, fmt)
        call = received_for(receiver, job_id)
    finally:
        e.emu.configure({k: DEFAULTS[k] for k in ("callback_user_data", "callback_query")})
    # The URL: its path (where a token survives) always; its query as the switch says
    assert call.path == {"keep": f"{TOKEN_PATH}?{QUERY}", "drop": TOKEN_PATH,
                         "reencode": f"{TOKEN_PATH}?t%3Dabc.DEF-_~%26x%3D1"}[query]
    # The body: the documented callback, with or without Operation.UserData
    detail = parse(call, fmt)
    assert detail["JobId"] == job_id and detail["Tag"] == "ImageInspect"
    assert detail["Input"] == {"BucketId": BUCKET, "Object": KEY, "Region": "ap-guangzhou"}
    op = detail["Operation"]
    if user_data == "omit":
        assert set(op) == {"ImageInspectResult", "JobLevel"}  # platform.md §2: no UserData
    else:
        assert op["UserData"] == USER_DATA
    assert op["ImageInspectResult"]["InputObjectName"] == KEY
    # The job itself still has its UserData (what the callback function confirms against)
    got = e.sdk().ci_get_media_jobs(Bucket=BUCKET, JobIDs=job_id)["JobsDetail"][0]
    assert got["Operation"]["UserData"] == USER_DATA
    # And the emulator recorded where the callback went (once the POST has returned)
    deadline = time.time() + 10
    while not e.emu.jobs[job_id].callbacks and time.time() < deadline:
        time.sleep(0.02)
    record = e.emu.jobs[job_id].callbacks[-1]
    assert record["status"] == 200 and record["url"].endswith(call.path)


@pytest.mark.parametrize("fmt", ["XML", "JSON"])
def test_default_callback_is_the_documented_shape(env, fmt: str) -> None:
    """Out of the box: no Operation.UserData (platform.md §2), the CallBack URL as given."""
    _, receiver = env
    fresh = Emulator()
    try:
        assert fresh.emu.config["callback_user_data"] == "omit" and fresh.emu.config["callback_query"] == "keep"
        fresh.s3.put_object(Bucket=BUCKET, Key=KEY, Body=_png())
        job_id = submit(fresh, receiver, fmt)
        call = received_for(receiver, job_id)
    finally:
        fresh.stop()
    assert call.path == f"{TOKEN_PATH}?{QUERY}"
    assert set(parse(call, fmt)["Operation"]) == {"ImageInspectResult", "JobLevel"}


@pytest.mark.parametrize("url,mode,want", [
    ("https://h.example/cb?t=a%2Bb", "keep", "https://h.example/cb?t=a%2Bb"),
    ("https://h.example/cb?t=a%2Bb", "drop", "https://h.example/cb"),
    ("https://h.example/cb?t=a%2Bb", "reencode", "https://h.example/cb?t%3Da%252Bb"),
    ("https://h.example/cb/tok", "drop", "https://h.example/cb/tok"),
    ("https://h.example/cb/tok", "reencode", "https://h.example/cb/tok"),
])
def test_callback_url_query_modes(url: str, mode: str, want: str) -> None:
    assert callback_url(url, mode) == want


def test_switches_refuse_unknown_values(env) -> None:
    e, _ = env
    for key, bad in (("callback_user_data", "sometimes"), ("callback_query", "mangle"), ("json_numbers", "hex")):
        req = urllib.request.Request(f"{e.emu.endpoint}/_emulator/config", method="POST",
                                     data=json.dumps({key: bad}).encode())
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=10)
        assert ei.value.code == 400 and key in json.loads(ei.value.read())["error"]
        assert e.emu.config[key] != bad
        with pytest.raises(ValueError):
            e.emu.configure({key: bad})
    # And through the admin endpoint a valid value is taken
    req = urllib.request.Request(f"{e.emu.endpoint}/_emulator/config", method="POST",
                                 data=json.dumps({"callback_user_data": "omit"}).encode())
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["callback_user_data"] == "omit"
    finally:
        e.emu.configure({"callback_user_data": DEFAULTS["callback_user_data"]})


def test_constructor_takes_and_checks_the_switches() -> None:
    from devstack.emulator.server import CiEmulator

    emu = CiEmulator("ap-guangzhou", [], "http://127.0.0.1:1", config={"callback_user_data": "omit",
                                                                        "callback_query": "drop"})
    assert emu.config["callback_user_data"] == "omit" and emu.config["callback_query"] == "drop"
    with pytest.raises(ValueError):
        CiEmulator("ap-guangzhou", [], "http://127.0.0.1:1", config={"callback_query": "sometimes"})
