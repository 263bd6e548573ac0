"""DELETE names the content the caller checked (S3's If-Match, which COS documents nowhere): honoured, the
delete of other content is refused; ignored, nothing changes; refused, the DELETE goes again without it and the
container stops sending it."""

from __future__ import annotations

from typing import Any, Optional

import pytest
from botocore.exceptions import ClientError

import ciflow.storage
from ciflow.errors import PermanentError
from ciflow.storage import Storage


def _error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DeleteObject")


class Client:
    def __init__(self, *answers: Optional[ClientError]):
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def delete_object(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return {}

    etag = "e1"
    heads = 0

    def head_object(self, **kwargs: Any) -> dict[str, Any]:
        self.heads += 1
        return {"ETag": f'"{self.etag}"', "ContentLength": 1}


@pytest.fixture(autouse=True)
def fresh_container(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ciflow.storage, "_delete_if_match_refused", False)


def test_the_delete_names_the_checked_content() -> None:
    c = Client()
    assert Storage(c).delete_content("b", "k", "e1", checked=True) == 1
    assert c.calls == [{"Bucket": "b", "Key": "k", "IfMatch": '"e1"'}]


def test_other_content_at_the_key_is_not_deleted_where_if_match_is_honoured() -> None:
    c = Client(_error("PreconditionFailed", 412))
    c.etag = "e2"   # the HEAD after the 412 shows other content
    assert Storage(c).delete_content("b", "k", "e1", checked=True) == 0
    assert len(c.calls) == 1 and c.heads == 1
    c = Client(_error("NoSuchKey", 404))
    assert Storage(c).delete_content("b", "k", "e1", checked=True) == 0


def test_a_412_for_the_very_content_it_named_is_not_if_match_as_s3_has_it() -> None:
    c = Client(_error("PreconditionFailed", 412))   # the HEAD shows e1 still there
    assert Storage(c).delete_content("b", "k", "e1", checked=True) == 1
    assert c.calls == [{"Bucket": "b", "Key": "k", "IfMatch": '"e1"'}, {"Bucket": "b", "Key": "k"}]
    assert ciflow.storage._delete_if_match_refused is True


def test_a_refused_if_match_is_sent_again_without_it_and_then_never_again() -> None:
    c = Client(_error("InvalidArgument", 400))
    s = Storage(c)
    assert s.delete_content("b", "k", "e1", checked=True) == 1
    assert s.delete_content("b", "k", "e1") == 1
    assert c.calls == [{"Bucket": "b", "Key": "k", "IfMatch": '"e1"'}, {"Bucket": "b", "Key": "k"},
                       {"Bucket": "b", "Key": "k"}]


def test_a_400_that_is_not_about_if_match_is_an_error_and_if_match_is_kept() -> None:
    c = Client(_error("InvalidArgument", 400), _error("InvalidArgument", 400))
    with pytest.raises(PermanentError):
        Storage(c).delete_content("b", "k", "e1", checked=True)
    assert ciflow.storage._delete_if_match_refused is False


def test_versions_and_plain_deletes_carry_no_if_match() -> None:
    c = Client()
    Storage(c).delete("b", "k", "v1", if_match="e1")
    Storage(c).delete("b", "k")
    assert c.calls == [{"Bucket": "b", "Key": "k", "VersionId": "v1"}, {"Bucket": "b", "Key": "k"}]
