"""CI job requests (ciflow.jobs), checked against the ImageInspect API page's sample request."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from qcloud_cos.cos_comm import format_xml

from ciflow.jobs import build_job, callback_url
from ciflow.rules import Rule
from ciflow.userdata import UserData

API_PAGE = Path(__file__).resolve().parents[3] / "shared" / "ci-api" / "000_05a34323e7d5a4c3.txt"
BASE_URL = "https://1253960000-abcd1234ef.cq.tencentscf.com"
TOKEN = "v1.1700003600.Zm9vYmFyLWJhei1xdXV4LWNvcmdlLWdyYXVsdC1nYXJwbHk"


def rule(**kw) -> Rule:
    return Rule(**{"name": "images", "job": "ImageInspect", "prefixes": ("input/",), **kw})


def to_xml(job: dict) -> ET.Element:
    """Serialise with the SDK's own writer (what ci_create_media_jobs posts) and parse it back."""
    return ET.fromstring(format_xml(data=job, root="Request"))


def sample_request() -> ET.Element:
    """The <Request> of the page's practical case."""
    text = API_PAGE.read_text(encoding="utf-8")
    case = text[text.index("Practical Case"):]
    match = re.search(r"<Request>.*?</Request>", case, re.S)
    assert match, "sample request not found in the API page"
    return ET.fromstring(match.group(0))


def elements(root: ET.Element) -> list[tuple[str, str]]:
    """(path, text) of every element in document order."""
    out: list[tuple[str, str]] = []

    def walk(el: ET.Element, path: str) -> None:
        out.append((path, (el.text or "").strip()))
        for child in el:
            walk(child, f"{path}/{child.tag}")

    walk(root, root.tag)
    return out


# ------------------------------------------------------------------ the sample


def test_matches_the_documented_sample_request():
    # Given the values of the page's sample request
    job = build_job(rule(callback_format="JSON"), "input/test.png", "This is my data.",
                    "http://callback.demo.com", "XML")
    # When serialised by the SDK
    ours = elements(to_xml(job))
    sample = elements(sample_request())
    # Then every element of the sample is there, in the sample's order and with its text
    assert [e for e in ours if e in sample] == sample
    # and the only addition is the explicit callback type (Url is the documented default)
    assert [e for e in ours if e not in sample] == [("Request/CallBackType", "Url")]


def test_request_structure():
    # Given a rule and an object
    job = build_job(rule(job_level=1), "uploads/cat.png", "ciflow:1;r=images;e=abc", BASE_URL + "/?t=x", "XML")
    # Then the dict has the documented <Request> structure
    assert job == {
        "Tag": "ImageInspect",
        "Input": {"Object": "uploads/cat.png"},
        "Operation": {"UserData": "ciflow:1;r=images;e=abc", "JobLevel": "1"},
        "CallBack": BASE_URL + "/?t=x",
        "CallBackFormat": "XML",
        "CallBackType": "Url",
    }
    # and the XML children come in the documented order
    assert [c.tag for c in to_xml(job)] == ["Tag", "Input", "Operation", "CallBack", "CallBackFormat", "CallBackType"]
    assert [c.tag for c in to_xml(job).find("Operation")] == ["UserData", "JobLevel"]


@pytest.mark.parametrize("level", [0, 1, 2])
def test_job_level_is_a_string(level):
    # Given a rule's job level
    job = build_job(rule(job_level=level), "k.png", "u", "", "XML")
    # Then it is sent as the string the API documents
    assert job["Operation"]["JobLevel"] == str(level)
    assert to_xml(job).findtext("Operation/JobLevel") == str(level)


# ------------------------------------------------------------------- callbacks


def test_callback_carries_the_token():
    # Given the callback base URL and a token
    url = callback_url(BASE_URL, TOKEN)
    job = build_job(rule(), "k.png", "u", url, "XML")
    # When serialised and read back
    sent = to_xml(job).findtext("CallBack")
    # Then the URL is the base with the token as its 't' query parameter
    parts = urlsplit(sent)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "1253960000-abcd1234ef.cq.tencentscf.com", "/")
    assert parse_qs(parts.query) == {"t": [TOKEN]}


@pytest.mark.parametrize("base, expected_prefix", [
    (BASE_URL, BASE_URL + "/?t="),
    (BASE_URL + "/", BASE_URL + "/?t="),
    (BASE_URL + "/cb", BASE_URL + "/cb?t="),
    (BASE_URL + "/cb?env=prod", BASE_URL + "/cb?env=prod&t="),
    (BASE_URL + "/cb?env=prod#frag", BASE_URL + "/cb?env=prod&t="),
])
def test_callback_url_keeps_the_base(base, expected_prefix):
    # Given a base URL with or without a path, query or fragment
    url = callback_url(base, TOKEN)
    # Then the token is appended as a query parameter, keeping the base's own query (fragments dropped)
    assert url == expected_prefix + TOKEN
    assert parse_qs(urlsplit(url).query)["t"] == [TOKEN]


def test_callback_url_encodes_the_token():
    # Given a token with characters that mean something in a query string
    url = callback_url(BASE_URL, "a+b/c=d&e")
    # Then it survives a round trip through the query string
    assert parse_qs(urlsplit(url).query) == {"t": ["a+b/c=d&e"]}


def test_callback_url_with_ampersand_survives_xml():
    # Given a callback URL whose query has two parameters
    url = callback_url(BASE_URL + "/?env=prod", TOKEN)
    # When sent through the SDK's XML writer
    xml = format_xml(data=build_job(rule(), "k.png", "u", url, "XML"), root="Request")
    # Then '&' is escaped on the wire and the URL reads back unchanged
    assert b"env=prod&amp;t=" in xml
    assert ET.fromstring(xml).findtext("CallBack") == url


@pytest.mark.parametrize("rule_format, default, expected", [(None, "XML", "XML"), (None, "JSON", "JSON"),
                                                             ("JSON", "XML", "JSON"), ("XML", "JSON", "XML")])
def test_callback_format(rule_format, default, expected):
    # Given a rule that may set its own callback format, and the deployment default
    job = build_job(rule(callback_format=rule_format), "k.png", "u", BASE_URL, default)
    # Then the rule's format wins
    assert job["CallBackFormat"] == expected


def test_no_callback_url_disables_queue_callback():
    # Given no callback URL
    job = build_job(rule(callback_format="JSON"), "k.png", "u", "", "JSON")
    # Then CallBack is 'no' (which also suppresses the queue's callback) and no format/type is sent
    assert job["CallBack"] == "no"
    assert "CallBackFormat" not in job
    assert "CallBackType" not in job
    assert [c.tag for c in to_xml(job)] == ["Tag", "Input", "Operation", "CallBack"]


# ----------------------------------------------------------------- auto process


@pytest.mark.parametrize("process_type", ["BackupObject", "SwitchObjectToPrivate", "DeleteObject"])
def test_auto_process_block(process_type):
    # Given a rule that lets CI act on its own
    job = build_job(rule(auto_process=process_type), "k.png", "u", BASE_URL, "XML")
    # Then Operation carries the ImageInspect block after UserData and JobLevel
    op = to_xml(job).find("Operation")
    assert [c.tag for c in op] == ["UserData", "JobLevel", "ImageInspect"]
    assert op.findtext("ImageInspect/AutoProcess") == "true"
    assert op.findtext("ImageInspect/ProcessType") == process_type


def test_no_auto_process_block_by_default():
    # Given a rule without auto_process
    job = build_job(rule(), "k.png", "u", BASE_URL, "XML")
    # Then no ImageInspect block is sent (CI's default is AutoProcess=false)
    assert "ImageInspect" not in job["Operation"]
    assert to_xml(job).find("Operation/ImageInspect") is None


# ------------------------------------------------------------------- contents


@pytest.mark.parametrize("key", ["uploads/a&b <c> \"d\" 'e'.png", "uploads/2024 summer/日本語 ü+%41.png"])
def test_awkward_keys_survive_the_xml_writer(key):
    # Given a key with XML-special, percent and unicode characters
    job = build_job(rule(), key, "u", BASE_URL, "XML")
    # When serialised
    # Then the object reads back unchanged
    assert to_xml(job).findtext("Input/Object") == key


def test_user_data_survives_the_xml_writer():
    # Given our encoded UserData
    ud = UserData("images", "5d41402abc4b2a76b9719d911017c592-3", "MTg0NDUxNTg0NzQ4MDY3NTg4OTk").encode()
    # When sent in a job
    sent = to_xml(build_job(rule(), "k.png", ud, BASE_URL, "XML")).findtext("Operation/UserData")
    # Then CI receives exactly what the callback will decode
    assert sent == ud
