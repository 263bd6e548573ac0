"""A PENDING tag write meant for one content that lands on newer content is always checked and repaired, even
when POST /jobs failed beside it or the check itself failed: sequences the regressions (test_regressions.py)
do not cover, replayed in a strict world."""

from __future__ import annotations

import pytest

from tests.model.cos import ENABLED, NEVER

from .machine import Config, Step
from .replay import replay

B = "uploads/b.png"
THROTTLED = {("ci.create", 0): "fail"}

SEQUENCES: dict[str, list[Step]] = {
    # clean-1's submission writes PENDING onto clean-2 (whose own event is lost), and POST /jobs fails each time.
    "post-jobs-failed": [
        ("upload", (B, b"clean-1", "logged")), ("upload", (B, b"clean-2", "logged")), ("drop event", (1,)),
        ("deliver event", (0, THROTTLED)), ("SCF retry", (0, THROTTLED)), ("SCF retry", (0, THROTTLED))],
    # The job is submitted, but the check of the PENDING write fails (its HEAD): the retry, which finds the
    # job claimed, checks again.
    "check-failed": [
        ("upload", (B, b"clean-1", "logged")), ("upload", (B, b"clean-2", "logged")), ("drop event", (1,)),
        ("deliver event", (0, {("cos.head_object", 0): "fail"})), ("SCF retry", (0, {}))],
}


@pytest.mark.parametrize("kind", [NEVER, ENABLED])
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_pending_tag_sequence(name: str, kind: str) -> None:
    violation, _ = replay(Config(kind), SEQUENCES[name])
    assert violation is None, str(violation)
