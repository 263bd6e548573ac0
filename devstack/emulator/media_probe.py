"""Media probing for the media emulator: CI's `MediaInfo` of an output, and whether an input is a video.

Both open the file with PyAV (FFmpeg's libraries inside the wheel; no ffmpeg binary). `probe_media_info`
lays its measurements out like CI's `MediaInfo`: `Format` + `Stream.Video`/`Stream.Audio`/`Stream.Subtitle`,
bitrates in kbps. `inspect_source` raises `ApiError` with a `SourceFileError.*` code for an input that is
not a usable video.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional

from .errors import ApiError
from .media_spec import ERR_MALFORMED, ERR_NO_VIDEO, ERR_UNSUPPORTED, NON_VIDEO_DEMUXERS


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


def safe_attr(obj: Any, attr: str, default: Any = None) -> Any:
    """A PyAV attribute, or `default` when it is unset or the codec cannot report it."""
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
            tag = str(safe_attr(cc, "codec_tag", "") or "")
            codec = safe_attr(cc, "codec")
            common = {"Bitrate": _fmt(bitrate), "CodecLongName": codec.long_name if codec else "unknown",
                      "CodecName": codec.canonical_name if codec else "unknown",
                      "CodecTag": _tag_hex(tag), "CodecTagString": _tag_string(tag),
                      "CodecTimeBase": f"{tb.numerator}/{tb.denominator}", "Duration": _fmt(s_dur),
                      "Index": str(s.index), "Language": s.metadata.get("language", "und"),
                      "StartTime": _fmt(s_start), "Timebase": f"{tb.numerator}/{tb.denominator}"}
            if s.type == "video":
                w, h = int(cc.width), int(cc.height)
                sar = safe_attr(s, "sample_aspect_ratio") or safe_attr(cc, "sample_aspect_ratio") or Fraction(1, 1)
                avg = s.average_rate or s.guessed_rate or Fraction(0, 1)
                fps = s.guessed_rate or s.base_rate or avg
                videos.append({**common,
                               "AvgFps": _fmt(float(avg)), "Fps": _fmt(float(fps)),
                               "ColorPrimaries": PRIMARIES.get(int(safe_attr(cc, "color_primaries", 2)), "unknown"),
                               "ColorRange": RANGES.get(int(safe_attr(cc, "color_range", 0)), "unknown"),
                               "ColorTransfer": TRANSFERS.get(int(safe_attr(cc, "color_trc", 2)), "unknown"),
                               "Dar": _ratio(w * sar.numerator, h * sar.denominator),
                               "HasBFrame": "1" if safe_attr(cc, "has_b_frames", 0) else "0",
                               "Height": str(h), "Width": str(w),
                               "Level": str(safe_attr(cc, "level", 0)),
                               "NumFrames": str(s.frames or frames[s.index]),
                               "PixFormat": str(safe_attr(cc, "pix_fmt", "")),
                               "Profile": str(safe_attr(cc, "profile", "") or ""),
                               "Rotation": str(s.metadata.get("rotate", "0")),
                               "Sar": _ratio(sar.numerator, sar.denominator)})
            elif s.type == "audio":
                layout = safe_attr(cc, "layout")
                audios.append({**common, "Channel": str(safe_attr(cc, "channels", 0)),
                               "ChannelLayout": layout.name if layout is not None else "",
                               "SampleFmt": cc.format.name if cc.format is not None else "",
                               "SampleRate": str(safe_attr(cc, "sample_rate", 0))})
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
        raise ApiError(ERR_MALFORMED, f"the input cannot be decoded as media: {exc}") from None
    with c:
        if c.format.name in NON_VIDEO_DEMUXERS or c.format.name.endswith("_pipe"):
            raise ApiError(ERR_UNSUPPORTED, f"the input is not a video but {c.format.long_name} "
                                              f"({c.format.name})")
        if not c.streams.video:
            raise ApiError(ERR_NO_VIDEO, "the input has no video stream")
        v = c.streams.video[0]
        if not v.codec_context.width or not v.codec_context.height:
            raise ApiError(ERR_MALFORMED, "the input's video stream has no resolution")
        fps = v.average_rate or v.guessed_rate or v.base_rate or Fraction(25)
        duration = 0.0
        if c.duration:
            duration = c.duration / 1_000_000
        elif v.duration and v.time_base:
            duration = float(v.duration * v.time_base)
        return SourceInfo(int(v.codec_context.width), int(v.codec_context.height), Fraction(fps), duration,
                          bool(c.streams.audio), c.format.name)
