"""Takeovers never start a second job while one for the same bytes may still run: sequences the regressions
(test_regressions.py) do not cover, replayed in a strict world on every bucket kind they apply to."""

from __future__ import annotations

import pytest

from tests.model.cos import ENABLED, NEVER

from .machine import Config, Step
from .replay import replay

A, B = "uploads/a.png", "uploads/b.png"

SEQUENCES: dict[str, list[Step]] = {
    # POST /jobs lands but its answer fails: the claim is released without a job id; reconcile finds the key
    # holding other content and records a result without verdict; the platform's retry must look for the
    # job CI accepted (and adopt it) rather than take the result for finished work and submit again.
    "accepted-job-behind-a-result-without-verdict": [
        ("upload", (B, b"EVIL--1", "logged")), ("upload", (B, b"clean-2", "logged")),
        ("upload", (B, b"clean-1", "logged")), ("deliver event", (1, {("ci.create", 0): "fail_after"})),
        ("time passes", (901,)), ("reconcile", ({},)), ("SCF retry", (0, {}))],
    # Reconcile gives up on attempt 1 (Timeout) but stalls before recording it; the same bytes are uploaded
    # again and their event starts attempt 2; the give-up's result then lands. The repeated event of the
    # re-upload must take it for the result of the attempt it replaced, not for attempt 2's, and start nothing.
    "result-of-a-replaced-attempt": [
        ("upload", (A, b"BROKEN1", "documented")), ("deliver event", (0, {})), ("time passes", (3601,)),
        ("reconcile", ({("cos.head_object", 0): "stall"},)), ("upload", (A, b"BROKEN1", "documented")),
        ("duplicate event", (0,)), ("deliver event", (0, {})), ("stalled request resumes", (0, "continue")),
        ("deliver event", (0, {}))],
}


@pytest.mark.parametrize("kind", [NEVER, ENABLED])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_takeover_sequence(name: str, kind: str) -> None:
    violation, _ = replay(Config(kind), SEQUENCES[name])
    assert violation is None, str(violation)
