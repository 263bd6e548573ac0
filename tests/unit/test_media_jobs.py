"""VideoEnhance and DigitalWatermark in the emulator (devstack.emulator.media_jobs).

Validation is checked against the API pages' own sample requests (which must pass) and each documented
constraint (which must fail with the right code). Processing runs on real media made by
devstack.samples_media, through an emulator-like object whose `s3()` is boto3 against moto's server,
and every output is probed independently with PyAV.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import threading
import time
from fractions import Fraction
from typing import Any, Callable

import pytest

av = pytest.importorskip("av")
np = pytest.importorskip("numpy")

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from defusedxml import ElementTree  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402
from PIL import Image  # noqa: E402

from devstack.emulator import media_jobs as mj  # noqa: E402
from devstack.emulator.server import ApiError, Job  # noqa: E402
from devstack.emulator.xmlutil import element_to_dict  # noqa: E402
from devstack.samples_media import build_long_low_fps_video, build_short_video  # noqa: E402

REGION = "ap-guangzhou"
IN_BUCKET = "media-1250000000"
OUT_BUCKET = "results-1250000000"

# ----------------------------------------------------------------------------- the pages' samples
# 002 (VideoEnhance), "Request 1: Use Image Quality Enhancement Template ID", verbatim.
PAGE_VE_TEMPLATE = """<Request>
<Tag>VideoEnhance</Tag>
<Input>
<Object>test.${ext}</Object>
</Input>
<Operation>
<TemplateId>t1460606b9752148c4ab182f55163ba7cd</TemplateId>
<TranscodeTemplateId>t160606b9752148c4absdfaf2f55163b1f</TranscodeTemplateId>
<WatermarkTemplateId>t146d70eb241c44c63b6efc1cc93ccfc5d</WatermarkTemplateId>
<WatermarkTemplateId>t12a74d11687d444deba8a6cc52051ac27</WatermarkTemplateId>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
<IgnoreError>false</IgnoreError>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.${ext}</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 002, "Request 2: Use Image Quality Enhancement Processing Parameters", verbatim.
PAGE_VE_INLINE = """<Request>
<Tag>VideoEnhance</Tag>
<Input>
<Object>test.${ext}</Object>
</Input>
<Operation>
<VideoEnhance>
<Transcode>
<Container>
<Format>mp4</Format>
</Container>
<Video>
<Codec>H.264</Codec>
<Bitrate>1000</Bitrate>
<Width>1280</Width>
<Fps>30</Fps>
</Video>
<Audio>
<Codec>aac</Codec>
<Samplerate>44100</Samplerate>
<Bitrate>128</Bitrate>
<Channels>4</Channels>
</Audio>
</Transcode>
<SuperResolution>
<Resolution>sdtohd</Resolution>
<EnableScaleUp>true</EnableScaleUp>
<Version>Enhance</Version>
</SuperResolution>
<ColorEnhance>
<Contrast>50</Contrast>
<Correction>100</Correction>
<Saturation>100</Saturation>
</ColorEnhance>
<MsSharpen>
<SharpenLevel>5</SharpenLevel>
</MsSharpen>
<SDRtoHDR>
<HdrMode>HDR10</HdrMode>
</SDRtoHDR>
</VideoEnhance>
<Watermark>
<Type>Text</Type>
<LocMode>Absolute</LocMode>
<Dx>128</Dx>
<Dy>128</Dy>
<Pos>TopRight</Pos>
<StartTime>0</StartTime>
<EndTime>100.5</EndTime>
<Text>
<Text>Watermark content</Text>
<FontSize>30</FontSize>
<FontType>simfang.ttf</FontType>
<FontColor>0xRRGGBB</FontColor>
<Transparency>30</Transparency>
</Text>
</Watermark>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
<IgnoreError>false</IgnoreError>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.${ext}</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 003 (DigitalWatermark), the request body of "Request", verbatim.
PAGE_DW_BODY = """<Request>
<Tag>DigitalWatermark</Tag>
<Input>
<Object>input/demo.mp4</Object>
</Input>
<Operation>
<DigitalWatermark>
<Type>Text</Type>
<Message>123456789ab</Message>
<Version>V1</Version>
</DigitalWatermark>
<Output>
<Region>ap-chongqing</Region>
<Bucket>test-123456789</Bucket>
<Object>output/out.mp4</Object>
</Output>
<UserData>This is my data.</UserData>
<JobLevel>0</JobLevel>
</Operation>
<CallBack>http://callback.demo.com</CallBack>
<CallBackFormat>JSON</CallBackFormat>
</Request>"""

# 003, "Examples" request (adds IgnoreError).
PAGE_DW_EXAMPLE = PAGE_DW_BODY.replace("<Version>V1</Version>\n</DigitalWatermark>",
                                       "<Version>V1</Version>\n<IgnoreError>false</IgnoreError>\n</DigitalWatermark>")


def parse(xml: str) -> dict[str, Any]:
    """As the emulator's HTTP layer does: defused XML → dict."""
    return element_to_dict(ElementTree.fromstring(xml.encode(), forbid_dtd=True))


# ----------------------------------------------------------------------------- emulator-like harness
class FakeEmu:
    """What processors and validators use of CiEmulator: config, s3(), input_url(), the registries and hooks."""

    def __init__(self, s3: Any):
        self._s3 = s3
        self._lock = threading.RLock()
        self.config: dict[str, Any] = {}
        self.processors: dict[str, Callable[..., Any]] = {}
        self.validators: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.on_create: dict[str, Callable[..., None]] = {}
        mj.register(self)

    def s3(self) -> Any:
        return self._s3

    def input_url(self, job: Job) -> str:
        return f"http://{job.bucket}.cos.{job.region}.myqcloud.com/{job.detail['Input']['Object']}"


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


_counter = iter(range(10**6))


def make_job(tag: str, obj: str, op: dict[str, Any]) -> Job:
    doc = {"Tag": tag, "Input": {"Object": obj}, "Operation": op}
    job_id = f"c{next(_counter):031x}"
    detail = {"Code": "Success", "Message": "", "JobId": job_id, "State": "Running", "Tag": tag,
              "Input": {"BucketId": IN_BUCKET, "Object": obj, "Region": REGION},
              "Operation": dict(op)}
    return Job(job_id, IN_BUCKET, REGION, tag, doc, detail)


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


# ============================================================================== validation
@pytest.mark.parametrize("xml", [PAGE_VE_TEMPLATE, PAGE_VE_INLINE], ids=["template-ids", "inline"])
def test_page_video_enhance_samples_validate(xml):
    doc = parse(xml)
    mj.validate_video_enhance(doc)  # default templates hold the page's sample ids
    plan = mj.resolve_video_enhance(doc)
    if "TemplateId" in doc["Operation"]:
        assert plan.template_name == "VideoEnhance_demo"
        assert len(plan.watermarks) == 2  # the two WatermarkTemplateIds
    else:
        assert (plan.container, plan.video_codec, plan.width, plan.fps) == ("mp4", "H.264", 1280, 30)
        assert plan.audio.channels == 4 and plan.super_resolution["resolution"] == "sdtohd"
        assert plan.color == {"contrast": 50, "correction": 100, "saturation": 100} and plan.sharpen == 5
        assert plan.hdr == "HDR10" and len(plan.watermarks) == 1
    assert plan.digital_watermark.message == "123456789ab"


@pytest.mark.parametrize("xml", [PAGE_DW_BODY, PAGE_DW_EXAMPLE], ids=["body", "example"])
def test_page_digital_watermark_samples_validate(xml, emu):
    emu.validators["DigitalWatermark"](parse(xml))


def test_register_sets_both_tags_and_config(emu):
    assert set(emu.processors) == {"VideoEnhance", "DigitalWatermark"} == set(emu.validators)
    assert set(emu.on_create) == {"VideoEnhance"}
    assert emu.config["digital_watermark_min_seconds"] == 90
    assert "t1460606b9752148c4ab182f55163ba7cd" in emu.config["media_templates"]


def _ve() -> dict[str, Any]:
    return parse(PAGE_VE_INLINE)


def _op(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["Operation"]


def _video(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["Operation"]["VideoEnhance"]["Transcode"]["Video"]


def _audio(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["Operation"]["VideoEnhance"]["Transcode"]["Audio"]


def _wm(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["Operation"]["Watermark"]


def _image_wm(doc: dict[str, Any]) -> dict[str, Any]:
    wm = _wm(doc)
    wm["Type"] = "Image"
    del wm["Text"]
    wm["Image"] = {"Url": "http://x-1250000000.cos.ap-guangzhou.myqcloud.com/logo.png", "Mode": "Fixed",
                   "Width": "64", "Transparency": "100", "Background": "false"}
    return wm["Image"]


MISSING, INVALID = "MissingContent", "InvalidArgument"

VE_REJECTIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("no-output", lambda d: _op(d).pop("Output"), MISSING),
    ("output-no-region", lambda d: _op(d)["Output"].pop("Region"), MISSING),
    ("output-no-bucket", lambda d: _op(d)["Output"].pop("Bucket"), MISSING),
    ("output-no-object", lambda d: _op(d)["Output"].pop("Object"), MISSING),
    ("output-empty-object", lambda d: _op(d)["Output"].update(Object=""), MISSING),
    ("no-enhance-params", lambda d: _op(d).pop("VideoEnhance"), MISSING),
    ("empty-videoenhance", lambda d: _op(d).update(VideoEnhance=""), MISSING),
    ("videoenhance-nothing-known", lambda d: _op(d).update(VideoEnhance={"Foo": "1"}), MISSING),
    ("unknown-template", lambda d: _op(d).update(TemplateId="t0000000000000000000000000000000"), INVALID),
    ("template-of-other-tag", lambda d: _op(d).update(TemplateId="t146d70eb241c44c63b6efc1cc93ccfc5d"), INVALID),
    ("unknown-transcode-template", lambda d: _op(d).update(TranscodeTemplateId="tnope"), INVALID),
    ("unknown-watermark-template", lambda d: _op(d).update(WatermarkTemplateId="tnope"), INVALID),
    ("four-watermark-templates",
     lambda d: _op(d).update(WatermarkTemplateId=["t146d70eb241c44c63b6efc1cc93ccfc5d"] * 4), INVALID),
    ("four-watermarks", lambda d: _op(d).update(Watermark=[copy.deepcopy(_wm(d)) for _ in range(4)]), INVALID),
    ("bad-format", lambda d: d["Operation"]["VideoEnhance"]["Transcode"]["Container"].update(Format="avi"), INVALID),
    ("hls-not-emulated", lambda d: d["Operation"]["VideoEnhance"]["Transcode"]["Container"].update(Format="hls"),
     INVALID),
    ("webm-with-h264", lambda d: d["Operation"]["VideoEnhance"]["Transcode"]["Container"].update(Format="webm"),
     INVALID),
    ("mp4-with-vp8", lambda d: _video(d).update(Codec="VP8"), INVALID),
    ("ts-with-flac", lambda d: (d["Operation"]["VideoEnhance"]["Transcode"]["Container"].update(Format="ts"),
                                _audio(d).update(Codec="flac", Channels="2")), INVALID),
    ("webm-with-aac", lambda d: (d["Operation"]["VideoEnhance"]["Transcode"]["Container"].update(Format="webm"),
                                 _video(d).update(Codec="VP9")), INVALID),
    ("bad-codec", lambda d: _video(d).update(Codec="H.266"), INVALID),
    ("width-too-small", lambda d: _video(d).update(Width="126"), INVALID),
    ("width-too-large", lambda d: _video(d).update(Width="4098"), INVALID),
    ("width-odd", lambda d: _video(d).update(Width="1281"), INVALID),
    ("width-not-a-number", lambda d: _video(d).update(Width="wide"), INVALID),
    ("height-too-large", lambda d: _video(d).update(Height="4100"), INVALID),
    ("fps-zero", lambda d: _video(d).update(Fps="0"), INVALID),
    ("fps-too-high", lambda d: _video(d).update(Fps="61"), INVALID),
    ("bitrate-too-low", lambda d: _video(d).update(Bitrate="9"), INVALID),
    ("bitrate-too-high", lambda d: _video(d).update(Bitrate="50001"), INVALID),
    ("crf-too-high", lambda d: _video(d).update(Crf="52"), INVALID),
    ("bad-profile", lambda d: _video(d).update(Profile="extreme"), INVALID),
    ("profile-with-h265", lambda d: _video(d).update(Codec="H.265", Profile="high"), INVALID),
    ("bad-audio-codec", lambda d: _audio(d).update(Codec="wma"), INVALID),
    ("bad-samplerate", lambda d: _audio(d).update(Samplerate="44000"), INVALID),
    ("aac-three-channels", lambda d: _audio(d).update(Channels="3"), INVALID),
    ("mp3-four-channels", lambda d: _audio(d).update(Codec="mp3"), INVALID),
    ("audio-bitrate-too-high", lambda d: _audio(d).update(Bitrate="1001"), INVALID),
    ("contrast-over-100", lambda d: d["Operation"]["VideoEnhance"]["ColorEnhance"].update(Contrast="101"), INVALID),
    ("correction-negative", lambda d: d["Operation"]["VideoEnhance"]["ColorEnhance"].update(Correction="-1"),
     INVALID),
    ("saturation-text", lambda d: d["Operation"]["VideoEnhance"]["ColorEnhance"].update(Saturation="lots"), INVALID),
    ("sharpen-over-10", lambda d: d["Operation"]["VideoEnhance"]["MsSharpen"].update(SharpenLevel="11"), INVALID),
    ("sr-bad-resolution", lambda d: d["Operation"]["VideoEnhance"]["SuperResolution"].update(Resolution="4kto8k"),
     INVALID),
    ("sr-no-resolution", lambda d: d["Operation"]["VideoEnhance"]["SuperResolution"].pop("Resolution"), MISSING),
    ("sr-bad-version", lambda d: d["Operation"]["VideoEnhance"]["SuperResolution"].update(Version="Pro"), INVALID),
    ("sr-bad-scaleup", lambda d: d["Operation"]["VideoEnhance"]["SuperResolution"].update(EnableScaleUp="yes"),
     INVALID),
    ("bad-hdr-mode", lambda d: d["Operation"]["VideoEnhance"]["SDRtoHDR"].update(HdrMode="HDR12"), INVALID),
    ("bad-frame-doubling", lambda d: d["Operation"]["VideoEnhance"].update(FrameEnhance={"FrameDoubling": "maybe"}),
     INVALID),
    ("wm-bad-type", lambda d: _wm(d).update(Type="Video"), INVALID),
    ("wm-bad-pos", lambda d: _wm(d).update(Pos="Middle"), INVALID),
    ("wm-bad-locmode", lambda d: _wm(d).update(LocMode="Fixed"), INVALID),
    ("wm-no-pos", lambda d: _wm(d).pop("Pos"), MISSING),
    ("wm-dx-absolute-too-far", lambda d: _wm(d).update(Dx="4097"), INVALID),
    ("wm-dx-relative-over-100", lambda d: _wm(d).update(LocMode="Relativity", Dx="101"), INVALID),
    ("wm-end-before-start", lambda d: _wm(d).update(StartTime="5", EndTime="2"), INVALID),
    ("wm-fontsize-too-small", lambda d: _wm(d)["Text"].update(FontSize="4"), INVALID),
    ("wm-fontsize-too-large", lambda d: _wm(d)["Text"].update(FontSize="101"), INVALID),
    ("wm-transparency-zero", lambda d: _wm(d)["Text"].update(Transparency="0"), INVALID),
    ("wm-text-too-long", lambda d: _wm(d)["Text"].update(Text="x" * 65), INVALID),
    ("wm-bad-fontcolor", lambda d: _wm(d)["Text"].update(FontColor="red"), INVALID),
    ("wm-no-text", lambda d: _wm(d).pop("Text"), MISSING),
    ("wm-image-no-url", lambda d: _image_wm(d).pop("Url"), MISSING),
    ("wm-image-bad-mode", lambda d: _image_wm(d).update(Mode="Stretch"), INVALID),
    ("wm-image-original-with-width", lambda d: _image_wm(d).update(Mode="Original"), INVALID),
    ("wm-image-fixed-too-small", lambda d: _image_wm(d).update(Width="7"), INVALID),
    ("wm-image-proportion-over-100", lambda d: _image_wm(d).update(Mode="Proportion", Width="101"), INVALID),
    ("dw-bad-type", lambda d: _op(d)["DigitalWatermark"].update(Type="Image"), INVALID),
    ("dw-bad-version", lambda d: _op(d)["DigitalWatermark"].update(Version="V2"), INVALID),
    ("dw-message-too-long", lambda d: _op(d)["DigitalWatermark"].update(Message="a" * 65), INVALID),
    ("dw-message-bad-chars", lambda d: _op(d)["DigitalWatermark"].update(Message="hi there!"), INVALID),
    ("dw-no-message", lambda d: _op(d)["DigitalWatermark"].pop("Message"), MISSING),
    ("dw-bad-ignore-error", lambda d: _op(d)["DigitalWatermark"].update(IgnoreError="yes"), INVALID),
]


@pytest.mark.parametrize(("mutate", "code"), [(m, c) for _, m, c in VE_REJECTIONS],
                         ids=[name for name, _, _ in VE_REJECTIONS])
def test_video_enhance_constraints_rejected(emu, mutate, code):
    doc = _ve()
    emu.validators["VideoEnhance"](doc)  # the unmodified sample passes ...
    mutate(doc)
    with pytest.raises(ApiError) as exc:  # ... and each violation fails with the documented code
        emu.validators["VideoEnhance"](doc)
    assert exc.value.code == code, exc.value.message


DW_REJECTIONS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("no-digital-watermark", lambda d: _op(d).pop("DigitalWatermark"), MISSING),
    ("no-output", lambda d: _op(d).pop("Output"), MISSING),
    ("output-no-object", lambda d: _op(d)["Output"].pop("Object"), MISSING),
    ("no-type", lambda d: _op(d)["DigitalWatermark"].pop("Type"), MISSING),
    ("bad-type", lambda d: _op(d)["DigitalWatermark"].update(Type="Audio"), INVALID),
    ("no-version", lambda d: _op(d)["DigitalWatermark"].pop("Version"), MISSING),
    ("empty-message", lambda d: _op(d)["DigitalWatermark"].update(Message=""), MISSING),
    ("long-message", lambda d: _op(d)["DigitalWatermark"].update(Message="9" * 65), INVALID),
]


@pytest.mark.parametrize(("mutate", "code"), [(m, c) for _, m, c in DW_REJECTIONS],
                         ids=[name for name, _, _ in DW_REJECTIONS])
def test_digital_watermark_constraints_rejected(emu, mutate, code):
    doc = parse(PAGE_DW_EXAMPLE)
    mutate(doc)
    with pytest.raises(ApiError) as exc:
        emu.validators["DigitalWatermark"](doc)
    assert exc.value.code == code, exc.value.message


def test_template_ids_come_from_emulator_config(emu):
    doc = parse(PAGE_VE_TEMPLATE)
    emu.validators["VideoEnhance"](doc)
    emu.config["media_templates"] = {"tmine": {"Tag": "VideoEnhance", "Name": "mine",
                                               "VideoEnhance": {"MsSharpen": {"SharpenLevel": 3}}}}
    with pytest.raises(ApiError) as exc:  # the sample ids are gone from this emulator's config
        emu.validators["VideoEnhance"](doc)
    assert exc.value.code == "InvalidArgument"
    for key in ("TranscodeTemplateId", "WatermarkTemplateId"):
        del doc["Operation"][key]
    doc["Operation"]["TemplateId"] = "tmine"
    emu.validators["VideoEnhance"](doc)
    # a template with broken parameters is reported like a broken request
    emu.config["media_templates"]["tmine"]["VideoEnhance"]["MsSharpen"]["SharpenLevel"] = 12
    with pytest.raises(ApiError):
        emu.validators["VideoEnhance"](doc)


def test_template_id_wins_over_inline_parameters(emu):
    doc = _ve()
    doc["Operation"]["TemplateId"] = "t1460606b9752148c4ab182f55163ba7cd"
    doc["Operation"]["VideoEnhance"]["MsSharpen"]["SharpenLevel"] = "99"  # ignored: TemplateId has priority
    emu.validators["VideoEnhance"](doc)


def test_watermark_position_math():
    wm = mj.WatermarkPlan(type="Text", pos="TopRight", loc_mode="Absolute", dx=10, dy=20)
    assert mj.watermark_position(wm, 640, 360, 100, 50) == (530, 20)
    wm = mj.WatermarkPlan(type="Text", pos="BottomLeft", loc_mode="Relativity", dx=10, dy=10)
    assert mj.watermark_position(wm, 640, 360, 100, 50) == (64, 274)
    wm = mj.WatermarkPlan(type="Text", pos="Center", loc_mode="Absolute", dx=99, dy=99)
    assert mj.watermark_position(wm, 640, 360, 100, 50) == (270, 155)


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
    plan = mj.resolve_video_enhance(job.request)
    assert mj.target_size(plan, 1280, 720) == (1920, 1080)  # sdtohd stops at HD
    plan.super_resolution["resolution"] = "hdto4k"
    assert mj.target_size(plan, 1280, 720) == (2560, 1440)  # at most twice the source


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
    text = mj.render_text_watermark("CI", 48, "simfang.ttf", (255, 0, 0), 100)
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
    assert mj.extract_digital_watermark(fetch(s3, job, tmp_path)) is None

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
    assert mj.extract_digital_watermark(fetch(s3, job, tmp_path)) == "long_clip-42"


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
    assert mj.extract_digital_watermark(local) == "123456789ab"
    assert mj.extract_digital_watermark_details(local) == {"pixels": "123456789ab", "metadata": "123456789ab"}
    assert mj.extract_digital_watermark(str(media["long"])) is None  # the source carries none
    # the marker is in the pixels: it survives losing the metadata in a re-encode
    stripped = tmp_path / "stripped.mkv"
    with av.open(local) as src, av.open(str(stripped), "w") as dst:
        vs = dst.add_stream("libx264", rate=2, options={"preset": "ultrafast", "crf": "20"})
        vs.codec_context.width, vs.codec_context.height, vs.codec_context.pix_fmt = 160, 120, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            frame.pts, frame.time_base = i, Fraction(1, 2)
            dst.mux(vs.encode(frame))
        dst.mux(vs.encode(None))
    assert mj.extract_digital_watermark_details(str(stripped)) == {"pixels": "123456789ab", "metadata": None}


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


def test_digital_watermark_payload_round_trip_without_a_codec():
    y = np.full((120, 160), 128, dtype=np.uint8)
    y[:, 80:] = 250  # bright, near the clipping point
    chunks = mj._dw_chunks("中文_ok-*", 160, 120)
    assert chunks is not None
    for i, chunk in enumerate(chunks):
        plane = mj.embed_frame_bits(y.copy(), chunk)
        assert mj.read_frame_bits(plane) == chunk, i
        assert int(np.abs(plane.astype(int) - y).max()) <= 3 * mj.DW_MARGIN + 3


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
