"""The documented values of VideoEnhance, DigitalWatermark and their templates, for the media emulator.

The pages take the VideoEnhance, Watermark and DigitalWatermark parameters "as in" the create-template
APIs; the value sets and ranges here are those APIs' documented ones, narrowed where FFmpeg's muxers in
the PyAV wheel cannot carry a pairing (`MUX_VIDEO`, `MUX_AUDIO`).

Templates: `config["media_templates"]` maps a template id to
`{"Tag": "VideoEnhance" | "Watermark" | "Transcode", "Name": str, "<Tag>": {parameters}}` where the
parameters are what the create-template API takes (`VideoEnhance` → Transcode/SuperResolution/...,
`Watermark` → Type/Pos/.../Text|Image, `Transcode` → Container/Video/Audio/TimeInterval), strings or
numbers. `DEFAULT_TEMPLATES` hold the page's sample ids (`TranscodeTemplateId` comes from the page's
first sample).

Error codes. Requests are refused with `MissingContent` (an absent required element) or `InvalidArgument`
(a bad value, an unknown template id). Jobs fail with `InputObjectNotExist` (as ImageInspect here),
`SourceFileError.ContentMalformed` (not decodable), `SourceFileError.NoVideoMedia` (no video stream),
`SourceFileError.ContentUnsupported` (a still image, or a source not longer than 90 s for a digital
watermark), `InvalidInput` (a watermark image that cannot be read), `InvalidArgument` (a container that
cannot carry the codec) and `InternalError` (the output cannot be written). The two API pages name no job
error codes; the `SourceFileError.*`/`InvalidInput`/`InternalError` names are Tencent's media-processing
error codes.
"""

from __future__ import annotations

import re
from typing import Any, Optional

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
