"""The job types the emulator runs. Each module exposes `register(emu)`, adding a processor
(and optionally a validator) for its `Tag`."""

from __future__ import annotations

import importlib
from typing import Any

MODULES = ("image_jobs", "video_target_rec", "media_jobs")


def register_all(emu: Any) -> None:
    for name in MODULES:
        qualified = f"{__package__}.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:
                continue  # that job type is not part of this checkout
            raise
        module.register(emu)
