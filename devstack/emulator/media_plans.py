"""VideoEnhance and DigitalWatermark requests → processing plans, refusing what the pages forbid.

`resolve_video_enhance` / `resolve_digital_watermark` read a parsed `<Request>` and return an `EnhancePlan`
(what `media_render.render` runs) or a `DigitalWatermarkPlan`, raising `ApiError` with `MissingContent` or
`InvalidArgument`. Values and templates come from `media_spec`.

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
- `SuperResolution` (`Resolution` sdtohd | hdto4k, `Version` Base | Enhance, `EnableScaleUp`, validated and
  not used), `ColorEnhance` (`Contrast`, `Correction`, `Saturation`, each 0-100, empty = "automatic", taken
  as 50), `MsSharpen` (`SharpenLevel` 0-10, empty = 5), `Enable=false` turning either off, `SDRtoHDR`
  (`HdrMode` HLG | HDR10) and `FrameEnhance.FrameDoubling`.
- Watermarks: up to 3 `WatermarkTemplateId` (which win) or up to 3 inline `Watermark`, text or image, with
  `Transparency` 1-100.
- `DigitalWatermark` (optional; `Type` Text, `Version` V1, `Message` 1-64 characters of Chinese, letters,
  digits, `_`, `-`, `*`, `IgnoreError`).

DigitalWatermark: `Output` and `DigitalWatermark` as above (`IgnoreError` is accepted and, as documented,
only matters in other job types).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Optional

from .errors import ApiError
from .media_spec import (
    AUDIO_CODECS,
    AV1_PRESETS,
    CONTAINERS,
    DEFAULT_TEMPLATES,
    DW_MESSAGE_RE,
    DW_TYPES,
    DW_VERSIONS,
    ENHANCEMENTS,
    ERR_INVALID,
    ERR_MISSING,
    ERR_NO_TEMPLATE,
    H264_PRESETS,
    H264_PROFILES,
    HDR_MODES,
    MAX_WATERMARKS,
    MUX_AUDIO,
    MUX_VIDEO,
    NOT_EMULATED_CONTAINERS,
    PIXFMTS,
    SAMPLE_RATES,
    SR_RESOLUTIONS,
    SR_VERSIONS,
    TAG_VIDEO_ENHANCE,
    VIDEO_CODECS,
    VP8_PRESETS,
    WM_IMAGE_MODES,
    WM_LOC_MODES,
    WM_POSITIONS,
    WM_TYPES,
)


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
            raise ApiError(ERR_MISSING, f"{path} is required")
        return None
    if isinstance(value, list):
        raise ApiError(ERR_INVALID, f"{path} may appear only once")
    if not isinstance(value, dict):
        raise ApiError(ERR_INVALID, f"{path} must be a container")
    return value


def _leaf(c: dict[str, Any], name: str, path: str, required: bool = False) -> Optional[str]:
    v = c.get(name)
    if isinstance(v, (dict, list)):
        raise ApiError(ERR_INVALID, f"{path}.{name} must be a single value")
    if v is None or (required and str(v).strip() == ""):
        if required:
            raise ApiError(ERR_MISSING, f"{path}.{name} is required")
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
        raise ApiError(ERR_INVALID, f"{path}.{name} must be true or false, got {v!r}")
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
    raise ApiError(ERR_INVALID, f"{path}.{name} must be one of {', '.join(allowed)}, got {v!r}")


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
        raise ApiError(ERR_INVALID, msg) from None
    if not math.isfinite(x) or (integer or even) and x != int(x):
        raise ApiError(ERR_INVALID, msg)
    if x < lo or x > hi or (lo_open and x == lo) or (hi_open and x == hi):
        raise ApiError(ERR_INVALID, msg)
    if even and int(x) % 2:
        raise ApiError(ERR_INVALID, msg)
    return x


def _templates(config: Optional[dict[str, Any]]) -> dict[str, Any]:
    if config is None:
        return DEFAULT_TEMPLATES
    t = config.get("media_templates")
    return t if isinstance(t, dict) else {}


def _template(templates: dict[str, Any], tid: str, tag: str, path: str) -> dict[str, Any]:
    tpl = templates.get(tid)
    if not isinstance(tpl, dict) or tpl.get("Tag") != tag or not isinstance(tpl.get(tag), dict):
        raise ApiError(ERR_NO_TEMPLATE, f"{path} {tid!r} is not an existing {tag} template")
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
                raise ApiError(ERR_INVALID, f"{path}.Container.Format {fmt!r} is a CI format this emulator "
                                              "does not produce (segmented output)")
            if fmt not in CONTAINERS:
                raise ApiError(ERR_INVALID, f"{path}.Container.Format must be one of "
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
                raise ApiError(ERR_INVALID, f"{vp}.Profile is only supported with H.264")
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
        raise ApiError(ERR_INVALID, f"{vp}.Codec must be one of {', '.join(MUX_VIDEO[plan.container])} when "
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
            raise ApiError(ERR_INVALID, f"{ap}.Samplerate must be one of "
                                          f"{', '.join(str(r) for r in rates or SAMPLE_RATES)} for {codec}")
        ch = _num(audio, "Channels", ap, 1, 8, integer=True)
        if ch is not None and int(ch) not in channels:
            raise ApiError(ERR_INVALID, f"{ap}.Channels must be one of {', '.join(map(str, channels))} "
                                          f"for {codec}")
        plan.audio = AudioPlan(codec=codec, sample_rate=int(sr) if sr else None,
                               channels=int(ch) if ch else None,
                               bitrate_kbps=_num(audio, "Bitrate", ap, 8, 1000),
                               remove=_bool(audio, "Remove", ap))
        if not plan.audio.remove and codec not in MUX_AUDIO[plan.container]:
            raise ApiError(ERR_INVALID, f"{ap}.Codec must be one of {', '.join(MUX_AUDIO[plan.container])} "
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
        raise ApiError(ERR_MISSING, f"{path} sets none of {', '.join(ENHANCEMENTS)}")
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
        raise ApiError(ERR_INVALID, f"{path} must be 0xRRGGBB, got {value!r}")
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
                    raise ApiError(ERR_INVALID, f"{ip}.{k} cannot be set when {ip}.Mode is Original")
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
            raise ApiError(ERR_INVALID, f"{tp}.Text must be at most 64 characters")
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
        raise ApiError(ERR_INVALID, f"{path}.EndTime must be later than {path}.StartTime")
    return plan


def _digital_watermark(value: Any, path: str, required: bool) -> Optional[DigitalWatermarkPlan]:
    c = _container(value, path, required=required)
    if c is None:
        return None
    dtype = _enum(c, "Type", path, DW_TYPES, required=True)
    message = str(_leaf(c, "Message", path, required=True))
    if len(message) > 64 or not DW_MESSAGE_RE.match(message):
        raise ApiError(ERR_INVALID, f"{path}.Message must be 1-64 characters of Chinese, letters, digits, "
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
            raise ApiError(ERR_MISSING, "image quality enhancement parameters must be set through "
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
            raise ApiError(ERR_INVALID, f"Request.Operation.{name} may be given at most {MAX_WATERMARKS} "
                                          f"times, got {len(items)}")
    if wm_ids:
        for wid in wm_ids:
            if not isinstance(wid, str) or not wid.strip():
                raise ApiError(ERR_INVALID, "Request.Operation.WatermarkTemplateId must be a template id")
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
