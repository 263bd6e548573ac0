"""VideoTargetRec in the CI emulator (devstack.emulator.video_target_rec), on real encoded videos.

The object store is moto's S3 server on a free loopback port; the emulator is the real
`CiEmulator`, so its `s3()` is the boto3 client the running emulator uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import av
import cv2
import numpy as np
import pytest
from moto.server import ThreadedMotoServer

from devstack.emulator import video_target_rec as vtr
from devstack.emulator.server import ApiError, CiEmulator
from devstack.emulator.xmlutil import element_to_dict
from devstack.samples_video import HEIGHT, WIDTH, build_videos

REGION = "ap-guangzhou"
BUCKET = "vtr-1250000000"  # moto state is per process: no name shared with other modules
DOC_TEMPLATE_ID = "t1460606b9752148c4ab182f55163ba7cd"  # the API page's own example (33 hex digits)
ALL_TARGETS = {"VideoTargetRec": {"Body": "true", "Pet": "true", "Car": "true"}}


# ----- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def emu(s3_endpoint: str, videos: dict[str, Path]) -> CiEmulator:
    """An emulator that is not serving: tests call create_job/process directly."""
    e = CiEmulator(REGION, [], s3_endpoint)
    e.s3().create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    for name, path in videos.items():
        e.s3().upload_file(str(path), BUCKET, f"input/{name}.mp4")
    return e


def new_job(emu: CiEmulator, key: str, operation: dict[str, Any]) -> Any:
    return emu.create_job(BUCKET, REGION, {"Tag": "VideoTargetRec", "Input": {"Object": key},
                                           "Operation": operation})


def run(emu: CiEmulator, key: str, operation: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    job = new_job(emu, key, operation)
    result_key, result = vtr.process(emu, job)
    assert result_key == "VideoTargetRecResult"
    return job, result


def run_failing(emu: CiEmulator, key: str, body: bytes, operation: Any = None) -> ApiError:
    emu.s3().put_object(Bucket=BUCKET, Key=key, Body=body)
    job = new_job(emu, key, operation or ALL_TARGETS)
    with pytest.raises(ApiError) as info:
        vtr.process(emu, job)
    return info.value


@pytest.fixture(scope="module")
def person(emu: CiEmulator) -> tuple[Any, dict[str, Any]]:
    return run(emu, "input/person.mp4", {**ALL_TARGETS, "SnapshotPrefix": "snapshots/"})


@pytest.fixture(scope="module")
def cat(emu: CiEmulator) -> tuple[Any, dict[str, Any]]:
    return run(emu, "input/cat.mp4", ALL_TARGETS)


@pytest.fixture(scope="module")
def empty(emu: CiEmulator) -> tuple[Any, dict[str, Any]]:
    return run(emu, "input/empty.mp4", ALL_TARGETS)


# ----- the demo videos ------------------------------------------------------------------------------
def test_build_videos_makes_small_short_mp4s(videos: dict[str, Path]) -> None:
    assert set(videos) == {"person", "cat", "empty"}
    for name, path in videos.items():
        assert path.name == f"{name}.mp4"
        assert path.stat().st_size < 300_000
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            assert c.format.name.startswith("mov,mp4")
            assert stream.codec_context.name in ("h264", "mpeg4")
            assert (stream.width, stream.height) == (WIDTH, HEIGHT)
            assert 3.0 <= c.duration / 1e6 <= 4.0
            frames = [f.to_ndarray(format="gray") for f in c.decode(stream)]
        assert len(frames) >= 45
        assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 2  # it moves


def test_register_wires_the_job_type(emu: CiEmulator) -> None:
    assert emu.processors["VideoTargetRec"] is vtr.process
    assert emu.validators["VideoTargetRec"] is vtr.validate
    assert emu.config["video_sample_interval"] == 1.0
    assert emu.config["car_cascade_path"] is None


# ----- detection ------------------------------------------------------------------------------------
def test_person_video_gives_people(person: tuple[Any, dict[str, Any]]) -> None:
    _, result = person
    assert result["State"] == "Success"
    assert len(result["BodyRecognition"]) >= 3
    assert {i["Name"] for e in result["BodyRecognition"] for i in e["BodyInfo"]} == {"person"}
    assert result["PetRecognition"] == []


def test_cat_video_gives_cats(cat: tuple[Any, dict[str, Any]]) -> None:
    _, result = cat
    assert result["State"] == "Success"
    assert len(result["PetRecognition"]) >= 2
    assert {i["Name"] for e in result["PetRecognition"] for i in e["PetInfo"]} == {"cat"}
    assert result["BodyRecognition"] == []


def test_empty_video_gives_nothing(empty: tuple[Any, dict[str, Any]]) -> None:
    _, result = empty
    assert result["State"] == "Success"
    assert result["BodyRecognition"] == result["PetRecognition"] == result["CarRecognition"] == []


@pytest.mark.parametrize("name", ["person", "cat", "empty"])
def test_result_has_the_documented_shape(name: str, request: pytest.FixtureRequest) -> None:
    _, result = request.getfixturevalue(name)
    assert list(result) == ["State", "Code", "Message", "BodyRecognition", "PetRecognition", "CarRecognition"]
    assert result["Code"] == "Success"
    for target in ("Body", "Pet", "Car"):
        entries = result[f"{target}Recognition"]
        times = [float(e["Time"]) for e in entries]
        assert times == sorted(set(times)), "Time values increase"
        assert all(0 <= t <= 4.0 for t in times)
        for e in entries:
            assert set(e) == {"Time", "Url", f"{target}Info"}
            assert isinstance(e["Time"], str) and isinstance(e["Url"], str)
            assert e[f"{target}Info"], "only frames with a detection produce an entry"
            for info in e[f"{target}Info"]:
                assert set(info) == {"Name", "Score", "Location"}
                assert isinstance(info["Score"], int) and 0 <= info["Score"] <= 100
                loc = info["Location"]
                assert list(loc) == ["X", "Y", "Width", "Height"]
                # The page's tables: BodyInfo.Location is String, PetInfo/CarInfo.Location is Int.
                assert all(isinstance(v, str if target == "Body" else int) for v in loc.values())
                x, y, w, h = (int(loc[k]) for k in ("X", "Y", "Width", "Height"))
                assert x >= 0 and y >= 0 and w > 0 and h > 0
                assert x + w <= WIDTH and y + h <= HEIGHT


def test_detections_are_where_the_subject_is(person: tuple[Any, dict[str, Any]],
                                             cat: tuple[Any, dict[str, Any]]) -> None:
    for (_, result), key in ((person, "BodyRecognition"), (cat, "PetRecognition")):
        info = "BodyInfo" if key == "BodyRecognition" else "PetInfo"
        for e in result[key]:
            best = max(e[info], key=lambda i: i["Score"])
            cx = int(best["Location"]["X"]) + int(best["Location"]["Width"]) / 2
            assert WIDTH * 0.2 < cx < WIDTH * 0.8, "the face is near the middle of every frame"


def test_car_detection_is_reported_unavailable(person: tuple[Any, dict[str, Any]]) -> None:
    _, result = person
    assert result["CarRecognition"] == []
    assert "car detection is not available" in result["Message"]


def test_no_message_when_cars_are_not_asked_for(emu: CiEmulator) -> None:
    _, result = run(emu, "input/empty.mp4", {"VideoTargetRec": {"Pet": "true"}})
    assert result["Message"] == ""
    assert result["BodyRecognition"] == result["PetRecognition"] == result["CarRecognition"] == []


def test_a_car_request_without_a_model_logs_one_line(emu: CiEmulator, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger=vtr.__name__):
        job, result = run(emu, "input/empty.mp4", {"VideoTargetRec": {"Car": "true"}})
    lines = [r.getMessage() for r in caplog.records if r.name == vtr.__name__]
    assert len(lines) == 1 and job.job_id in lines[0] and "car detection is not available" in lines[0]
    assert result["Message"] == vtr.CAR_UNAVAILABLE and result["CarRecognition"] == []


@pytest.mark.usefixtures("emu")  # uploads the videos
def test_a_configured_car_cascade_is_used(s3_endpoint: str) -> None:
    # No car model ships with OpenCV; the cat-face cascade stands in for one to show the plumbing.
    e = CiEmulator(REGION, [], s3_endpoint)
    e.config["car_cascade_path"] = cv2.data.haarcascades + "haarcascade_frontalcatface.xml"
    e.config["video_sample_interval"] = 0.25  # one cascade alone: look at more frames
    _, result = run(e, "input/cat.mp4", {"VideoTargetRec": {"Car": "true"}})
    assert result["Message"] == ""
    assert result["CarRecognition"]
    assert {i["Name"] for e in result["CarRecognition"] for i in e["CarInfo"]} == {"car"}
    assert all(isinstance(v, int) for e in result["CarRecognition"] for i in e["CarInfo"]
               for v in i["Location"].values())


def test_a_missing_car_cascade_fails_the_job(s3_endpoint: str) -> None:
    e = CiEmulator(REGION, [], s3_endpoint)
    e.config["car_cascade_path"] = "/nonexistent/cars.xml"
    job = new_job(e, "input/empty.mp4", {"VideoTargetRec": {"Car": "true"}})
    with pytest.raises(ApiError) as info:
        vtr.process(e, job)
    assert info.value.code == "InternalError"


def test_boxes_map_back_to_the_original_frame(emu: CiEmulator, tmp_path: Path) -> None:
    from skimage import data

    # A 1280x720 clip is detected at 640 px wide; Location must be in the clip's own pixels.
    img = cv2.resize(data.astronaut(), (720, 720))
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[:, 280:1000] = img
    path = tmp_path / "big.mp4"
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("mpeg4", rate=5)
        s.width, s.height, s.pix_fmt = 1280, 720, "yuv420p"
        for _ in range(5):
            for p in s.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    emu.s3().upload_file(str(path), BUCKET, "input/big.mp4")
    _, result = run(emu, "input/big.mp4", {"VideoTargetRec": {"Body": "true"}})
    face = max(result["BodyRecognition"][0]["BodyInfo"], key=lambda i: i["Score"])["Location"]
    # The face in astronaut() is at about (177, 67, 93, 93) of 512 px; here scaled by 720/512.
    x, y, w = int(face["X"]), int(face["Y"]), int(face["Width"])
    assert abs(x - (280 + 177 * 720 / 512)) < 30 and abs(y - 67 * 720 / 512) < 30 and abs(w - 131) < 30


def test_frames_are_sampled_every_interval(videos: dict[str, Path]) -> None:
    samples = vtr.sample_frames(str(videos["empty"]), 0.5, 600)
    times = [s.time for s in samples]
    assert len(times) == 7 and times[0] == 0
    assert all(0.5 - 1 / 15 <= b - a <= 0.5 + 1 / 15 for a, b in zip(times, times[1:]))
    assert samples[0].frame.shape == (HEIGHT, WIDTH, 3)
    assert len(vtr.sample_frames(str(videos["empty"]), 1.0, 2)) == 2


# ----- snapshots ------------------------------------------------------------------------------------
def test_snapshots_are_uploaded_under_prefix_and_job_id(emu: CiEmulator, person: tuple[Any, dict[str, Any]],
                                                        cat: tuple[Any, dict[str, Any]]) -> None:
    job, result = person
    listed = emu.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"snapshots/{job.job_id}/")
    keys = sorted(o["Key"] for o in listed.get("Contents", []))
    entries = result["BodyRecognition"]
    assert keys == sorted(f"snapshots/{job.job_id}/{i}.jpg" for i in range(len(entries)))
    for i, e in enumerate(entries):
        key = f"snapshots/{job.job_id}/{i}.jpg"
        assert e["Url"] == f"http://{BUCKET}.cos.{REGION}.myqcloud.com/{key}"
        obj = emu.s3().get_object(Bucket=BUCKET, Key=key)
        assert obj["ContentType"] == "image/jpeg"
        jpeg = cv2.imdecode(np.frombuffer(obj["Body"].read(), np.uint8), cv2.IMREAD_COLOR)
        assert jpeg.shape == (HEIGHT, WIDTH, 3)
    # Without SnapshotPrefix nothing is written and Url is empty.
    cat_job, cat_result = cat
    assert all(e["Url"] == "" for e in cat_result["PetRecognition"])
    assert "Contents" not in emu.s3().list_objects_v2(Bucket=BUCKET, Prefix=f"snapshots/{cat_job.job_id}/")


# ----- templates ------------------------------------------------------------------------------------
def test_template_wins_over_inline_parameters(emu: CiEmulator) -> None:
    tid = "t" + "0a" * 16
    emu.config["video_target_rec_templates"] = {tid: {"Body": "false", "Pet": "true", "Name": "pets_only"}}
    try:
        job, result = run(emu, "input/person.mp4", {"TemplateId": tid, "VideoTargetRec": {"Body": "true"}})
    finally:
        emu.config["video_target_rec_templates"] = {}
    assert result["BodyRecognition"] == []  # Body is off in the template
    assert result["Message"] == ""          # and so is Car
    assert job.detail["Operation"]["TemplateName"] == "pets_only"


def test_resolve_targets() -> None:
    templates = {"tpl-pets": {"Pet": True, "Name": "p"}}
    assert vtr.resolve_targets({"TemplateId": "tpl-pets"}, templates) == (
        {"Body": False, "Pet": True, "Car": False}, "p")
    assert vtr.resolve_targets({"TemplateId": DOC_TEMPLATE_ID}, templates) == (
        {"Body": True, "Pet": True, "Car": True}, vtr.DEFAULT_TEMPLATE_NAME)
    assert vtr.resolve_targets({"VideoTargetRec": {"Car": "true"}}, templates) == (
        {"Body": False, "Pet": False, "Car": True}, None)


@pytest.mark.usefixtures("emu")
def test_the_emulator_runs_a_job_end_to_end(s3_endpoint: str) -> None:
    e = CiEmulator(REGION, [], s3_endpoint, workers=1)
    e.start()
    try:
        job = new_job(e, "input/cat.mp4", {"TemplateId": DOC_TEMPLATE_ID, "UserData": "x"})
        deadline = time.time() + 30
        while job.detail["State"] in ("Submitted", "Running") and time.time() < deadline:
            time.sleep(0.1)
        assert job.detail["State"] == "Success", job.detail
        op = job.detail["Operation"]
        assert op["TemplateName"] == vtr.DEFAULT_TEMPLATE_NAME
        assert op["VideoTargetRecResult"]["PetRecognition"]
        xml, _ = e.callback_body(job, "XML")
        assert b"</Time><Url/><PetInfo><Name>cat</Name><Score>" in xml
        parsed = element_to_dict(ElementTree.fromstring(xml))
        assert parsed["JobsDetail"]["Operation"]["VideoTargetRecResult"]["State"] == "Success"
        body, _ = e.callback_body(job, "JSON")
        assert json.loads(body)["JobsDetail"]["Operation"]["VideoTargetRecResult"]["State"] == "Success"
    finally:
        e.stop()


# ----- failures -------------------------------------------------------------------------------------
def _failed(err: ApiError, code: str) -> None:
    assert err.code == code
    key, block = err.result  # type: ignore[attr-defined]
    assert key == "VideoTargetRecResult"
    assert block == {"State": "Failed", "Code": code, "Message": err.message}


def test_a_text_file_fails_with_invalid_input(emu: CiEmulator) -> None:
    _failed(run_failing(emu, "input/notes.txt", b"This is not a video.\n" * 50), "InvalidInput")


@pytest.mark.parametrize("body", [b"", bytes(range(256)) * 20], ids=["empty", "noise"])
def test_other_non_videos_fail_with_invalid_input(emu: CiEmulator, body: bytes) -> None:
    _failed(run_failing(emu, "input/noise.bin", body), "InvalidInput")


def test_a_still_image_fails_with_invalid_input(emu: CiEmulator) -> None:
    ok, png = cv2.imencode(".png", np.full((64, 64, 3), 128, np.uint8))
    _failed(run_failing(emu, "input/still.png", png.tobytes()), "InvalidInput")


def test_a_truncated_video_fails_with_video_decode_failed(emu: CiEmulator, videos: dict[str, Path]) -> None:
    data = videos["person"].read_bytes()
    _failed(run_failing(emu, "input/truncated.mp4", data[: len(data) // 2]), "VideoDecodeFailed")


def test_corrupt_frames_fail_with_video_decode_failed(emu: CiEmulator, videos: dict[str, Path]) -> None:
    data = bytearray(videos["person"].read_bytes())
    start = data.find(b"mdat") + 4
    size = int.from_bytes(data[start - 8:start - 4], "big")
    data[start:start - 8 + size] = bytes(size - 8)  # zero the coded frames, keep the index
    _failed(run_failing(emu, "input/zeroed.mp4", bytes(data)), "VideoDecodeFailed")


def test_a_template_enabling_nothing_fails(emu: CiEmulator) -> None:
    emu.config["video_target_rec_templates"] = {"tpl-off": {"Body": "false"}}
    try:
        job = new_job(emu, "input/empty.mp4", {"TemplateId": "tpl-off"})
        with pytest.raises(ApiError) as info:
            vtr.process(emu, job)
    finally:
        emu.config["video_target_rec_templates"] = {}
    _failed(info.value, "InvalidArgument")


@pytest.mark.usefixtures("emu")
def test_a_snapshot_that_cannot_be_written_fails(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    e = CiEmulator(REGION, [], s3_endpoint)

    def refuse(**kwargs: Any) -> None:
        raise RuntimeError("AccessDenied")

    monkeypatch.setattr(e.s3(), "put_object", refuse)
    job = new_job(e, "input/cat.mp4", {"VideoTargetRec": {"Pet": "true"}, "SnapshotPrefix": "snaps"})
    with pytest.raises(ApiError) as info:
        vtr.process(e, job)
    _failed(info.value, "SnapshotWriteFailed")


def test_a_missing_object_fails(emu: CiEmulator) -> None:
    job = new_job(emu, "input/nope.mp4", ALL_TARGETS)
    with pytest.raises(ApiError) as info:
        vtr.process(emu, job)
    _failed(info.value, "InputObjectNotExist")


# ----- validation -----------------------------------------------------------------------------------
def request(operation_xml: str) -> dict[str, Any]:
    xml = (f"<Request><Tag>VideoTargetRec</Tag><Input><Object>input/demo.mp4</Object></Input>"
           f"{operation_xml}</Request>")
    return element_to_dict(ElementTree.fromstring(xml))


def op(inner: str) -> str:
    return f"<Operation>{inner}</Operation>"


INVALID = {
    "no operation": ("", "MissingContent"),
    "empty operation": ("<Operation/>", "MissingContent"),
    "neither template nor parameters": (op("<UserData>x</UserData>"), "MissingContent"),
    "empty template id and no parameters": (op("<TemplateId/>"), "MissingContent"),
    "body not a boolean": (op("<VideoTargetRec><Body>yes</Body></VideoTargetRec>"), "InvalidArgument"),
    "pet upper case": (op("<VideoTargetRec><Pet>TRUE</Pet></VideoTargetRec>"), "InvalidArgument"),
    "car empty": (op("<VideoTargetRec><Car/><Body>true</Body></VideoTargetRec>"), "InvalidArgument"),
    "all false": (op("<VideoTargetRec><Body>false</Body><Pet>false</Pet><Car>false</Car></VideoTargetRec>"),
                  "InvalidArgument"),
    "empty parameters": (op("<VideoTargetRec/>"), "InvalidArgument"),
    "parameters as text": (op("<VideoTargetRec>true</VideoTargetRec>"), "InvalidArgument"),
    "unknown parameter": (op("<VideoTargetRec><Body>true</Body><Plane>true</Plane></VideoTargetRec>"),
                          "InvalidArgument"),
    "repeated body": (op("<VideoTargetRec><Body>true</Body><Body>false</Body></VideoTargetRec>"),
                      "InvalidArgument"),
    "repeated parameters": (op("<VideoTargetRec><Body>true</Body></VideoTargetRec>"
                               "<VideoTargetRec><Pet>true</Pet></VideoTargetRec>"), "InvalidArgument"),
    "unknown template": (op("<TemplateId>t-not-a-template</TemplateId>"), "InvalidArgument"),
    "template upper case": (op(f"<TemplateId>{DOC_TEMPLATE_ID.upper()}</TemplateId>"), "InvalidArgument"),
    "template too short": (op("<TemplateId>t1460606b9752148c4ab182f55163ba7</TemplateId>"), "InvalidArgument"),
    "template as container": (op("<TemplateId><Id>x</Id></TemplateId>"), "InvalidArgument"),
    "repeated template": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><TemplateId>{DOC_TEMPLATE_ID}</TemplateId>"),
                          "InvalidArgument"),
    "prefix absolute": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><SnapshotPrefix>/snaps</SnapshotPrefix>"),
                        "InvalidArgument"),
    "prefix dot dot": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><SnapshotPrefix>a/../b</SnapshotPrefix>"),
                       "InvalidArgument"),
    "prefix empty segment": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><SnapshotPrefix>a//b</SnapshotPrefix>"),
                             "InvalidArgument"),
    "prefix control character": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId>"
                                    "<SnapshotPrefix>a&#9;b</SnapshotPrefix>"), "InvalidArgument"),
    "prefix too long": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><SnapshotPrefix>{'a' * 801}</SnapshotPrefix>"),
                        "InvalidArgument"),
    "prefix as container": (op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId>"
                               "<SnapshotPrefix><A>b</A></SnapshotPrefix>"), "InvalidArgument"),
}


@pytest.mark.parametrize("operation_xml,code", INVALID.values(), ids=INVALID.keys())
def test_validate_rejects(emu: CiEmulator, operation_xml: str, code: str) -> None:
    doc = request(operation_xml)
    with pytest.raises(ApiError) as info:
        vtr.validate(doc)
    assert info.value.code == code
    with pytest.raises(ApiError) as via_emulator:
        emu.validate(doc)  # and the emulator's create path reaches the same validator
    assert via_emulator.value.code == code


VALID = {
    "doc example template": op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId><UserData>x</UserData>"),
    "32-digit template": op(f"<TemplateId>t{'ab' * 16}</TemplateId>"),
    "inline parameters": op("<VideoTargetRec><Body>true</Body><Car>false</Car></VideoTargetRec>"),
    "template wins over all-false parameters": op(f"<TemplateId>{DOC_TEMPLATE_ID}</TemplateId>"
                                                  "<VideoTargetRec><Body>false</Body></VideoTargetRec>"),
    "empty prefix": op("<VideoTargetRec><Pet>true</Pet></VideoTargetRec><SnapshotPrefix/>"),
    "nested prefix": op("<VideoTargetRec><Pet>true</Pet></VideoTargetRec><SnapshotPrefix>a/b/</SnapshotPrefix>"),
    "unicode prefix": op("<VideoTargetRec><Pet>true</Pet></VideoTargetRec><SnapshotPrefix>截图 1</SnapshotPrefix>"),
}


@pytest.mark.parametrize("operation_xml", VALID.values(), ids=VALID.keys())
def test_validate_accepts(emu: CiEmulator, operation_xml: str) -> None:
    doc = request(operation_xml)
    vtr.validate(doc)
    emu.validate(doc)


def test_validate_accepts_a_configured_template_id(emu: CiEmulator) -> None:
    doc = request(op("<TemplateId>my-template</TemplateId>"))
    with pytest.raises(ApiError):
        emu.validate(doc)
    emu.config["video_target_rec_templates"] = {"my-template": {"Body": "true"}}
    try:
        emu.validate(doc)
    finally:
        emu.config["video_target_rec_templates"] = {}


def test_scores_are_monotone_and_bounded() -> None:
    haar = [vtr._haar_score(n, 5) for n in range(200)]
    assert haar == sorted(haar) and haar[5] == 50 and min(haar) >= 0 and max(haar) <= 100
    hog = [vtr._hog_score(w / 10) for w in range(-50, 100)]
    assert hog == sorted(hog) and vtr._hog_score(vtr.HOG_HIT_THRESHOLD) == 50
    assert min(hog) >= 0 and max(hog) <= 100


def test_nms_keeps_one_box_per_object() -> None:
    d = vtr.Detection
    kept = vtr.nms([d("person", 60, 100, 100, 50, 50), d("person", 90, 105, 102, 50, 50),  # same face
                    d("person", 70, 90, 90, 200, 300),   # a body containing the face
                    d("person", 80, 400, 10, 40, 40)])   # someone else
    assert [(k.score, k.x) for k in kept] == [(90, 105), (80, 400)]
