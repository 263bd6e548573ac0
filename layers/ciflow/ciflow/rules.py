"""Rules: which CI job runs for which keys, and what each outcome does.

The rules document is JSON (stdlib only, so nothing extra ships in the layer). It is validated in
full before use; every problem is reported with the path of the field that causes it, e.g.
``rules[0].outcomes.SUSPICIOUS.actions[1]: unknown action 'zap'``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .delivery import Delivery, parse_delivery
from .errors import ConfigError
from .settings import get_settings

JOB_TYPES = ("ImageInspect", "VideoTargetRec", "VideoEnhance", "DigitalWatermark")
OUTCOMES = {
    "ImageInspect": ("CLEAN", "SUSPICIOUS", "FAILED"),
    # One outcome per label category found (several can apply at once), NONE when nothing was.
    "VideoTargetRec": ("PERSON", "PET", "CAR", "NONE", "FAILED"),
    "VideoEnhance": ("SUCCESS", "FAILED"),
    "DigitalWatermark": ("SUCCESS", "FAILED"),
}
ACTIONS = ("quarantine", "move", "make_private", "delete")
TARGETS = ("body", "pet", "car")
# Job-specific rule fields, beyond the common ones.
JOB_FIELDS = {
    "ImageInspect": ("auto_process",),
    "VideoTargetRec": ("template_id", "targets", "snapshot_prefix", "score_threshold"),
    "VideoEnhance": ("template_id", "video_enhance", "watermark_template_ids", "watermarks", "digital_watermark",
                     "output"),
    "DigitalWatermark": ("digital_watermark", "output"),
}
DW_MESSAGE_RE = re.compile("[A-Za-z0-9_\\-*\u4e00-\u9fa5]{1,64}")
WILDCARD_RE = re.compile(r"\$\{[A-Za-z]+\}")
AUTO_PROCESS_TYPES = ("BackupObject", "SwitchObjectToPrivate", "DeleteObject")
NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
TAG_CHARS_RE = re.compile(r"[A-Za-z0-9 +\-=._:/@]+")


@dataclass(frozen=True)
class Outcome:
    """What to do for one outcome: extra tags to merge, then actions in a fixed safe order."""

    tags: tuple[tuple[str, str], ...] = ()
    actions: tuple[str, ...] = ()
    move_to: Optional[str] = None


@dataclass(frozen=True)
class Rule:
    name: str
    job: str
    prefixes: tuple[str, ...]
    suffixes: tuple[str, ...] = ()
    content_types: tuple[str, ...] = ()
    job_level: int = 0
    callback_format: Optional[str] = None
    auto_process: Optional[str] = None
    allow_delete: bool = False
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the job-specific fields (JOB_FIELDS)
    delivery: Optional[Delivery] = None  # None: the settings' delivery

    @property
    def output_pattern(self) -> Optional[re.Pattern]:
        """A regex for the keys this rule's jobs write (Output.Object with its wildcards)."""
        out = self.params.get("output")
        if not out:
            return None
        parts = WILDCARD_RE.split(out["object"])
        names = WILDCARD_RE.findall(out["object"])
        rx = re.escape(parts[0])
        for name, part in zip(names, parts[1:]):
            rx += ("[A-Za-z0-9]+" if name in ("${jobid}", "${ext}") else ".*") + re.escape(part)
        return re.compile(rx)

    def writes(self, key: str) -> bool:
        """True when `key` is an output or snapshot this rule's jobs write (they must not trigger jobs)."""
        snap = self.params.get("snapshot_prefix")
        if snap and key.startswith(snap.rstrip("/") + "/"):
            return True
        pattern = self.output_pattern
        return bool(pattern and pattern.fullmatch(key))

    def matches(self, key: str, content_type: Optional[str] = None) -> bool:
        """True when `key` is under one of the prefixes and its suffix or content type fits."""
        if not any(key.startswith(p) for p in self.prefixes):
            return False
        if not self.suffixes and not self.content_types:
            return True
        lower = key.lower()
        if any(lower.endswith(s) for s in self.suffixes):
            return True
        ctype = (content_type or "").split(";")[0].strip().lower()
        return bool(ctype) and any(ctype.startswith(c) for c in self.content_types)

    def outcome(self, name: str) -> Outcome:
        return self.outcomes.get(name, Outcome())


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]
    quarantine_prefix: str

    @property
    def watched_prefixes(self) -> tuple[str, ...]:
        seen: list[str] = []
        for rule in self.rules:
            for p in rule.prefixes:
                if p not in seen:
                    seen.append(p)
        return tuple(seen)

    def matching(self, key: str, content_type: Optional[str] = None) -> list[Rule]:
        return [r for r in self.rules if r.matches(key, content_type)]

    def written_by(self, key: str) -> Optional[Rule]:
        """The rule whose jobs write `key` (an output or a snapshot), if any."""
        for rule in self.rules:
            if rule.writes(key):
                return rule
        return None

    def by_name(self, name: str) -> Optional[Rule]:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return None


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


def _str_list(value: Any, path: str, problems: _Problems, *, required: bool = False) -> tuple[str, ...]:
    if value is None:
        if required:
            problems.add(path, "is required (a non-empty list of strings)")
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.add(path, "must be a list of non-empty strings")
        return ()
    if required and not value:
        problems.add(path, "must not be empty")
    return tuple(value)


def _check_keys(obj: dict[str, Any], allowed: tuple[str, ...], path: str, problems: _Problems) -> None:
    for k in obj:
        if k not in allowed:
            problems.add(f"{path}.{k}", f"unknown field (allowed: {', '.join(allowed)})")


def _parse_outcome(raw: Any, path: str, rule_allows_delete: bool, problems: _Problems) -> Outcome:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object with 'tags' and/or 'actions'")
        return Outcome()
    _check_keys(raw, ("tags", "actions", "move_to"), path, problems)
    tags: list[tuple[str, str]] = []
    raw_tags = raw.get("tags", {})
    if not isinstance(raw_tags, dict):
        problems.add(f"{path}.tags", "must be an object of tag key to value")
    else:
        for k, v in raw_tags.items():
            tp = f"{path}.tags.{k}"
            if not isinstance(v, str):
                problems.add(tp, "tag value must be a string")
            elif not (1 <= len(k) <= 127 and TAG_CHARS_RE.fullmatch(k)):
                problems.add(tp, "tag key must be 1-127 of letters, digits, space and + - = . _ : / @")
            elif not (1 <= len(v) <= 255 and TAG_CHARS_RE.fullmatch(v)):
                problems.add(tp, "tag value must be 1-255 of letters, digits, space and + - = . _ : / @")
            elif k.startswith("ci-"):
                problems.add(tp, "the ci- tag prefix is reserved for status tags")
            else:
                tags.append((k, v))
    actions = _str_list(raw.get("actions", []), f"{path}.actions", problems)
    for i, a in enumerate(actions):
        if a not in ACTIONS:
            problems.add(f"{path}.actions[{i}]", f"unknown action {a!r} (expected one of: {', '.join(ACTIONS)})")
    if "delete" in actions and not rule_allows_delete:
        problems.add(f"{path}.actions", "'delete' needs \"allow_delete\": true on the rule (it is opt-in)")
    if "delete" in actions and len(actions) > 1:
        problems.add(f"{path}.actions", "'delete' cannot be combined with other actions")
    if len(set(actions)) != len(actions):
        problems.add(f"{path}.actions", "lists an action twice")
    if "move" in actions and "quarantine" in actions:
        problems.add(f"{path}.actions", "'move' and 'quarantine' both move the object; pick one")
    move_to = raw.get("move_to")
    if "move" in actions:
        if not isinstance(move_to, str) or not move_to.endswith("/") or move_to.startswith("/"):
            problems.add(f"{path}.move_to", "is required with 'move': a key prefix ending in '/', no leading '/'")
            move_to = None
    elif move_to is not None:
        problems.add(f"{path}.move_to", "is only used with the 'move' action")
        move_to = None
    return Outcome(tuple(tags), tuple(actions), move_to)


COMMON_FIELDS = (
    "name", "job", "prefixes", "suffixes", "content_types", "job_level", "callback_format",
    "allow_delete", "outcomes", "description", "delivery",
)
RULE_FIELDS = COMMON_FIELDS + tuple(sorted({f for fs in JOB_FIELDS.values() for f in fs}))


def _template_id(raw: Any, path: str, problems: _Problems) -> Optional[str]:
    if raw is None:
        return None
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z0-9]{1,64}", raw):
        problems.add(path, "must be a template id (letters and digits)")
        return None
    return raw


def _output(raw: Any, path: str, problems: _Problems) -> Optional[dict[str, str]]:
    if not isinstance(raw, dict):
        problems.add(path, "is required: {\"object\": \"out/${jobid}.${ext}\"} (region and bucket default to "
                           "the source's)")
        return None
    _check_keys(raw, ("region", "bucket", "object"), path, problems)
    obj = raw.get("object")
    if not isinstance(obj, str) or not obj or obj.startswith("/"):
        problems.add(f"{path}.object", "is required: the output key, without a leading '/'")
        return None
    out = {"object": obj}
    for k in ("region", "bucket"):
        v = raw.get(k)
        if v is not None and (not isinstance(v, str) or not v):
            problems.add(f"{path}.{k}", "must be a non-empty string")
        elif v:
            out[k] = v
    return out


def _digital_watermark(raw: Any, path: str, problems: _Problems) -> Optional[dict[str, Any]]:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object: {\"type\": \"Text\", \"message\": \"...\", \"version\": \"V1\"}")
        return None
    _check_keys(raw, ("type", "message", "version", "ignore_error"), path, problems)
    if raw.get("type", "Text") != "Text":
        problems.add(f"{path}.type", "must be Text")
    msg = raw.get("message")
    if not isinstance(msg, str) or not DW_MESSAGE_RE.fullmatch(msg):
        problems.add(f"{path}.message", "is required: 1-64 of Chinese characters, letters, digits, '_', '-', '*'")
    if raw.get("version", "V1") != "V1":
        problems.add(f"{path}.version", "must be V1")
    if not isinstance(raw.get("ignore_error", False), bool):
        problems.add(f"{path}.ignore_error", "must be true or false")
    return {"type": "Text", "message": msg, "version": "V1", "ignore_error": bool(raw.get("ignore_error", False))}


def _job_params(job: str, raw: dict[str, Any], path: str, problems: _Problems) -> dict[str, Any]:
    """Validate the job-specific fields against the API pages' constraints."""
    for k in RULE_FIELDS:
        if k in raw and k not in COMMON_FIELDS and k not in JOB_FIELDS.get(job, ()):
            problems.add(f"{path}.{k}", f"does not apply to {job} jobs")
    params: dict[str, Any] = {}
    if job == "ImageInspect":
        auto = raw.get("auto_process")
        if auto is not None and auto not in AUTO_PROCESS_TYPES:
            problems.add(f"{path}.auto_process", f"must be one of: {', '.join(AUTO_PROCESS_TYPES)} (got {auto!r})")
        elif auto:
            params["auto_process"] = auto
    elif job == "VideoTargetRec":
        tid = _template_id(raw.get("template_id"), f"{path}.template_id", problems)
        targets = raw.get("targets")
        if targets is not None:
            if not isinstance(targets, dict) or set(targets) - set(TARGETS) or not all(
                    isinstance(v, bool) for v in targets.values()):
                problems.add(f"{path}.targets", "must map body/pet/car to true or false")
                targets = None
            elif not any(targets.values()):
                problems.add(f"{path}.targets", "must enable at least one of body, pet, car")
        if tid is None and targets is None and "template_id" not in raw:
            problems.add(path, "needs template_id or targets (the job's parameters come from one of them)")
        params.update(template_id=tid, targets=targets)
        snap = raw.get("snapshot_prefix")
        if snap is not None and (not isinstance(snap, str) or not snap or snap.startswith("/")):
            problems.add(f"{path}.snapshot_prefix", "must be a key prefix without a leading '/'")
        elif snap:
            params["snapshot_prefix"] = snap
        thr = raw.get("score_threshold", 50)
        if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not 0 <= thr <= 100:
            problems.add(f"{path}.score_threshold", f"must be a number from 0 to 100 (got {thr!r})")
            thr = 50
        params["score_threshold"] = thr
    elif job in ("VideoEnhance", "DigitalWatermark"):
        params["output"] = _output(raw.get("output"), f"{path}.output", problems)
        if job == "DigitalWatermark" or "digital_watermark" in raw:
            params["digital_watermark"] = _digital_watermark(raw.get("digital_watermark"),
                                                             f"{path}.digital_watermark", problems)
    if job == "VideoEnhance":
        tid = _template_id(raw.get("template_id"), f"{path}.template_id", problems)
        ve = raw.get("video_enhance")
        if ve is not None and (not isinstance(ve, dict) or not ve):
            problems.add(f"{path}.video_enhance", "must be a non-empty object (the VideoEnhance container)")
            ve = None
        if tid is None and ve is None and "template_id" not in raw:
            problems.add(path, "needs template_id or video_enhance (enhancement parameters come from one of them)")
        params.update(template_id=tid, video_enhance=ve)
        wids = _str_list(raw.get("watermark_template_ids"), f"{path}.watermark_template_ids", problems)
        wms = raw.get("watermarks", [])
        if not isinstance(wms, list) or not all(isinstance(w, dict) and w for w in wms):
            problems.add(f"{path}.watermarks", "must be a list of Watermark objects")
            wms = []
        if len(wids) > 3:
            problems.add(f"{path}.watermark_template_ids", "at most 3 watermarks")
        if len(wms) > 3:
            problems.add(f"{path}.watermarks", "at most 3 watermarks")
        params.update(watermark_template_ids=list(wids), watermarks=wms)
    return params


def _parse_rule(raw: Any, path: str, problems: _Problems) -> Optional[Rule]:
    if not isinstance(raw, dict):
        problems.add(path, "must be an object")
        return None
    _check_keys(raw, RULE_FIELDS, path, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        problems.add(f"{path}.name", "is required: 1-64 of letters, digits, '_', '.', '-'")
        name = ""
    job = raw.get("job")
    if not isinstance(job, str):
        job = None if job is None else repr(job)
    if job not in JOB_TYPES:
        problems.add(f"{path}.job", f"must be one of: {', '.join(JOB_TYPES)} (got {job!r})")
    prefixes = _str_list(raw.get("prefixes"), f"{path}.prefixes", problems, required=True)
    for i, p in enumerate(prefixes):
        if p.startswith("/"):
            problems.add(f"{path}.prefixes[{i}]", "must not start with '/' (keys have no leading slash)")
    suffixes = tuple(s.lower() for s in _str_list(raw.get("suffixes"), f"{path}.suffixes", problems))
    ctypes = tuple(c.lower() for c in _str_list(raw.get("content_types"), f"{path}.content_types", problems))
    level = raw.get("job_level", 0)
    if isinstance(level, bool) or level not in (0, 1, 2):
        problems.add(f"{path}.job_level", f"must be 0, 1 or 2 (got {level!r})")
        level = 0
    fmt = raw.get("callback_format")
    if fmt is not None and fmt not in ("XML", "JSON"):
        problems.add(f"{path}.callback_format", f"must be XML or JSON (got {fmt!r})")
    params = _job_params(job, raw, path, problems) if job in JOB_TYPES else {}
    delivery = None
    if "delivery" in raw:
        delivery, found = parse_delivery(raw["delivery"], f"{path}.delivery")
        for where, message in found:
            problems.add(where, message)
    allow_delete = raw.get("allow_delete", False)
    if not isinstance(allow_delete, bool):
        problems.add(f"{path}.allow_delete", "must be true or false")
        allow_delete = False
    outcomes: dict[str, Outcome] = {}
    raw_outcomes = raw.get("outcomes", {})
    known = OUTCOMES.get(job, ())
    if not isinstance(raw_outcomes, dict):
        problems.add(f"{path}.outcomes", "must be an object keyed by outcome")
    else:
        for oname, oraw in raw_outcomes.items():
            opath = f"{path}.outcomes.{oname}"
            if known and oname not in known:
                problems.add(opath, f"unknown outcome for {job} (expected one of: {', '.join(known)})")
                continue
            outcomes[oname] = _parse_outcome(oraw, opath, allow_delete, problems)
    return Rule(
        name=name, job=job or "", prefixes=prefixes, suffixes=suffixes, content_types=ctypes,
        job_level=level, callback_format=fmt, auto_process=params.get("auto_process"), allow_delete=allow_delete,
        outcomes=outcomes, params=params, delivery=delivery,
    )


def parse_rules(text: str, source: str = "rules", state_prefix: str = ".ciflow/") -> RuleSet:
    """Parse and validate a rules document. Raises ConfigError listing every problem."""
    problems = _Problems()
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: the rules document must be a JSON object")
    _check_keys(doc, ("version", "quarantine_prefix", "rules", "description"), "$", problems)
    if doc.get("version", 1) != 1:
        problems.add("$.version", f"unsupported version {doc.get('version')!r} (expected 1)")
    qp = doc.get("quarantine_prefix", "quarantine/")
    if not isinstance(qp, str) or not qp or not qp.endswith("/") or qp.startswith("/"):
        problems.add("$.quarantine_prefix", "must be a key prefix ending in '/', without a leading '/'")
        qp = "quarantine/"
    raw_rules = doc.get("rules")
    rules: list[Rule] = []
    if not isinstance(raw_rules, list) or not raw_rules:
        problems.add("$.rules", "is required: a non-empty list of rules")
    else:
        for i, raw in enumerate(raw_rules):
            rule = _parse_rule(raw, f"rules[{i}]", problems)
            if rule is not None:
                rules.append(rule)
    names = [r.name for r in rules if r.name]
    for n in sorted({n for n in names if names.count(n) > 1}):
        problems.add("$.rules", f"rule name {n!r} is used more than once")
    for i, rule in enumerate(rules):
        for j, p in enumerate(rule.prefixes):
            # A watched prefix that overlaps quarantine or state would re-trigger on our own writes.
            for label, other in (("quarantine_prefix", qp), ("state prefix", state_prefix)):
                if p.startswith(other) or other.startswith(p):
                    problems.add(f"rules[{i}].prefixes[{j}]", f"{p!r} overlaps the {label} {other!r}")
    watched = [p for r in rules for p in r.prefixes]
    for i, rule in enumerate(rules):
        for oname, outcome in rule.outcomes.items():
            # Moving into a watched prefix would start a new job for the moved object.
            for p in watched:
                if outcome.move_to and (outcome.move_to.startswith(p) or p.startswith(outcome.move_to)):
                    problems.add(f"rules[{i}].outcomes.{oname}.move_to", f"{outcome.move_to!r} overlaps the watched "
                                                                         f"prefix {p!r}")
    if problems.items:
        raise ConfigError(f"{source}: invalid rules:\n  " + "\n  ".join(problems.items))
    return RuleSet(rules=tuple(rules), quarantine_prefix=qp)


def get_rules() -> RuleSet:
    """The process-wide rules, parsed once from the settings' rules source.

    Cached by what they are parsed from, so they follow the settings: `reset_settings()` is enough.
    """
    s = get_settings()
    return _parsed_rules(s.rules_text, s.rules_source, s.state_prefix)


@functools.lru_cache(maxsize=1)
def _parsed_rules(text: str, source: str, state_prefix: str) -> RuleSet:
    return parse_rules(text, source, state_prefix)
