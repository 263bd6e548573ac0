"""VideoEnhance and DigitalWatermark jobs in the emulator (devstack.emulator.media_jobs).

Processing runs on real media made by devstack.samples_media, through an emulator-like object whose `s3()`
is boto3 against moto's server, and every output is probed independently with PyAV. (Request validation:
test_media_plans; the digital-watermark codec: test_digital_watermark.)
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from fractions import Fraction
from typing import Any

import pytest

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from PIL import Image  # noqa: E402

from devstack.emulator import media_jobs as mj  # noqa: E402
from devstack.emulator.digital_watermark import extract_digital_watermark, extract_digital_watermark_details  # noqa: E402
from devstack.emulator.media_plans import resolve_video_enhance  # noqa: E402
from devstack.emulator.media_render import render_text_watermark, target_size  # noqa: E402
from devstack.emulator.server import ApiError, Job  # noqa: E402
from devstack.samples_media import build_long_low_fps_video, build_short_video  # noqa: E402
from tests.unit.media_harness import IN_BUCKET, OUT_BUCKET, REGION, FakeEmu, make_job  # noqa: E402


@pytest.fixture(scope="module")
def s3():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name=REGION,
                          aws_access_key_id="testing", aws_secret_access_key="testing",
                          config=Config(s3={"addressing_style": "path"}))
    for bucket in (IN_BUCKET, OUT_BUCKET):
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    yield client
    server.stop()


@pytest.fixture(scope="module")
def media(s3, tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    paths = {"short": build_short_video(d / "short.mp4", audio=True),
             "long": build_long_low_fps_video(d / "long.mp4")}
    for name, path in paths.items():
        s3.upload_file(str(path), IN_BUCKET, f"in/{name}.mp4")
    return paths


@pytest.fixture()
def emu(s3):
    return FakeEmu(s3)


def run(emu: FakeEmu, tag: str, obj: str, op: dict[str, Any]) -> tuple[Job, dict[str, Any]]:
    job = make_job(tag, obj, op)
    emu.validators[tag](job.request)
    key, result = emu.processors[tag](emu, job)
    assert key == "MediaInfo"
    job.detail["Operation"][key] = result  # what server.py does with the returned pair
    return job, result


def output(obj: str, bucket: str = OUT_BUCKET) -> dict[str, str]:
    return {"Region": REGION, "Bucket": bucket, "Object": obj}


def fetch(s3: Any, job: Job, tmp_path: Any) -> str:
    of = job.detail["Operation"]["MediaResult"]["OutputFile"]
    local = tmp_path / of["ObjectName"].replace("/", "_")
    s3.download_file(of["Bucket"], of["ObjectName"], str(local))
    return str(local)


def frames(path: str, indices: set[int]) -> dict[int, Any]:
    got = {}
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in indices:
                got[i] = f.to_ndarray(format="rgb24").astype(np.float64)
            if i >= max(indices):
                break
    return got


def video_bitrate_kbps(path: str) -> float:
    with av.open(path) as c:
        v = c.streams.video[0]
        total = sum(p.size for p in c.demux(v) if p.size)
        return total * 8 / 1000 / (c.duration / 1_000_000)


def transcode_op(**extra: Any) -> dict[str, Any]:
    ve: dict[str, Any] = {"Transcode": {"Container": {"Format": "mp4"}, "Video": {"Codec": "H.264", "Crf": "16"}}}
    ve.update(extra.pop("ve", {}))
    return {"VideoEnhance": ve, **extra}


# ============================================================================== registration
def test_register_sets_both_tags_and_config(emu):
    assert set(emu.processors) == {"VideoEnhance", "DigitalWatermark"} == set(emu.validators)
    assert set(emu.on_create) == {"VideoEnhance"}
    assert emu.config["digital_watermark_min_seconds"] == 90
    assert "t1460606b9752148c4ab182f55163ba7cd" in emu.config["media_templates"]


# ============================================================================== sample media
def test_sample_builders_are_fast_real_videos(tmp_path):
    t0 = time.monotonic()
    short = build_short_video(tmp_path / "s.mp4")
    t1 = time.monotonic()
    long = build_long_low_fps_video(tmp_path / "l.mp4")
    t2 = time.monotonic()
    assert t1 - t0 < 5 and t2 - t1 < 5
    for path, size, fps, duration in ((short, (320, 240), 15, 3.0), (long, (160, 120), 2, 95.0)):
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            assert (v.codec_context.width, v.codec_context.height) == size
            assert v.average_rate == fps and v.codec_context.name == "h264"
            assert c.duration / 1e6 == pytest.approx(duration, abs=0.1)


# ============================================================================== VideoEnhance
def test_video_enhance_output_matches_request(emu, s3, media, tmp_path):
    op = {"VideoEnhance": {
        "Transcode": {"Container": {"Format": "mp4"},
                      "Video": {"Codec": "H.264", "Width": "480", "Height": "360", "Fps": "10", "Bitrate": "400"},
                      "Audio": {"Codec": "aac", "Samplerate": "48000", "Bitrate": "96", "Channels": "2"}},
        "SuperResolution": {"Resolution": "sdtohd", "EnableScaleUp": "true", "Version": "Enhance"}},
        "Output": output("enhanced/${jobid}/out.${ext}")}
    job, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    key = f"enhanced/{job.detail['JobId']}/out.mp4"
    of = job.detail["Operation"]["MediaResult"]["OutputFile"]
    assert (of["Bucket"], of["ObjectName"], of["Region"]) == (OUT_BUCKET, key, REGION)
    local = fetch(s3, job, tmp_path)
    with open(local, "rb") as fh:
        data = fh.read()
    assert of["Md5Info"] == {"Md5": hashlib.md5(data).hexdigest(), "ObjectName": key}
    assert job.detail["Progress"] == "100"
    with av.open(local) as c:
        assert "mp4" in c.format.name.split(",")
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264"
        assert (v.codec_context.width, v.codec_context.height) == (480, 360)
        assert float(v.average_rate) == pytest.approx(10, abs=0.5)
        assert c.duration / 1e6 == pytest.approx(3.0, abs=0.2)
        assert (a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels) == ("aac", 48000, 2)
    assert video_bitrate_kbps(local) == pytest.approx(400, rel=0.35)
    # MediaInfo describes that output
    fmt, video, audio = info["Format"], info["Stream"]["Video"], info["Stream"]["Audio"]
    assert fmt["Size"] == str(len(data)) and fmt["NumStream"] == "2" and "mp4" in fmt["FormatName"]
    assert float(fmt["Duration"]) == pytest.approx(3.0, abs=0.2)
    assert (video["CodecName"], video["Width"], video["Height"]) == ("h264", "480", "360")
    assert float(video["AvgFps"]) == pytest.approx(10, abs=0.5)
    assert float(video["Bitrate"]) == pytest.approx(video_bitrate_kbps(local), rel=0.1)
    assert video["CodecTagString"] == "avc1" and video["CodecTag"] == "0x31637661"
    assert (audio["CodecName"], audio["SampleRate"], audio["Channel"]) == ("aac", "48000", "2")


@pytest.mark.parametrize(("fmt", "codec", "names", "codec_name"), [
    ("mkv", "H.265", {"matroska"}, "hevc"),
    ("webm", "VP9", {"webm", "matroska"}, "vp9"),
    ("webm", "VP8", {"webm", "matroska"}, "vp8"),
    ("flv", "H.264", {"flv"}, "h264"),
    ("ts", "H.264", {"mpegts"}, "h264"),
    ("mov", "H.264", {"mov"}, "h264"),
])
def test_video_enhance_containers_and_codecs(emu, s3, media, tmp_path, fmt, codec, names, codec_name):
    op = {"VideoEnhance": {"Transcode": {"Container": {"Format": fmt},
                                         "Video": {"Codec": codec, "Width": "256", "Bitrate": "300"}},
                           "MsSharpen": {"SharpenLevel": "2"}},
          "Output": output("multi/${jobid}.${ext}")}
    job, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    assert job.detail["Operation"]["MediaResult"]["OutputFile"]["ObjectName"] == f"multi/{job.detail['JobId']}.{fmt}"
    local = fetch(s3, job, tmp_path)
    with av.open(local) as c:
        assert names & set(c.format.name.split(","))
        v = c.streams.video[0]
        assert v.codec_context.name == codec_name
        assert (v.codec_context.width, v.codec_context.height) == (256, 192)  # Width alone keeps 4:3
    assert info["Stream"]["Video"]["CodecName"] == codec_name


def test_super_resolution_upscales_with_lanczos_by_default(emu, s3, media, tmp_path):
    op = {"VideoEnhance": {"SuperResolution": {"Resolution": "sdtohd"}}, "Output": output("sr/${jobid}.${ext}")}
    job, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    assert (info["Stream"]["Video"]["Width"], info["Stream"]["Video"]["Height"]) == ("640", "480")
    plan = resolve_video_enhance(job.request)
    assert target_size(plan, 1280, 720) == (1920, 1080)  # sdtohd stops at HD
    plan.super_resolution["resolution"] = "hdto4k"
    assert target_size(plan, 1280, 720) == (2560, 1440)  # at most twice the source


def _saturation(rgb: Any) -> float:
    mx, mn = rgb.max(axis=2), rgb.min(axis=2)
    return float(np.mean((mx - mn) / np.maximum(mx, 1)))


def _sharpness(rgb: Any) -> float:
    y = rgb.mean(axis=2)
    lap = 4 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(np.mean(np.abs(lap)))


def test_color_and_sharpen_change_pixels_against_a_plain_transcode(emu, s3, media, tmp_path):
    outs = {}
    variants = {
        "plain": {},
        "color": {"ColorEnhance": {"Contrast": "80", "Correction": "0", "Saturation": "100"}},
        "sharp": {"MsSharpen": {"SharpenLevel": "10"}},
    }
    for name, extra in variants.items():
        op = {**transcode_op(ve=extra), "Output": output(f"fx/{name}.mp4")}
        job, _ = run(emu, "VideoEnhance", "in/short.mp4", op)
        outs[name] = frames(fetch(s3, job, tmp_path), {20})[20]
    plain, color, sharp = outs["plain"], outs["color"], outs["sharp"]
    assert np.mean(np.abs(color - plain)) > 8
    assert _saturation(color) > _saturation(plain) * 1.15
    assert color.mean(axis=2).std() > plain.mean(axis=2).std() * 1.1  # contrast stretched
    assert _sharpness(sharp) > _sharpness(plain) * 1.15
    assert np.mean(np.abs(sharp - plain)) > 1


def test_text_watermark_changes_its_region_only_while_enabled(emu, s3, media, tmp_path):
    wm = {"Type": "Text", "Pos": "TopLeft", "LocMode": "Absolute", "Dx": "200", "Dy": "60", "StartTime": "0",
          "EndTime": "1.5", "Text": {"Text": "CI", "FontSize": "48", "FontType": "simfang.ttf",
                                     "FontColor": "0xFF0000", "Transparency": "100"}}
    plain_job, _ = run(emu, "VideoEnhance", "in/short.mp4", {**transcode_op(), "Output": output("wm/plain.mp4")})
    wm_job, _ = run(emu, "VideoEnhance", "in/short.mp4",
                    {**transcode_op(), "Watermark": wm, "Output": output("wm/text.mp4")})
    plain = frames(fetch(s3, plain_job, tmp_path), {7, 40})
    marked = frames(fetch(s3, wm_job, tmp_path), {7, 40})
    text = render_text_watermark("CI", 48, "simfang.ttf", (255, 0, 0), 100)
    glyphs = np.asarray(text)[..., 3] > 128  # where the text is opaque
    region = (slice(60, 60 + text.height), slice(200, 200 + text.width))

    def changed(a: Any, b: Any) -> Any:
        return np.abs(a - b).max(axis=2) > 50

    at_start, after_end = changed(marked[7], plain[7]), changed(marked[40], plain[40])
    assert at_start[region][glyphs].mean() > 0.8  # the watermark is there at 0.47 s ...
    red = marked[7][region][glyphs]
    assert red[:, 0].mean() > 180 and red[:, 1].mean() < 80  # ... and it is red
    outside = np.ones(at_start.shape, dtype=bool)
    outside[region] = False
    assert at_start[outside].mean() < 0.01  # nothing else moved
    assert after_end[region].mean() < 0.01  # and it is gone after EndTime (2.67 s)


def test_image_watermark_from_the_bucket(emu, s3, media, tmp_path):
    logo = Image.new("RGBA", (40, 20), (0, 255, 0, 255))
    buf = io.BytesIO()
    logo.save(buf, "PNG")
    s3.put_object(Bucket=IN_BUCKET, Key="wm/logo.png", Body=buf.getvalue())
    wm = {"Type": "Image", "Pos": "BottomRight", "LocMode": "Absolute", "Dx": "16", "Dy": "16",
          "Image": {"Url": f"http://{IN_BUCKET}.cos.{REGION}.myqcloud.com/wm/logo.png", "Mode": "Fixed",
                    "Width": "80", "Transparency": "100", "Background": "false"}}
    op = {**transcode_op(), "Watermark": wm, "Output": output("wm/img.mp4")}
    job, _ = run(emu, "VideoEnhance", "in/short.mp4", op)
    f = frames(fetch(s3, job, tmp_path), {5})[5]
    patch = f[240 - 16 - 40 + 4:240 - 16 - 4, 320 - 16 - 80 + 4:320 - 16 - 4]  # 80x40 at the bottom right
    assert patch[..., 1].mean() > 200 and patch[..., 0].mean() < 60 and patch[..., 2].mean() < 60
    # an image that is not there fails the job
    wm["Image"]["Url"] = f"http://{IN_BUCKET}.cos.{REGION}.myqcloud.com/wm/missing.png"
    with pytest.raises(ApiError) as exc:
        run(emu, "VideoEnhance", "in/short.mp4", {**transcode_op(), "Watermark": wm, "Output": output("wm/x.mp4")})
    assert exc.value.code == "InvalidInput"


def test_template_parameters_and_names_are_used(emu, s3, media, tmp_path):
    emu.config["media_templates"]["tsmall"] = {
        "Tag": "VideoEnhance", "Name": "small_enhance",
        "VideoEnhance": {"Transcode": {"Container": {"Format": "mkv"}, "Video": {"Codec": "H.264", "Height": 160}},
                         "ColorEnhance": {"Saturation": 60}}}
    op = {"TemplateId": "tsmall", "WatermarkTemplateId": ["t146d70eb241c44c63b6efc1cc93ccfc5d",
                                                          "t12a74d11687d444deba8a6cc52051ac27"],
          "Output": output("tpl/${jobid}.${ext}")}
    job, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    assert job.detail["Operation"]["TemplateName"] == "small_enhance"
    assert job.detail["Operation"]["MediaResult"]["OutputFile"]["ObjectName"].endswith(".mkv")
    assert (info["Stream"]["Video"]["Width"], info["Stream"]["Video"]["Height"]) == ("214", "160")


def test_hdr_and_frame_doubling(emu, s3, media, tmp_path):
    op = {"VideoEnhance": {"SDRtoHDR": {"HdrMode": "HDR10"}, "FrameEnhance": {"FrameDoubling": "true"}},
          "Output": output("hdr/${jobid}.${ext}")}
    job, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    video = info["Stream"]["Video"]
    assert float(video["AvgFps"]) == pytest.approx(30, abs=0.5)  # 15 fps doubled
    assert (video["ColorPrimaries"], video["ColorTransfer"]) == ("bt2020", "smpte2084")
    assert video["PixFormat"] == "yuv420p10le"
    with av.open(fetch(s3, job, tmp_path)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"


def test_time_interval_cuts_the_output(emu, s3, media, tmp_path):
    op = {"VideoEnhance": {"Transcode": {"Video": {"Codec": "H.264"}, "TimeInterval": {"Start": "1", "Duration": "1"}},
                           "MsSharpen": {"SharpenLevel": "1"}},
          "Output": output("cut/${jobid}.${ext}")}
    _, info = run(emu, "VideoEnhance", "in/short.mp4", op)
    assert float(info["Format"]["Duration"]) == pytest.approx(1.0, abs=0.15)


def test_video_enhance_digital_watermark_needs_a_long_source(emu, s3, media, tmp_path):
    dw = {"Type": "Text", "Message": "short-clip", "Version": "V1", "IgnoreError": "true"}
    op = {**transcode_op(), "DigitalWatermark": dw, "Output": output("vedw/ignored.mp4")}
    job, _ = run(emu, "VideoEnhance", "in/short.mp4", op)  # IgnoreError: the job still succeeds
    assert job.detail["Operation"]["DigitalWatermark"]["State"] == "Failed"
    assert "State" not in job.request["Operation"]["DigitalWatermark"]  # the request is left as received
    assert extract_digital_watermark(fetch(s3, job, tmp_path)) is None

    op = {**transcode_op(), "DigitalWatermark": {**dw, "IgnoreError": "false"}, "Output": output("vedw/f.mp4")}
    job = make_job("VideoEnhance", "in/short.mp4", op)
    with pytest.raises(ApiError) as exc:
        emu.processors["VideoEnhance"](emu, job)
    assert exc.value.code == "SourceFileError.ContentUnsupported"
    assert job.detail["Operation"]["DigitalWatermark"]["State"] == "Failed"
    assert "MediaInfo" not in job.detail["Operation"] and "MediaResult" not in job.detail["Operation"]

    op = {"VideoEnhance": {"ColorEnhance": {"Saturation": "40"}}, "Output": output("vedw/long.${ext}"),
          "DigitalWatermark": {**dw, "Message": "long_clip-42"}}
    job, _ = run(emu, "VideoEnhance", "in/long.mp4", op)
    assert job.detail["Operation"]["DigitalWatermark"]["State"] == "Success"
    assert extract_digital_watermark(fetch(s3, job, tmp_path)) == "long_clip-42"


# ============================================================================== DigitalWatermark
def test_digital_watermark_on_a_95_second_video(emu, s3, media, tmp_path):
    op = {"DigitalWatermark": {"Type": "Text", "Message": "123456789ab", "Version": "V1"},
          "Output": output("dw/${jobid}.${ext}")}
    job, info = run(emu, "DigitalWatermark", "in/long.mp4", op)
    of = job.detail["Operation"]["MediaResult"]["OutputFile"]
    assert of["ObjectName"] == f"dw/{job.detail['JobId']}.mp4"
    assert float(info["Format"]["Duration"]) == pytest.approx(95, abs=0.5)
    assert (info["Stream"]["Video"]["Width"], info["Stream"]["Video"]["Height"]) == ("160", "120")
    local = fetch(s3, job, tmp_path)
    assert extract_digital_watermark(local) == "123456789ab"
    assert extract_digital_watermark_details(local) == {"pixels": "123456789ab", "metadata": "123456789ab"}
    assert extract_digital_watermark(str(media["long"])) is None  # the source carries none
    # the marker is in the pixels: it survives losing the metadata in a re-encode
    stripped = tmp_path / "stripped.mkv"
    with av.open(local) as src, av.open(str(stripped), "w") as dst:
        vs = dst.add_stream("libx264", rate=2, options={"preset": "ultrafast", "crf": "20"})
        vs.codec_context.width, vs.codec_context.height, vs.codec_context.pix_fmt = 160, 120, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            frame.pts, frame.time_base = i, Fraction(1, 2)
            dst.mux(vs.encode(frame))
        dst.mux(vs.encode(None))
    assert extract_digital_watermark_details(str(stripped)) == {"pixels": "123456789ab", "metadata": None}


def test_digital_watermark_on_a_3_second_video_fails(emu, s3, media):
    op = {"DigitalWatermark": {"Type": "Text", "Message": "123456789ab", "Version": "V1"},
          "Output": output("dw/short.mp4")}
    job = make_job("DigitalWatermark", "in/short.mp4", op)
    emu.validators["DigitalWatermark"](job.request)  # a valid request: the failure is the job's
    with pytest.raises(ApiError) as exc:
        emu.processors["DigitalWatermark"](emu, job)
    assert exc.value.code == "SourceFileError.ContentUnsupported"
    assert "90" in exc.value.message
    assert getattr(exc.value, "result", None) is None  # no MediaInfo/MediaResult for an incomplete job
    assert "Contents" not in s3.list_objects_v2(Bucket=OUT_BUCKET, Prefix="dw/short.mp4")


def test_an_unexpected_failure_fails_the_job_as_internal_error(emu, media, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(mj, "render", broken)
    job = make_job("VideoEnhance", "in/short.mp4", {**transcode_op(), "Output": output("x/${jobid}.mp4")})
    with pytest.raises(ApiError) as exc:  # not a crash that would leave the job Running
        emu.processors["VideoEnhance"](emu, job)
    assert exc.value.code == "InternalError" and "encoder exploded" in exc.value.message


# ============================================================================== bad inputs
def _audio_only(path: str) -> None:
    with av.open(path, "w", format="mp4") as out:
        st = out.add_stream("aac", rate=44100, layout="mono")
        for i in range(20):
            t = (np.arange(1024) + i * 1024) / 44100
            frame = av.AudioFrame.from_ndarray(np.sin(2 * math.pi * 440 * t).astype(np.float32)[None, :],
                                               format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i * 1024, Fraction(1, 44100)
            out.mux(st.encode(frame))
        out.mux(st.encode(None))


@pytest.fixture(scope="module")
def bad_inputs(s3, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    png = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(png, "PNG")
    s3.put_object(Bucket=IN_BUCKET, Key="bad/image.png", Body=png.getvalue())
    s3.put_object(Bucket=IN_BUCKET, Key="bad/noise.mp4", Body=bytes(np.random.default_rng(3).integers(0, 256, 4096,
                                                                                                       dtype=np.uint8)))
    s3.put_object(Bucket=IN_BUCKET, Key="bad/notes.txt", Body=b"this is not a video\n" * 20)
    _audio_only(str(d / "tone.m4a"))
    s3.upload_file(str(d / "tone.m4a"), IN_BUCKET, "bad/tone.m4a")


@pytest.mark.parametrize("tag", ["VideoEnhance", "DigitalWatermark"])
@pytest.mark.parametrize(("obj", "code"), [
    ("bad/noise.mp4", "SourceFileError.ContentMalformed"),
    ("bad/notes.txt", None),  # either malformed or unsupported: never processed as a video
    ("bad/image.png", "SourceFileError.ContentUnsupported"),
    ("bad/tone.m4a", "SourceFileError.NoVideoMedia"),
    ("bad/absent.mp4", "InputObjectNotExist"),
])
def test_non_video_input_fails(emu, bad_inputs, tag, obj, code):
    if tag == "VideoEnhance":
        op = {**transcode_op(), "Output": output("bad/out.${ext}")}
    else:
        op = {"DigitalWatermark": {"Type": "Text", "Message": "x", "Version": "V1"}, "Output": output("bad/o.mp4")}
    job = make_job(tag, obj, op)
    with pytest.raises(ApiError) as exc:
        emu.processors[tag](emu, job)
    if code is None:
        assert exc.value.code in ("SourceFileError.ContentMalformed", "SourceFileError.ContentUnsupported")
    else:
        assert exc.value.code == code, exc.value.message
