"""VideoEnhance and DigitalWatermark in the emulator: real media processing with PyAV.

Both job types read `Input.Object` from the job's bucket, process it with FFmpeg's libraries (the ones
inside the PyAV wheel; no ffmpeg binary) and write the result to `Operation.Output` — which may name
another bucket — with `${ext}` (the container's extension) and `${jobid}` (the JobId) expanded in
`Output.Object`. A finished job carries, in `JobsDetail.Operation`, `MediaInfo` (measured by opening the
OUTPUT with PyAV, laid out like CI's `MediaInfo`: `Format` + `Stream.Video`/`Stream.Audio`/`Stream.Subtitle`)
and `MediaResult` (`OutputFile`: Bucket, Region, ObjectName, ObjectPrefix, Md5Info). Both pages say these
two are not returned while the job is incomplete, so a failed job has neither.

The pages take the VideoEnhance, Watermark and DigitalWatermark parameters "as in" the create-template
APIs; the names, value sets and ranges validated here are those APIs' documented ones.

VideoEnhance (parameters from `TemplateId`, which wins, or the inline `VideoEnhance`; `TranscodeTemplateId`,
used in the page's first sample, replaces the Transcode part):
- `Transcode.Container.Format` mp4 | mov | mkv | flv | ts | webm (`hls`/`dash` are CI formats this
  emulator does not segment, and are refused); `Video.Codec` H.264 (libx264) | H.265 (libx265) |
  VP8 (libvpx) | VP9 (libvpx-vp9) | AV1 (libsvtav1); `Width`/`Height` (even, 128-4096; one alone keeps the
  aspect ratio), `Fps` (0-60], `Bitrate` [10, 50000] kbps, `Crf` (0, 51], `Gop`, `Profile`, `Pixfmt`;
  `Audio` aac | mp3 | flac | amr | Vorbis | opus | pcm_s16le with `Samplerate`/`Bitrate`/`Channels`/`Remove`;
  `TimeInterval` Start/Duration. Presets are validated, but encoding always uses the fast preset in
  `config["media_x264_preset"]` (CPU is scarce here); `Rotate`, `LongShortMode`, `TransConfig` and
  `AudioMix` are accepted and not applied.
- `SuperResolution`: a real upscale with swscale's lanczos to the Transcode size, or, without one, to twice
  the source within 1920x1080 (`sdtohd`) or 3840x2160 (`hdto4k`); `Version=Enhance` adds a light 3x3
  `unsharp` after it; `EnableScaleUp` is validated and not used. (Any other resize uses bicubic.)
- `ColorEnhance` (each 0-100, empty = "automatic", taken as 50): `Contrast` c and `Correction` r drive one
  `lutyuv` on luma, y' = (gammaval(1/(1+r/200)) - 128) * (1 + c/200) + 128; `Saturation` s is `hue=s=1+s/100`.
  (FFmpeg's `eq` is not in the PyAV wheel.) `Enable=false` turns ColorEnhance / MsSharpen off.
- `MsSharpen` (`SharpenLevel` 0-10, empty = 5): two `unsharp` passes, 3x3 and 7x7, amounts 0.12*L and 0.08*L.
- `SDRtoHDR`: the `colorspace` filter converts BT.709 to BT.2020 (10-bit output where the encoder has it)
  and the stream is tagged PQ (`HDR10`) or HLG; the tone curve itself is tagged, not re-graded.
- `FrameEnhance.FrameDoubling=true`: the output rate doubles (capped at 60) through the `framerate` filter.
- Watermarks: up to 3 `WatermarkTemplateId` (which win) or up to 3 inline `Watermark`. Text is rendered
  with Pillow (FontType if such a font file exists, else Pillow's default font: FFmpeg's `drawtext` is not
  in the wheel) and image watermarks come from the object their `Image.Url` names (virtual-hosted
  `<bucket>.cos.<region>.myqcloud.com/<key>` or path-style `<endpoint>/<bucket>/<key>`); both are composited
  by FFmpeg's `overlay`, with `enable='between(t,StartTime,EndTime)'`. `Transparency` (1-100) is applied as
  the watermark's opacity in percent.
- `DigitalWatermark` (optional; `Type` Text, `Version` V1, `Message` 1-64 characters of Chinese, letters,
  digits, `_`, `-`, `*`): as for the DigitalWatermark job below. `DigitalWatermark.State` in the job's
  Operation goes Running → Success; a source that is too short marks it Failed and fails the job, unless
  `IgnoreError=true`, when the job goes on without the digital watermark.

DigitalWatermark: the source must be longer than 90 s (`config["digital_watermark_min_seconds"]`); the
output keeps the input's container, size and frame rate (H.264 at CRF 18, audio re-encoded). `IgnoreError`
is accepted and, as documented, only matters in other job types.

Tencent's invisible digital watermark cannot be reproduced: its algorithm is not public. This emulator
embeds the message in a documented, locally verifiable form instead, twice:
1. container metadata: `comment` = `ci-digital-watermark:V1:Text:<base64 of the UTF-8 message>` and a
   custom tag `ci_digital_watermark` = the message (MP4/MOV are written with `movflags=use_metadata_tags`);
2. a per-frame luma marker that survives lossy encoding: the Y plane is cut into 8x8 blocks taken in
   left/right pairs; a pair carries bit 1 when the left block's mean is at least 6 levels above the right
   one's and bit 0 for the reverse (only pairs that do not already say so are nudged). Each frame holds an
   8-bit chunk index, an 8-bit chunk count and one chunk of `b"CW" + len16 + message + crc32`; frame i
   carries chunk i mod count. `extract_digital_watermark(path)` decodes every frame, majority-votes each
   chunk and checks the CRC; when no marker decodes it falls back to the metadata
   (`extract_digital_watermark_details` reports both carriers).
The marker is faintly visible on flat areas, unlike Tencent's.

Errors. Request validation raises `ApiError` (from `.server`) with the codes server.py already uses:
`MissingContent` for an absent required element, `InvalidArgument` for a bad value, and
`InvalidArgument` for an unknown template id (ERR_NO_TEMPLATE). Jobs fail with: `InputObjectNotExist`
(as ImageInspect here), `SourceFileError.ContentMalformed` (not decodable), `SourceFileError.NoVideoMedia`
(no video stream), `SourceFileError.ContentUnsupported` (a still image, or a source not longer than 90 s
for a digital watermark), `InvalidInput` (a watermark image that cannot be read), `InvalidArgument`
(a container that cannot carry the codec) and `InternalError` (the output cannot be written). The two
API pages name no job error codes; the `SourceFileError.*`/`InvalidInput`/`InternalError` names are
Tencent's media-processing error codes.

Templates: `config["media_templates"]` maps a template id to
`{"Tag": "VideoEnhance" | "Watermark" | "Transcode", "Name": str, "<Tag>": {parameters}}` where the
parameters are what the create-template API takes (`VideoEnhance` → Transcode/SuperResolution/...,
`Watermark` → Type/Pos/.../Text|Image, `Transcode` → Container/Video/Audio/TimeInterval), strings or
numbers. The defaults hold the page's sample ids (`TranscodeTemplateId` comes from the page's first sample).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import math
import os
import re
import shutil
import tempfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import unquote, urlsplit

from .xmlutil import insert_after

if TYPE_CHECKING:
    from .server import CiEmulator, Job

TAG_VIDEO_ENHANCE = "VideoEnhance"
TAG_DIGITAL_WATERMARK = "DigitalWatermark"

# ----- error codes -------------------------------------------------------------------------------
ERR_MISSING = "MissingContent"
ERR_INVALID = "InvalidArgument"
ERR_NO_TEMPLATE = "InvalidArgument"
ERR_INPUT_NOT_EXIST = "InputObjectNotExist"
ERR_MALFORMED = "SourceFileError.ContentMalformed"
ERR_NO_VIDEO = "SourceFileError.NoVideoMedia"
ERR_UNSUPPORTED = "SourceFileError.ContentUnsupported"
ERR_INVALID_INPUT = "InvalidInput"
ERR_INTERNAL = "InternalError"

# ----- documented value sets ----------------------------------------------------------------------
# Container format → (FFmpeg muxer, extension that `${ext}` becomes).
CONTAINERS = {"mp4": ("mp4", "mp4"), "mov": ("mov", "mov"), "mkv": ("matroska", "mkv"), "flv": ("flv", "flv"),
              "ts": ("mpegts", "ts"), "webm": ("webm", "webm")}
NOT_EMULATED_CONTAINERS = ("hls", "dash")
VIDEO_CODECS = {"H.264": ("libx264",), "H.265": ("libx265",), "VP8": ("libvpx",), "VP9": ("libvpx-vp9",),
                "AV1": ("libsvtav1", "libaom-av1", "librav1e")}
WEBM_CODECS = ("VP8", "VP9", "AV1")
# What FFmpeg's muxers (in the PyAV wheel) accept, checked codec by codec; other pairs are refused up front.
MUX_VIDEO = {"mp4": ("H.264", "H.265", "VP9", "AV1"), "mov": ("H.264", "H.265"),
             "mkv": ("H.264", "H.265", "VP8", "VP9", "AV1"), "flv": ("H.264", "H.265", "VP9", "AV1"),
             "ts": ("H.264", "H.265"), "webm": WEBM_CODECS}
MUX_AUDIO = {"mp4": ("aac", "mp3", "flac", "vorbis", "opus", "pcm_s16le"), "mov": ("aac", "mp3", "amr", "pcm_s16le"),
             "mkv": ("aac", "mp3", "flac", "vorbis", "opus", "pcm_s16le"),
             "flv": ("aac", "mp3", "flac", "opus", "pcm_s16le"), "ts": ("aac", "mp3", "opus"),
             "webm": ("opus", "vorbis")}
H264_PROFILES = ("baseline", "main", "high", "auto")
H264_PRESETS = ("veryfast", "fast", "medium", "slow", "slower")
VP8_PRESETS = ("good", "realtime")
AV1_PRESETS = ("5", "4")
PIXFMTS = {"H.264": ("yuv420p", "yuv422p", "yuv444p", "yuvj420p", "yuvj422p", "yuvj444p", "auto"),
           "H.265": ("yuv420p", "yuv420p10le", "auto")}
# Audio codec (lower case) → (encoder, channel counts allowed, sample rates allowed or None for the general list).
AUDIO_CODECS: dict[str, tuple[str, tuple[int, ...], Optional[tuple[int, ...]]]] = {
    "aac": ("aac", (1, 2, 4, 5, 6, 8), None),
    "mp3": ("libmp3lame", (1, 2), None),
    "flac": ("flac", (1, 2, 4, 5, 6, 8), None),
    "amr": ("libopencore_amrnb", (1,), (8000,)),
    "vorbis": ("vorbis", (2,), None),
    "opus": ("libopus", (1, 2), (8000, 16000, 24000, 48000)),
    "pcm_s16le": ("pcm_s16le", (1, 2), None),
}
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
CHANNEL_LAYOUTS = {1: "mono", 2: "stereo", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
SR_RESOLUTIONS = {"sdtohd": (1920, 1080), "hdto4k": (3840, 2160)}
SR_VERSIONS = ("Base", "Enhance")
HDR_MODES = ("HLG", "HDR10")
WM_TYPES = ("Text", "Image")
WM_POSITIONS = ("TopRight", "TopLeft", "BottomRight", "BottomLeft", "Left", "Right", "Top", "Bottom", "Center")
WM_LOC_MODES = ("Relativity", "Absolute")
WM_IMAGE_MODES = ("Original", "Proportion", "Fixed")
DW_TYPES = ("Text",)
DW_VERSIONS = ("V1",)
DW_MESSAGE_RE = re.compile(r"^[A-Za-z0-9_\-*\u4e00-\u9fff]+$")
MAX_WATERMARKS = 3
ENHANCEMENTS = ("Transcode", "SuperResolution", "ColorEnhance", "MsSharpen", "SDRtoHDR", "FrameEnhance")
# Demuxers FFmpeg may pick for files that are not videos (stills, ANSI text).
NON_VIDEO_DEMUXERS = ("image2", "tty")

DEFAULT_TEMPLATES: dict[str, dict[str, Any]] = {
    # The page's sample VideoEnhance template id, with the page's second sample's parameters.
    "t1460606b9752148c4ab182f55163ba7cd": {
        "Tag": "VideoEnhance", "Name": "VideoEnhance_demo",
        "VideoEnhance": {
            "Transcode": {"Container": {"Format": "mp4"},
                          "Video": {"Codec": "H.264", "Bitrate": "1000", "Width": "1280", "Fps": "30"},
                          "Audio": {"Codec": "aac", "Samplerate": "44100", "Bitrate": "128", "Channels": "4"}},
            "SuperResolution": {"Resolution": "sdtohd", "EnableScaleUp": "true", "Version": "Enhance"},
            "ColorEnhance": {"Contrast": "50", "Correction": "100", "Saturation": "100"},
            "MsSharpen": {"SharpenLevel": "5"},
            "SDRtoHDR": {"HdrMode": "HDR10"},
        },
    },
    "t146d70eb241c44c63b6efc1cc93ccfc5d": {
        "Tag": "Watermark", "Name": "Watermark_demo_text",
        "Watermark": {"Type": "Text", "LocMode": "Absolute", "Dx": "128", "Dy": "128", "Pos": "TopRight",
                      "StartTime": "0", "EndTime": "100.5",
                      "Text": {"Text": "Watermark content", "FontSize": "30", "FontType": "simfang.ttf",
                               "FontColor": "0xFFFFFF", "Transparency": "30"}},
    },
    "t12a74d11687d444deba8a6cc52051ac27": {
        "Tag": "Watermark", "Name": "Watermark_demo_corner",
        "Watermark": {"Type": "Text", "LocMode": "Relativity", "Dx": "5", "Dy": "5", "Pos": "BottomLeft",
                      "Text": {"Text": "ci-emulator", "FontSize": "20", "FontType": "simfang.ttf",
                               "FontColor": "0xFFFF00", "Transparency": "60"}},
    },
    "t160606b9752148c4absdfaf2f55163b1f": {
        "Tag": "Transcode", "Name": "Transcode_demo",
        "Transcode": {"Container": {"Format": "mp4"},
                      "Video": {"Codec": "H.264", "Bitrate": "1000", "Width": "1280", "Fps": "30"},
                      "Audio": {"Codec": "aac", "Samplerate": "44100", "Bitrate": "128", "Channels": "2"}},
    },
}

DW_BLOCK = 8
DW_MARGIN = 3  # half the luma difference a pair is pushed to (8-bit levels)
DW_MAGIC = b"CW"
DW_COMMENT_PREFIX = "ci-digital-watermark:V1:Text:"
DW_TAG = "ci_digital_watermark"


def _api_error(code: str, message: str) -> Exception:
    from .server import ApiError

    return ApiError(code, message)


# ================================================================================ request → plan
@dataclass
class AudioPlan:
    codec: str = "aac"                 # CI name, lower case
    sample_rate: Optional[int] = None  # None: keep the source's (if the encoder allows it)
    channels: Optional[int] = None
    bitrate_kbps: Optional[float] = None
    remove: bool = False


@dataclass
class WatermarkPlan:
    type: str
    pos: str
    loc_mode: str
    dx: float
    dy: float
    start: Optional[float] = None
    end: Optional[float] = None
    text: Optional[dict[str, Any]] = None   # text, font_size, font_type, color, opacity
    image: Optional[dict[str, Any]] = None  # url, mode, width, height, opacity, background


@dataclass
class DigitalWatermarkPlan:
    type: str
    message: str
    version: str
    ignore_error: bool = False


@dataclass
class EnhancePlan:
    container: str = "mp4"
    video_codec: str = "H.264"
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[Fraction] = None
    bitrate_kbps: Optional[float] = None
    crf: Optional[float] = None
    gop: Optional[int] = None
    profile: Optional[str] = None
    pixfmt: Optional[str] = None
    audio: AudioPlan = field(default_factory=AudioPlan)
    start: float = 0.0
    duration: Optional[float] = None
    super_resolution: Optional[dict[str, Any]] = None
    color: Optional[dict[str, float]] = None
    sharpen: Optional[float] = None
    hdr: Optional[str] = None
    frame_doubling: bool = False
    watermarks: list[WatermarkPlan] = field(default_factory=list)
    digital_watermark: Optional[DigitalWatermarkPlan] = None
    template_id: Optional[str] = None
    template_name: Optional[str] = None
    transcode_template_name: Optional[str] = None
    keep_source_size: bool = False


def _container(value: Any, path: str, required: bool = False) -> Optional[dict[str, Any]]:
    if value is None or value == "":
        if required:
            raise _api_error(ERR_MISSING, f"{path} is required")
        return None
    if isinstance(value, list):
        raise _api_error(ERR_INVALID, f"{path} may appear only once")
    if not isinstance(value, dict):
        raise _api_error(ERR_INVALID, f"{path} must be a container")
    return value


def _leaf(c: dict[str, Any], name: str, path: str, required: bool = False) -> Optional[str]:
    v = c.get(name)
    if isinstance(v, (dict, list)):
        raise _api_error(ERR_INVALID, f"{path}.{name} must be a single value")
    if v is None or (required and str(v).strip() == ""):
        if required:
            raise _api_error(ERR_MISSING, f"{path}.{name} is required")
        return None
    return str(v).strip()


def _items(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _bool(c: dict[str, Any], name: str, path: str, default: bool = False) -> bool:
    v = _leaf(c, name, path)
    if v is None or v == "":
        return default
    if v not in ("true", "false"):
        raise _api_error(ERR_INVALID, f"{path}.{name} must be true or false, got {v!r}")
    return v == "true"


def _enum(c: dict[str, Any], name: str, path: str, allowed: tuple[str, ...], required: bool = False,
          default: Optional[str] = None, fold_case: bool = False) -> Optional[str]:
    v = _leaf(c, name, path, required)
    if v is None or v == "":
        return default
    if fold_case:
        lowered = {a.lower(): a for a in allowed}
        if v.lower() in lowered:
            return lowered[v.lower()]
    elif v in allowed:
        return v
    raise _api_error(ERR_INVALID, f"{path}.{name} must be one of {', '.join(allowed)}, got {v!r}")


def _num(c: dict[str, Any], name: str, path: str, lo: float, hi: float, *, lo_open: bool = False,
         hi_open: bool = False, integer: bool = False, even: bool = False, required: bool = False,
         allow_auto: bool = False) -> Optional[float]:
    v = _leaf(c, name, path, required)
    if v is None or v == "" or (allow_auto and v == "auto"):
        return None
    lo_s = "(" if lo_open else "["
    hi_s = ")" if hi_open else "]"
    kind = "an even integer" if even else "an integer" if integer else "a number"
    msg = f"{path}.{name} must be {kind} in {lo_s}{lo:g}, {hi:g}{hi_s}, got {v!r}"
    try:
        x = float(Fraction(v)) if "/" in v else float(v)
    except (ValueError, ZeroDivisionError):
        raise _api_error(ERR_INVALID, msg) from None
    if not math.isfinite(x) or (integer or even) and x != int(x):
        raise _api_error(ERR_INVALID, msg)
    if x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
        raise _api_error(ERR_INVALID, msg)
    if even and int(x) % 2:
        raise _api_error(ERR_INVALID, msg)
    return x


def _templates(config: Optional[dict[str, Any]]) -> dict[str, Any]:
    if config is None:
        return DEFAULT_TEMPLATES
    t = config.get("media_templates")
    return t if isinstance(t, dict) else {}


def _template(templates: dict[str, Any], tid: str, tag: str, path: str) -> dict[str, Any]:
    tpl = templates.get(tid)
    if not isinstance(tpl, dict) or tpl.get("Tag") != tag or not isinstance(tpl.get(tag), dict):
        raise _api_error(ERR_NO_TEMPLATE, f"{path} {tid!r} is not an existing {tag} template")
    return tpl


def _output(op: dict[str, Any]) -> dict[str, str]:
    path = "Request.Operation.Output"
    out = _container(op.get("Output"), path, required=True)
    assert out is not None
    return {k: str(_leaf(out, k, path, required=True)) for k in ("Region", "Bucket", "Object")}


def _transcode(tc: dict[str, Any], path: str, plan: EnhancePlan) -> None:
    # A later Transcode (TranscodeTemplateId) replaces an earlier one (the VideoEnhance's) as a whole.
    defaults = EnhancePlan()
    for name in ("container", "video_codec", "width", "height", "fps", "bitrate_kbps", "crf", "gop", "profile",
                 "pixfmt", "audio", "start", "duration"):
        setattr(plan, name, getattr(defaults, name))
    cont = _container(tc.get("Container"), f"{path}.Container")
    if cont is not None:
        fmt = _leaf(cont, "Format", f"{path}.Container")
        if fmt:
            fmt = fmt.lower()
            if fmt in NOT_EMULATED_CONTAINERS:
                raise _api_error(ERR_INVALID, f"{path}.Container.Format {fmt!r} is a CI format this emulator "
                                              "does not produce (segmented output)")
            if fmt not in CONTAINERS:
                raise _api_error(ERR_INVALID, f"{path}.Container.Format must be one of "
                                              f"{', '.join(CONTAINERS)}, got {fmt!r}")
            plan.container = fmt
    vp = f"{path}.Video"
    video = _container(tc.get("Video"), vp)
    codec_default = "VP8" if plan.container == "webm" else "H.264"
    plan.video_codec = codec_default
    if video is not None:
        plan.video_codec = _enum(video, "Codec", vp, tuple(VIDEO_CODECS), default=codec_default,
                                 fold_case=True) or codec_default
        w = _num(video, "Width", vp, 128, 4096, even=True)
        h = _num(video, "Height", vp, 128, 4096, even=True)
        plan.width = int(w) if w is not None else None
        plan.height = int(h) if h is not None else None
        fps = _num(video, "Fps", vp, 0, 60, lo_open=True)
        if fps is not None:
            raw = str(video["Fps"]).strip()
            plan.fps = Fraction(raw) if "/" in raw else Fraction(raw).limit_denominator(1001)
        br = _num(video, "Bitrate", vp, 10, 50000, allow_auto=True)
        plan.bitrate_kbps = br
        plan.crf = _num(video, "Crf", vp, 0, 51, lo_open=True)
        gop = _num(video, "Gop", vp, 1, 100000, integer=True)
        plan.gop = int(gop) if gop is not None else None
        _num(video, "Bufsize", vp, 1000, 128000)
        _num(video, "Maxrate", vp, 10, 50000)
        _num(video, "Rotate", vp, 0, 360, hi_open=True)
        _bool(video, "Remove", vp)
        _bool(video, "LongShortMode", vp)
        profile = _leaf(video, "Profile", vp)
        if profile:
            if plan.video_codec != "H.264":
                raise _api_error(ERR_INVALID, f"{vp}.Profile is only supported with H.264")
            plan.profile = _enum(video, "Profile", vp, H264_PROFILES)
        preset = _leaf(video, "Preset", vp)
        if preset:
            allowed = {"H.264": H264_PRESETS, "VP8": VP8_PRESETS, "AV1": AV1_PRESETS}.get(plan.video_codec)
            if allowed is not None:
                _enum(video, "Preset", vp, allowed)
        pixfmt = _leaf(video, "Pixfmt", vp)
        if pixfmt and plan.video_codec in PIXFMTS:
            plan.pixfmt = _enum(video, "Pixfmt", vp, PIXFMTS[plan.video_codec])
    if plan.video_codec not in MUX_VIDEO[plan.container]:
        raise _api_error(ERR_INVALID, f"{vp}.Codec must be one of {', '.join(MUX_VIDEO[plan.container])} when "
                                      f"{path}.Container.Format is {plan.container}, got {plan.video_codec!r}")
    ap = f"{path}.Audio"
    audio = _container(tc.get("Audio"), ap)
    audio_default = "opus" if plan.container == "webm" else "aac"
    plan.audio = AudioPlan(codec=audio_default)
    if audio is not None:
        codec = (_enum(audio, "Codec", ap, tuple(AUDIO_CODECS), default=audio_default, fold_case=True)
                 or audio_default).lower()
        _enc, channels, rates = AUDIO_CODECS[codec]
        sr = _num(audio, "Samplerate", ap, 1, 10**6, integer=True)
        if sr is not None and int(sr) not in (rates or SAMPLE_RATES):
            raise _api_error(ERR_INVALID, f"{ap}.Samplerate must be one of "
                                          f"{', '.join(str(r) for r in rates or SAMPLE_RATES)} for {codec}")
        ch = _num(audio, "Channels", ap, 1, 8, integer=True)
        if ch is not None and int(ch) not in channels:
            raise _api_error(ERR_INVALID, f"{ap}.Channels must be one of {', '.join(map(str, channels))} "
                                          f"for {codec}")
        plan.audio = AudioPlan(codec=codec, sample_rate=int(sr) if sr else None,
                               channels=int(ch) if ch else None,
                               bitrate_kbps=_num(audio, "Bitrate", ap, 8, 1000),
                               remove=_bool(audio, "Remove", ap))
        if not plan.audio.remove and codec not in MUX_AUDIO[plan.container]:
            raise _api_error(ERR_INVALID, f"{ap}.Codec must be one of {', '.join(MUX_AUDIO[plan.container])} "
                                          f"when {path}.Container.Format is {plan.container}, got {codec!r}")
    tp = f"{path}.TimeInterval"
    ti = _container(tc.get("TimeInterval"), tp)
    if ti is not None:
        plan.start = _num(ti, "Start", tp, 0, 10**7) or 0.0
        plan.duration = _num(ti, "Duration", tp, 0, 10**7, lo_open=True)


def _level(c: dict[str, Any], name: str, path: str, hi: float, auto: float) -> float:
    v = _num(c, name, path, 0, hi)
    return auto if v is None else v


def _video_enhance(ve: dict[str, Any], path: str, plan: EnhancePlan) -> None:
    if not any(ve.get(k) not in (None, "") for k in ENHANCEMENTS):
        raise _api_error(ERR_MISSING, f"{path} sets none of {', '.join(ENHANCEMENTS)}")
    tc = _container(ve.get("Transcode"), f"{path}.Transcode")
    if tc is not None:
        _transcode(tc, f"{path}.Transcode", plan)
    sp = f"{path}.SuperResolution"
    sr = _container(ve.get("SuperResolution"), sp)
    if sr is not None:
        plan.super_resolution = {
            "resolution": _enum(sr, "Resolution", sp, tuple(SR_RESOLUTIONS), required=True),
            "scale_up": _bool(sr, "EnableScaleUp", sp),
            "version": _enum(sr, "Version", sp, SR_VERSIONS, default="Base"),
        }
    cp = f"{path}.ColorEnhance"
    ce = _container(ve.get("ColorEnhance"), cp)
    if ce is not None:
        values = {k.lower(): _level(ce, k, cp, 100, 50) for k in ("Contrast", "Correction", "Saturation")}
        if _bool(ce, "Enable", cp, default=True):
            plan.color = values
    mp = f"{path}.MsSharpen"
    ms = _container(ve.get("MsSharpen"), mp)
    if ms is not None:
        level = _level(ms, "SharpenLevel", mp, 10, 5)
        if _bool(ms, "Enable", mp, default=True):
            plan.sharpen = level
    hp = f"{path}.SDRtoHDR"
    hdr = _container(ve.get("SDRtoHDR"), hp)
    if hdr is not None:
        plan.hdr = _enum(hdr, "HdrMode", hp, HDR_MODES, required=True)
    fp = f"{path}.FrameEnhance"
    fe = _container(ve.get("FrameEnhance"), fp)
    if fe is not None:
        plan.frame_doubling = _bool(fe, "FrameDoubling", fp)


def _color(value: str, path: str) -> tuple[int, int, int]:
    # 0xRRGGBB. The page's own sample sends the placeholder "0xRRGGBB", so six non-hex characters after
    # "0x" are accepted too and rendered white.
    if not re.fullmatch(r"0[xX][0-9A-Za-z]{6}", value):
        raise _api_error(ERR_INVALID, f"{path} must be 0xRRGGBB, got {value!r}")
    try:
        n = int(value[2:], 16)
    except ValueError:
        return (255, 255, 255)
    return ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def _watermark(wm: Any, path: str) -> WatermarkPlan:
    c = _container(wm, path, required=True)
    assert c is not None
    wtype = _enum(c, "Type", path, WM_TYPES, required=True)
    pos = _enum(c, "Pos", path, WM_POSITIONS, required=True)
    loc = _enum(c, "LocMode", path, WM_LOC_MODES, required=True)
    plan = WatermarkPlan(type=str(wtype), pos=str(pos), loc_mode=str(loc), dx=0.0, dy=0.0)
    background = False
    if wtype == "Image":
        ip = f"{path}.Image"
        img = _container(c.get("Image"), ip, required=True)
        assert img is not None
        background = _bool(img, "Background", ip)
        mode = _enum(img, "Mode", ip, WM_IMAGE_MODES, required=True)
        size: dict[str, Optional[float]] = {}
        for k in ("Width", "Height"):
            if mode == "Original":
                if _leaf(img, k, ip):
                    raise _api_error(ERR_INVALID, f"{ip}.{k} cannot be set when {ip}.Mode is Original")
                size[k] = None
            elif mode == "Proportion":
                lo, hi = (100, 300) if background else (1, 100)
                size[k] = _num(img, k, ip, lo, hi)
            else:
                size[k] = _num(img, k, ip, 8, 4096)
        plan.image = {"url": _leaf(img, "Url", ip, required=True), "mode": mode, "width": size["Width"],
                      "height": size["Height"], "background": background,
                      "opacity": _num(img, "Transparency", ip, 1, 100, required=True)}
    else:
        tp = f"{path}.Text"
        txt = _container(c.get("Text"), tp, required=True)
        assert txt is not None
        text = str(_leaf(txt, "Text", tp, required=True))
        if len(text) > 64:
            raise _api_error(ERR_INVALID, f"{tp}.Text must be at most 64 characters")
        plan.text = {"text": text, "font_size": _num(txt, "FontSize", tp, 5, 100, required=True),
                     "font_type": _leaf(txt, "FontType", tp, required=True),
                     "color": _color(str(_leaf(txt, "FontColor", tp, required=True)), f"{tp}.FontColor"),
                     "opacity": _num(txt, "Transparency", tp, 1, 100, required=True)}
    if background:
        lo, hi = (-300, 0) if loc == "Relativity" else (-4096, 0)
    else:
        lo, hi = (0, 100) if loc == "Relativity" else (0, 4096)
    plan.dx = _num(c, "Dx", path, lo, hi, required=True) or 0.0
    plan.dy = _num(c, "Dy", path, lo, hi, required=True) or 0.0
    plan.start = _num(c, "StartTime", path, 0, 10**7)
    plan.end = _num(c, "EndTime", path, 0, 10**7)
    if plan.start is not None and plan.end is not None and plan.end <= plan.start:
        raise _api_error(ERR_INVALID, f"{path}.EndTime must be later than {path}.StartTime")
    return plan


def _digital_watermark(value: Any, path: str, required: bool) -> Optional[DigitalWatermarkPlan]:
    c = _container(value, path, required=required)
    if c is None:
        return None
    dtype = _enum(c, "Type", path, DW_TYPES, required=True)
    message = str(_leaf(c, "Message", path, required=True))
    if len(message) > 64 or not DW_MESSAGE_RE.match(message):
        raise _api_error(ERR_INVALID, f"{path}.Message must be 1-64 characters of Chinese, letters, digits, "
                                      f"_, - and *, got {message!r}")
    version = _enum(c, "Version", path, DW_VERSIONS, required=True)
    return DigitalWatermarkPlan(type=str(dtype), message=message, version=str(version),
                                ignore_error=_bool(c, "IgnoreError", path))


def _operation(doc: dict[str, Any]) -> dict[str, Any]:
    op = _container(doc.get("Operation"), "Request.Operation", required=True)
    assert op is not None
    return op


def resolve_video_enhance(doc: dict[str, Any], config: Optional[dict[str, Any]] = None) -> EnhancePlan:
    """The processing plan for a VideoEnhance request; raises ApiError for what the pages forbid."""
    templates = _templates(config)
    op = _operation(doc)
    _output(op)
    plan = EnhancePlan()
    tid = _leaf(op, "TemplateId", "Request.Operation")
    if tid:
        tpl = _template(templates, tid, TAG_VIDEO_ENHANCE, "Request.Operation.TemplateId")
        plan.template_id, plan.template_name = tid, str(tpl.get("Name") or "")
        _video_enhance(tpl[TAG_VIDEO_ENHANCE], f"media_templates[{tid}].VideoEnhance", plan)
    else:
        ve = _container(op.get("VideoEnhance"), "Request.Operation.VideoEnhance")
        if ve is None:
            raise _api_error(ERR_MISSING, "image quality enhancement parameters must be set through "
                                          "Request.Operation.TemplateId or Request.Operation.VideoEnhance")
        _video_enhance(ve, "Request.Operation.VideoEnhance", plan)
    ttid = _leaf(op, "TranscodeTemplateId", "Request.Operation")
    if ttid:
        ttpl = _template(templates, ttid, "Transcode", "Request.Operation.TranscodeTemplateId")
        plan.transcode_template_name = str(ttpl.get("Name") or "")
        _transcode(ttpl["Transcode"], f"media_templates[{ttid}].Transcode", plan)
    wm_ids = _items(op.get("WatermarkTemplateId"))
    inline = _items(op.get("Watermark"))
    for name, items in (("WatermarkTemplateId", wm_ids), ("Watermark", inline)):
        if len(items) > MAX_WATERMARKS:
            raise _api_error(ERR_INVALID, f"Request.Operation.{name} may be given at most {MAX_WATERMARKS} "
                                          f"times, got {len(items)}")
    if wm_ids:
        for wid in wm_ids:
            if not isinstance(wid, str) or not wid.strip():
                raise _api_error(ERR_INVALID, "Request.Operation.WatermarkTemplateId must be a template id")
            wtpl = _template(templates, wid.strip(), "Watermark", "Request.Operation.WatermarkTemplateId")
            plan.watermarks.append(_watermark(wtpl["Watermark"], f"media_templates[{wid.strip()}].Watermark"))
    else:
        for i, wm in enumerate(inline):
            suffix = f"[{i}]" if len(inline) > 1 else ""
            plan.watermarks.append(_watermark(wm, f"Request.Operation.Watermark{suffix}"))
    plan.digital_watermark = _digital_watermark(op.get("DigitalWatermark"), "Request.Operation.DigitalWatermark",
                                                required=False)
    return plan


def resolve_digital_watermark(doc: dict[str, Any]) -> DigitalWatermarkPlan:
    op = _operation(doc)
    _output(op)
    dw = _digital_watermark(op.get("DigitalWatermark"), "Request.Operation.DigitalWatermark", required=True)
    assert dw is not None
    return dw


def validate_video_enhance(doc: dict[str, Any], config: Optional[dict[str, Any]] = None) -> None:
    resolve_video_enhance(doc, config)


def validate_digital_watermark(doc: dict[str, Any], config: Optional[dict[str, Any]] = None) -> None:
    resolve_digital_watermark(doc)


# ================================================================================ media probing
def _fmt(x: Optional[float]) -> str:
    return f"{x:.6f}" if x is not None else "0.000000"


def _ratio(num: int, den: int) -> str:
    if num <= 0 or den <= 0:
        return "0:1"
    g = math.gcd(num, den)
    return f"{num // g}:{den // g}"


def _tag_hex(tag: str) -> str:
    if not tag or len(tag) != 4 or not tag.strip("\0"):
        return "0x0000"
    return "0x" + "".join(f"{ord(ch) & 255:02x}" for ch in reversed(tag))


def _tag_string(tag: str) -> str:
    """As ffprobe prints codec_tag_string: printable characters as they are, others as [n]."""
    tag = (tag or "").ljust(4, "\0")[:4]
    return "".join(ch if 32 < ord(ch) < 127 else f"[{ord(ch)}]" for ch in tag)


PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 8: "linear", 13: "iec61966-2-1",
             14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67"}
RANGES = {1: "tv", 2: "pc"}


def _safe(obj: Any, attr: str, default: Any = None) -> Any:
    try:
        v = getattr(obj, attr)
    except (AttributeError, RuntimeError, ValueError):
        return default
    return default if v is None else v


def probe_media_info(path: str) -> dict[str, Any]:
    """CI's `MediaInfo` for a local media file, measured with PyAV (bitrates in kbps, as CI reports)."""
    import av

    size = os.path.getsize(path)
    with av.open(path) as c:
        streams = list(c.streams)
        sizes: Counter[int] = Counter()
        last: dict[int, float] = {}
        first: dict[int, float] = {}
        frames: Counter[int] = Counter()
        for packet in c.demux():
            if packet.size == 0 or packet.stream is None:
                continue
            idx = packet.stream.index
            sizes[idx] += packet.size
            frames[idx] += 1
            if packet.pts is not None and packet.time_base is not None:
                t0 = float(packet.pts * packet.time_base)
                t1 = t0 + float((packet.duration or 0) * packet.time_base)
                first[idx] = min(first.get(idx, t0), t0)
                last[idx] = max(last.get(idx, t1), t1)
        duration = c.duration / 1_000_000 if c.duration else max(last.values(), default=0.0)
        fmt = {"Bitrate": _fmt(size * 8 / 1000 / duration if duration else 0.0), "Duration": _fmt(duration),
               "FormatLongName": c.format.long_name, "FormatName": c.format.name,
               "NumProgram": "0", "NumStream": str(len(streams)), "Size": str(size),
               "StartTime": _fmt((c.start_time or 0) / 1_000_000)}
        videos, audios = [], []
        for s in streams:
            cc = s.codec_context
            tb = s.time_base or Fraction(1, 1)
            s_dur = float(s.duration * tb) if s.duration else (last.get(s.index, 0.0) - first.get(s.index, 0.0))
            s_start = float(s.start_time * tb) if s.start_time is not None else first.get(s.index, 0.0)
            bitrate = sizes[s.index] * 8 / 1000 / s_dur if s_dur else 0.0
            tag = str(_safe(cc, "codec_tag", "") or "")
            codec = _safe(cc, "codec")
            common = {"Bitrate": _fmt(bitrate), "CodecLongName": codec.long_name if codec else "unknown",
                      "CodecName": codec.canonical_name if codec else "unknown",
                      "CodecTag": _tag_hex(tag), "CodecTagString": _tag_string(tag),
                      "CodecTimeBase": f"{tb.numerator}/{tb.denominator}", "Duration": _fmt(s_dur),
                      "Index": str(s.index), "Language": s.metadata.get("language", "und"),
                      "StartTime": _fmt(s_start), "Timebase": f"{tb.numerator}/{tb.denominator}"}
            if s.type == "video":
                w, h = int(cc.width), int(cc.height)
                sar = _safe(s, "sample_aspect_ratio") or _safe(cc, "sample_aspect_ratio") or Fraction(1, 1)
                avg = s.average_rate or s.guessed_rate or Fraction(0, 1)
                fps = s.guessed_rate or s.base_rate or avg
                videos.append({**common,
                               "AvgFps": _fmt(float(avg)), "Fps": _fmt(float(fps)),
                               "ColorPrimaries": PRIMARIES.get(int(_safe(cc, "color_primaries", 2)), "unknown"),
                               "ColorRange": RANGES.get(int(_safe(cc, "color_range", 0)), "unknown"),
                               "ColorTransfer": TRANSFERS.get(int(_safe(cc, "color_trc", 2)), "unknown"),
                               "Dar": _ratio(w * sar.numerator, h * sar.denominator),
                               "HasBFrame": "1" if _safe(cc, "has_b_frames", 0) else "0",
                               "Height": str(h), "Width": str(w),
                               "Level": str(_safe(cc, "level", 0)),
                               "NumFrames": str(s.frames or frames[s.index]),
                               "PixFormat": str(_safe(cc, "pix_fmt", "")),
                               "Profile": str(_safe(cc, "profile", "") or ""),
                               "Rotation": str(s.metadata.get("rotate", "0")),
                               "Sar": _ratio(sar.numerator, sar.denominator)})
            elif s.type == "audio":
                layout = _safe(cc, "layout")
                audios.append({**common, "Channel": str(_safe(cc, "channels", 0)),
                               "ChannelLayout": layout.name if layout is not None else "",
                               "SampleFmt": cc.format.name if cc.format is not None else "",
                               "SampleRate": str(_safe(cc, "sample_rate", 0))})
    stream: dict[str, Any] = {}
    if videos:
        stream["Video"] = videos[0] if len(videos) == 1 else videos
    if audios:
        stream["Audio"] = audios[0] if len(audios) == 1 else audios
    stream["Subtitle"] = ""
    return {"Format": fmt, "Stream": stream}


@dataclass
class SourceInfo:
    width: int
    height: int
    fps: Fraction
    duration: float
    has_audio: bool
    format_name: str


def inspect_source(path: str) -> SourceInfo:
    """Open the job's input; ApiError with a SourceFileError code when it is not a usable video."""
    import av

    try:
        c = av.open(path)
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise _api_error(ERR_MALFORMED, f"the input cannot be decoded as media: {exc}") from None
    with c:
        if c.format.name in NON_VIDEO_DEMUXERS or c.format.name.endswith("_pipe"):
            raise _api_error(ERR_UNSUPPORTED, f"the input is not a video but {c.format.long_name} "
                                              f"({c.format.name})")
        if not c.streams.video:
            raise _api_error(ERR_NO_VIDEO, "the input has no video stream")
        v = c.streams.video[0]
        if not v.codec_context.width or not v.codec_context.height:
            raise _api_error(ERR_MALFORMED, "the input's video stream has no resolution")
        fps = v.average_rate or v.guessed_rate or v.base_rate or Fraction(25)
        duration = 0.0
        if c.duration:
            duration = c.duration / 1_000_000
        elif v.duration and v.time_base:
            duration = float(v.duration * v.time_base)
        return SourceInfo(int(v.codec_context.width), int(v.codec_context.height), Fraction(fps), duration,
                          bool(c.streams.audio), c.format.name)


# ================================================================================ digital watermark
def _dw_payload_bits(message: str) -> list[int]:
    data = message.encode("utf-8")
    body = DW_MAGIC + len(data).to_bytes(2, "big") + data
    body += zlib.crc32(body).to_bytes(4, "big")
    return [(byte >> (7 - i)) & 1 for byte in body for i in range(8)]


def _dw_capacity(width: int, height: int) -> tuple[int, int]:
    return height // DW_BLOCK, width // (2 * DW_BLOCK)


def _dw_chunks(message: str, width: int, height: int) -> Optional[list[list[int]]]:
    rows, cols = _dw_capacity(width, height)
    per_frame = rows * cols - 16
    if per_frame < 8:
        return None
    bits = _dw_payload_bits(message)
    count = math.ceil(len(bits) / per_frame)
    if count > 255:
        return None
    chunks = []
    for k in range(count):
        header = [(k >> (7 - i)) & 1 for i in range(8)] + [(count >> (7 - i)) & 1 for i in range(8)]
        part = bits[k * per_frame:(k + 1) * per_frame]
        chunks.append(header + part + [0] * (per_frame - len(part)))
    return chunks


def _pair_means(y: Any, rows: int, cols: int) -> tuple[Any, Any]:
    import numpy as np

    b = DW_BLOCK
    region = y[:rows * b, :cols * 2 * b].astype(np.float64)
    blocks = region.reshape(rows, b, cols * 2, b).mean(axis=(1, 3))
    return blocks[:, 0::2], blocks[:, 1::2]


def embed_frame_bits(y: Any, bits: list[int], scale: int = 1) -> Any:
    """Write `bits` into luma plane `y` (2-D uint8/uint16 array, edited in place and returned)."""
    import numpy as np

    rows, cols = _dw_capacity(y.shape[1], y.shape[0])
    b = DW_BLOCK
    want = np.array(bits[:rows * cols], dtype=np.float64).reshape(rows, cols) * 2 - 1  # ±1
    top = 255 * scale
    target = 2 * DW_MARGIN * scale
    work = y[:rows * b, :cols * 2 * b].astype(np.float64)
    for _ in range(12):  # clipping can stop one block of a pair; the other then moves on its own
        left, right = _pair_means(work, rows, cols)
        gap = want * (left - right)
        need = np.where(gap < target, (target - gap) / 2 + 0.5 * scale, 0.0)
        if not need.any():
            break
        shift = np.zeros((rows, cols * 2))
        shift[:, 0::2] = want * need
        shift[:, 1::2] = -want * need
        work = np.clip(work + np.kron(shift, np.ones((b, b))), 0, top)
        work = np.round(work)
    y[:rows * b, :cols * 2 * b] = work.astype(y.dtype)
    return y


def read_frame_bits(y: Any) -> list[int]:
    rows, cols = _dw_capacity(y.shape[1], y.shape[0])
    left, right = _pair_means(y, rows, cols)
    return [int(v) for v in (left > right).reshape(-1)]


def _bits_to_int(bits: list[int]) -> int:
    n = 0
    for bit in bits:
        n = (n << 1) | bit
    return n


def _decode_payload(bits: list[int]) -> Optional[str]:
    data = bytes(_bits_to_int(bits[i:i + 8]) for i in range(0, len(bits) - len(bits) % 8, 8))
    if len(data) < 8 or data[:2] != DW_MAGIC:
        return None
    n = int.from_bytes(data[2:4], "big")
    body, crc = data[:4 + n], data[4 + n:8 + n]
    if len(crc) != 4 or zlib.crc32(body).to_bytes(4, "big") != crc:
        return None
    try:
        return body[4:].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _metadata_message(meta: dict[str, str]) -> Optional[str]:
    if meta.get(DW_TAG):
        return meta[DW_TAG]
    comment = meta.get("comment", "")
    if comment.startswith(DW_COMMENT_PREFIX):
        try:
            return base64.b64decode(comment[len(DW_COMMENT_PREFIX):]).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return None


def extract_digital_watermark_details(path: str, max_frames: int = 2000) -> dict[str, Optional[str]]:
    """Both carriers separately: {"pixels": message or None, "metadata": message or None}."""
    import av

    votes: dict[int, dict[int, list[list[int]]]] = {}
    with av.open(path) as c:
        meta = dict(c.metadata)
        for s in c.streams:
            meta.update({k: v for k, v in s.metadata.items() if k not in meta})
        from_meta = _metadata_message(meta)
        if not c.streams.video:
            return {"pixels": None, "metadata": from_meta}
        for i, frame in enumerate(c.decode(video=0)):
            if i >= max_frames:
                break
            # The raw 8-bit luma plane: a conversion to gray would expand the video range and clip.
            y = frame.reformat(format="yuv420p").to_ndarray()[:frame.height]
            rows, cols = _dw_capacity(y.shape[1], y.shape[0])
            if rows * cols - 16 < 8:
                break
            bits = read_frame_bits(y)
            k, count = _bits_to_int(bits[:8]), _bits_to_int(bits[8:16])
            if count == 0 or k >= count:
                continue
            votes.setdefault(count, {}).setdefault(k, []).append(bits[16:])
    from_pixels = None
    for count in sorted(votes, key=lambda n: -sum(len(v) for v in votes[n].values())):
        chunks = votes[count]
        if len(chunks) != count:
            continue
        payload: list[int] = []
        for k in range(count):
            frames = chunks[k]
            payload += [1 if sum(col) * 2 > len(frames) else 0 for col in zip(*frames)]
        from_pixels = _decode_payload(payload)
        if from_pixels is not None:
            break
    return {"pixels": from_pixels, "metadata": from_meta}


def extract_digital_watermark(path: str) -> Optional[str]:
    """The message this emulator embedded in a media file: the per-frame marker, else the metadata."""
    d = extract_digital_watermark_details(path)
    return d["pixels"] or d["metadata"]


# ================================================================================ watermark images
def _font(font_type: Optional[str], size: int) -> Any:
    from PIL import ImageFont

    if font_type:
        with contextlib.suppress(OSError, ValueError):
            return ImageFont.truetype(font_type, size)
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def render_text_watermark(text: str, font_size: int, font_type: Optional[str], color: tuple[int, int, int],
                          opacity: float) -> Any:
    """The text as an RGBA Pillow image, alpha = opacity percent."""
    from PIL import Image, ImageDraw

    font = _font(font_type, font_size)
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    pad = max(1, font_size // 10)
    img = Image.new("RGBA", (max(2, right - left + 2 * pad), max(2, bottom - top + 2 * pad)), (0, 0, 0, 0))
    alpha = int(round(255 * opacity / 100))
    ImageDraw.Draw(img).text((pad - left, pad - top), text, font=font, fill=(*color, alpha))
    return img


def _image_watermark(data: bytes, spec: dict[str, Any], video_w: int, video_h: int) -> Any:
    import io

    from PIL import Image

    img = Image.open(io.BytesIO(data)).convert("RGBA")
    w, h = img.size
    mode, sw, sh = spec["mode"], spec.get("width"), spec.get("height")
    if mode == "Proportion":
        tw = video_w * sw / 100 if sw else None
        th = video_h * sh / 100 if sh else None
    elif mode == "Fixed":
        tw, th = sw, sh
    else:
        tw = th = None
    if tw and not th:
        th = h * tw / w
    elif th and not tw:
        tw = w * th / h
    if tw and th:
        img = img.resize((max(1, int(round(tw))), max(1, int(round(th)))), Image.LANCZOS)
    if spec["opacity"] < 100:
        a = img.getchannel("A").point(lambda v: int(round(v * spec["opacity"] / 100)))
        img.putalpha(a)
    return img


def watermark_position(plan: WatermarkPlan, video_w: int, video_h: int, wm_w: int, wm_h: int) -> tuple[int, int]:
    """Top-left corner of a watermark: offsets are measured inward from the `Pos` reference."""
    dx = video_w * plan.dx / 100 if plan.loc_mode == "Relativity" else plan.dx
    dy = video_h * plan.dy / 100 if plan.loc_mode == "Relativity" else plan.dy
    pos = plan.pos
    if pos in ("TopLeft", "Left", "BottomLeft"):
        x = dx
    elif pos in ("TopRight", "Right", "BottomRight"):
        x = video_w - wm_w - dx
    else:
        x = (video_w - wm_w) / 2
    if pos in ("TopLeft", "Top", "TopRight"):
        y = dy
    elif pos in ("BottomLeft", "Bottom", "BottomRight"):
        y = video_h - wm_h - dy
    else:
        y = (video_h - wm_h) / 2
    return int(round(x)), int(round(y))


def _object_ref(url: str) -> tuple[Optional[str], str]:
    """(bucket or None, key) from a COS URL (virtual-hosted or path-style) or a bare key."""
    parts = urlsplit(url)
    if not parts.scheme:
        return None, unquote(url.lstrip("/"))
    host = parts.hostname or ""
    path = unquote(parts.path.lstrip("/"))
    if ".cos." in host or ".ci." in host:
        return host.split(".")[0], path
    bucket, _, key = path.partition("/")
    return bucket, key


# ================================================================================ rendering
@dataclass
class Overlay:
    image: Any  # RGBA Pillow image
    x: int
    y: int
    start: Optional[float]
    end: Optional[float]


def _encoder(plan: EnhancePlan) -> str:
    import av

    for name in VIDEO_CODECS[plan.video_codec]:
        try:
            av.Codec(name, "w")
        except av.FFmpegError:
            continue
        return name
    raise _api_error(ERR_INVALID, f"no {plan.video_codec} encoder is available in this FFmpeg build")


def target_size(plan: EnhancePlan, src_w: int, src_h: int) -> tuple[int, int]:
    def even(v: float) -> int:
        return max(2, int(round(v / 2)) * 2)

    if plan.keep_source_size:
        return even(src_w), even(src_h)
    if plan.width and plan.height:
        return plan.width, plan.height
    if plan.width:
        return plan.width, even(plan.width * src_h / src_w)
    if plan.height:
        return even(plan.height * src_w / src_h), plan.height
    if plan.super_resolution:
        box_w, box_h = SR_RESOLUTIONS[plan.super_resolution["resolution"]]
        long_box, short_box = max(box_w, box_h), min(box_w, box_h)
        factor = min(2.0, long_box / max(src_w, src_h), short_box / min(src_w, src_h))
        factor = max(factor, 1.0)
        return even(src_w * factor), even(src_h * factor)
    return even(src_w), even(src_h)


def _encoder_options(encoder: str, plan: EnhancePlan, preset: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    if encoder == "libx264":
        opts["preset"] = preset
        if plan.profile and plan.profile != "auto":
            opts["profile"] = plan.profile
    elif encoder == "libx265":
        opts["preset"] = "ultrafast"
        opts["x265-params"] = "log-level=error"
    elif encoder in ("libvpx", "libvpx-vp9"):
        opts.update({"deadline": "realtime", "cpu-used": "8"})
        if encoder == "libvpx-vp9":
            opts["row-mt"] = "1"
    elif encoder == "libsvtav1":
        opts["preset"] = "11"
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 logs its banner to stderr unless told otherwise
    if plan.bitrate_kbps is None:
        crf = plan.crf if plan.crf is not None else 23
        if encoder in ("libvpx", "libvpx-vp9"):
            opts["crf"] = str(int(round(min(63, crf * 63 / 51))))
            opts["b"] = "0"
        elif encoder == "libsvtav1":
            opts["crf"] = str(int(round(min(63, crf * 63 / 51))))
        else:
            opts["crf"] = f"{crf:g}"
    return opts


def _pix_fmt(encoder: str, plan: EnhancePlan) -> str:
    import av

    formats = [f.name for f in (av.Codec(encoder, "w").video_formats or [])]
    if plan.hdr and "yuv420p10le" in formats:
        return "yuv420p10le"
    if plan.pixfmt and plan.pixfmt != "auto" and plan.pixfmt in formats:
        return plan.pixfmt
    return "yuv420p"


def _build_graph(vin: Any, plan: EnhancePlan, out_w: int, out_h: int, fps_out: Fraction, pix_fmt: str,
                 overlays: list[Overlay]) -> tuple[Any, Any, Any, list[Any]]:
    import av.filter

    g = av.filter.Graph()
    src = g.add_buffer(template=vin)
    chain = [src]

    def add(name: str, args: str) -> None:
        ctx = g.add(name, args)
        chain[-1].link_to(ctx)
        chain.append(ctx)

    src_w, src_h = int(vin.codec_context.width), int(vin.codec_context.height)
    if (out_w, out_h) != (src_w, src_h):
        add("scale", f"w={out_w}:h={out_h}:flags={'lanczos' if plan.super_resolution else 'bicubic'}")
    if plan.super_resolution and plan.super_resolution["version"] == "Enhance":
        add("unsharp", "luma_msize_x=3:luma_msize_y=3:luma_amount=0.4")
    if plan.color:
        k = 1 + plan.color["contrast"] / 200
        gamma = 1 / (1 + plan.color["correction"] / 200)
        if k != 1 or gamma != 1:
            add("lutyuv", f"y='clip((gammaval({gamma:.5f})-128)*{k:.5f}+128,0,255)'")
        sat = 1 + plan.color["saturation"] / 100
        if sat != 1:
            add("hue", f"s={sat:.5f}")
    if plan.sharpen:
        add("unsharp", f"luma_msize_x=3:luma_msize_y=3:luma_amount={0.12 * plan.sharpen:.4f}")
        add("unsharp", f"luma_msize_x=7:luma_msize_y=7:luma_amount={0.08 * plan.sharpen:.4f}")
    wm_sources = []
    for ov in overlays:
        wsrc = g.add_buffer(width=ov.image.width, height=ov.image.height, format="rgba", time_base=vin.time_base)
        args = f"x={ov.x}:y={ov.y}:format=auto:eof_action=repeat"
        if ov.start is not None or ov.end is not None:
            args += f":enable='between(t,{ov.start or 0:g},{ov.end if ov.end is not None else 1e9:g})'"
        node = g.add("overlay", args)
        chain[-1].link_to(node, 0, 0)
        wsrc.link_to(node, 0, 1)
        chain.append(node)
        wm_sources.append(wsrc)
    if plan.hdr:
        ten_bit = pix_fmt.endswith("10le")
        add("colorspace", f"all=bt2020:iall=bt709:format={'yuv420p10' if ten_bit else 'yuv420p'}")
    if plan.frame_doubling:
        add("framerate", f"fps={fps_out.numerator}/{fps_out.denominator}")
    else:
        add("fps", f"fps={fps_out.numerator}/{fps_out.denominator}")
    add("format", f"pix_fmts={pix_fmt}")
    sink = g.add("buffersink")
    chain[-1].link_to(sink)
    g.configure()
    return g, src, sink, wm_sources


def _audio_settings(plan: EnhancePlan, ain: Any) -> Optional[tuple[str, int, str, Optional[int]]]:
    """(encoder, sample rate, layout, bit rate) for the output audio, or None to drop it."""
    import av

    if ain is None or plan.audio.remove:
        return None
    a = plan.audio
    codec = a.codec
    encoder, channels_allowed, rates = AUDIO_CODECS[codec]
    cc = ain.codec_context
    rate = a.sample_rate or int(cc.sample_rate or 44100)
    enc_rates = av.Codec(encoder, "w").audio_rates
    allowed_rates = list(rates or enc_rates or SAMPLE_RATES)
    if rate not in allowed_rates:
        rate = min(allowed_rates, key=lambda r: abs(r - rate))
    channels = a.channels or int(_safe(cc, "channels", 2) or 2)
    if channels not in channels_allowed:
        channels = min(channels_allowed, key=lambda n: abs(n - channels))
    layout = CHANNEL_LAYOUTS.get(channels, "stereo")
    bitrate = int(a.bitrate_kbps * 1000) if a.bitrate_kbps else None
    if bitrate is None and codec in ("aac", "mp3", "opus", "vorbis"):
        bitrate = 128_000
    return encoder, rate, layout, bitrate


def _drain(sink: Any) -> list[Any]:
    import av

    frames = []
    while True:
        try:
            frames.append(sink.pull())
        except (av.BlockingIOError, av.EOFError):
            return frames


def render(src_path: str, dst_path: str, plan: EnhancePlan, *, overlays_for: Callable[[int, int], list[Overlay]],
           preset: str = "veryfast", progress: Optional[Callable[[float], None]] = None) -> None:
    """Decode `src_path`, apply the plan through one FFmpeg filter graph, encode to `dst_path`."""
    import av
    import numpy as np

    encoder = _encoder(plan)
    muxer, _ext = CONTAINERS[plan.container]
    with av.open(src_path) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        ain = inp.streams.audio[0] if inp.streams.audio else None
        src_w, src_h = int(vin.codec_context.width), int(vin.codec_context.height)
        out_w, out_h = target_size(plan, src_w, src_h)
        src_fps = Fraction(vin.average_rate or vin.guessed_rate or 25)
        fps_out = plan.fps or src_fps
        if plan.frame_doubling:
            fps_out = min(fps_out * 2, Fraction(60))
        fps_out = Fraction(fps_out).limit_denominator(1001)
        pix_fmt = _pix_fmt(encoder, plan)
        overlays = overlays_for(out_w, out_h)
        dw = plan.digital_watermark
        options = {"movflags": "use_metadata_tags"} if dw and muxer in ("mp4", "mov") else {}
        try:
            out = av.open(dst_path, "w", format=muxer, options=options)
        except av.FFmpegError as exc:
            raise _api_error(ERR_INTERNAL, f"cannot create the output: {exc}") from None
        finished = False
        try:
            if dw:
                out.metadata["comment"] = DW_COMMENT_PREFIX + base64.b64encode(dw.message.encode()).decode()
                out.metadata[DW_TAG] = dw.message
            try:
                vs = out.add_stream(encoder, rate=fps_out, options=_encoder_options(encoder, plan, preset))
            except (av.FFmpegError, ValueError) as exc:
                raise _api_error(ERR_INVALID, f"{plan.container} cannot carry {plan.video_codec}: {exc}") from None
            cc = vs.codec_context
            cc.width, cc.height, cc.pix_fmt = out_w, out_h, pix_fmt
            cc.time_base = 1 / fps_out
            if plan.bitrate_kbps is not None:
                cc.bit_rate = int(plan.bitrate_kbps * 1000)
            if plan.gop:
                cc.gop_size = plan.gop
            if plan.hdr:
                cc.color_primaries = 9
                cc.color_trc = 16 if plan.hdr == "HDR10" else 18
                cc.colorspace = 9
                cc.color_range = 1
            aus = None
            audio = _audio_settings(plan, ain)
            if audio is not None:
                aenc, arate, alayout, abitrate = audio
                try:
                    aopts = {"strict": "experimental"} if aenc == "vorbis" else {}
                    aus = out.add_stream(aenc, rate=arate, options=aopts)
                    aus.codec_context.layout = alayout
                    if abitrate:
                        aus.codec_context.bit_rate = abitrate
                except (av.FFmpegError, ValueError) as exc:
                    raise _api_error(ERR_INVALID, f"{plan.container} cannot carry {plan.audio.codec}: {exc}") from None

            graph, src, sink, wm_sources = _build_graph(vin, plan, out_w, out_h, fps_out, pix_fmt, overlays)
            for wsrc, ov in zip(wm_sources, overlays):
                wf = av.VideoFrame.from_ndarray(np.asarray(ov.image.convert("RGBA")), format="rgba")
                wf.pts = 0
                wf.time_base = vin.time_base
                wsrc.push(wf)
                wsrc.push(None)

            chunks = _dw_chunks(dw.message, out_w, out_h) if dw else None
            scale = 4 if pix_fmt.endswith("10le") else 1
            start, end = plan.start, (plan.start + plan.duration) if plan.duration else None
            total = float(inp.duration / 1_000_000) if inp.duration else 0.0
            state = {"n": 0, "last": 0.0}

            def mux(packets: Any) -> None:
                try:
                    out.mux(packets)
                except av.FFmpegError as exc:
                    raise _api_error(ERR_INVALID, f"{plan.container} cannot carry these streams: {exc}") from None

            def emit(frames: list[Any]) -> None:
                for f in frames:
                    if chunks:
                        arr = f.to_ndarray()
                        embed_frame_bits(arr[:out_h], chunks[state["n"] % len(chunks)], scale)
                        nf = av.VideoFrame.from_ndarray(arr, format=pix_fmt)
                        f = nf
                    f.pts = state["n"]
                    f.time_base = 1 / fps_out
                    state["n"] += 1
                    mux(vs.encode(f))

            v_offset = int(start / vin.time_base) if start else 0
            a_offset = int(start / ain.time_base) if (start and ain is not None) else 0
            streams = [vin] + ([ain] if aus is not None else [])
            try:
                for packet in inp.demux(*streams):
                    for frame in packet.decode():
                        t = frame.time
                        if t is not None and (t < start - 1e-6 or (end is not None and t >= end - 1e-6)):
                            continue
                        if packet.stream.type == "video":
                            if frame.pts is not None:
                                frame.pts -= v_offset
                            src.push(frame)
                            emit(_drain(sink))
                            if progress and total and t is not None and t - state["last"] >= total / 10:
                                state["last"] = t
                                progress(min(99.0, 100 * t / total))
                        else:
                            if frame.pts is not None:
                                frame.pts -= a_offset
                            mux(aus.encode(frame))  # type: ignore[union-attr]
            except (av.InvalidDataError, av.EOFError) as exc:
                raise _api_error(ERR_MALFORMED, f"the input stopped decoding: {exc}") from None
            src.push(None)
            emit(_drain(sink))
            mux(vs.encode(None))
            if aus is not None:
                mux(aus.encode(None))
            del graph
            finished = True
        finally:
            try:
                out.close()
            except av.FFmpegError as exc:
                # Closing a muxer that already failed may fail again; only a close after success is news.
                if finished:
                    raise _api_error(ERR_INTERNAL, f"cannot finish the output: {exc}") from None


# ================================================================================ processors
def _set_op(emu: Any, job: Any, key: str, value: Any, after: str = "") -> None:
    lock = getattr(emu, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        insert_after(job.detail["Operation"], key, value, after)


def _set_progress(emu: Any, job: Any, pct: float) -> None:
    lock = getattr(emu, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        insert_after(job.detail, "Progress", str(int(pct)), after="State")


def _dw_state(request_dw: dict[str, Any], state: str) -> dict[str, Any]:
    """Operation.DigitalWatermark as the page shows it: State, then the request's own elements."""
    return {"State": state, **{k: v for k, v in request_dw.items() if k != "State"}}


def on_create_video_enhance(emu: CiEmulator, job: Job) -> None:
    """What the create answer shows beyond the request: Progress 0, TemplateName, DigitalWatermark.State."""
    plan = resolve_video_enhance(job.request, emu.config)
    insert_after(job.detail, "Progress", "0", after="State")
    if plan.template_name is not None:
        insert_after(job.detail["Operation"], "TemplateName", plan.template_name, after="TemplateId")
    if plan.digital_watermark is not None:
        job.detail["Operation"]["DigitalWatermark"] = _dw_state(job.request["Operation"]["DigitalWatermark"],
                                                                "Running")


def _expand(obj: str, ext: str, job_id: str) -> str:
    return obj.replace("${ext}", ext).replace("${jobid}", job_id)


def _download_input(emu: Any, job: Any, workdir: str) -> str:
    key = job.detail["Input"]["Object"]
    s3 = emu.s3()
    try:
        s3.head_object(Bucket=job.bucket, Key=key)
    except Exception:  # noqa: BLE001 - any lookup failure means CI cannot read the input
        raise _api_error(ERR_INPUT_NOT_EXIST, f"the input object {key} does not exist or cannot be read") from None
    path = os.path.join(workdir, "input")  # no extension: FFmpeg probes the content, as CI does
    with open(path, "wb") as fh:
        body = s3.get_object(Bucket=job.bucket, Key=key)["Body"]
        shutil.copyfileobj(body, fh, 1 << 20)
    return path


def _upload_output(emu: Any, job: Any, local: str, ext: str) -> dict[str, Any]:
    out = job.request["Operation"]["Output"]
    bucket, region = str(out["Bucket"]).strip(), str(out["Region"]).strip()
    key = _expand(str(out["Object"]).strip(), ext, job.detail["JobId"])
    md5 = hashlib.md5()
    with open(local, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    try:
        with open(local, "rb") as fh:
            emu.s3().put_object(Bucket=bucket, Key=key, Body=fh, ContentType=_content_type(ext))
    except Exception as exc:  # noqa: BLE001 - reported as the job's failure
        raise _api_error(ERR_INTERNAL, f"cannot write the output {bucket}/{key}: {str(exc)[:200]}") from None
    return {"OutputFile": {"Bucket": bucket, "Md5Info": {"Md5": md5.hexdigest(), "ObjectName": key},
                           "ObjectName": key, "ObjectPrefix": "", "Region": region}}


def _content_type(ext: str) -> str:
    return {"mp4": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska", "flv": "video/x-flv",
            "ts": "video/mp2t", "webm": "video/webm"}.get(ext, "application/octet-stream")


def _overlay_factory(emu: Any, job: Any, plan: EnhancePlan) -> Callable[[int, int], list[Overlay]]:
    def build(out_w: int, out_h: int) -> list[Overlay]:
        overlays = []
        for wm in plan.watermarks:
            if wm.type == "Text":
                t = wm.text or {}
                img = render_text_watermark(t["text"], int(t["font_size"]), t.get("font_type"), t["color"],
                                            t["opacity"])
            else:
                spec = wm.image or {}
                bucket, key = _object_ref(spec["url"])
                try:
                    data = emu.s3().get_object(Bucket=bucket or job.bucket, Key=key)["Body"].read()
                    img = _image_watermark(data, spec, out_w, out_h)
                except Exception:  # noqa: BLE001 - unreadable or not an image
                    raise _api_error(ERR_INVALID_INPUT, f"the watermark image {spec['url']} cannot be read "
                                                        "as an image") from None
            x, y = watermark_position(wm, out_w, out_h, img.width, img.height)
            overlays.append(Overlay(img, x, y, wm.start, wm.end))
        return overlays

    return build


def _min_seconds(emu: Any) -> float:
    return float(emu.config.get("digital_watermark_min_seconds", 90))


def _too_short(info: SourceInfo, emu: Any) -> Optional[str]:
    limit = _min_seconds(emu)
    if info.duration > limit:
        return None
    return f"the source file duration must be greater than {limit:g}s for a digital watermark, " \
           f"got {info.duration:.3f}s"


def _finish(emu: Any, job: Any, local: str, ext: str) -> tuple[str, dict[str, Any]]:
    try:
        info = probe_media_info(local)
    except Exception as exc:  # noqa: BLE001 - an output PyAV cannot read back is our failure
        raise _api_error(ERR_INTERNAL, f"the output cannot be read back: {exc}") from None
    result = _upload_output(emu, job, local, ext)
    _set_op(emu, job, "MediaInfo", info)  # the server sets it again from the return value; this fixes the order
    _set_op(emu, job, "MediaResult", result)
    _set_progress(emu, job, 100)
    return "MediaInfo", info


def _guarded(run: Callable[[CiEmulator, Job], tuple[str, dict[str, Any]]]) -> Callable[..., Any]:
    """A failure nobody anticipated still fails the job (InternalError) instead of leaving it Running."""

    def processor(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
        from .server import ApiError

        try:
            return run(emu, job)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure, as CI reports its own
            raise _api_error(ERR_INTERNAL, f"media processing failed: {type(exc).__name__}: {exc}"[:500]) from exc

    processor.__name__ = run.__name__
    processor.__doc__ = run.__doc__
    return processor


def process_video_enhance(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    plan = resolve_video_enhance(job.request, emu.config)
    if plan.template_name is not None:
        _set_op(emu, job, "TemplateName", plan.template_name, after="TemplateId")
    if plan.transcode_template_name is not None:
        _set_op(emu, job, "TranscodeTemplateName", plan.transcode_template_name, after="TranscodeTemplateId")
    dw_req = job.request["Operation"].get("DigitalWatermark")
    if plan.digital_watermark is not None:
        _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Running"))
    _set_progress(emu, job, 0)
    workdir = tempfile.mkdtemp(prefix="ci-media-")
    try:
        src = _download_input(emu, job, workdir)
        info = inspect_source(src)
        if plan.digital_watermark is not None:
            why = _too_short(info, emu)
            if why is not None:
                if not plan.digital_watermark.ignore_error:
                    _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Failed"))
                    raise _api_error(ERR_UNSUPPORTED, why)
                _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Failed"))
                plan.digital_watermark = None
        ext = CONTAINERS[plan.container][1]
        dst = os.path.join(workdir, "output." + ext)
        render(src, dst, plan, overlays_for=_overlay_factory(emu, job, plan),
               preset=str(emu.config.get("media_x264_preset", "veryfast")),
               progress=lambda pct: _set_progress(emu, job, pct))
        if plan.digital_watermark is not None:
            _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Success"))
        return _finish(emu, job, dst, ext)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _container_of(format_name: str) -> str:
    names = set(format_name.split(","))
    for fmt, muxer in (("mp4", "mp4"), ("mkv", "matroska"), ("webm", "webm"), ("flv", "flv"), ("ts", "mpegts")):
        if muxer in names:
            return fmt
    return "mp4"


def process_digital_watermark(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    dw = resolve_digital_watermark(job.request)
    _set_progress(emu, job, 0)
    workdir = tempfile.mkdtemp(prefix="ci-media-")
    try:
        src = _download_input(emu, job, workdir)
        info = inspect_source(src)
        why = _too_short(info, emu)
        if why is not None:
            raise _api_error(ERR_UNSUPPORTED, why)
        container = _container_of(info.format_name)
        plan = EnhancePlan(container=container, video_codec="VP9" if container == "webm" else "H.264",
                           crf=18, keep_source_size=True, digital_watermark=dw,
                           audio=AudioPlan(codec="opus" if container == "webm" else "aac"))
        ext = CONTAINERS[container][1]
        dst = os.path.join(workdir, "output." + ext)
        render(src, dst, plan, overlays_for=lambda w, h: [],
               preset=str(emu.config.get("media_x264_preset", "veryfast")),
               progress=lambda pct: _set_progress(emu, job, pct))
        return _finish(emu, job, dst, ext)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def register(emu: CiEmulator) -> None:
    emu.config.setdefault("media_templates", copy.deepcopy(DEFAULT_TEMPLATES))
    emu.config.setdefault("digital_watermark_min_seconds", 90)
    emu.config.setdefault("media_x264_preset", "veryfast")

    def validate_ve(doc: dict[str, Any]) -> None:
        validate_video_enhance(doc, emu.config)

    def validate_dw(doc: dict[str, Any]) -> None:
        validate_digital_watermark(doc, emu.config)

    emu.processors[TAG_VIDEO_ENHANCE] = _guarded(process_video_enhance)
    emu.validators[TAG_VIDEO_ENHANCE] = validate_ve
    emu.on_create[TAG_VIDEO_ENHANCE] = on_create_video_enhance
    emu.processors[TAG_DIGITAL_WATERMARK] = _guarded(process_digital_watermark)
    emu.validators[TAG_DIGITAL_WATERMARK] = validate_dw
