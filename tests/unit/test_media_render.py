"""Rendering helpers of the media emulator (devstack.emulator.media_render) that need no media."""

from __future__ import annotations

from devstack.emulator.media_plans import WatermarkPlan
from devstack.emulator.media_render import watermark_position


def test_watermark_position_math():
    wm = WatermarkPlan(type="Text", pos="TopRight", loc_mode="Absolute", dx=10, dy=20)
    assert watermark_position(wm, 640, 360, 100, 50) == (530, 20)
    wm = WatermarkPlan(type="Text", pos="BottomLeft", loc_mode="Relativity", dx=10, dy=10)
    assert watermark_position(wm, 640, 360, 100, 50) == (64, 274)
    wm = WatermarkPlan(type="Text", pos="Center", loc_mode="Absolute", dx=99, dy=99)
    assert watermark_position(wm, 640, 360, 100, 50) == (270, 155)
