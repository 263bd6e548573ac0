"""Rendering and transcoding for the media emulator: an `EnhancePlan` through one FFmpeg filter graph.

`render` decodes the input with PyAV, applies the plan and encodes the output; `render_text_watermark`
and `image_watermark` make the overlays. What each enhancement does here:
- `SuperResolution`: a real upscale with swscale's lanczos to the Transcode size, or, without one, to twice
  the source within 1920x1080 (`sdtohd`) or 3840x2160 (`hdto4k`); `Version=Enhance` adds a light 3x3
  `unsharp` after it. (Any other resize uses bicubic.)
- `ColorEnhance`: `Contrast` c and `Correction` r drive one `lutyuv` on luma,
  y' = (gammaval(1/(1+r/200)) - 128) * (1 + c/200) + 128; `Saturation` s is `hue=s=1+s/100`.
  (FFmpeg's `eq` is not in the PyAV wheel.)
- `MsSharpen` (level L): two `unsharp` passes, 3x3 and 7x7, amounts 0.12*L and 0.08*L.
- `SDRtoHDR`: the `colorspace` filter converts BT.709 to BT.2020 (10-bit output where the encoder has it)
  and the stream is tagged PQ (`HDR10`) or HLG; the tone curve itself is tagged, not re-graded.
- `FrameEnhance.FrameDoubling=true`: the output rate doubles (capped at 60) through the `framerate` filter.
- Watermarks: text is rendered with Pillow (FontType if such a font file exists, else Pillow's default font:
  FFmpeg's `drawtext` is not in the wheel); image watermarks come from the object their `Image.Url` names
  (virtual-hosted `<bucket>.cos.<region>.myqcloud.com/<key>` or path-style `<endpoint>/<bucket>/<key>`,
  see `object_ref`); both are composited by FFmpeg's `overlay`, with `enable='between(t,StartTime,EndTime)'`.
  `Transparency` (1-100) is applied as the watermark's opacity in percent.
- A digital watermark (`digital_watermark`) goes into every frame and the container's metadata.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Optional
from urllib.parse import unquote, urlsplit

from .digital_watermark import dw_chunks, embed_frame_bits, metadata_for
from .errors import ApiError
from .media_plans import EnhancePlan, WatermarkPlan
from .media_probe import safe_attr
from .media_spec import (
    AUDIO_CODECS,
    CHANNEL_LAYOUTS,
    CONTAINERS,
    ERR_INTERNAL,
    ERR_INVALID,
    ERR_MALFORMED,
    SAMPLE_RATES,
    SR_RESOLUTIONS,
    VIDEO_CODECS,
)


# ----- watermark images -----------------------------------------------------------------------------
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


def image_watermark(data: bytes, spec: dict[str, Any], video_w: int, video_h: int) -> Any:
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


def object_ref(url: str) -> tuple[Optional[str], str]:
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


# ----- rendering ------------------------------------------------------------------------------------
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
    raise ApiError(ERR_INVALID, f"no {plan.video_codec} encoder is available in this FFmpeg build")


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
    channels = a.channels or int(safe_attr(cc, "channels", 2) or 2)
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
            raise ApiError(ERR_INTERNAL, f"cannot create the output: {exc}") from None
        finished = False
        try:
            if dw:
                out.metadata.update(metadata_for(dw.message))
            try:
                vs = out.add_stream(encoder, rate=fps_out, options=_encoder_options(encoder, plan, preset))
            except (av.FFmpegError, ValueError) as exc:
                raise ApiError(ERR_INVALID, f"{plan.container} cannot carry {plan.video_codec}: {exc}") from None
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
                    raise ApiError(ERR_INVALID, f"{plan.container} cannot carry {plan.audio.codec}: {exc}") from None

            graph, src, sink, wm_sources = _build_graph(vin, plan, out_w, out_h, fps_out, pix_fmt, overlays)
            for wsrc, ov in zip(wm_sources, overlays):
                wf = av.VideoFrame.from_ndarray(np.asarray(ov.image.convert("RGBA")), format="rgba")
                wf.pts = 0
                wf.time_base = vin.time_base
                wsrc.push(wf)
                wsrc.push(None)

            chunks = dw_chunks(dw.message, out_w, out_h) if dw else None
            scale = 4 if pix_fmt.endswith("10le") else 1
            start, end = plan.start, (plan.start + plan.duration) if plan.duration else None
            total = float(inp.duration / 1_000_000) if inp.duration else 0.0
            state = {"n": 0, "last": 0.0}

            def mux(packets: Any) -> None:
                try:
                    out.mux(packets)
                except av.FFmpegError as exc:
                    raise ApiError(ERR_INVALID, f"{plan.container} cannot carry these streams: {exc}") from None

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
                raise ApiError(ERR_MALFORMED, f"the input stopped decoding: {exc}") from None
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
                    raise ApiError(ERR_INTERNAL, f"cannot finish the output: {exc}") from None
