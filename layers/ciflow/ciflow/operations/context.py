"""What every operator command works with, and the operator's own errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..ci import CiJobs
from ..errors import CiflowError, ConfigError
from ..rules import RuleSet, parse_rules
from ..settings import Settings
from ..storage import Storage


class OperatorError(CiflowError):
    """An expected problem with what the operator asked for (no bucket, bad --rate, ...)."""


@dataclass
class Context:
    """What every command works with: the functions' settings and rules, the ports, one bucket."""

    settings: Settings
    rules: RuleSet
    storage: Storage
    ci: CiJobs
    bucket: str


def pick_bucket(settings: Settings, bucket: Optional[str]) -> str:
    if bucket:
        return bucket
    if settings.buckets:
        return settings.buckets[0]
    raise OperatorError("no bucket: pass --bucket or set CIFLOW_BUCKETS")


def check_bucket_allowed(settings: Settings, bucket: str) -> None:
    """The submit function ignores buckets outside CIFLOW_BUCKETS, and the callback refuses them."""
    if settings.buckets and bucket not in settings.buckets:
        raise OperatorError(f"bucket {bucket!r} is not in CIFLOW_BUCKETS ({', '.join(settings.buckets)}); "
                            "the functions would not act on it")


def load_rules_file(path: str, state_prefix: str) -> RuleSet:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, path, state_prefix)


def versioning_note(status: str) -> str:
    """What a bucket's versioning status means for ciflow's guarantees."""
    if status == "Enabled":
        return ("versioning Enabled: x-cos-forbid-overwrite has no effect, so claims are arbitrated by object "
                "versions (the oldest version wins); quarantine and delete remove every version holding the "
                "suspicious bytes")
    if status == "Suspended":
        return ("versioning Suspended: x-cos-forbid-overwrite has no effect and new writes share the null "
                "version, so no claim is exclusive here: set CIFLOW_STATE_BUCKET to a bucket that never had "
                "versioning to keep the records there (otherwise a repeated event can start a second, billed "
                "job; its verdict is ignored as superseded, never applied twice)")
    return "versioning never enabled: claims use x-cos-forbid-overwrite (409 FileAlreadyExists)"

