"""Where the deployed functions keep the job records, and serverless.yml rendered for it.

By default each record lives beside its object, under `.ciflow/` in the watched bucket. A bucket
whose versioning is Suspended cannot hold them: COS's conditional create has no effect there and
every write shares the `null` version, so no claim is exclusive (docs/reliability.md, "Versioned
buckets"). `CIFLOW_STATE_BUCKET` in `.env` names a bucket that never had versioning; every record
then lives there, under `.ciflow/<watched bucket>/` (ciflow.records.Records.of).

`make deploy` and `make deploy-plan` then deploy serverless.yml with the variable, holding `.env`'s
value, on every function that reads records (submit, callback and reconcile), and without it
otherwise. `make cam-policy` grants the record operations in that bucket (deploy/cam.py).

The state prefix is not deployed: the functions keep the default `.ciflow/`, so a CIFLOW_STATE_PREFIX
in `.env` is refused rather than granted in the CAM policy while the functions write elsewhere.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

VARIABLE = "CIFLOW_STATE_BUCKET"
PREFIX_VARIABLE = "CIFLOW_STATE_PREFIX"
DEFAULT_PREFIX = ".ciflow/"  # ciflow.settings' default, which the deployed functions use
# The functions that read and write records; tests/unit/test_deploy_config.py derives this set from
# the code (the modules each handler loads that read `settings.state_bucket`).
RECORD_FUNCTIONS = ("submit", "callback", "reconcile")
BUCKET = re.compile(r"[a-z0-9][a-z0-9-]*-(\d+)")  # <name>-<appid>


class StateConfigError(Exception):
    """`.env` or serverless.yml asks for a record location that cannot be deployed (each problem a line)."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def bucket(env: Mapping[str, str]) -> str:
    """The state bucket `.env` chooses, or "" for records beside each object."""
    return env.get(VARIABLE, "").strip()


def appid_of(name: str) -> str:
    """The APPID a full bucket name ends with ("" when it is not of the form <name>-<appid>)."""
    m = BUCKET.fullmatch(name)
    return m.group(1) if m else ""


def problems(env: Mapping[str, str]) -> list[str]:
    """What in `env` would deploy records the functions cannot keep, or a policy that misses them."""
    out = []
    prefix = env.get(PREFIX_VARIABLE, "").strip()
    if prefix and prefix.rstrip("/") + "/" != DEFAULT_PREFIX:
        out.append(f"{PREFIX_VARIABLE} is set to {prefix!r}, but not deployed: the functions keep their records "
                   f"under {DEFAULT_PREFIX}, and the CAM policy would grant the other prefix. Unset it")
    state, watched = bucket(env), env.get("CIFLOW_BUCKET", "").strip()
    if not state:
        return out
    if not BUCKET.fullmatch(state):
        out.append(f"{VARIABLE} must be the bucket's full name, <name>-<appid>; got {state!r}")
    elif state == watched:
        out.append(f"{VARIABLE} must be another bucket than CIFLOW_BUCKET: it holds the records because the "
                   "watched bucket cannot (versioning Suspended); choose a bucket that never had versioning")
    elif appid_of(watched) and appid_of(watched) != appid_of(state):
        out.append(f"{VARIABLE} {state!r} belongs to APPID {appid_of(state)}, CIFLOW_BUCKET to {appid_of(watched)}: "
                   "the functions' role is granted its own account's buckets only; choose a bucket of that account")
    return out


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables each record-reading function gets: the state bucket, or nothing when unset."""
    state = bucket(env)
    return {VARIABLE: state} if state else {}


def render(instance: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """`instance` (serverless.yml, possibly rendered already) with the state bucket on every function
    that reads records. Raises StateConfigError when `env` is refused or serverless.yml sets it itself."""
    found = problems(env)
    if found:
        raise StateConfigError(found)
    out = copy.deepcopy(dict(instance))
    added = environment(env)
    for key in RECORD_FUNCTIONS:
        environments = out["inputs"]["functions"][key].setdefault("environments", [])
        clash = [e["key"] for e in environments if e["key"] in (VARIABLE, PREFIX_VARIABLE)]
        if clash:
            raise StateConfigError([f"serverless.yml already sets {', '.join(clash)} for {key}; where the records "
                                    "live comes from .env"])
        environments += [{"key": k, "value": v} for k, v in added.items()]
    return out


def describe(env: Mapping[str, str]) -> str:
    """One line saying where the deployed functions keep the records."""
    state = bucket(env)
    if not state:
        return f"records: beside each object, under {DEFAULT_PREFIX} in its bucket ({VARIABLE} unset)"
    watched = env.get("CIFLOW_BUCKET", "").strip() or "<bucket>"
    return (f"records: in {state} under {DEFAULT_PREFIX}{watched}/ ({VARIABLE} on "
            f"{', '.join(RECORD_FUNCTIONS)})")
