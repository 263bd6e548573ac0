"""Short demo videos for the VideoTargetRec job, encoded at run time with PyAV.

`build_videos(out_dir)` writes three ~3.5 s, 480x360, 15 fps MP4 files (H.264 through libx264 when
PyAV's FFmpeg has it, else MPEG-4 Part 2), 20-60 KB each with H.264 (about 200 KB with MPEG-4),
and returns ``{name: path}``:

* ``person`` → ``person.mp4``: a slow pan and zoom over ``skimage.data.astronaut()``.
* ``cat``    → ``cat.mp4``:    ``skimage.data.chelsea()`` on a plain beige card, slowly zooming.
  The photo is a close-up that cuts the cat's ears off; shown full-frame, OpenCV's cat-face
  cascades do not find the face (at most a nose-sized partial box), so the photo is shrunk onto
  the card until the whole face fits in the detection window.
* ``empty``  → ``empty.mp4``:  a pan and zoom over ``skimage.data.coffee()`` (a cup on a
  table), on which none of the emulator's person or cat detectors fire (checked on every frame,
  with both encoders).

Source images and their licences
--------------------------------
All three images ship inside the scikit-image wheel (``skimage/data/astronaut.png``,
``chelsea.png`` and ``coffee.png`` are listed in the wheel's ``RECORD``) and ``skimage.data``
loads them from the installed package without network access (``pooch`` is not needed for
them). Their licences are stated in the docstrings of ``skimage/data/_fetchers.py``
(scikit-image 0.26.0); the package's ``LICENSE.txt`` covers its code and ``skimage/data/README.txt``
says nothing about licences:

* ``astronaut()`` - Eileen Collins, from the NASA Great Images database: "No known copyright
  restrictions, released into the public domain."
* ``chelsea()`` - "Chelsea the cat": "No copyright restrictions. CC0 by the photographer
  (Stefan van der Walt)."
* ``coffee()`` - "Coffee cup", courtesy of Pikolo Espresso Bar: "No copyright restrictions.
  CC0 by the photographer (Rachel Michetti)."
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

WIDTH, HEIGHT = 480, 360
FPS = 15
DURATION = 3.5  # seconds
CAT_CARD = (235, 225, 205)  # RGB of the card the cat photo sits on


def _encoder() -> str:
    import av

    try:
        av.codec.Codec("libx264", "w")
    except Exception:  # noqa: BLE001 - any failure means this FFmpeg build has no H.264 encoder
        return "mpeg4"
    return "libx264"


def _resize(img: Any, w: int, h: int) -> Any:
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)


def _write(path: Path, frame_at: Callable[[float], Any], codec: str) -> Path:
    """Encode `frame_at(progress 0..1) -> RGB uint8 HxWx3` frames into `path`."""
    import av

    n = round(DURATION * FPS)
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        if codec == "libx264":
            # One encoder thread makes the bytes (and so every detection) the same on every build.
            stream.options = {"crf": "26", "preset": "veryfast", "threads": "1"}
        else:
            stream.bit_rate = 400_000
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_at(i / (n - 1)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _person(img: Any, t: float) -> Any:
    # astronaut(), 512x512, face at about (177, 67)-(270, 160): a 4:3 window that zooms in a
    # little while panning down, keeping the face in view.
    win_w = int(512 - 40 * t)
    win_h = win_w * 3 // 4
    x = int(20 * t)
    y = int(10 + 60 * t)
    return _resize(img[y:y + win_h, x:x + win_w], WIDTH, HEIGHT)


def _cat(img: Any, t: float) -> Any:
    # chelsea(), 451x300, a close-up of a cat's face, shrunk onto a card and growing slowly.
    import numpy as np

    scale = 0.55 + 0.10 * t
    w, h = int(img.shape[1] * scale), int(img.shape[0] * scale)
    canvas = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    canvas[:] = CAT_CARD
    left = (WIDTH - w) // 2 + int(16 * (t - 0.5))
    top = (HEIGHT - h) // 2 + 20
    canvas[top:top + h, left:left + w] = _resize(img, w, h)
    return canvas


def _empty(img: Any, t: float) -> Any:
    # coffee(), 400x600: an espresso cup on a saucer on a wooden table.
    win_w = int(520 - 20 * t)
    win_h = win_w * 3 // 4
    x = int(20 * t)
    y = int(5 * t)
    return _resize(img[y:y + win_h, x:x + win_w], WIDTH, HEIGHT)


# name → (skimage.data loader name, frame maker)
SCENES: dict[str, tuple[str, Callable[[Any, float], Any]]] = {
    "person": ("astronaut", _person),
    "cat": ("chelsea", _cat),
    "empty": ("coffee", _empty),
}


def build_videos(out_dir: Any, codec: Optional[str] = None) -> dict[str, Path]:
    """Encode the demo videos into `out_dir` (created if needed); returns {"person"|"cat"|"empty": path}.

    `codec` is ``libx264`` or ``mpeg4``; by default H.264 when this PyAV build can encode it.
    """
    from skimage import data

    codec = codec or _encoder()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    videos = {}
    for name, (loader, scene) in SCENES.items():
        img = getattr(data, loader)()
        videos[name] = _write(out / f"{name}.mp4", lambda t, img=img, scene=scene: scene(img, t), codec)
    return videos
