"""Rules documents: parsing, validation with field paths, and matching (ciflow.rules)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from ciflow.errors import ConfigError
from ciflow.rules import Outcome, parse_rules
from ciflow.settings import DEFAULT_RULES_FILE

BASE_RULE = {
    "name": "images",
    "job": "ImageInspect",
    "prefixes": ["uploads/"],
    "suffixes": [".png", ".JPG"],
    "content_types": ["image/"],
    "outcomes": {"SUSPICIOUS": {"tags": {"checked": "yes"}, "actions": ["quarantine"]}},
}


def doc(**rule_changes) -> dict:
    rule = copy.deepcopy(BASE_RULE)
    for k, v in rule_changes.items():
        if v is None:
            rule.pop(k, None)
        else:
            rule[k] = v
    return {"version": 1, "quarantine_prefix": "quarantine/", "rules": [rule]}


def problems_of(text: str) -> list[str]:
    """The problem lines of the ConfigError that parse_rules raises for `text`."""
    with pytest.raises(ConfigError) as exc:
        parse_rules(text)
    lines = str(exc.value).splitlines()
    return [line.strip() for line in lines[1:]] or [lines[0]]


# ---------------------------------------------------------------- valid input


def test_bundled_default_rules_parse():
    # Given the rules file that ships in the layer
    text = Path(DEFAULT_RULES_FILE).read_text(encoding="utf-8")
    # When parsed
    rules = parse_rules(text, source=DEFAULT_RULES_FILE)
    # Then it watches uploads/ for images and quarantines suspicious ones
    assert rules.quarantine_prefix == "quarantine/"
    assert rules.watched_prefixes == ("uploads/",)
    (rule,) = rules.rules
    assert rule.name == "images"
    assert rule.job == "ImageInspect"
    assert rule.outcome("SUSPICIOUS").actions == ("quarantine",)
    assert rule.outcome("CLEAN").actions == ()
    assert rule.allow_delete is False
    assert rules.by_name("images") is rule
    assert rules.by_name("nope") is None


def test_full_rule_fields_are_parsed():
    # Given a rule using every option
    d = doc(job_level=2, callback_format="JSON", auto_process="SwitchObjectToPrivate", allow_delete=True,
            description="all options",
            outcomes={"SUSPICIOUS": {"tags": {"review": "needed"}, "actions": ["delete"]},
                      "FAILED": {"actions": ["make_private"]}})
    # When parsed
    rule = parse_rules(json.dumps(d)).rules[0]
    # Then every field is carried into the Rule
    assert rule.job_level == 2
    assert rule.callback_format == "JSON"
    assert rule.auto_process == "SwitchObjectToPrivate"
    assert rule.allow_delete is True
    assert rule.suffixes == (".png", ".jpg")  # lower-cased
    assert rule.content_types == ("image/",)
    assert rule.outcome("SUSPICIOUS") == Outcome(tags=(("review", "needed"),), actions=("delete",))
    assert rule.outcome("FAILED").actions == ("make_private",)
    # and an outcome that is not configured does nothing
    assert rule.outcome("CLEAN") == Outcome()


def test_defaults_when_optional_fields_absent():
    # Given a document with only the required fields
    text = json.dumps({"rules": [{"name": "r", "job": "ImageInspect", "prefixes": ["in/"]}]})
    # When parsed
    rules = parse_rules(text)
    # Then defaults apply
    rule = rules.rules[0]
    assert rules.quarantine_prefix == "quarantine/"
    assert (rule.job_level, rule.callback_format, rule.auto_process, rule.allow_delete) == (0, None, None, False)
    assert rule.outcomes == {}


def test_watched_prefixes_are_unique_and_ordered():
    # Given two rules sharing a prefix
    r1 = dict(BASE_RULE, name="a", prefixes=["uploads/", "avatars/"])
    r2 = dict(BASE_RULE, name="b", prefixes=["avatars/", "docs/"])
    rules = parse_rules(json.dumps({"rules": [r1, r2]}))
    # Then each prefix is listed once, in first-seen order
    assert rules.watched_prefixes == ("uploads/", "avatars/", "docs/")


# -------------------------------------------------------------------- matching


@pytest.fixture(scope="module")
def ruleset():
    return parse_rules(json.dumps(doc()))


@pytest.mark.parametrize("key, ctype, expected", [
    ("uploads/cat.png", None, True),
    ("uploads/CAT.PNG", None, True),           # suffix is case-insensitive
    ("uploads/photo.jpg", None, True),         # rule wrote .JPG
    ("uploads/deep/dir/x.Jpg", None, True),
    ("uploads/notes.txt", None, False),
    ("uploads/notes.txt", "image/png", True),  # content type rescues an odd suffix
    ("uploads/blob", "IMAGE/WEBP; charset=binary", True),
    ("uploads/blob", "text/plain", False),
    ("uploads/blob", "", False),
    ("Uploads/cat.png", None, False),          # prefixes are case-sensitive, as keys are
    ("other/cat.png", "image/png", False),     # outside the prefix nothing matches
    ("uploadsX/cat.png", None, False),
])
def test_matching(ruleset, key, ctype, expected):
    # Given the rule (prefix uploads/, suffixes .png/.jpg, content type image/)
    # When a key (and content type) is checked
    # Then it matches only under the prefix and with a fitting suffix or content type
    assert ruleset.rules[0].matches(key, ctype) is expected
    assert (ruleset.matching(key, ctype) == [ruleset.rules[0]]) is expected


def test_rule_without_filters_matches_everything_under_its_prefix():
    # Given a rule with no suffixes and no content types
    rules = parse_rules(json.dumps(doc(suffixes=None, content_types=None)))
    # Then any key under the prefix matches, and nothing outside it
    assert rules.rules[0].matches("uploads/anything.bin")
    assert not rules.rules[0].matches("elsewhere/anything.bin")


def test_matching_returns_every_matching_rule():
    # Given two rules over the same prefix
    r1 = dict(BASE_RULE, name="a")
    r2 = dict(BASE_RULE, name="b", suffixes=[".gif"], content_types=[])
    rules = parse_rules(json.dumps({"rules": [r1, r2]}))
    # Then each key gets exactly the rules that fit it
    assert [r.name for r in rules.matching("uploads/x.png")] == ["a"]
    assert [r.name for r in rules.matching("uploads/x.gif")] == ["b"]
    assert [r.name for r in rules.matching("uploads/x.gif", "image/gif")] == ["a", "b"]


# ------------------------------------------------------------------ invalid


def _with_rule(**changes) -> str:
    return json.dumps(doc(**changes))


def _with_doc(**changes) -> str:
    d = doc()
    d.update(changes)
    return json.dumps(d)


INVALID = [
    ("job missing", _with_rule(job=None), "rules[0].job", "must be one of: ImageInspect"),
    ("job unknown", _with_rule(job="VideoMagic"), "rules[0].job", "'VideoMagic'"),
    ("name missing", _with_rule(name=None), "rules[0].name", "is required"),
    ("name bad chars", _with_rule(name="my rule!"), "rules[0].name", "letters, digits"),
    ("name too long", _with_rule(name="n" * 65), "rules[0].name", "1-64"),
    ("unknown action", _with_rule(outcomes={"SUSPICIOUS": {"actions": ["zap"]}}),
     "rules[0].outcomes.SUSPICIOUS.actions[0]", "unknown action 'zap'"),
    ("second action unknown", _with_rule(outcomes={"FAILED": {"actions": ["quarantine", "zap"]}}),
     "rules[0].outcomes.FAILED.actions[1]", "unknown action 'zap'"),
    ("actions not a list", _with_rule(outcomes={"SUSPICIOUS": {"actions": "quarantine"}}),
     "rules[0].outcomes.SUSPICIOUS.actions", "list of non-empty strings"),
    ("action twice", _with_rule(outcomes={"SUSPICIOUS": {"actions": ["quarantine", "quarantine"]}}),
     "rules[0].outcomes.SUSPICIOUS.actions", "twice"),
    ("unknown outcome", _with_rule(outcomes={"MAYBE": {}}), "rules[0].outcomes.MAYBE", "unknown outcome"),
    ("outcome not object", _with_rule(outcomes={"CLEAN": []}), "rules[0].outcomes.CLEAN", "must be an object"),
    ("outcomes not object", _with_rule(outcomes=[]), "rules[0].outcomes", "keyed by outcome"),
    ("unknown outcome field", _with_rule(outcomes={"CLEAN": {"notify": True}}),
     "rules[0].outcomes.CLEAN.notify", "unknown field"),
    ("prefix overlaps quarantine", _with_rule(prefixes=["quarantine/new/"]),
     "rules[0].prefixes[0]", "overlaps the quarantine_prefix 'quarantine/'"),
    ("prefix contains quarantine", _with_rule(prefixes=["uploads/", "q"]),
     "rules[0].prefixes[1]", "overlaps the quarantine_prefix"),
    ("prefix overlaps state", _with_rule(prefixes=[".ciflow/x/"]),
     "rules[0].prefixes[0]", "overlaps the state prefix '.ciflow/'"),
    ("prefix leading slash", _with_rule(prefixes=["/uploads/"]), "rules[0].prefixes[0]", "must not start with '/'"),
    ("prefixes missing", _with_rule(prefixes=None), "rules[0].prefixes", "is required"),
    ("prefixes empty", _with_rule(prefixes=[]), "rules[0].prefixes", "must not be empty"),
    ("prefixes wrong type", _with_rule(prefixes="uploads/"), "rules[0].prefixes", "list of non-empty strings"),
    ("empty suffix", _with_rule(suffixes=[""]), "rules[0].suffixes", "list of non-empty strings"),
    ("content_types wrong type", _with_rule(content_types=[1]), "rules[0].content_types", "list of non-empty"),
    ("unknown rule field", _with_rule(colour="red"), "rules[0].colour", "unknown field"),
    ("unknown top-level field", _with_doc(extra=1), "$.extra", "unknown field"),
    ("duplicate names", json.dumps({"rules": [BASE_RULE, BASE_RULE]}), "$.rules",
     "rule name 'images' is used more than once"),
    ("delete without allow_delete", _with_rule(outcomes={"SUSPICIOUS": {"actions": ["delete"]}}),
     "rules[0].outcomes.SUSPICIOUS.actions", "allow_delete"),
    ("delete combined", _with_rule(allow_delete=True, outcomes={"SUSPICIOUS": {"actions": ["quarantine", "delete"]}}),
     "rules[0].outcomes.SUSPICIOUS.actions", "cannot be combined"),
    ("allow_delete not bool", _with_rule(allow_delete="yes"), "rules[0].allow_delete", "true or false"),
    ("job_level 3", _with_rule(job_level=3), "rules[0].job_level", "must be 0, 1 or 2 (got 3)"),
    ("job_level -1", _with_rule(job_level=-1), "rules[0].job_level", "must be 0, 1 or 2"),
    ("job_level string", _with_rule(job_level="1"), "rules[0].job_level", "must be 0, 1 or 2"),
    ("job_level bool", _with_rule(job_level=True), "rules[0].job_level", "must be 0, 1 or 2"),
    ("callback_format", _with_rule(callback_format="YAML"), "rules[0].callback_format", "XML or JSON"),
    ("auto_process", _with_rule(auto_process="Shred"), "rules[0].auto_process", "BackupObject"),
    ("tag key bad chars", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"bad#key": "v"}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.bad#key", "tag key"),
    ("tag key too long", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"k" * 128: "v"}}}),
     f"rules[0].outcomes.SUSPICIOUS.tags.{'k' * 128}", "tag key"),
    ("tag value bad chars", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"review": "yes*no"}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.review", "tag value"),
    ("tag value unicode", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"review": "是"}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.review", "tag value"),
    ("tag value empty", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"review": ""}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.review", "tag value"),
    ("tag value too long", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"review": "v" * 256}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.review", "tag value"),
    ("tag value not string", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"review": 1}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.review", "must be a string"),
    ("tags not object", _with_rule(outcomes={"SUSPICIOUS": {"tags": ["a"]}}),
     "rules[0].outcomes.SUSPICIOUS.tags", "must be an object"),
    ("reserved ci- tag", _with_rule(outcomes={"SUSPICIOUS": {"tags": {"ci-status": "x"}}}),
     "rules[0].outcomes.SUSPICIOUS.tags.ci-status", "reserved"),
    ("reserved ci- tag custom", _with_rule(outcomes={"CLEAN": {"tags": {"ci-anything": "x"}}}),
     "rules[0].outcomes.CLEAN.tags.ci-anything", "reserved"),
    ("rule not object", json.dumps({"rules": ["images"]}), "rules[0]", "must be an object"),
    ("rules missing", json.dumps({"version": 1}), "$.rules", "non-empty list"),
    ("rules empty", json.dumps({"rules": []}), "$.rules", "non-empty list"),
    ("version", _with_doc(version=2), "$.version", "unsupported version 2"),
    ("quarantine no slash", _with_doc(quarantine_prefix="quarantine"), "$.quarantine_prefix", "ending in '/'"),
    ("quarantine leading slash", _with_doc(quarantine_prefix="/q/"), "$.quarantine_prefix", "leading '/'"),
    ("quarantine empty", _with_doc(quarantine_prefix=""), "$.quarantine_prefix", "key prefix"),
]


@pytest.mark.parametrize("text, path, fragment", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_document_names_the_field(text, path, fragment):
    # Given an invalid rules document
    # When parsed
    problems = problems_of(text)
    # Then the ConfigError has a line for exactly that field path, with the reason
    hits = [p for p in problems if p.startswith(f"{path}: ")]
    assert hits, problems
    assert any(fragment in p for p in hits), hits


@pytest.mark.parametrize("text, fragment", [
    ("{not json", "not valid JSON"),
    ("", "not valid JSON"),
    ("[]", "must be a JSON object"),
    ('"rules"', "must be a JSON object"),
])
def test_unparseable_document(text, fragment):
    # Given text that is not a JSON object
    # Then a ConfigError names the source and the reason
    with pytest.raises(ConfigError) as exc:
        parse_rules(text, source="CIFLOW_RULES")
    assert str(exc.value).startswith("CIFLOW_RULES: ")
    assert fragment in str(exc.value)


def test_several_problems_reported_together():
    # Given a document with problems in three places
    d = doc(job_level=7, outcomes={"SUSPICIOUS": {"actions": ["zap"]}})
    d["quarantine_prefix"] = "q"
    d["rules"].append({"name": "second", "job": "Nope", "prefixes": ["/x/"]})
    # When parsed
    with pytest.raises(ConfigError) as exc:
        parse_rules(json.dumps(d), source="rules.json")
    message = str(exc.value)
    # Then one error lists every problem, each with its path
    assert message.startswith("rules.json: invalid rules:")
    for path in ("$.quarantine_prefix", "rules[0].job_level", "rules[0].outcomes.SUSPICIOUS.actions[0]",
                 "rules[1].job", "rules[1].prefixes[0]"):
        assert f"\n  {path}: " in message, path


def test_custom_state_prefix_is_checked_for_overlap():
    # Given a state prefix that a rule's prefix would cover
    # Then the overlap is reported against that state prefix
    with pytest.raises(ConfigError) as exc:
        parse_rules(_with_rule(prefixes=["data/"]), state_prefix="data/state/")
    assert "rules[0].prefixes[0]: 'data/' overlaps the state prefix 'data/state/'" in str(exc.value)


@pytest.mark.parametrize("job", [["ImageInspect"], {"type": "ImageInspect"}, 1, True])
def test_non_string_job_is_a_config_error(job):
    # Given a rule whose job is a JSON array, object, number or boolean
    # Then it is reported as rules[0].job, like any other bad job
    problems = problems_of(_with_rule(job=job))
    assert any(p.startswith("rules[0].job: ") for p in problems)


@pytest.mark.parametrize("field, changes", [
    ("rules[0].outcomes.SUSPICIOUS.tags.review", {"outcomes": {"SUSPICIOUS": {"tags": {"review": "yes\n"}}}}),
    ("rules[0].outcomes.SUSPICIOUS.tags.env\n", {"outcomes": {"SUSPICIOUS": {"tags": {"env\n": "x"}}}}),
    ("rules[0].name", {"name": "images\n"}),
])
def test_trailing_newline_is_rejected(field, changes):
    # Given a tag key, tag value or rule name ending in a newline (not an allowed character)
    # Then parse_rules rejects it, naming the field
    problems = problems_of(_with_rule(**changes))
    assert any(p.startswith(field.strip()) for p in problems)
