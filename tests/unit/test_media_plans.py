"""VideoEnhance and DigitalWatermark requests in the emulator (devstack.emulator.media_plans).

Validation is checked against the API pages' own sample requests (which must pass) and each documented
constraint (which must fail with the right code), through the validators the job types register.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from devstack.emulator import media_plans
from devstack.emulator.server import ApiError
from tests.unit.media_harness import PAGE_DW_BODY, PAGE_DW_EXAMPLE, PAGE_VE_INLINE, PAGE_VE_TEMPLATE, FakeEmu, parse


@pytest.fixture()
def emu():
    return FakeEmu(None)  # validation reads no media


# ============================================================================== validation
@pytest.mark.parametrize("xml", [PAGE_VE_TEMPLATE, PAGE_VE_INLINE], ids=["template-ids", "inline"])
def test_page_video_enhance_samples_validate(xml):
    doc = parse(xml)
    media_plans.validate_video_enhance(doc)  # default templates hold the page's sample ids
    plan = media_plans.resolve_video_enhance(doc)
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
