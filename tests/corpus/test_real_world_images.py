"""The detector on several hundred real-world images, checked against an independent oracle
(see report.py and oracle.py), and the corpus turned into evasion cases."""

from __future__ import annotations

import io
import struct
import warnings

import pytest
from PIL import Image

from devstack.emulator.image_inspect import inspect_image

from . import explanations, report, sources


@pytest.fixture(scope="module")
def rows() -> list[report.Row]:
    try:
        return report.load()
    except sources.Unavailable as exc:
        pytest.skip(f"the real-world corpus is unavailable here: {exc}")


@pytest.fixture(scope="module")
def images(rows) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in sources.corpus_files()}


def test_corpus_is_real_world_sized(rows):
    assert len(rows) >= 500
    formats = {row.pic_type for row in rows}
    assert formats == {"png", "jpg", "gif", "bmp", "webp"}


def test_no_false_positive_and_no_missed_payload(rows):
    wrong = [(row.name, row.detector_text(), row.judged.describe()) for row in rows
             if row.outcome in (report.FALSE_POSITIVE, report.MISSED)]
    assert wrong == []


def test_the_oracle_sees_payloads_in_the_corpus(rows):
    # Guard: the oracle is not blind. It must see the corpus's own trailers (a concatenated
    # GIF, a byte after IEND, undeclared pictures after a JPEG) and the declared MPO pictures.
    trailing = {row.name for row in rows if row.judged.trailing}
    assert {"pillow/test_extents_transparency.gif", "pillow/tRNS_null_1x1.png",
            "pillow/sugarshack_bad_mpo_header.jpg"} <= trailing
    mpo = [row for row in rows if row.name.endswith(".mpo") and not row.judged.trailing]
    assert len(mpo) >= 4 and all(row.verdict == "CLEAN" for row in mpo)


def test_every_failed_verdict_is_explained(rows, images):
    failed = {row.name for row in rows if row.verdict == "FAILED"}
    assert failed == set(explanations.FAILED)
    for name in failed:
        # The explanation says no decoder gets an image out of it: Pillow must agree.
        with pytest.raises(Exception), warnings.catch_warnings():  # noqa: B017 - any refusal
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(images[name])) as im:
                im.load()


def test_every_differing_begin_is_explained(rows):
    differing = {row.name for row in rows if row.outcome == report.BEGIN_DIFFERS}
    assert differing == set(explanations.BEGIN_DIFFERS)


def test_docs_table_is_current(rows):
    expected = report.render(rows)
    current = report.DOC.read_text(encoding="utf-8") if report.DOC.exists() else ""
    assert current == expected, "docs/detector.md is stale: run `python -m tests.corpus.report`"


# ------------------------------------------------------------- evasion cases


def _zip() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("payload/run.sh", "#!/bin/sh\necho hidden\n")
    return buf.getvalue()


def _expected_begin_and_type(row: report.Row) -> tuple[int, str]:
    if row.verdict == "SUSPICIOUS":
        return row.begin, row.payload_type if row.payload_type != "UNKNOWN" else "ZIP"
    return row.image_end, "ZIP"


def test_zip_appended_to_every_corpus_image(rows, images):
    payload = _zip()
    wrong = []
    for row in rows:
        if row.verdict == "FAILED":
            continue
        data = images[row.name] + payload
        res = inspect_image(data)
        got = (res.suspicious, res.suspicious_begin, res.suspicious_type)
        if got != (True, *_expected_begin_and_type(row)):
            wrong.append((row.name, got))
    assert wrong == []


def test_declared_sizes_rewritten_to_cover_the_zip(rows, images):
    payload = _zip()
    checked, wrong = 0, []
    for row in rows:
        if row.verdict == "FAILED" or row.pic_type not in ("bmp", "webp"):
            continue
        image = bytearray(images[row.name])
        total = len(image) + len(payload)
        if row.pic_type == "bmp":
            struct.pack_into("<I", image, 2, total)  # bfSize
        else:
            struct.pack_into("<I", image, 4, total - 8)  # RIFF size
        res = inspect_image(bytes(image) + payload)
        checked += 1
        if (res.suspicious, res.suspicious_begin, res.suspicious_type) != (True, *_expected_begin_and_type(row)):
            wrong.append((row.name, res.suspicious_begin, res.suspicious_type))
    assert checked >= 50
    assert wrong == []
