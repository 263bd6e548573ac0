"""Callback tokens (ciflow.tokens) and Operation.UserData (ciflow.userdata)."""

from __future__ import annotations

import pytest

from ciflow import tokens, userdata
from ciflow.userdata import UserData

SECRET = "0123456789abcdef-test-secret"
NOW = 1_700_000_000
TTL = 3600
JOB = {"bucket": "photos-1250000000", "key": "uploads/2024 summer/ü +%41.png", "rule": "images",
       "etag": "5d41402abc4b2a76b9719d911017c592"}


def mint(**over) -> str:
    args = {**JOB, **over}
    return tokens.mint(SECRET, args["bucket"], args["key"], args["rule"], args["etag"], TTL, now=NOW)


def verify(token: str, secret: str = SECRET, now: float = NOW + 1, **over) -> str | None:
    args = {**JOB, **over}
    return tokens.verify(token, secret, args["bucket"], args["key"], args["rule"], args["etag"], now=now)


# ---------------------------------------------------------------------- tokens


def test_round_trip():
    # Given a token minted for one job
    token = mint()
    # When verified against the same values before expiry
    # Then it is valid
    assert verify(token) is None


def test_token_shape():
    # Given a token
    version, exp, mac = mint().split(".")
    # Then it is 'v1.<expiry>.<url-safe mac>' with expiry = now + ttl, safe in a query string
    assert version == "v1"
    assert int(exp) == NOW + TTL
    assert mac and set(mac) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize("field, other", [
    ("bucket", "photos-1250000001"),
    ("bucket", "other-1250000000"),
    ("key", "uploads/2024 summer/ü +A.png"),
    ("key", "uploads/2024 summer/ü +%41.PNG"),
    ("key", ""),
    ("rule", "images2"),
    ("etag", "5d41402abc4b2a76b9719d911017c593"),
    ("etag", '"5d41402abc4b2a76b9719d911017c592"'),
])
def test_any_change_fails(field, other):
    # Given a token minted for one job
    token = mint()
    # When verified for a job that differs in one field
    # Then it is refused as not matching
    assert verify(token, **{field: other}) == "token does not match this job"


def test_wrong_secret_fails():
    # Given a token minted with one secret
    # Then another secret does not accept it
    assert verify(mint(), secret=SECRET + "x") == "token does not match this job"


def test_expiry_boundary():
    # Given a token valid until NOW + TTL
    token = mint()
    # Then it is valid at the expiry second and expired one second later
    assert verify(token, now=NOW + TTL) is None
    assert verify(token, now=NOW + TTL + 1) == "expired token"


def test_zero_ttl_token_is_expired_a_second_later():
    # Given a token minted with ttl 0
    token = tokens.mint(SECRET, JOB["bucket"], JOB["key"], JOB["rule"], JOB["etag"], 0, now=NOW)
    # Then it is expired as soon as time moves on
    assert verify(token, now=NOW + 1) == "expired token"


@pytest.mark.parametrize("token", [
    "", "v1", "v1.123", "v1..", "v1.1.2.3", "v2.1800000000.abc", "v1.abc.def", "v1.-5.abc",
    "v1.1e9.abc", "v1. 99.abc", "V1.1800000000.abc",
])
def test_malformed_tokens(token):
    # Given something that is not a v1 token
    # Then it is refused as malformed
    assert verify(token) == "malformed token"


def test_tampered_mac_fails():
    # Given a valid token with one character of its mac changed
    version, exp, mac = mint().split(".")
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    # Then it is refused
    assert verify(f"{version}.{exp}.{flipped}") == "token does not match this job"
    # and so is a truncated or extended mac (as malformed or as not matching)
    assert verify(f"{version}.{exp}.{mac[:-1]}") in ("malformed token", "token does not match this job")
    assert verify(f"{version}.{exp}.{mac}A") in ("malformed token", "token does not match this job")


def test_extended_expiry_fails():
    # Given a valid token whose expiry an attacker pushes into the future
    version, exp, mac = mint().split(".")
    forged = f"{version}.{int(exp) + 10 * TTL}.{mac}"
    # Then the mac no longer matches, even after the real expiry
    assert verify(forged, now=NOW + TTL + 5) == "token does not match this job"


@pytest.mark.parametrize("exp", ["\u00b2", "\u0661\u0667\u0660\u0660", "\uff11\uff17"])
def test_non_ascii_digit_expiry_is_malformed(exp):
    # Given a token whose expiry uses Unicode digits (from an attacker's URL; str.isdigit accepts them)
    version, _, mac = mint().split(".")
    # Then it is refused as malformed rather than raising or being read as a number
    assert verify(f"{version}.{exp}.{mac}") == "malformed token"


def test_non_ascii_mac_is_refused():
    # Given a token whose mac part contains a non-ASCII character
    version, exp, mac = mint().split(".")
    # Then it is refused rather than raising (hmac.compare_digest raises TypeError on non-ASCII str)
    assert verify(f"{version}.{exp}.{mac[:-1]}é") in ("malformed token", "token does not match this job")


# -------------------------------------------------------------------- userdata


@pytest.mark.parametrize("ud", [
    UserData(rule="images", etag="5d41402abc4b2a76b9719d911017c592"),
    UserData(rule="images", etag="5d41402abc4b2a76b9719d911017c592-3", version_id="MTg0NDUxNTg0NzQ4MDY3NTg4OTk"),
    UserData(rule="a.b_c-d", etag="e"),
])
def test_userdata_round_trip(ud):
    # Given UserData
    # When encoded and decoded
    text = ud.encode()
    # Then it is printable ASCII within CI's limit, recognisably ours, and decodes to the same value
    assert userdata.is_printable_ascii(text)
    assert len(text) <= userdata.MAX_LEN
    assert text.startswith("ciflow:1;")
    assert userdata.decode(text) == ud


def test_userdata_encoding_is_stable():
    # Given known values
    # Then the wire format is exactly as documented in the module (CI echoes it back verbatim)
    assert UserData("images", "abc").encode() == "ciflow:1;r=images;e=abc"
    assert UserData("images", "abc", "v9").encode() == "ciflow:1;r=images;e=abc;v=v9"


def test_userdata_length_limit():
    # Given a version id that brings the text to exactly 1024 characters
    head = len(UserData("r", "e", "x").encode()) - 1
    at_limit = UserData("r", "e", "x" * (userdata.MAX_LEN - head))
    # Then it encodes; one more character is refused
    assert len(at_limit.encode()) == 1024
    with pytest.raises(ValueError):
        UserData("r", "e", "x" * (userdata.MAX_LEN - head + 1)).encode()


@pytest.mark.parametrize("ud", [
    UserData("images", "é"),
    UserData("images", "tab\there"),
    UserData("images\n", "e"),
    UserData("images", "e", "\x7f"),
])
def test_userdata_must_be_printable_ascii(ud):
    # Given values with non-printable or non-ASCII characters
    # Then encoding refuses them
    with pytest.raises(ValueError):
        ud.encode()


@pytest.mark.parametrize("text", [
    None, "", 42, "This is my data.", "ciflow:1", "ciflow:1;", "ciflow:2;r=images;e=abc",
    "xciflow:1;r=images;e=abc", "ciflow:1;r=images", "ciflow:1;e=abc", "ciflow:1;r=;e=abc",
    "ciflow:1;rimages;eabc",
])
def test_foreign_userdata_decodes_to_none(text):
    # Given UserData that someone else wrote (or that is incomplete)
    # Then it is not ours
    assert userdata.decode(text) is None


def test_decode_ignores_unknown_fields():
    # Given our UserData with an extra field a later version might add
    # Then the known fields still decode
    assert userdata.decode("ciflow:1;r=images;e=abc;x=1") == UserData("images", "abc")


@pytest.mark.parametrize("text, expected", [
    (" ~azAZ09!", True), ("", True), ("\t", False), ("\x7f", False), ("é", False), ("\n", False),
])
def test_is_printable_ascii(text, expected):
    assert userdata.is_printable_ascii(text) is expected


@pytest.mark.parametrize("raw, expected", [('"abc"', "abc"), ("abc", "abc"), (' "abc-2" ', "abc-2"), (None, ""),
                                           ("", "")])
def test_normalize_etag(raw, expected):
    # Given an ETag as COS returns it (quoted, maybe padded) or missing
    # Then the bare value is used
    assert userdata.normalize_etag(raw) == expected
