"""COS trigger events → CosRecord (ciflow.events)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from ciflow.errors import BadEventError
from ciflow.events import parse_event, parse_record

EVENTS = Path(__file__).parent.parent / "events"

# The awkward key of cos_multi_record.json: spaces, '+', a literal '%41', a bare '%', unicode, nested '/'.
AWKWARD_KEY = "uploads/2024 summer/a+b %41 100% 日本語/ü.png"


def load(name: str) -> dict:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def record_with_key(object_key: str, url: str | None = None, appid: str = "1253970026",
                    name: str = "testpic") -> dict:
    obj = {"key": f"/{appid}/{name}/{object_key}", "meta": {}, "size": 1}
    if url is not None:
        obj["url"] = url
    return {"cos": {"cosObject": obj, "cosBucket": {"region": "cd", "name": name, "appid": appid}},
            "event": {"eventName": "cos:ObjectCreated:Put"}}


# ------------------------------------------------------------ documented event


def test_documented_put_event():
    # Given the COS event exactly as documented
    event = load("cos_put.json")
    # When it is parsed
    records, problems = parse_event(event)
    # Then there is one record with the full bucket name, full region and bare object key
    assert problems == []
    assert len(records) == 1
    rec = records[0]
    assert rec.bucket == "testpic-1253970026"
    assert rec.appid == "1253970026"
    assert rec.region == "ap-chengdu"
    assert rec.key == "testfile"
    assert "testfile" in rec.key_candidates
    assert rec.size == 1029
    assert rec.event_name == "cos:ObjectCreated:*"
    assert rec.request_id == "NWMxOWY4MGFfMjViMjU4NjRfMTUzYTNfMWY3ODgzMw=="
    assert rec.meta["x-cos-meta-mykey"] == "myvalue"


def test_empty_content_type_meta_is_none():
    # Given the documented event, whose meta has "Content-Type": ""
    rec = parse_record(load("cos_put.json")["Records"][0])
    # Then no content type is reported
    assert rec.content_type is None


def test_json_text_event_is_accepted():
    # Given the event as JSON text (bytes and str)
    raw = (EVENTS / "cos_put.json").read_bytes()
    # When parsed
    from_bytes, _ = parse_event(raw)
    from_str, _ = parse_event(raw.decode("utf-8"))
    # Then both give the same record as the decoded object
    assert from_bytes == from_str == parse_event(load("cos_put.json"))[0]


def test_bucket_name_already_carrying_appid_is_not_doubled():
    # Given a cosBucket.name that already ends in -<appid>
    rec = record_with_key("k.png", name="testpic-1253970026")
    # When parsed
    parsed = parse_record(rec)
    # Then the bucket is used as is and the key is still found
    assert parsed.bucket == "testpic-1253970026"
    assert parsed.key == "k.png"


def test_key_without_leading_slash_is_accepted():
    # Given cosObject.key in the form '<appid>/<name>/<key>' (no leading slash)
    rec = record_with_key("dir/k.png")
    rec["cos"]["cosObject"]["key"] = "1253970026/testpic/dir/k.png"
    # Then the object key is still extracted exactly
    assert parse_record(rec).key == "dir/k.png"


# --------------------------------------------------------------------- regions


def test_s3region_event():
    # Given the observed event with a short region, s3Region, reqid and eventQueue
    records, problems = parse_event(load("cos_with_s3region.json"))
    # Then it parses with the full region and takes the request id from event.reqid
    assert problems == []
    (rec,) = records
    assert rec.bucket == "photos-1250000000"
    assert rec.region == "ap-guangzhou"
    assert rec.key == "uploads/dog.jpg"
    assert rec.request_id == "7303829145021457001"
    assert rec.content_type == "image/jpeg"


@pytest.mark.parametrize("region, expected", [
    ("gz", "ap-guangzhou"), ("cd", "ap-chengdu"), ("bj", "ap-beijing"), ("sh", "ap-shanghai"),
    ("GZ", "ap-guangzhou"), ("ap-singapore", "ap-singapore"),
])
def test_region_short_or_full(region, expected):
    # Given a record whose cosBucket.region is a short code or already a full name
    rec = record_with_key("k.png")
    rec["cos"]["cosBucket"]["region"] = region
    # Then the parsed region is the full name
    assert parse_record(rec).region == expected


def test_s3region_wins_over_short_region():
    # Given both a short region and s3Region
    rec = record_with_key("k.png")
    rec["cos"]["cosBucket"].update(region="cd", s3Region="ap-chengdu")
    # Then the full s3Region is used
    assert parse_record(rec).region == "ap-chengdu"


# ---------------------------------------------------------------- many records


def test_every_record_is_processed():
    # Given an event with three records
    records, problems = parse_event(load("cos_multi_record.json"))
    # Then all three are returned, in order
    assert problems == []
    assert len(records) == 3
    assert records[0].key == "uploads/cat.png"
    assert [r.event_name for r in records] == [
        "cos:ObjectCreated:Put", "cos:ObjectCreated:Post", "cos:ObjectCreated:CompleteMultipartUpload"]
    assert [r.request_id[-8:] for r in records] == ["MDAwMQ==", "MDAwMg==", "MDAwMw=="]


def test_raw_and_encoded_forms_both_yield_the_real_key():
    # Given the same awkward key given raw (record 2) and percent-encoded (record 3)
    records, _ = parse_event(load("cos_multi_record.json"))
    # Then each record's candidates contain the real key
    assert AWKWARD_KEY in records[1].key_candidates
    assert AWKWARD_KEY in records[2].key_candidates
    # and the raw form is tried first, because it needs no decoding
    assert records[1].key == AWKWARD_KEY


def test_bad_record_is_reported_without_hiding_good_ones():
    # Given a good record, a broken one, and another good one
    event = load("cos_multi_record.json")
    del event["Records"][1]["cos"]["cosBucket"]["appid"]
    # When parsed
    records, problems = parse_event(event)
    # Then both good records survive and the problem names the bad record's index
    assert [r.request_id[-8:] for r in records] == ["MDAwMQ==", "MDAwMw=="]
    assert len(problems) == 1
    assert problems[0].startswith("Records[1]: ")
    assert "cosBucket" in problems[0]


@pytest.mark.parametrize("bad, fragment", [
    (None, "record: expected an object"),
    ("text", "record: expected an object"),
    ({"event": {}}, "record.cos"),
    ({"cos": {"cosBucket": {"region": "cd", "name": "n", "appid": "1"}}}, "cosObject"),
    ({"cos": {"cosObject": {"key": "/1/n/k"}, "cosBucket": {"name": "n", "appid": "1"}}}, "region"),
    ({"cos": {"cosObject": {}, "cosBucket": {"region": "cd", "name": "n", "appid": "1"}}}, "cosObject.key"),
    ({"cos": {"cosObject": {"key": 5}, "cosBucket": {"region": "cd", "name": "n", "appid": "1"}}}, "cosObject.key"),
    ({"cos": {"cosObject": {"key": "/9/other/k"}, "cosBucket": {"region": "cd", "name": "n", "appid": "1"}}},
     "expected '/1/n/<key>'"),
    ({"cos": {"cosObject": {"key": "/1/n/"}, "cosBucket": {"region": "cd", "name": "n", "appid": "1"}}},
     "empty object key"),
])
def test_each_malformed_record_is_a_problem(bad, fragment):
    # Given a good record followed by a malformed one
    event = {"Records": [record_with_key("good.png"), bad]}
    # When parsed
    records, problems = parse_event(event)
    # Then the good one is kept and the bad one is reported with the field at fault
    assert [r.key for r in records] == ["good.png"]
    assert len(problems) == 1
    assert problems[0].startswith("Records[1]: ")
    assert fragment in problems[0]


def test_malformed_url_does_not_break_the_event():
    # Given a good record and one whose url is not parseable ('http://[' is an invalid IPv6 host)
    bad = record_with_key("odd.png", url="http://[bad")
    event = {"Records": [record_with_key("good.png"), bad]}
    # When parsed
    records, problems = parse_event(event)
    # Then nothing raises, the good record is kept, and the other is parsed from its key or reported
    assert records[0].key == "good.png"
    assert len(records) + len(problems) == 2
    if len(records) == 2:
        assert records[1].key_candidates == ("odd.png",)


@pytest.mark.parametrize("event", [
    None, [], "not json", b"\xff\xfe", 42, {}, {"Records": None}, {"Records": {}}, {"records": []},
    json.dumps([{"cos": {}}]),
])
def test_event_without_records_list_raises(event):
    # Given something that is not an object with a Records list
    # Then parse_event refuses it outright
    with pytest.raises(BadEventError):
        parse_event(event)


def test_empty_records_list_is_not_an_error():
    # Given an event with no records
    records, problems = parse_event({"Records": []})
    # Then nothing is returned and nothing is reported
    assert (records, problems) == ([], [])


# ------------------------------------------------------------- key candidates


AWKWARD_KEYS = [
    "uploads/a b.png",
    "uploads/a+b.png",
    "uploads/%41.png",
    "uploads/100%.png",
    "uploads/100%25.png",
    "uploads/日本語 ü.png",
    "uploads/deep/er/and/deeper/x.png",
    "uploads/a+b c%41/日本/x y+z.png",
    "uploads/question?hash#.png",
]


@pytest.mark.parametrize("real", AWKWARD_KEYS)
def test_raw_key_is_a_candidate(real):
    # Given the key exactly as written (not encoded)
    rec = parse_record(record_with_key(real))
    # Then the real key is a candidate, and the first one
    assert rec.key_candidates[0] == real


@pytest.mark.parametrize("real", AWKWARD_KEYS)
def test_percent_encoded_key_decodes_to_a_candidate(real):
    # Given the key percent-encoded (RFC 3986, '/' kept)
    rec = parse_record(record_with_key(quote(real, safe="/")))
    # Then the real key is among the candidates
    assert real in rec.key_candidates


@pytest.mark.parametrize("real", AWKWARD_KEYS)
def test_form_encoded_key_decodes_to_a_candidate(real):
    # Given the key form-encoded (spaces as '+', '+' as %2B)
    rec = parse_record(record_with_key(quote(real, safe="/ ").replace(" ", "+")))
    # Then the real key is among the candidates
    assert real in rec.key_candidates


def test_literal_percent41_in_raw_key_is_not_decoded_first():
    # Given a raw key that literally contains '%41'
    rec = parse_record(record_with_key("uploads/%41.png"))
    # Then the literal key comes first, the decoded reading after it
    assert rec.key_candidates[:2] == ("uploads/%41.png", "uploads/A.png")


def test_plain_key_has_a_single_candidate():
    # Given a key with nothing to decode and a matching url
    rec = parse_record(record_with_key("uploads/cat.png", url="http://b-1.cos.ap-chengdu.myqcloud.com/uploads/cat.png"))
    # Then there is exactly one candidate (duplicates are removed)
    assert rec.key_candidates == ("uploads/cat.png",)


def test_url_path_adds_a_decoded_candidate():
    # Given a key field that differs from the url's (encoded) path
    url = "http://testpic-1253970026.cos.ap-chengdu.myqcloud.com/uploads/%E5%9B%BE%20%2B1.png"
    rec = parse_record(record_with_key("uploads/other.png", url=url))
    # Then the decoded url path (without its leading '/') is also a candidate, after the key's own
    assert rec.key_candidates == ("uploads/other.png", "uploads/图 +1.png")


def test_non_string_url_is_ignored():
    # Given a url that is not a string
    rec = record_with_key("uploads/a.png")
    rec["cos"]["cosObject"]["url"] = 12
    # Then only the key's own reading is a candidate
    assert parse_record(rec).key_candidates == ("uploads/a.png",)


# ------------------------------------------------------------ event names, meta


@pytest.mark.parametrize("name, created", [
    ("cos:ObjectCreated:*", True),
    ("cos:ObjectCreated:Put", True),
    ("cos:ObjectCreated:Copy", True),
    ("cos:ObjectCreated:CompleteMultipartUpload", True),
    ("cos:ObjectRemove:Delete", False),
    ("cos:ObjectRemove:DeleteMarkerCreated", False),
    ("cos:ObjectRestore:Completed", False),
    ("", False),
])
def test_is_create(name, created):
    # Given a record with this event name
    rec = record_with_key("k.png")
    rec["event"]["eventName"] = name
    # Then is_create is true only for ObjectCreated events
    assert parse_record(rec).is_create is created


def test_remove_event_fixture_is_not_a_create():
    # Given the ObjectRemove:Delete fixture
    (rec,), problems = parse_event(load("cos_remove.json"))
    # Then it parses but is not a create
    assert problems == []
    assert rec.event_name == "cos:ObjectRemove:Delete"
    assert rec.is_create is False
    assert rec.key == "uploads/cat.png"


@pytest.mark.parametrize("meta, expected", [
    ({"Content-Type": "image/png"}, "image/png"),
    ({"content-type": "image/webp"}, "image/webp"),
    ({"CONTENT-TYPE": "image/gif; charset=binary"}, "image/gif; charset=binary"),
    ({"Content-Type": ""}, None),
    ({"x-cos-meta-content-type": "image/png"}, None),
    ({}, None),
])
def test_content_type_from_meta(meta, expected):
    # Given object meta with or without a content type (any header case)
    rec = record_with_key("k.png")
    rec["cos"]["cosObject"]["meta"] = meta
    # Then content_type reports it
    assert parse_record(rec).content_type == expected


@pytest.mark.parametrize("size, expected", [(1029, 1029), ("2048", 2048), ("", None), (None, None), ("big", None)])
def test_size_is_int_or_none(size, expected):
    # Given cosObject.size as a number, numeric string, or junk
    rec = record_with_key("k.png")
    rec["cos"]["cosObject"]["size"] = size
    # Then size is an int or None, never an exception
    assert parse_record(rec).size == expected
