"""The object store's history of each key: in order, bounded, without the functions' records."""

from __future__ import annotations

import pytest

from devstack.objectstore.history import History


def test_entries_are_kept_per_key_in_order_with_unquoted_etags() -> None:
    h = History()
    h.add("b", "k", "write", '"aa"')
    h.add("b", "k", "read", "aa", "v1")
    h.add("b", "other", "delete", None)
    assert [(e.kind, e.etag, e.version_id) for e in h.of("b", "k")] == [("write", "aa", ""), ("read", "aa", "v1")]
    assert [(x["key"], [e["kind"] for e in x["entries"]]) for x in h.snapshot("b")] == [
        ("k", ["write", "read"]), ("other", ["delete"])]
    assert h.snapshot("b", prefix="o")[0]["entries"][0]["etag"] == ""
    assert h.snapshot("elsewhere") == []


def test_a_key_keeps_only_its_newest_entries_and_the_state_prefix_is_not_kept() -> None:
    h = History(per_key=3, skip_prefix=".ciflow/")
    for i in range(5):
        h.add("b", "k", "write", f"e{i}")
    h.add("b", ".ciflow/jobs/x.json", "write", "r")
    assert [e.etag for e in h.of("b", "k")] == ["e2", "e3", "e4"]
    assert [x["key"] for x in h.snapshot()] == ["k"]


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="kind: expected one of read, write, delete"):
        History().add("b", "k", "copy", "e")


def test_the_least_recently_touched_keys_go_first_beyond_the_cap() -> None:
    h = History(max_keys=2)
    h.add("b", "old", "write", "1")
    h.add("b", "kept", "write", "2")
    h.add("b", "old", "read", "1")      # touched again: now the newest
    h.add("b", "new", "write", "3")
    assert [x["key"] for x in h.snapshot()] == ["new", "old"]
