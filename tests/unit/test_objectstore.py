"""COS events in both forms, the object store's switches and their validation, and its small parts."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from devstack.objectstore import Faults, Switches, cos_event, split_bucket
from devstack.objectstore.cos import KeyLocks, etag_matches

DOCUMENTED = {  # platform.md §1, the documented example
    "Records": [{"cos": {"cosSchemaVersion": "1.0",
                         "cosObject": {"url": "", "meta": {"x-cos-request-id": "", "Content-Type": ""}, "vid": "",
                                       "key": "", "size": 0},
                         "cosBucket": {"region": "", "name": "", "appid": ""},
                         "cosNotificationId": ""},
                 "event": {"eventName": "", "eventVersion": "", "eventTime": 0, "eventSource": "",
                           "requestParameters": {"requestSourceIP": "", "requestHeaders": {"Authorization": ""}}}}]}


def shape(value: Any) -> Any:
    """The field names of a JSON document, recursively (values dropped)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return None


def event(**kw: Any) -> dict[str, Any]:
    args = {"bucket": "photos-1250000000", "region": "ap-chengdu", "key": "uploads/a b+c%.png", "size": 7,
            "meta": {"x-cos-request-id": "r1", "Content-Type": "image/png"}, "event_name": "cos:ObjectCreated:Put"}
    args.update(kw)
    return cos_event(**args)


def test_the_documented_form_has_exactly_the_documented_fields() -> None:
    e = event(etag='"abc"', version_id="v1", storage_class="STANDARD_IA")
    assert shape(e) == shape(DOCUMENTED)
    rec = e["Records"][0]
    # The version id of a versioned bucket is not in the documented event: vid stays empty
    assert rec["cos"]["cosObject"]["vid"] == ""
    assert rec["cos"]["cosBucket"] == {"region": "cd", "name": "photos", "appid": "1250000000"}
    assert rec["cos"]["cosObject"]["key"] == "/1250000000/photos/uploads/a b+c%.png"


def test_the_logged_form_adds_etag_storage_class_vid_regions_and_reqid() -> None:
    rec = event(form="logged", etag="abc", version_id="v1", storage_class="STANDARD_IA")["Records"][0]
    obj, bkt = rec["cos"]["cosObject"], rec["cos"]["cosBucket"]
    assert obj["meta"] == {"x-cos-request-id": "r1", "Content-Type": "image/png", "ETag": '"abc"',
                           "x-cos-storage-class": "STANDARD_IA"}
    assert obj["vid"] == "v1"
    assert bkt == {"region": "cd", "name": "photos", "appid": "1250000000", "s3Region": "ap-chengdu",
                   "cosRegion": "ap-chengdu"}
    assert isinstance(rec["event"]["reqid"], int)
    assert set(rec["event"]) - set(DOCUMENTED["Records"][0]["event"]) == {"reqid"}


def test_events_parse_in_both_forms_and_both_key_encodings() -> None:
    from ciflow.events import parse_event

    for form in ("documented", "logged"):
        for encoding in ("raw", "url"):
            records, problems = parse_event(json.loads(json.dumps(event(form=form, key_encoding=encoding,
                                                                        etag='"e"'))))
            assert problems == []
            assert "uploads/a b+c%.png" in records[0].key_candidates
            assert records[0].region == "ap-chengdu"


def test_unknown_event_forms_and_bucket_names_are_refused() -> None:
    with pytest.raises(ValueError, match="documented, logged"):
        event(form="pretty")
    with pytest.raises(ValueError, match="<name>-<appid>"):
        split_bucket("photos")


def test_switches_default_to_the_least_favourable_settings() -> None:
    s = Switches()
    assert (s.event_form, s.if_none_match, s.key_encoding, s.copy_limit_bytes) == (
        "documented", "ignore", "raw", 5 * 1024 ** 3)
    f = Faults()
    assert f.tagging_fail_rate == f.state_fail_rate == f.state_stall_seconds == f.tagging_stall_seconds == 0


@pytest.mark.parametrize("values, message", [
    ({"if_none_match": "maybe"}, "expected one of honour, ignore, reject"),
    ({"s3_copy_conditions": "sometimes"}, "expected one of honour, ignore"),
    ({"key_encoding": "base64"}, "expected one of raw, url, mixed"),
    ({"copy_limit_bytes": "lots"}, "expected a whole number"),
    ({"copy_limit_bytes": True}, "expected a whole number"),
    ({"copy_limit_bytes": float("nan")}, "expected a whole number"),
    ({"copy_limit_bytes": -5}, "expected a size >= 0"),
    ({"colour": "blue"}, "unknown setting 'colour'"),
])
def test_bad_switch_values_are_refused_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    s = Switches()
    with pytest.raises(ValueError, match=message):
        s.update({"event_form": "logged", **values})
    assert s == Switches()


def test_numbers_may_come_as_text_from_json() -> None:
    s, f = Switches(), Faults()
    s.update({"copy_limit_bytes": "1024"})
    f.update({"state_fail_rate": "0.5", "state_fail_burst": 3.0})
    assert (s.copy_limit_bytes, f.state_fail_rate, f.state_fail_burst) == (1024, 0.5, 3)


def test_etag_conditions_ignore_quotes_and_accept_a_star() -> None:
    assert etag_matches('"abc"', '"abc"') and etag_matches("abc", '"abc"') and etag_matches("*", '"x"')
    assert not etag_matches('"abd"', '"abc"')


def test_key_locks_serialise_writers_of_one_key_in_any_order() -> None:
    locks, counter, seen = KeyLocks(stripes=4), [0], []

    def writer(pair: tuple[tuple[str, str], tuple[str, str]]) -> None:
        for _ in range(200):
            with locks.hold(*pair):
                v = counter[0]
                counter[0] = v + 1
                seen.append(v)

    a, b = ("bkt", "a"), ("bkt", "b")
    threads = [threading.Thread(target=writer, args=((a, b),)), threading.Thread(target=writer, args=((b, a),)),
               threading.Thread(target=writer, args=((a, a),))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # No deadlock, no lost update
    assert counter[0] == 600 and sorted(seen) == list(range(600))
