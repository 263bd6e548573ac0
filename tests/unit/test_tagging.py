"""Status tags merged into a COS object's tag set (ciflow.tagging)."""

from __future__ import annotations

import re

import pytest

from ciflow.tagging import JOB_ID, MAX_TAGS, REASON, RULE, STATUS, SUSPICIOUS_TYPE, clean_value, merge

LEGAL_VALUE = re.compile(r"[A-Za-z0-9 +\-=._:/@]{1,255}")

OURS = [(STATUS, "SUSPICIOUS"), (JOB_ID, "cda071f3af9e011ed8f900133752da9af"), (RULE, "images"),
        (SUSPICIOUS_TYPE, "MPEG-TS"), (REASON, "none")]


def user_tags(n: int) -> dict[str, str]:
    return {f"user{i}": f"value {i}" for i in range(n)}


def test_user_tags_are_never_dropped():
    # Given an object with user tags
    existing = {"owner": "alice", "project": "apollo", "Ci-Upper": "not ours (case differs)"}
    # When our status tags are merged in
    merged, dropped = merge(existing, OURS)
    # Then every user tag is still there, unchanged, next to ours
    assert {k: merged[k] for k in existing} == existing
    assert [k for k in merged if k not in existing] == [k for k, _ in OURS]
    assert dropped == []


def test_stale_ci_tags_are_replaced():
    # Given an object tagged by an earlier run
    existing = {"owner": "alice", STATUS: "PENDING", JOB_ID: "oldjob", SUSPICIOUS_TYPE: "ZIP", "ci-legacy": "x"}
    # When a new verdict's tags are merged in
    merged, dropped = merge(existing, [(STATUS, "CLEAN"), (JOB_ID, "newjob")])
    # Then ours carry the new values and stale ci-* tags that were not re-sent are gone
    assert merged == {"owner": "alice", STATUS: "CLEAN", JOB_ID: "newjob"}
    assert dropped == []


def test_rule_managed_tags_are_replaced():
    # Given an object carrying a tag that the rule manages (set on a previous verdict)
    existing = {"owner": "alice", "review": "needed"}
    # When the new verdict no longer sets it
    merged, _ = merge(existing, [(STATUS, "CLEAN")], managed=["review"])
    # Then the managed tag is removed, the user's tag kept
    assert merged == {"owner": "alice", STATUS: "CLEAN"}


def test_limit_drops_ours_lowest_priority_first():
    # Given 7 user tags and 5 of ours (highest priority first)
    existing = user_tags(7)
    # When merged
    merged, dropped = merge(existing, OURS)
    # Then the set has exactly 10 tags: all 7 users' and our top 3; the rest are reported in order
    assert len(merged) == MAX_TAGS
    assert all(merged[k] == v for k, v in existing.items())
    assert [k for k in merged if k not in existing] == [STATUS, JOB_ID, RULE]
    assert dropped == [SUSPICIOUS_TYPE, REASON]


def test_ci_status_is_kept_longest():
    # Given 9 user tags (one slot left)
    merged, dropped = merge(user_tags(9), OURS)
    # Then the one slot goes to ci-status
    assert merged[STATUS] == "SUSPICIOUS"
    assert dropped == [k for k, _ in OURS[1:]]


def test_user_with_ten_tags_keeps_all_ten():
    # Given a user who already uses all 10 tags
    existing = user_tags(10)
    # When ours are merged
    merged, dropped = merge(existing, OURS)
    # Then the set is unchanged and every one of ours is reported as dropped
    assert merged == existing
    assert dropped == [k for k, _ in OURS]


def test_stale_ci_tags_free_their_slots():
    # Given 8 user tags and 2 stale ci-* tags (10 in all)
    existing = {**user_tags(8), STATUS: "PENDING", JOB_ID: "old"}
    # When 3 of ours are merged
    merged, dropped = merge(existing, OURS[:3])
    # Then the stale slots are reused and only the lowest-priority tag is dropped
    assert merged == {**user_tags(8), STATUS: "SUSPICIOUS", JOB_ID: OURS[1][1]}
    assert dropped == [RULE]


def test_existing_dict_is_not_modified():
    # Given an existing tag set
    existing = {"owner": "alice", STATUS: "PENDING"}
    before = dict(existing)
    # When merged
    merge(existing, OURS)
    # Then the caller's dict is untouched
    assert existing == before


def test_duplicate_keys_in_ours_keep_the_first():
    # Given the same key twice in ours (the first is the higher priority)
    merged, dropped = merge({}, [(STATUS, "FIRST"), (STATUS, "SECOND")])
    # Then the first value wins and nothing is reported dropped
    assert merged == {STATUS: "FIRST"}
    assert dropped == []


def test_values_are_cleaned_when_merged():
    # Given one of our values with characters COS does not allow
    merged, _ = merge({}, [(SUSPICIOUS_TYPE, "HTML<script>\n"), (REASON, "")])
    # Then the written values are legal
    assert merged[SUSPICIOUS_TYPE] == "HTML_script__"
    assert merged[REASON] == "-"
    assert all(LEGAL_VALUE.fullmatch(v) for v in merged.values())


# --------------------------------------------------------------- clean_value


@pytest.mark.parametrize("raw, expected", [
    ("CLEAN", "CLEAN"),
    ("a Z 0 + - = . _ : / @", "a Z 0 + - = . _ : / @"),
    ("MPEG-TS", "MPEG-TS"),
    ("a#b*c", "a_b_c"),
    ("日本語", "___"),
    ("tab\there\n", "tab_here_"),
    ("  padded  ", "padded"),
    ("", "-"),
    ("   ", "-"),
    (42, "42"),
    (None, "None"),
])
def test_clean_value(raw, expected):
    # Given any value
    # Then it becomes a legal tag value
    assert clean_value(raw) == expected
    assert LEGAL_VALUE.fullmatch(clean_value(raw))


def test_clean_value_truncates_to_255():
    # Given a long value with illegal characters mixed in
    raw = "x" * 200 + "#" * 100
    # Then the result is 255 legal characters
    cleaned = clean_value(raw)
    assert len(cleaned) == 255
    assert cleaned == "x" * 200 + "_" * 55


def test_clean_value_custom_limit():
    # Given a smaller limit
    # Then the value is cut to it
    assert clean_value("abcdefgh", limit=3) == "abc"
