"""`check-config`: every problem with the settings and the rules (not just the first), and each bucket's versioning."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from ..errors import CiflowError, ConfigError
from ..regions import SHORT_TO_FULL
from ..rules import RuleSet, parse_rules
from ..settings import Settings, current_credentials, load_settings
from .context import versioning_note


@dataclass
class Problem:
    where: str
    message: str
    severity: str = "error"      # error | warning | info

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ConfigReport:
    problems: list[Problem]
    settings: Optional[Settings]
    rules: Optional[RuleSet]
    rules_source: Optional[str]
    settings_checked: bool = True

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def as_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "ok": not self.errors,
            "problems": [dict(p.__dict__) for p in self.problems],
            "settings": None if s is None or not self.settings_checked else {
                "region": s.region, "buckets": list(s.buckets), "callback_url": s.callback_url,
                "callback_format": s.callback_format, "state_prefix": s.state_prefix, "s3_endpoint": s.s3_endpoint,
                "rules_source": s.rules_source},
            "rules_source": self.rules_source,
            "rules": None if self.rules is None else {
                "quarantine_prefix": self.rules.quarantine_prefix,
                "rules": [{"name": r.name, "job": r.job, "prefixes": list(r.prefixes), "suffixes": list(r.suffixes),
                           "content_types": list(r.content_types)} for r in self.rules.rules]},
        }


# Values that let validation continue past a missing required variable, to find every problem.
_STANDINS = {"CIFLOW_REGION": "ap-guangzhou", "CIFLOW_CALLBACK_SECRET": "x" * 16}
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9-]*-[0-9]+")


def _split(message: str) -> tuple[str, str]:
    where, sep, rest = message.partition(": ")
    return (where, rest) if sep else ("settings", message)


def check_settings(env: Mapping[str, str]) -> tuple[Optional[Settings], list[Problem]]:
    """Every settings problem (not just the first), each naming its variable."""
    work = dict(env)
    problems: list[Problem] = []
    settings: Optional[Settings] = None
    for _ in range(32):
        try:
            settings = load_settings(work)
            break
        except ConfigError as exc:
            where, message = _split(str(exc))
            problems.append(Problem(where, message))
            if where in _STANDINS and work.get(where) != _STANDINS[where]:
                work[where] = _STANDINS[where]
            elif where in work:
                del work[where]
            else:
                break
    if settings is None:
        return None, problems
    if not env.get("CIFLOW_CALLBACK_URL", "").strip():
        problems.append(Problem("CIFLOW_CALLBACK_URL", "not set: the submit function needs the callback "
                                "function's URL (without it CI never calls back)"))
    for b in settings.buckets:
        if not _BUCKET_RE.fullmatch(b):
            problems.append(Problem("CIFLOW_BUCKETS", f"{b!r} is not a bucket name of the form <name>-<appid>"))
    if settings.region not in SHORT_TO_FULL.values():
        problems.append(Problem("CIFLOW_REGION", f"{settings.region!r} is not a region ciflow knows "
                                "(check the spelling)", "warning"))
    if env.get("CIFLOW_RULES", "").strip() and env.get("CIFLOW_RULES_FILE", "").strip():
        problems.append(Problem("CIFLOW_RULES_FILE", "ignored: CIFLOW_RULES is set and wins", "warning"))
    if settings.reconcile_give_up_seconds <= settings.reconcile_after_seconds:
        problems.append(Problem("CIFLOW_RECONCILE_GIVE_UP_SECONDS",
                                f"{settings.reconcile_give_up_seconds} is not longer than "
                                f"CIFLOW_RECONCILE_AFTER_SECONDS ({settings.reconcile_after_seconds}): a job still "
                                "running at its first check fails with Timeout", "warning"))
    try:
        current_credentials(env)
    except ConfigError as exc:
        where, message = _split(str(exc))
        problems.append(Problem(where, message + "; the functions get them from their role, "
                                "but this CLI needs them for everything except check-config", "warning"))
    return settings, problems


def rules_problems(exc: ConfigError, source: str) -> list[Problem]:
    """Split a rules ConfigError into one problem per field path."""
    text = str(exc)
    body = text[len(source) + 2:] if text.startswith(source + ": ") else text
    head, sep, rest = body.partition("invalid rules:\n")
    if sep and not head:
        out = []
        for line in rest.splitlines():
            path, _, message = line.strip().partition(": ")
            out.append(Problem(f"{source}: {path}", message))
        return out
    return [Problem(source, body)]


def bucket_problems(storage: Any, buckets: Iterable[str], state_bucket: str = "") -> list[Problem]:
    """Each bucket's versioning, read from COS, and what follows from it (with the records in
    `state_bucket`, which must never have had versioning, when one is set)."""
    out = []
    for bucket in buckets:
        try:
            state = storage.versioning(bucket)
        except CiflowError as exc:
            out.append(Problem(f"bucket {bucket}", f"cannot read its versioning: {exc}", "warning"))
            continue
        if state_bucket and state != "Enabled":
            out.append(Problem(f"bucket {bucket}", f"versioning {state or 'never enabled'}: its records are kept in "
                               f"CIFLOW_STATE_BUCKET {state_bucket}, where claims are exclusive", "info"))
            continue
        out.append(Problem(f"bucket {bucket}", versioning_note(state),
                           "warning" if state == "Suspended" else "info"))
    if state_bucket:
        try:
            state = storage.versioning(state_bucket)
        except CiflowError as exc:
            out.append(Problem("CIFLOW_STATE_BUCKET", f"cannot read {state_bucket}'s versioning: {exc}", "warning"))
        else:
            if state:
                out.append(Problem("CIFLOW_STATE_BUCKET", f"{state_bucket} has versioning {state}: "
                                   "x-cos-forbid-overwrite has no effect there, so its claims are not exclusive; "
                                   "use a bucket that never had versioning"))
    return out


def check_config(env: Mapping[str, str], rules_file: Optional[str] = None,
                 rules_only: bool = False, storage: Any = None) -> ConfigReport:
    """Validate the settings (unless `rules_only`) and the rules: `rules_file`, else the configured ones."""
    problems: list[Problem] = []
    settings: Optional[Settings] = None
    if not rules_only:
        settings, problems = check_settings(env)
    state_prefix = settings.state_prefix if settings else ((env.get("CIFLOW_STATE_PREFIX") or "").strip() or
                                                            ".ciflow/")
    if not state_prefix.endswith("/"):
        state_prefix += "/"
    if rules_file:
        source: Optional[str] = rules_file
        try:
            with open(rules_file, encoding="utf-8") as fh:
                text: Optional[str] = fh.read()
        except OSError as exc:
            problems.append(Problem(rules_file, f"cannot read: {exc.strerror}"))
            text = None
    elif settings is not None and not any(p.where == "CIFLOW_RULES_FILE" and p.severity == "error"
                                          for p in problems):
        source, text = settings.rules_source, settings.rules_text
    elif rules_only:
        try:
            s = load_settings({**_STANDINS, **{k: env[k] for k in ("CIFLOW_RULES", "CIFLOW_RULES_FILE") if k in env}})
            source, text = s.rules_source, s.rules_text
        except ConfigError as exc:
            problems.append(Problem(*_split(str(exc))))
            source, text = None, None
    else:
        source, text = None, None
    if any(p.severity == "error" for p in problems):
        settings = None     # validated with stand-ins to find every problem; not a usable configuration
    rules = None
    if text is not None and source is not None:
        try:
            rules = parse_rules(text, source, state_prefix)
        except ConfigError as exc:
            problems.extend(rules_problems(exc, source))
    if storage is not None and settings is not None:
        problems.extend(bucket_problems(storage, settings.buckets, settings.state_bucket))
    return ConfigReport(problems, settings, rules, source, settings_checked=not rules_only)
