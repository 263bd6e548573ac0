"""The emulator's digital-watermark codec (devstack.emulator.digital_watermark) without a video codec."""

from __future__ import annotations

import pytest

from devstack.emulator.digital_watermark import DW_MARGIN, dw_chunks, embed_frame_bits, read_frame_bits

np = pytest.importorskip("numpy")


def test_digital_watermark_payload_round_trip_without_a_codec():
    y = np.full((120, 160), 128, dtype=np.uint8)
    y[:, 80:] = 250  # bright, near the clipping point
    chunks = dw_chunks("中文_ok-*", 160, 120)
    assert chunks is not None
    for i, chunk in enumerate(chunks):
        plane = embed_frame_bits(y.copy(), chunk)
        assert read_frame_bits(plane) == chunk, i
        assert int(np.abs(plane.astype(int) - y).max()) <= 3 * DW_MARGIN + 3
