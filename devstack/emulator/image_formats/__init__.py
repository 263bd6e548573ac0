"""Format walkers for the emulated ImageInspect: each finds where an image's structure ends.

One module per format (``png``, ``jpeg``, ``gif``, ``bmp``, ``webp``); each exposes a
``walk_<format>(data) -> Walk`` (see :mod:`.walk`). ``payloads`` names what follows an image
and finds payload signatures inside damaged data.
"""

from .bmp import walk_bmp
from .gif import walk_gif
from .jpeg import walk_jpeg
from .payloads import PNG_SIGNATURE, classify_payload, find_payload
from .png import walk_png
from .walk import BROKEN, COMPLETE, DAMAGED, TRUNCATED, Walk
from .webp import walk_webp

__all__ = [
    "BROKEN",
    "COMPLETE",
    "DAMAGED",
    "PNG_SIGNATURE",
    "TRUNCATED",
    "Walk",
    "classify_payload",
    "find_payload",
    "walk_bmp",
    "walk_gif",
    "walk_jpeg",
    "walk_png",
    "walk_webp",
]
