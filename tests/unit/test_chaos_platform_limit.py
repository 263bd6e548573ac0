"""The chaos audit counts a vanished clean upload as the documented delete-against-a-concurrent-upload limit
only when the object store's history of the key shows it; every other history is a wrong action."""

from __future__ import annotations

from typing import Any

from devstack.chaos_limits import LIMIT_WINDOW, concurrent_upload_deleted

S, C, OTHER = "5" * 32, "c" * 32, "0" * 32


def e(at: float, kind: str, etag: str) -> dict[str, Any]:
    return {"at": at, "kind": kind, "etag": etag, "version_id": ""}


# The suspicious S is written and read by the move's copy; the clean C lands; the move's DELETE removes C.
RACE = [e(10.0, "write", S), e(10.5, "read", S), e(10.52, "write", C), e(10.55, "delete", C)]


def test_a_delete_right_after_an_upload_that_followed_the_deciding_read_is_the_limit() -> None:
    why = concurrent_upload_deleted(RACE, C, {S})
    assert why.startswith(f"delete against a concurrent upload: {C[:8]} was written 20 ms after a read showed "
                          f"the suspicious {S[:8]} and removed by a DELETE 30 ms later")


def test_the_order_of_the_entries_does_not_matter() -> None:
    assert concurrent_upload_deleted(list(reversed(RACE)), C, {S}) == concurrent_upload_deleted(RACE, C, {S})


def test_reads_after_the_upload_do_not_change_the_finding() -> None:
    assert concurrent_upload_deleted(RACE[:3] + [e(10.53, "read", C)] + RACE[3:], C, {S})


def test_nothing_deleted_the_content_so_it_is_not_the_limit() -> None:
    assert concurrent_upload_deleted(RACE[:3], C, {S}) == ""
    assert concurrent_upload_deleted(RACE[:3] + [e(10.55, "delete", OTHER)], C, {S}) == ""


def test_content_deleted_after_a_read_that_showed_it_clean_is_not_the_limit() -> None:
    history = [e(10.0, "write", S), e(10.5, "read", S), e(10.52, "write", C), e(10.6, "read", C),
               e(11.0, "write", OTHER), e(11.1, "read", OTHER), e(11.2, "write", C), e(11.25, "delete", C)]
    # The last read before the removed write showed OTHER, which is not suspicious
    assert concurrent_upload_deleted(history, C, {S}) == ""


def test_a_delete_that_waited_past_the_window_is_not_the_limit() -> None:
    late = RACE[:3] + [e(10.5 + LIMIT_WINDOW + 0.01, "delete", C)]
    assert concurrent_upload_deleted(late, C, {S}) == ""
    assert concurrent_upload_deleted(RACE, C, {S}, window=0.04) == ""


def test_another_write_between_the_read_and_the_delete_is_not_the_limit() -> None:
    history = [e(10.0, "write", S), e(10.5, "read", S), e(10.51, "write", OTHER), e(10.52, "write", C),
               e(10.55, "delete", C)]
    assert concurrent_upload_deleted(history, C, {S}) == ""


def test_a_delete_of_content_never_written_there_or_never_read_is_not_the_limit() -> None:
    assert concurrent_upload_deleted([e(10.55, "delete", C)], C, {S}) == ""
    assert concurrent_upload_deleted([e(10.52, "write", C), e(10.55, "delete", C)], C, {S}) == ""
