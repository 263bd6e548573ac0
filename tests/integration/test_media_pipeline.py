"""VideoTargetRec, VideoEnhance and DigitalWatermark end to end on the local stack."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "tests" / "events" / "rules_media.json"


@pytest.fixture(scope="module")
def media() -> dict:
    import tempfile

    from devstack.samples_media import build_long_low_fps_video, build_short_video
    from devstack.samples_video import build_videos

    with tempfile.TemporaryDirectory() as d:
        vids = build_videos(Path(d) / "v")
        out = {k: Path(p).read_bytes() for k, p in vids.items()}
        out["clip"] = build_short_video(Path(d) / "clip.mp4").read_bytes()
        out["long"] = build_long_low_fps_video(Path(d) / "long.mp4").read_bytes()
    return out


@pytest.fixture(scope="module")
def mdev():
    yield from start_dev("--rules", str(RULES))


def probe(data: bytes) -> dict:
    import av

    with av.open(io.BytesIO(data)) as c:
        v = c.streams.video[0]
        return {"codec": v.codec_context.name, "width": v.codec_context.width, "height": v.codec_context.height,
                "fps": round(float(v.average_rate), 2)}


def acl_is_private(dev: Dev, key: str) -> bool:
    grants = dev.s3.get_object_acl(Bucket=dev.bucket, Key=key)["Grants"]
    return all(g["Grantee"].get("URI", "").endswith("AllUsers") is False for g in grants)


def test_person_video_parameter_form_request_and_routing(mdev: Dev, media: dict, prefix: str) -> None:
    key = f"{prefix}person.mp4"
    etag = mdev.put(key, media["person"], ContentType="video/mp4")
    final = "review/" + key
    tags = mdev.wait_status(final, "LABELLED", timeout=90)
    # Then people found → tagged, moved to review/, the user-facing label tags set
    assert tags["ci-labels"] == "person" and tags["review"] == "people"
    assert float(tags["ci-first-person"]) >= 0
    # (the copy carries its tags before the original is deleted: wait for the delete)
    mdev.wait_for(lambda: not mdev.exists(key), what="original deleted after the move")
    # And the request CI received is the documented parameter form
    (req,) = mdev.ci_requests_for(key)
    body = req["request"]
    assert body["Tag"] == "VideoTargetRec"
    assert body["Operation"]["VideoTargetRec"] == {"Body": "true", "Pet": "true", "Car": "false"}
    assert body["Operation"]["SnapshotPrefix"] == "uploads/snaps/"
    assert body["Operation"]["JobLevel"] == "1"
    assert body["Operation"]["UserData"] == f"ciflow:1;r=vtr-params;e={etag}"
    assert body["CallBackFormat"] == "JSON"
    assert "TemplateId" not in body["Operation"]
    # And snapshots were written under SnapshotPrefix/<JobId>/ without starting any job
    job_id = req["job_id"]
    snaps = mdev.s3.list_objects_v2(Bucket=mdev.bucket, Prefix=f"uploads/snaps/{job_id}/").get("Contents", [])
    assert snaps
    for s in snaps:
        assert mdev.jobs_for(s["Key"]) == []
        assert "ci-status" not in (mdev.tags(s["Key"]) or {})
    # And a replayed callback changes nothing (the move happened exactly once)
    job = mdev.jobs_for(key)[0]
    status, resp = mdev.post_callback(json.dumps({"EventName": "TaskFinish", "JobsDetail": job["detail"]}).encode(),
                                      job["request"]["CallBack"].split("?", 1)[1], "application/json")
    assert status == 200 and resp["results"][0]["status"] == "already-applied"
    assert not mdev.exists(f"review/{job_id}/{key}")


def test_cat_video_is_a_pet_and_made_private(mdev: Dev, media: dict, prefix: str) -> None:
    key = f"{prefix}cat.mp4"
    mdev.put(key, media["cat"], ContentType="video/mp4", ACL="public-read")
    tags = mdev.wait_status(key, "LABELLED", timeout=90)
    assert tags["ci-labels"] == "cat" and tags["pets"] == "yes"
    assert acl_is_private(mdev, key)


def test_empty_video_is_none(mdev: Dev, media: dict, prefix: str) -> None:
    key = f"{prefix}empty.mp4"
    mdev.put(key, media["empty"], ContentType="video/mp4")
    tags = mdev.wait_status(key, "NONE", timeout=90)
    assert tags["ci-labels"] == "NONE" and tags["nothing"] == "found"


def test_template_form_request(mdev: Dev, media: dict) -> None:
    key = "tpl/empty.mp4"
    mdev.put(key, media["empty"])
    mdev.wait_status(key, "NONE", timeout=90)
    (req,) = mdev.ci_requests_for(key)
    op = req["request"]["Operation"]
    assert op["TemplateId"] == "t1460606b9752148c4ab182f55163ba7cd"
    assert "VideoTargetRec" not in op


def test_not_a_video_fails_like_ci(mdev: Dev, prefix: str) -> None:
    key = f"{prefix}fake.mp4"
    mdev.put(key, b"this is not a video at all\n" * 10)
    assert mdev.wait_status(key, "FAILED", timeout=60)["ci-reason"] == "InvalidInput"


def test_video_enhance_output_matches_the_rule(mdev: Dev, media: dict) -> None:
    key = "raw/clip.mp4"
    mdev.put(key, media["clip"])
    tags = mdev.wait_status("done/" + key, "SUCCESS", timeout=120)
    out_key = tags["ci-output"]
    assert out_key.startswith("raw/out/") and out_key.endswith(".mp4") and tags["enhanced"] == "yes"
    m = probe(mdev.s3.get_object(Bucket=mdev.bucket, Key=out_key)["Body"].read())
    assert m == {"codec": "h264", "width": 480, "height": 360, "fps": 12.0}
    # The output sits inside the watched raw/ prefix and still started no job
    assert mdev.jobs_for(out_key) == []
    (req,) = mdev.ci_requests_for(key)
    op = req["request"]["Operation"]
    assert op["Output"] == {"Region": mdev.env["CIFLOW_REGION"], "Bucket": mdev.bucket,
                            "Object": "raw/out/${jobid}.${ext}"}
    assert op["VideoEnhance"]["Transcode"]["Video"]["Width"] == "480"
    assert op["Watermark"]["Type"] == "Text"


def test_video_enhance_template_form(mdev: Dev, media: dict) -> None:
    key = "tplraw/clip.mp4"
    mdev.put(key, media["clip"])
    tags = mdev.wait_status(key, "SUCCESS", timeout=180)
    (req,) = mdev.ci_requests_for(key)
    op = req["request"]["Operation"]
    assert op["TemplateId"] == "t1460606b9752148c4ab182f55163ba7cd" and "VideoEnhance" not in op
    assert op["WatermarkTemplateId"] == "t146d70eb241c44c63b6efc1cc93ccfc5d"
    assert probe(mdev.s3.get_object(Bucket=mdev.bucket, Key=tags["ci-output"])["Body"].read())["width"] == 1280


def test_digital_watermark_long_succeeds_short_fails(mdev: Dev, media: dict) -> None:
    from devstack.emulator.media_jobs import extract_digital_watermark

    mdev.put("publish/long.mp4", media["long"])
    mdev.put("publish/short.mp4", media["clip"])
    tags = mdev.wait_status("publish/long.mp4", "SUCCESS", timeout=120)
    assert acl_is_private(mdev, "publish/long.mp4")
    data = mdev.s3.get_object(Bucket=mdev.bucket, Key=tags["ci-output"])["Body"].read()
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as fh:
        fh.write(data)
        fh.flush()
        assert extract_digital_watermark(fh.name) == "ciflow-test"
    failed = mdev.wait_status("publish/short.mp4", "FAILED", timeout=60)
    assert failed["ci-reason"] == "SourceFileError.ContentUnsupported"
    (req,) = mdev.ci_requests_for("publish/long.mp4")
    assert req["request"]["Operation"]["DigitalWatermark"] == {"Type": "Text", "Message": "ciflow-test",
                                                                 "Version": "V1"}
