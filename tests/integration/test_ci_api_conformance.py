"""The CI emulator answers as the API pages say, over raw signed HTTP and through the real SDK.

Covers: several ids in one `GET /jobs/<ids>` (the SDK sends the comma as `%2C`), duplicated or nested
elements where the pages want one value, hostile and malformed bodies (always an XML `<Error>`, never a
dropped connection), the create answers' fields against every page sample, the list API's `states`,
and no Nagle/delayed-ACK stall on kept-alive connections.
"""

from __future__ import annotations

import random
import re
import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from qcloud_cos.cos_exception import CosServiceError

from tests.integration.ci_page_samples import SAMPLES, PageSample
from tests.integration.emulator_harness import BUCKET, Emulator, Response

pytestmark = pytest.mark.integration
PAGES = Path(__file__).resolve().parents[3] / "shared" / "ci-api"
ERROR_CODES = {"InvalidArgument", "MissingContent", "InvalidContent"}


@pytest.fixture(scope="module")
def env():
    e = Emulator()
    yield e
    e.stop()


def image_job(key: str = "uploads/a.png", **op: str) -> dict[str, Any]:
    return {"Tag": "ImageInspect", "Input": {"Object": key}, "Operation": {"JobLevel": "0", **op}, "CallBack": "no"}


def body(inner: str) -> bytes:
    return f"<Request>{inner}</Request>".encode()


VALID = ("<Tag>ImageInspect</Tag><Input><Object>uploads/a.png</Object></Input>"
         "<Operation><UserData>u</UserData><JobLevel>0</JobLevel></Operation><CallBack>no</CallBack>")


def assert_error(r: Response, status: int = 400, codes: set[str] = ERROR_CODES) -> str:
    """The documented error answer: XML `<Error>` with Code, Message, RequestId and TraceId."""
    assert r.status == status, (r.status, r.body[:300])
    assert r.headers["content-type"] == "application/xml"
    tag, content = r.xml()
    assert tag == "Error"
    assert {"Code", "Message", "RequestId", "TraceId"} <= set(content), content
    assert content["Code"] in codes, content
    return content["Code"]


# ----- several ids in one query ----------------------------------------------------------------
def test_sdk_query_with_several_ids_answers_every_job(env: Emulator) -> None:
    sdk = env.sdk()
    ids = [sdk.ci_create_media_jobs(Bucket=BUCKET, Jobs=image_job(f"uploads/{n}.png"), Lst={},
                                    ContentType="application/xml")["JobsDetail"][0]["JobId"] for n in range(3)]
    got = sdk.ci_get_media_jobs(Bucket=BUCKET, JobIDs=",".join([*ids, "cdoesnotexist"]))
    assert sorted(d["JobId"] for d in got["JobsDetail"]) == sorted(ids)
    assert got["NonExistJobIds"] == "cdoesnotexist"
    # What went over the wire really had the comma percent-encoded
    entry = [r for r in env.emu.requests if r["method"] == "GET" and "cdoesnotexist" in r["path"]][-1]
    assert "%2C" in entry["raw_path"]


@pytest.mark.parametrize("sep", [",", "%2C", "%2c"])
def test_raw_query_with_several_ids(env: Emulator, sep: str) -> None:
    ids = [env.sdk().ci_create_media_jobs(Bucket=BUCKET, Jobs=image_job(), Lst={},
                                          ContentType="application/xml")["JobsDetail"][0]["JobId"]
           for _ in range(2)]
    r = env.ci.request("GET", "/jobs/" + ",".join([*ids, "cmissing1", "cmissing2"]),
                       raw_path="/jobs/" + sep.join([*ids, "cmissing1", "cmissing2"]))
    assert r.status == 200
    tag, content = r.xml()
    details = content["JobsDetail"] if isinstance(content["JobsDetail"], list) else [content["JobsDetail"]]
    assert [d["JobId"] for d in details] == ids
    assert content["NonExistJobIds"] == ["cmissing1", "cmissing2"]


def test_query_without_an_id_is_rejected(env: Emulator) -> None:
    assert_error(env.ci.request("GET", "/jobs/,"), codes={"InvalidArgument"})


# ----- one value where the pages want one --------------------------------------------------------
@pytest.mark.parametrize("inner,code", [
    (VALID.replace("<Tag>ImageInspect</Tag>", "<Tag>ImageInspect</Tag><Tag>ImageInspect</Tag>"), "InvalidArgument"),
    (VALID.replace("<Tag>ImageInspect</Tag>", "<Tag><ImageInspect/></Tag>"), "InvalidArgument"),
    (VALID.replace("<Tag>ImageInspect</Tag>", "<Tag>ImageInspect<x>1</x></Tag>"), "InvalidArgument"),
    (VALID.replace("<Object>uploads/a.png</Object>", "<Object>uploads/a.png</Object><Object>uploads/b.png</Object>"),
     "InvalidArgument"),
    (VALID.replace("<Object>uploads/a.png</Object>", "<Object><Key>uploads/a.png</Key></Object>"), "InvalidArgument"),
    (VALID.replace("<Input>", "<Input><Object>uploads/b.png</Object></Input><Input>"), "InvalidArgument"),
    (VALID.replace("<Object>uploads/a.png</Object>", "uploads/a.png"), "InvalidArgument"),
    (VALID.replace("<Input>", "<Input><Bucket>other-1250000000</Bucket>"), "InvalidArgument"),
    (VALID.replace("<UserData>u</UserData>", "<UserData>u</UserData><UserData>v</UserData>"), "InvalidArgument"),
    (VALID.replace("<UserData>u</UserData>", "<UserData><a>u</a></UserData>"), "InvalidArgument"),
    (VALID.replace("<JobLevel>0</JobLevel>", "<JobLevel>0</JobLevel><JobLevel>1</JobLevel>"), "InvalidArgument"),
    (VALID.replace("<Operation>", "<Operation><UserData>w</UserData></Operation><Operation>"), "InvalidArgument"),
    (VALID.replace("<CallBack>no</CallBack>", "<CallBack>no</CallBack><CallBack>http://a.example/</CallBack>"),
     "InvalidArgument"),
    (VALID + "<CallBackFormat>XML</CallBackFormat><CallBackFormat>JSON</CallBackFormat>", "InvalidArgument"),
    (VALID + "<CallBackType><Url/></CallBackType>", "InvalidArgument"),
    (VALID + "<QueueId>p1</QueueId><QueueId>p2</QueueId>", "InvalidArgument"),
    (VALID.replace("<Tag>ImageInspect</Tag>", "<Tag>ImageInspect</Tag>").replace(
        "<Operation>", "<Operation><ImageInspect><AutoProcess>true</AutoProcess></ImageInspect>"
                       "<ImageInspect><AutoProcess>false</AutoProcess></ImageInspect>"), "InvalidArgument"),
])
def test_repeated_or_nested_single_values_get_the_documented_error(env: Emulator, inner: str, code: str) -> None:
    conn = env.ci.connection()
    try:
        r = env.ci.request("POST", "/jobs", body=body(inner), conn=conn)
        assert assert_error(r) == code
        # The connection is still good for the next request
        ok = env.ci.request("POST", "/jobs", body=body(VALID), conn=conn)
        assert ok.status == 200, ok.body[:300]
    finally:
        conn.close()


def test_duplicated_input_object_through_the_sdk_is_rejected(env: Emulator) -> None:
    with pytest.raises(CosServiceError) as ei:
        env.sdk().ci_create_media_jobs(Bucket=BUCKET, Jobs=image_job(key=["uploads/a.png", "uploads/b.png"]),
                                       Lst={}, ContentType="application/xml")
    assert ei.value.get_status_code() == 400
    assert ei.value.get_error_code() == "InvalidArgument"


# ----- hostile and malformed bodies ---------------------------------------------------------------
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
          + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
          + "]><Request><Tag>&i;</Tag></Request>")

MALFORMED: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b"  \r\n\t "),
    ("not xml", b"Tag=ImageInspect"),
    ("json", b'{"Tag": "ImageInspect", "Input": {"Object": "a.png"}}'),
    ("unclosed", b"<Request><Tag>ImageInspect</Tag>"),
    ("mismatched", b"<Request><Tag>ImageInspect</Input></Request>"),
    ("trailing garbage", body(VALID) + b"<more/>"),
    ("two roots", body(VALID) + body(VALID)),
    ("wrong root", b"<Jobs>" + VALID.encode() + b"</Jobs>"),
    ("namespaced root", b'<x:Request xmlns:x="urn:x">' + VALID.encode() + b"</x:Request>"),
    ("doctype", b'<!DOCTYPE Request [<!ELEMENT Request ANY>]>' + body(VALID)),
    ("internal entity", b'<!DOCTYPE r [<!ENTITY t "ImageInspect">]><Request><Tag>&t;</Tag></Request>'),
    ("external entity", b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><Request><Tag>&x;</Tag></Request>'),
    ("parameter entity", b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x.dtd"> %p;]><Request/>'),
    ("billion laughs", LAUGHS.encode()),
    ("undefined entity", b"<Request><Tag>&nope;</Tag></Request>"),
    ("bad utf-8", b"<Request><Tag>Image\xff\xfeInspect</Tag></Request>"),
    ("truncated utf-8", b"<Request><Tag>\xe4\xb8</Tag></Request>"),
    ("utf-16 declared, utf-8 sent", b'<?xml version="1.0" encoding="UTF-16"?>' + body(VALID)),
    ("unknown encoding", b'<?xml version="1.0" encoding="x-no-such"?>' + body(VALID)),
    ("nul byte", b"<Request><Tag>Image\x00Inspect</Tag></Request>"),
    ("control character", b"<Request><Tag>Image\x01Inspect</Tag></Request>"),
    ("deep nesting", b"<Request>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</Request>"),
    ("deep nesting in Operation", body(VALID.replace("<Operation>", "<Operation>" + "<X>" * 200 + "</X>" * 200))),
    ("many elements", body(VALID.replace("<Operation>", "<Operation>" + "<X/>" * 60_000))),
    ("huge body", body(VALID.replace("<UserData>u</UserData>", "<UserData>" + "u" * (3 << 20) + "</UserData>"))),
    ("huge attribute", b'<Request a="' + b"x" * (2 << 20) + b'">' + VALID.encode() + b"</Request>"),
    ("text-only Request", b"<Request>ImageInspect</Request>"),
    ("empty Request", b"<Request/>"),
    ("unknown element", body(VALID + "<Priority>9</Priority>")),
    ("cdata tag", body(VALID.replace("<Tag>ImageInspect</Tag>", "<Tag><![CDATA[NoSuchTag]]></Tag>"))),
    ("processing instruction root only", b"<?xml-stylesheet href='x'?>"),
    ("duplicated Tag", body(VALID.replace("<Tag>ImageInspect</Tag>", "<Tag>ImageInspect</Tag>" * 2))),
    ("duplicated Input", body(VALID.replace("<Input>", "<Input><Object>b</Object></Input><Input>"))),
    ("duplicated Object",
     body(VALID.replace("<Object>uploads/a.png</Object>", "<Object>a</Object><Object>b</Object>"))),
    ("Tag with a child", body(VALID.replace("<Tag>ImageInspect</Tag>", "<Tag><ImageInspect/></Tag>"))),
    ("Input as text", body(VALID.replace("<Input><Object>uploads/a.png</Object></Input>", "<Input>a.png</Input>"))),
    ("Operation as text", body(VALID.replace("<Operation><UserData>u</UserData><JobLevel>0</JobLevel></Operation>",
                                             "<Operation>fast</Operation>"))),
]


def test_hostile_and_malformed_bodies_get_an_xml_error(env: Emulator) -> None:
    """Every body: an XML `<Error>` answer (never a dropped connection), and nothing created."""
    before = len(env.emu.jobs)
    conn = env.ci.connection()
    seen = {}
    try:
        for name, data in MALFORMED:
            try:
                r = env.ci.request("POST", "/jobs", body=data, conn=conn)
            except (ConnectionError, OSError) as exc:
                raise AssertionError(f"{name}: the connection dropped ({exc!r})") from None
            try:
                seen[name] = assert_error(r)
            except AssertionError as exc:
                raise AssertionError(f"{name}: {exc}") from None
            if r.headers.get("connection", "").lower() == "close":
                conn.close()
                conn = env.ci.connection()
    finally:
        conn.close()
    assert len(env.emu.jobs) == before
    assert seen["empty"] == "MissingContent"
    assert seen["billion laughs"] == "InvalidContent" and seen["external entity"] == "InvalidContent"
    assert seen["huge body"] == "InvalidContent" and seen["deep nesting"] == "InvalidContent"


def test_random_corruptions_of_a_valid_body_never_drop_the_connection(env: Emulator) -> None:
    """Fuzz: truncations, byte flips and spliced-in markup of a valid body, fixed seed. Each answer is
    either a created job (the change left a valid request) or the documented XML error."""
    rng = random.Random(1216)
    valid = body(VALID)
    snippets = [b"<", b">", b"</Tag>", b"<Tag>", b"&", b"&amp;", b"]]>", b"<!--", b"\xff", b"\x00", b"<Input>",
                b"<Object>x</Object>", b'"', b"<?xml?>"]
    conn = env.ci.connection()
    outcomes = {"created": 0, "error": 0}
    try:
        for i in range(300):
            data = bytearray(valid)
            for _ in range(rng.randint(1, 4)):
                op = rng.choice(("flip", "cut", "splice", "dup"))
                at = rng.randrange(len(data)) if data else 0
                if op == "flip" and data:
                    data[at] = rng.randrange(256)
                elif op == "cut":
                    del data[at:at + rng.randint(1, 12)]
                elif op == "splice":
                    data[at:at] = rng.choice(snippets)
                else:
                    data[at:at] = data[at:at + rng.randint(1, 40)]
            try:
                r = env.ci.request("POST", "/jobs", body=bytes(data), conn=conn)
            except (ConnectionError, OSError) as exc:
                raise AssertionError(f"case {i} {bytes(data)!r}: the connection dropped ({exc!r})") from None
            if r.status == 200:
                assert r.xml()[0] == "Response"
                outcomes["created"] += 1
            else:
                try:
                    assert_error(r)
                except AssertionError as exc:
                    raise AssertionError(f"case {i} {bytes(data)!r}: {exc}") from None
                outcomes["error"] += 1
            if r.headers.get("connection", "").lower() == "close":
                conn.close()
                conn = env.ci.connection()
    finally:
        conn.close()
    assert outcomes["error"] > 200


def test_malformed_http_gets_an_xml_error(env: Emulator) -> None:
    import socket

    for raw in (b"GET /jobs/x HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n",
                b"POST /jobs HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n",
                b"POST /jobs HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                b"DELETE /jobs/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
                b"BREW /jobs HTTP/1.1\r\nHost: a\r\n\r\n",
                b"GARBAGE\r\n\r\n"):
        with socket.create_connection((env.emu.host, env.emu.port), timeout=10) as s:
            s.sendall(raw)
            data = b""
            while b"</Error>" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, payload = data.partition(b"\r\n\r\n")
        assert re.match(rb"HTTP/1\.[01] [45]\d\d ", head), (raw, data[:200])
        assert b"application/xml" in head, (raw, head)
        assert payload.startswith(b"<Error><Code>"), (raw, payload[:200])


# ----- create answers against the pages -------------------------------------------------------------
def paths(value: Any, prefix: str = "") -> set[str]:
    """Every element path in a parsed XML document; repeated elements share one path."""
    out: set[str] = set()
    if not isinstance(value, dict):
        return out
    for k, v in value.items():
        p = f"{prefix}.{k}" if prefix else k
        out.add(p)
        for item in v if isinstance(v, list) else [v]:
            out |= paths(item, p)
    return out


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_create_answer_has_the_page_samples_fields(env: Emulator, sample: PageSample) -> None:
    from defusedxml import ElementTree

    from devstack.emulator.xmlutil import element_to_dict

    r = env.ci.request("POST", "/jobs", body=sample.request.encode())
    assert r.status == 200, r.body[:500]
    tag, got = r.xml()
    assert tag == "Response"
    want = element_to_dict(ElementTree.fromstring(sample.response))
    request = element_to_dict(ElementTree.fromstring(sample.request))
    got_paths, want_paths = paths(got["JobsDetail"]), paths(want["JobsDetail"])
    assert want_paths - got_paths == set(), "fields the page shows and the emulator does not send"
    # Anything more is the request's own Operation echoed back ("In-request Request.Operation.X")
    echoes = {f"Operation.{p}" for p in paths(request["Operation"])}
    assert got_paths - want_paths - echoes == set(), "fields the page does not show"
    d = got["JobsDetail"]
    assert [k for k in d if k in want["JobsDetail"]] == list(want["JobsDetail"]), "element order"
    assert d["State"] == "Submitted" and d["Code"] == "Success" and d["Tag"] == want["JobsDetail"]["Tag"]
    for key in ("Progress",):
        if key in want["JobsDetail"]:
            assert d[key] == want["JobsDetail"][key]
    want_op, got_op = want["JobsDetail"]["Operation"], d["Operation"]
    if "DigitalWatermark" in want_op and "State" in want_op["DigitalWatermark"]:
        assert got_op["DigitalWatermark"]["State"] == "Running"
    if "TemplateName" in want_op:
        assert got_op["TemplateName"]
    if want["JobsDetail"]["Tag"] == "VideoEnhance" and "TemplateId" in want_op:
        assert got_op["TemplateName"] == want_op["TemplateName"]  # the default templates hold the page's


@pytest.mark.skipif(not PAGES.is_dir(), reason="../shared/ci-api is not beside the project")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: s.name)
def test_page_samples_are_verbatim(sample: PageSample) -> None:
    def squash(text: str) -> str:
        return re.sub(r">\s+<", "><", text.strip())

    page = squash((PAGES / sample.page).read_text(encoding="utf-8"))
    assert squash(sample.verbatim) in page
    assert squash(sample.response) in page


# ----- listing ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("states", ["All", "Submitted", "Success,Failed", "All,Success",
                                    "Submitted,Running,Success,Failed,Pause,Cancel"])
def test_list_accepts_documented_states(env: Emulator, states: str) -> None:
    r = env.ci.request("GET", "/jobs", params={"tag": "ImageInspect", "states": states})
    assert r.status == 200, r.body[:300]
    tag, content = r.xml()
    wanted = set(states.split(","))
    details = content.get("JobsDetail") or []
    for d in details if isinstance(details, list) else [details]:
        assert "All" in wanted or d["State"] in wanted


@pytest.mark.parametrize("params", [
    {"states": "Bogus"}, {"states": "Success,Bogus"}, {"states": "success"}, {"states": "Success,"},
    {"states": ","}, {"size": "abc"}, {"size": "0"}, {"size": "101"}, {"orderByTime": "Sideways"},
    {"nextToken": "not-a-token"},
])
def test_list_rejects_undocumented_values(env: Emulator, params: dict[str, str]) -> None:
    r = env.ci.request("GET", "/jobs", params={"tag": "ImageInspect", **params})
    assert_error(r, codes={"InvalidArgument"})


def test_sdk_list_with_bogus_states_is_rejected(env: Emulator) -> None:
    with pytest.raises(CosServiceError) as ei:
        env.sdk().ci_list_media_jobs(Bucket=BUCKET, Tag="ImageInspect", States="Bogus")
    assert ei.value.get_status_code() == 400 and ei.value.get_error_code() == "InvalidArgument"


# ----- keep-alive latency ------------------------------------------------------------------------------
def test_kept_alive_connection_has_no_nagle_stall(env: Emulator) -> None:
    """20 sequential requests on one connection; with Nagle + delayed ACK each would wait ~40 ms."""
    job_id = env.sdk().ci_create_media_jobs(Bucket=BUCKET, Jobs=image_job(), Lst={},
                                            ContentType="application/xml")["JobsDetail"][0]["JobId"]
    conn = env.ci.connection()
    took = []
    try:
        env.ci.request("GET", f"/jobs/{job_id}", conn=conn)  # connect and warm up
        for _ in range(20):
            headers = env.ci.signed_headers("GET", f"/jobs/{job_id}")
            start = time.perf_counter()
            conn.request("GET", f"/jobs/{job_id}", headers=headers)
            resp = conn.getresponse()
            resp.read()
            took.append(time.perf_counter() - start)
            assert resp.status == 200 and not resp.will_close
    finally:
        conn.close()
    assert statistics.median(took) < 0.020, [round(t * 1000, 1) for t in took]
