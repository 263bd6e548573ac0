"""Rules, requests and verdicts for VideoTargetRec, VideoEnhance and DigitalWatermark."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from qcloud_cos.cos_comm import format_xml

from ciflow.callbacks import job_claims, parse_body
from ciflow.errors import ConfigError
from ciflow.jobs import build_job
from ciflow.results import verdict
from ciflow.rules import parse_rules
from ciflow.settings import load_settings
from ciflow.submission import skip_reason

API = Path(__file__).resolve().parents[3] / "shared" / "ci-api"  # ../shared beside the checkout
RULES = Path(__file__).resolve().parents[1] / "events" / "rules_media.json"


def doc(*rules: dict) -> str:
    return json.dumps({"version": 1, "rules": list(rules)})


def vtr(**kw) -> dict:
    return {"name": "v", "job": "VideoTargetRec", "prefixes": ["uploads/"], **kw}


def ve(**kw) -> dict:
    base = {"name": "e", "job": "VideoEnhance", "prefixes": ["raw/"], "template_id": "t1",
            "output": {"object": "out/${jobid}.${ext}"}}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        parse_rules(text)
    return str(ei.value)


@pytest.mark.parametrize("rule,path,fragment", [
    (vtr(), "rules[0]", "needs template_id or targets"),
    (vtr(targets={"body": False, "pet": False}), "rules[0].targets", "at least one"),
    (vtr(targets={"body": True, "dog": True}), "rules[0].targets", "body/pet/car"),
    (vtr(targets={"body": "yes"}), "rules[0].targets", "true or false"),
    (vtr(template_id="t1", score_threshold=150), "rules[0].score_threshold", "0 to 100"),
    (vtr(template_id="t1", snapshot_prefix="/snaps/"), "rules[0].snapshot_prefix", "leading"),
    (vtr(template_id="t1", auto_process="BackupObject"), "rules[0].auto_process", "does not apply"),
    (vtr(template_id="t1", outcomes={"SUSPICIOUS": {}}), "rules[0].outcomes.SUSPICIOUS", "unknown outcome"),
    (vtr(template_id="t1", outcomes={"PERSON": {"actions": ["move"]}}), "rules[0].outcomes.PERSON.move_to",
     "required with 'move'"),
    (vtr(template_id="t1", outcomes={"PERSON": {"actions": ["move"], "move_to": "uploads/review/"}}),
     "rules[0].outcomes.PERSON.move_to", "overlaps the watched prefix"),
    (vtr(template_id="t1", outcomes={"PERSON": {"actions": ["move", "quarantine"], "move_to": "r/"}}),
     "rules[0].outcomes.PERSON.actions", "pick one"),
    (vtr(template_id="t1", outcomes={"NONE": {"move_to": "r/"}}), "rules[0].outcomes.NONE.move_to", "only used"),
    (ve(output=None), "rules[0].output", "is required"),
    (ve(output={"object": ""}), "rules[0].output.object", "is required"),
    (ve(template_id=None), "rules[0]", "needs template_id or video_enhance"),
    (ve(video_enhance=[]), "rules[0].video_enhance", "non-empty object"),
    (ve(watermark_template_ids=["a", "b", "c", "d"]), "rules[0].watermark_template_ids", "at most 3"),
    (ve(watermarks=[{"Type": "Text"}] * 4), "rules[0].watermarks", "at most 3"),
    (ve(digital_watermark={"type": "Text", "message": "has space"}), "rules[0].digital_watermark.message", "1-64"),
    ({"name": "w", "job": "DigitalWatermark", "prefixes": ["p/"], "output": {"object": "o.mp4"}},
     "rules[0].digital_watermark", "must be an object"),
    ({"name": "w", "job": "DigitalWatermark", "prefixes": ["p/"], "output": {"object": "o.mp4"},
      "digital_watermark": {"message": "m", "version": "V2"}}, "rules[0].digital_watermark.version", "V1"),
    ({"name": "w", "job": "DigitalWatermark", "prefixes": ["p/"], "digital_watermark": {"message": "m"}},
     "rules[0].output", "is required"),
])
def test_invalid_media_rules_name_the_field(rule: dict, path: str, fragment: str) -> None:
    msg = problems(doc(rule))
    line = next((ln for ln in msg.splitlines() if ln.strip().startswith(path + ":")), "")
    assert fragment in line, msg


def test_test_rules_file_is_valid_and_knows_its_outputs() -> None:
    rs = parse_rules(RULES.read_text())
    s = load_settings({"CIFLOW_REGION": "gz", "CIFLOW_CALLBACK_SECRET": "x" * 16})
    # outputs and snapshots are recognised as written by their rule, so they never start jobs
    assert skip_reason("raw/out/c0123abc.mp4", rs, s) == "written by the jobs of rule 'enhance'"
    assert skip_reason("uploads/snaps/cabc/0.jpg", rs, s) == "written by the jobs of rule 'vtr-params'"
    assert skip_reason("raw/out/nested/x.mp4", rs, s) is None  # ${jobid} is one segment of letters/digits
    assert skip_reason("raw/clip.mp4", rs, s) is None


def _sample_request(page: str, n: int = 0) -> str:
    text = (API / page).read_text()
    blocks = re.findall(r"<Request>.*?</Request>", text, re.S)
    return re.sub(r"\s+", "", blocks[n])


def _ours(job: dict) -> str:
    xml = format_xml(data=job, root="Request").decode()
    return re.sub(r"\s+", "", xml.split("?>", 1)[1])


def test_video_target_rec_template_form_matches_the_page_sample() -> None:
    rule = parse_rules(doc(vtr(template_id="t1460606b9752148c4ab182f55163ba7cd"))).rules[0]
    job = build_job(rule, "input/demo.mp4", "This is my data.", "http://callback.demo.com", "JSON")
    job.pop("CallBackType")
    # The page's sample has a typo (<CallBackFormat>JSON<CallBackFormat>); the tables win.
    expected = _sample_request("004_6dd2c1ddb908e6aa.txt").replace("JSON<CallBackFormat>", "JSON</CallBackFormat>")
    assert _ours(job) == expected


def test_video_target_rec_parameter_form() -> None:
    rule = parse_rules(doc(vtr(targets={"pet": True}, snapshot_prefix="snaps/"))).rules[0]
    op = build_job(rule, "a.mp4", "u", "", "XML")["Operation"]
    assert op["VideoTargetRec"] == {"Body": "false", "Pet": "true", "Car": "false"}
    assert op["SnapshotPrefix"] == "snaps/"
    assert list(op)[:2] == ["VideoTargetRec", "SnapshotPrefix"]


def test_digital_watermark_matches_the_page_sample() -> None:
    rule = parse_rules(doc({"name": "w", "job": "DigitalWatermark", "prefixes": ["input/"],
                            "digital_watermark": {"type": "Text", "message": "123456789ab", "version": "V1"},
                            "output": {"object": "output/out.mp4"}})).rules[0]
    job = build_job(rule, "input/demo.mp4", "This is my data.", "http://callback.demo.com", "JSON",
                    "test-123456789", "ap-chongqing")
    job.pop("CallBackType")
    assert _ours(job) == _sample_request("003_754b2e9c579084b8.txt")


def test_video_enhance_template_form_matches_the_page_sample() -> None:
    rule = parse_rules(doc(ve(name="e", prefixes=["input/"], template_id="t1460606b9752148c4ab182f55163ba7cd",
                              watermark_template_ids=["t146d70eb241c44c63b6efc1cc93ccfc5d",
                                                      "t12a74d11687d444deba8a6cc52051ac27"],
                              digital_watermark={"type": "Text", "message": "123456789ab", "version": "V1",
                                                 "ignore_error": False},
                              output={"object": "output/out.${ext}"}))).rules[0]
    job = build_job(rule, "input/demo.mp4", "This is my data.", "http://callback.demo.com", "JSON",
                    "test-123456789", "ap-chongqing")
    job.pop("CallBackType")
    assert _ours(job) == _sample_request("002_c536ed7614bf2d87.txt")


def _vtr_detail(body_scores, pet_scores, fmt="xml", array=False):
    def entries(scores, info, name):
        return [{"Time": str(t), "Url": "", info: [{"Name": name, "Score": str(s),
                                                     "Location": {"X": "1", "Y": "2", "Width": "3", "Height": "4"}}]}
                for t, s in scores]

    detail = {"Code": "Success", "JobId": "cabc", "State": "Success", "Tag": "VideoTargetRec",
              "Input": {"BucketId": "b-1", "Object": "v.mp4", "Region": "ap-guangzhou"},
              "Operation": {"UserData": "ciflow:1;r=v;e=x", "VideoTargetRecResult": {
                  "State": "Success", "BodyRecognition": entries(body_scores, "BodyInfo", "person"),
                  "PetRecognition": entries(pet_scores, "PetInfo", "cat")}}}
    if fmt == "json":
        body = json.dumps({"EventName": "TaskFinish", "JobsDetail": [detail] if array else detail}).encode()
    else:
        from devstack.emulator.xmlutil import to_xml

        body = to_xml("Response", {"EventName": "TaskFinish", "JobsDetail": detail}).encode()
    parsed = parse_body(body)
    assert job_claims(parsed)[0].job_id == "cabc"
    d = parsed["JobsDetail"]
    return d[0] if isinstance(d, list) else d


@pytest.mark.parametrize("fmt,array", [("xml", False), ("json", False), ("json", True)])
def test_video_labels_from_xml_and_json_callbacks(fmt: str, array: bool) -> None:
    rule = parse_rules(doc(vtr(template_id="t1", score_threshold=60))).rules[0]
    d = _vtr_detail([(2, 70), (1, 65), (3, 50)], [(4, 59)], fmt, array)
    v = verdict(d, rule)
    assert v.outcome == "LABELLED" and v.applied_outcomes == ("PERSON",)
    assert [(lb.name, lb.first_seen, lb.score) for lb in v.labels] == [("person", 1.0, 70.0)]


@pytest.mark.parametrize("threshold,outcomes", [(0, ("PERSON", "PET")), (60, ("PERSON",)), (80, ("NONE",))])
def test_thresholds_decide_the_outcome(threshold: int, outcomes: tuple) -> None:
    rule = parse_rules(doc(vtr(template_id="t1", score_threshold=threshold))).rules[0]
    v = verdict(_vtr_detail([(1, 70)], [(2, 59)]), rule)
    assert v.applied_outcomes == outcomes
    assert v.outcome == ("NONE" if outcomes == ("NONE",) else "LABELLED")


def test_media_verdicts() -> None:
    detail = {"JobId": "c1", "State": "Success", "Tag": "VideoEnhance", "Input": {"BucketId": "b-1"},
              "Operation": {"MediaResult": {"OutputFile": {"Bucket": "b-1", "ObjectName": "out/c1.mp4"}}}}
    v = verdict(detail)
    assert (v.outcome, v.output_key) == ("SUCCESS", "out/c1.mp4")
    detail["Operation"]["MediaResult"]["OutputFile"]["Bucket"] = "other-1"
    assert verdict(detail).output_key == "other-1/out/c1.mp4"
    failed = {"JobId": "c2", "State": "Failed", "Code": "SourceFileError.ContentUnsupported", "Tag": "DigitalWatermark"}
    assert (verdict(failed).outcome, verdict(failed).reason) == ("FAILED", "SourceFileError.ContentUnsupported")
