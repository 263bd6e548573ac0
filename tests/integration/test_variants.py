"""The same flow with the other plausible platform shapes: JSON callbacks (JobsDetail as an object,
as an array, numbers as strings), the legacy API Gateway event, and a dict context."""

from __future__ import annotations

import pytest

from devstack.samples import _png, zip_archive
from tests.conftest import Dev, start_dev

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def dev_json():
    yield from start_dev("--callback-format", "JSON", "--event-shape", "apigw", "--context-style", "dict",
                         "--key-encoding", "mixed")


@pytest.mark.parametrize("jobs_detail,numbers", [("object", "int"), ("array", "str")])
def test_json_callbacks_over_api_gateway(dev_json: Dev, prefix: str, jobs_detail: str, numbers: str) -> None:
    dev_json.ci_config(json_jobs_detail=jobs_detail, json_numbers=numbers)
    clean, bad = f"{prefix}ok.png", f"{prefix}bad.png"
    dev_json.put(clean, _png(seed=1))
    dev_json.put(bad, _png(seed=2) + zip_archive())
    dev_json.wait_status(clean, "CLEAN")
    assert dev_json.wait_status("quarantine/" + bad, "SUSPICIOUS")["ci-suspicious-type"] == "ZIP"
    for key in (clean, bad):
        (job,) = dev_json.wait_for(lambda k=key: [j for j in dev_json.jobs_for(k) if j["callbacks"]],
                                   what="callback recorded")
        assert job["request"]["CallBackFormat"] == "JSON"
        assert [c["format"] for c in job["callbacks"]] == ["JSON"]
        assert job["callbacks"][0]["status"] == 200
