"""A function's clock offset (the chaos scenario "reconcile clock ahead"): the function's own code reads the
offset clock, the SDKs it calls keep the true time, and nothing else in the process is affected."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from devstack.runner import WORKER, FunctionError, ScfContext, WorkerPool, _Worker

pytestmark = pytest.mark.integration


@pytest.fixture
def probe(tmp_path: Path) -> WorkerPool:
    (tmp_path / "functions").mkdir()
    (tmp_path / "functions" / "probe.py").write_text(
        "import time\nimport sdkish\nfrom ciflow import clockprobe\n\n"
        "def main_handler(event, context):\n"
        "    if event == 'fail':\n        raise RuntimeError('boom')\n"
        "    return {'function': time.time(), 'library': clockprobe.now(), 'sdk': sdkish.now()}\n")
    (tmp_path / "sdkish.py").write_text("import time\n\ndef now():\n    return time.time()\n")
    (tmp_path / "ciflow").mkdir()
    (tmp_path / "ciflow" / "__init__.py").write_text("")
    (tmp_path / "ciflow" / "clockprobe.py").write_text("import time\n\ndef now():\n    return time.time()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(tmp_path)
    pool = WorkerPool(lambda name: _Worker([sys.executable, str(WORKER), str(tmp_path), name], env, 30), "object")
    yield pool
    pool.close()


def test_the_functions_own_code_reads_the_offset_clock_and_sdks_the_true_one(probe: WorkerPool) -> None:
    ctx = ScfContext("r1", "probe")
    before = time.time()
    out = probe.call("probe", {}, ctx, clock_offset=400)
    after = time.time()
    assert before + 400 <= out["function"] <= after + 400
    assert before + 400 <= out["library"] <= after + 400
    assert before <= out["sdk"] <= after
    # The same instance without an offset reads the true clock again
    plain = probe.call("probe", {}, ctx)
    assert abs(plain["function"] - time.time()) < 5
    # A function error still comes back as FunctionError
    with pytest.raises(FunctionError, match="boom"):
        probe.call("probe", "fail", ctx, clock_offset=-30)
