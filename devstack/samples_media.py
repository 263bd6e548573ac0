"""Small, real sample videos for the media job types, generated with PyAV (no ffmpeg binary).

Each frame is a colourful moving gradient with a few hard-edged bars and the frame number drawn
with Pillow, so colour, sharpening and watermark effects are all measurable on it. Both builders
encode H.264 in MP4 with x264's fastest preset and finish well under five seconds on two cores.

    build_short_video(path)            # 3 s, 320x240, 15 fps (optionally with a sine-tone AAC track)
    build_long_low_fps_video(path)     # 95 s, 160x120, 2 fps: longer than DigitalWatermark's 90 s floor
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path
from typing import Union

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PathLike = Union[str, Path]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the bitmap font has one size
        return ImageFont.load_default()


def _frame(index: int, width: int, height: int, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> np.ndarray:
    """RGB frame `index`: a gradient that slides one step per frame, bars, and the frame counter."""
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    phase = (index * 0.04) % 1.0
    r = 40 + 170 * ((x + phase) % 1.0) + 0 * y
    g = 50 + 150 * y + 0 * x
    b = 200 - 150 * ((x + y) / 2)
    rgb = np.stack([r, g, b], axis=-1)
    # Hard-edged vertical bars in the lower third: detail for sharpening to act on.
    bar_w = max(2, width // 32)
    band = slice(height * 2 // 3, height * 5 // 6)
    for i, col in enumerate(range(0, width, bar_w)):
        rgb[band, col:col + bar_w, :] = 30 if i % 2 else 220
    img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    draw.text((max(2, width // 40), max(2, height // 30)), f"#{index:04d}", fill=(255, 255, 255), font=font)
    return np.asarray(img)


def _write(path: PathLike, seconds: float, size: tuple[int, int], fps: int, audio: bool,
           sample_rate: int = 44100) -> Path:
    width, height = size
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for yuv420p")
    out_path = Path(path)
    frames = int(round(seconds * fps))
    font = _font(max(8, height // 8))
    with av.open(str(out_path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "20"}
        aus = None
        if audio:
            aus = out.add_stream("aac", rate=sample_rate)
            aus.layout = "stereo"
            aus.bit_rate = 96_000
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_frame(i, width, height, font), format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame.reformat(format="yuv420p")))
        out.mux(vs.encode(None))
        if aus is not None:
            total = int(round(seconds * sample_rate))
            chunk = 1024
            for start in range(0, total, chunk):
                n = min(chunk, total - start)
                t = (np.arange(start, start + n, dtype=np.float32)) / sample_rate
                tone = (0.2 * np.sin(2 * math.pi * 440.0 * t)).astype(np.float32)
                af = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
                af.sample_rate = sample_rate
                af.pts = start
                af.time_base = Fraction(1, sample_rate)
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
    return out_path


def build_short_video(path: PathLike, seconds: float = 3, size: tuple[int, int] = (320, 240), fps: int = 15,
                      audio: bool = False) -> Path:
    """A short H.264/MP4 clip (3 s, 320x240, 15 fps by default); `audio=True` adds a 440 Hz AAC track."""
    return _write(path, seconds, size, fps, audio)


def build_long_low_fps_video(path: PathLike, seconds: float = 95, fps: int = 2,
                             size: tuple[int, int] = (160, 120)) -> Path:
    """A long but cheap H.264/MP4 clip: 95 s at 2 fps and 160x120 (190 frames)."""
    return _write(path, seconds, size, fps, audio=False)
