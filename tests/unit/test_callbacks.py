"""Callback requests and bodies (ciflow.callbacks) and the verdict taken from a job (ciflow.results)."""

from __future__ import annotations

import base64
import copy
import json
import time
from pathlib import Path

import pytest

from ciflow.callbacks import JobClaim, job_claims, parse_body, parse_http_event
from ciflow.errors import RequestRejected
from ciflow.results import is_final, verdict

EVENTS = Path(__file__).parent.parent / "events"
MAX = 1024 * 1024
JOB_ID = "cda071f3af9e011ed8f900133752da9af"
USER_DATA = "ciflow:1;r=images;e=5d41402abc4b2a76b9719d911017c592"
TOKEN = "v1.1700000000.c2lnbmF0dXJlLWJ5dGVzLWdvLWhlcmUtZm9yLXRlc3Rpbmc"
BODY_FIXTURES = ["callback_image_inspect.xml", "callback_image_inspect.json", "callback_image_inspect_array.json"]


def raw(name: str) -> bytes:
    return (EVENTS / name).read_bytes()


def load(name: str) -> dict:
    return json.loads(raw(name))


def detail_of(name: str) -> dict:
    """The single JobsDetail of a callback body fixture, as parse_body returns it."""
    details = parse_body(raw(name))["JobsDetail"]
    return details[0] if isinstance(details, list) else details


def rejected(fn, *args) -> RequestRejected:
    with pytest.raises(RequestRejected) as exc:
        fn(*args)
    return exc.value


# ---------------------------------------------------------- parse_http_event


def test_function_url_event():
    # Given the Function URL event shape
    event = load("function_url_event.json")
    # When parsed
    req = parse_http_event(event, MAX)
    # Then method, lower-cased headers, query, body and caller address are exposed
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/xml"
    assert req.headers["x-scf-remote-addr"] == "203.0.113.7"
    assert all(k == k.lower() for k in req.headers)
    assert req.query == {"t": TOKEN}
    assert req.body == event["body"].encode("utf-8")
    assert req.source_ip == "203.0.113.7"


def test_api_gateway_event():
    # Given the legacy API Gateway event shape
    event = load("apigw_event.json")
    # When parsed
    req = parse_http_event(event, MAX)
    # Then the same fields come out, headerParameters merged in and the caller from requestContext
    assert req.method == "POST"
    assert req.headers["content-type"] == "application/xml"
    assert req.headers["x-ciflow-token"] == "from-header-parameters"
    assert req.query["t"] == TOKEN
    assert req.body.startswith(b"<Response>")
    assert req.source_ip == "198.51.100.23"


def test_api_gateway_fallbacks():
    # Given an API Gateway event with the method only in requestContext and only queryStringParameters
    event = load("apigw_event.json")
    del event["httpMethod"], event["queryString"]
    event["requestContext"]["httpMethod"] = "post"
    # When parsed
    req = parse_http_event(event, MAX)
    # Then both are still found
    assert req.method == "POST"
    assert req.query == {"t": TOKEN}


def test_headers_win_over_header_parameters():
    # Given the same header in headers and headerParameters, with different case
    event = load("apigw_event.json")
    event["headers"]["X-Ciflow-Token"] = "from-headers"
    # Then the value from headers is used
    assert parse_http_event(event, MAX).headers["x-ciflow-token"] == "from-headers"


def test_multi_value_headers_and_query_are_flattened():
    # Given list-valued headers and query parameters, and a None value
    event = load("function_url_event.json")
    event["headers"]["Accept"] = ["text/xml", "*/*"]
    event["queryString"] = {"t": [TOKEN, "second"], "empty": [], "none": None}
    # When parsed
    req = parse_http_event(event, MAX)
    # Then the first value is used and missing values become ""
    assert req.headers["accept"] == "text/xml"
    assert req.query == {"t": TOKEN, "empty": "", "none": ""}


@pytest.mark.parametrize("flag", [True, "true", "True"])
def test_base64_body_is_decoded(flag):
    # Given a base64-encoded body (binary-safe mode of the trigger)
    event = load("function_url_event.json")
    body = raw("callback_image_inspect.xml")
    event.update(body=base64.b64encode(body).decode("ascii"), isBase64Encoded=flag)
    # Then the decoded bytes are returned
    assert parse_http_event(event, MAX).body == body


def test_invalid_base64_is_400():
    # Given a body flagged base64 that is not
    event = load("function_url_event.json")
    event.update(body="not base64 !!", isBase64Encoded=True)
    # Then it is rejected
    assert rejected(parse_http_event, event, MAX).status == 400


def test_missing_body_is_empty_bytes():
    # Given an event without a body
    event = load("function_url_event.json")
    del event["body"]
    # Then the body is empty (parse_body will reject it later)
    assert parse_http_event(event, MAX).body == b""


@pytest.mark.parametrize("event", [None, [], "POST /", 1])
def test_non_object_event_is_400(event):
    assert rejected(parse_http_event, event, MAX).status == 400


@pytest.mark.parametrize("body", [{"JobsDetail": {}}, 123, ["<Response/>"]])
def test_non_string_body_is_400(body):
    # Given a body that is not a string
    event = load("function_url_event.json")
    event["body"] = body
    # Then it is rejected
    assert rejected(parse_http_event, event, MAX).status == 400


def test_size_limit_inclusive():
    # Given a body of exactly the limit
    event = load("function_url_event.json")
    event["body"] = "x" * 2048
    # Then it is accepted; one byte more is 413
    assert len(parse_http_event(event, 2048).body) == 2048
    event["body"] = "x" * 2049
    assert rejected(parse_http_event, event, 2048).status == 413


def test_size_limit_counts_bytes_not_characters():
    # Given 1100 two-byte characters (2200 bytes) under a 2048-byte limit
    event = load("function_url_event.json")
    event["body"] = "é" * 1100
    # Then it is 413
    assert rejected(parse_http_event, event, 2048).status == 413


def test_size_limit_applies_after_base64_decoding():
    # Given a base64 body that decodes to one byte over the limit
    event = load("function_url_event.json")
    event.update(body=base64.b64encode(b"x" * 2049).decode("ascii"), isBase64Encoded=True)
    # Then it is 413
    assert rejected(parse_http_event, event, 2048).status == 413


def test_huge_body_is_rejected_quickly():
    # Given a 64 MiB body against the default 1 MiB limit
    event = load("function_url_event.json")
    event["body"] = "A" * (64 * 1024 * 1024)
    # When parsed
    start = time.perf_counter()
    err = rejected(parse_http_event, event, MAX)
    # Then it is 413 without decoding the whole body
    assert err.status == 413
    assert time.perf_counter() - start < 1.0


# ----------------------------------------------------------------- parse_body


def test_xml_fixture():
    # Given the documented XML callback
    doc = parse_body(raw("callback_image_inspect.xml"))
    # Then it becomes the <Response> children as a dict of strings
    assert doc["EventName"] == "TaskFinish"
    d = doc["JobsDetail"]
    assert d["JobId"] == JOB_ID
    assert d["Message"] == ""
    assert d["Input"] == {"BucketId": "test-1253960000", "Object": "test.png", "Region": "ap-chongqing"}
    pr = d["Operation"]["ImageInspectResult"]["ProcessResult"]
    assert pr["PicSize"] == "304491"
    assert pr["AutoProcessResult"] == {"Code": "Success", "Message": "Success"}
    assert d["Operation"]["UserData"] == USER_DATA


def test_json_object_fixture():
    # Given the JSON callback with JobsDetail as an object and typed numbers
    doc = parse_body(raw("callback_image_inspect.json"))
    # Then it is returned as is
    assert doc == load("callback_image_inspect.json")
    assert isinstance(doc["JobsDetail"], dict)


def test_json_array_fixture():
    # Given the JSON callback with JobsDetail as an array and numbers as strings
    doc = parse_body(raw("callback_image_inspect_array.json"))
    # Then the array is kept
    assert isinstance(doc["JobsDetail"], list)
    assert doc["JobsDetail"][0]["Operation"]["ImageInspectResult"]["ProcessResult"]["PicSize"] == "304491"


@pytest.mark.parametrize("name", BODY_FIXTURES)
def test_every_form_yields_the_same_claim(name):
    # Given any of the three callback forms describing the same job
    claims = job_claims(parse_body(raw(name)))
    # Then the claim is the same
    assert claims == [JobClaim(JOB_ID, "test-1253960000", "test.png", USER_DATA)]


def test_xml_with_declaration_bom_and_whitespace():
    # Given the XML fixture behind a BOM, whitespace and an XML declaration
    body = b"\xef\xbb\xbf \r\n" + b'<?xml version="1.0" encoding="UTF-8"?>\n' + raw("callback_image_inspect.xml")
    # Then it parses like the bare fixture
    assert parse_body(body) == parse_body(raw("callback_image_inspect.xml"))


def test_xml_namespaces_are_stripped():
    # Given XML whose elements carry a namespace
    body = (b'<Response xmlns="http://example.com/ci"><JobsDetail><JobId>abc</JobId>'
            b"</JobsDetail></Response>")
    # Then tag names are used without it
    assert parse_body(body) == {"JobsDetail": {"JobId": "abc"}}


def test_repeated_xml_elements_become_a_list():
    # Given two JobsDetail elements
    body = (b"<Response><JobsDetail><JobId>a1</JobId></JobsDetail>"
            b"<JobsDetail><JobId>b2</JobId></JobsDetail></Response>")
    # Then they are a list, in order
    assert parse_body(body)["JobsDetail"] == [{"JobId": "a1"}, {"JobId": "b2"}]


def test_json_response_wrapper_and_bare_array():
    # Given JSON wrapped in "Response", and a bare array of JobsDetail
    detail = load("callback_image_inspect.json")["JobsDetail"]
    wrapped = json.dumps({"Response": {"JobsDetail": detail}}).encode()
    bare = json.dumps([detail]).encode()
    # Then both are normalised to the <Response> shape
    assert parse_body(wrapped) == {"JobsDetail": detail}
    assert parse_body(bare) == {"JobsDetail": [detail]}


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Response><JobsDetail><JobId>&lol9;</JobId></JobsDetail></Response>"""

HOSTILE = {
    "billion laughs": BILLION_LAUGHS,
    "external entity": (b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                        b"<Response><JobsDetail><JobId>&e;</JobId></JobsDetail></Response>"),
    "external dtd": b'<!DOCTYPE x SYSTEM "http://203.0.113.9/evil.dtd"><Response/>',
    "parameter entity": (b'<!DOCTYPE x [<!ENTITY % p SYSTEM "http://203.0.113.9/p.dtd"> %p;]>'
                         b"<Response/>"),
    "malformed xml": b"<Response><JobsDetail></Response>",
    "unclosed xml": b"<Response><JobsDetail>",
    "xml text only": b"<Response>TaskFinish</Response>",
    "malformed json": b'{"JobsDetail": {"JobId": ',
    "json trailing garbage": b'{"JobsDetail": {}} trailing',
    "non-utf8 latin1": b"<Response><JobId>caf\xe9</JobId></Response>",
    "non-utf8 utf16": "<Response/>".encode("utf-16"),
    "empty": b"",
    "whitespace only": b" \r\n\t",
    "form encoded": b"JobId=abc&State=Success",
    "json string": b'"TaskFinish"',
    "json number": b"42",
}


@pytest.mark.parametrize("body", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_body_is_rejected_quickly(body):
    # Given a hostile or broken body
    # When parsed
    start = time.perf_counter()
    err = rejected(parse_body, body)
    elapsed = time.perf_counter() - start
    # Then it is a 4xx rejection, decided quickly
    assert 400 <= err.status < 500
    assert err.reason
    assert elapsed < 1.0


@pytest.mark.parametrize("body, status", [
    (BILLION_LAUGHS, 400), (HOSTILE["external entity"], 400), (b"", 400), (b"\xff\xfe", 400),
    (b"JobId=abc", 415),
])
def test_rejection_status(body, status):
    # Then each class of bad body gets its specific status
    assert rejected(parse_body, body).status == status


def assert_rejected_or_parsed(body: bytes) -> None:
    start = time.perf_counter()
    try:
        doc = parse_body(body)
    except RequestRejected as exc:
        assert 400 <= exc.status < 500
    else:
        assert isinstance(doc, dict)
    assert time.perf_counter() - start < 1.0


def test_deeply_nested_json_is_handled():
    # Given a small body of 5000 nested arrays (well under the size limit)
    # Then it is a 4xx or a parsed document, never an unhandled RecursionError (a 5xx)
    assert_rejected_or_parsed(b"[" * 5000 + b"]" * 5000)


def test_deeply_nested_xml_is_handled():
    # Given a small body of 5000 nested elements (35 KB)
    # Then it is a 4xx or a parsed document, never an unhandled RecursionError
    assert_rejected_or_parsed(b"<a>" * 5000 + b"</a>" * 5000)


# ------------------------------------------------------------------ job_claims


def _claims_doc(**detail_changes) -> dict:
    detail = copy.deepcopy(load("callback_image_inspect.json")["JobsDetail"])
    for k, v in detail_changes.items():
        if v is None:
            detail.pop(k, None)
        else:
            detail[k] = v
    return {"JobsDetail": detail}


def test_claims_from_several_jobs():
    # Given a body about two jobs
    first = load("callback_image_inspect.json")["JobsDetail"]
    second = dict(first, JobId="b2", Input={"BucketId": "other-1", "Object": "x/y.png"})
    # Then both are claimed, in order
    claims = job_claims({"JobsDetail": [first, second]})
    assert [(c.job_id, c.bucket, c.key) for c in claims] == [(JOB_ID, "test-1253960000", "test.png"),
                                                              ("b2", "other-1", "x/y.png")]


def test_claim_accepts_bucket_typo_and_numeric_job_id():
    # Given 'Bucket' instead of 'BucketId' (a documented typo) and a numeric JobId
    doc = _claims_doc(JobId=12345, Input={"Bucket": "test-1253960000", "Object": "test.png"})
    # Then the claim is still read
    assert job_claims(doc) == [JobClaim("12345", "test-1253960000", "test.png", USER_DATA)]


def test_claim_without_user_data():
    # Given a job with no (or a non-string) UserData
    doc = _claims_doc(Operation={"UserData": {"nested": 1}})
    # Then the claim has no user data
    assert job_claims(doc)[0].user_data is None


@pytest.mark.parametrize("doc", [
    {},
    {"JobsDetail": None},
    {"JobsDetail": []},
    {"JobsDetail": "cda071f3af9e011ed8f900133752da9af"},
    {"JobsDetail": 7},
    {"JobsDetail": ["not an object"]},
    _claims_doc(JobId=None),
    _claims_doc(JobId=""),
    _claims_doc(JobId={"id": "x"}),
    _claims_doc(JobId=["x"]),
    _claims_doc(JobId=True),
    _claims_doc(JobId="../../jobs/x"),
    _claims_doc(JobId="abc def"),
    _claims_doc(JobId="a" * 129),
    _claims_doc(Input=None),
    _claims_doc(Input=["test-1253960000", "test.png"]),
    _claims_doc(Input={"Object": "test.png"}),
    _claims_doc(Input={"BucketId": "test-1253960000"}),
    _claims_doc(Input={"BucketId": True, "Object": "test.png"}),
    _claims_doc(Input={"BucketId": "test-1253960000", "Object": {"k": "v"}}),
], ids=lambda d: json.dumps(d)[:60])
def test_bad_claims_are_400(doc):
    # Given a body with a missing or mistyped field
    # Then it is rejected with 400
    assert rejected(job_claims, doc).status == 400


# --------------------------------------------------------------------- verdict


@pytest.mark.parametrize("name", BODY_FIXTURES)
def test_fixture_verdict_is_suspicious(name):
    # Given the documented result in any of the three forms (typed numbers or strings)
    v = verdict(detail_of(name))
    # Then it is SUSPICIOUS, carrying the type and the byte range
    assert v is not None
    assert v.outcome == "SUSPICIOUS"
    assert v.job_id == JOB_ID
    assert v.suspicious_type == "MPEG-TS"
    assert v.reason == ""
    assert str(v.details["SuspiciousBeginByte"]) == "119"
    assert str(v.details["SuspiciousSize"]) == "304372"
    assert v.details["PicType"] == "png"


@pytest.mark.parametrize("flag", ["false", False, "False", "0"])
def test_clean_verdict(flag):
    # Given a finished job whose image is not suspicious
    detail = detail_of("callback_image_inspect_array.json")
    pr = detail["Operation"]["ImageInspectResult"]["ProcessResult"]
    pr["Suspicious"] = flag
    for k in ("SuspiciousBeginByte", "SuspiciousEndByte", "SuspiciousSize", "SuspiciousType"):
        del pr[k]
    # Then the verdict is CLEAN without a suspicious type
    v = verdict(detail)
    assert (v.outcome, v.suspicious_type, v.reason) == ("CLEAN", "", "")
    assert v.details["PicSize"] == "304491"


def test_suspicious_without_type_is_unknown():
    # Given a suspicious result without SuspiciousType
    detail = detail_of("callback_image_inspect.json")
    del detail["Operation"]["ImageInspectResult"]["ProcessResult"]["SuspiciousType"]
    # Then the type is UNKNOWN
    assert verdict(detail).suspicious_type == "UNKNOWN"


@pytest.mark.parametrize("code, reason", [("InvalidImage", "InvalidImage"), ("", "Failed"), (None, "Failed")])
def test_failed_job(code, reason):
    # Given a job that CI reports as Failed
    detail = detail_of("callback_image_inspect.xml")
    detail["State"] = "Failed"
    detail["Code"] = code
    del detail["Operation"]["ImageInspectResult"]
    # Then the verdict is FAILED with the error code as the reason
    v = verdict(detail)
    assert (v.outcome, v.reason, v.job_id) == ("FAILED", reason, JOB_ID)


def test_cancelled_job_is_failed():
    # Given a cancelled job
    detail = detail_of("callback_image_inspect.xml")
    detail.update(State="Cancel", Code="")
    # Then it is FAILED, reason Cancel
    assert (verdict(detail).outcome, verdict(detail).reason) == ("FAILED", "Cancel")


def test_failed_inspect_result_in_successful_job():
    # Given a job in state Success whose ImageInspectResult failed
    detail = detail_of("callback_image_inspect.json")
    detail["Operation"]["ImageInspectResult"].update(State="Failed", Code="ImageTypeNotSupport")
    # Then the verdict is FAILED with the result's code
    v = verdict(detail)
    assert (v.outcome, v.reason) == ("FAILED", "ImageTypeNotSupport")


def test_success_without_process_result_is_failed():
    # Given a successful job with no ProcessResult
    detail = detail_of("callback_image_inspect.json")
    del detail["Operation"]["ImageInspectResult"]["ProcessResult"]
    # Then it is not taken as CLEAN
    assert (verdict(detail).outcome, verdict(detail).reason) == ("FAILED", "NoResult")


def test_unsupported_tag_is_failed():
    # Given a finished job of a type this verdict does not understand
    detail = detail_of("callback_image_inspect.json")
    detail["Tag"] = "Transcode"
    # Then it is FAILED rather than silently CLEAN
    assert verdict(detail).reason == "UnsupportedTag:Transcode"
    assert verdict(detail).outcome == "FAILED"


@pytest.mark.parametrize("state", ["Submitted", "Running", "Pause", "", None])
def test_not_final_has_no_verdict(state):
    # Given a job that is queued, running or paused
    detail = detail_of("callback_image_inspect.xml")
    detail["State"] = state
    # Then there is no verdict yet
    assert is_final(detail) is False
    assert verdict(detail) is None


@pytest.mark.parametrize("state", ["Success", "Failed", "Cancel"])
def test_final_states(state):
    detail = detail_of("callback_image_inspect.xml")
    detail["State"] = state
    assert is_final(detail) is True


def test_sdk_shape_with_lists_is_accepted():
    # Given Operation and ImageInspectResult wrapped in one-element lists, as the SDK may return
    detail = detail_of("callback_image_inspect_array.json")
    op = detail["Operation"]
    op["ImageInspectResult"] = [op["ImageInspectResult"]]
    detail["Operation"] = [op]
    # Then the verdict is the same as for the plain shape
    v = verdict(detail)
    assert (v.outcome, v.suspicious_type) == ("SUSPICIOUS", "MPEG-TS")
