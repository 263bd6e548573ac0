"""VideoTargetRec in the emulator: decode the video, sample frames, detect people, pets and cars.

The request is the one on the "Submitting Tasks" page of video object detection (``Tag`` is
``VideoTargetRec``); the parameters come from ``Operation.TemplateId`` or, when no template is
given, ``Operation.VideoTargetRec`` (``Body``, ``Pet``, ``Car``: ``true``/``false``, default
``false``, not all ``false``, per the create-template page). ``TemplateId`` wins over inline
parameters.

Templates
---------
A ``TemplateId`` is known when it looks like a CI template id (``t`` and 32 or 33 lowercase hex
digits: the API pages' own examples, such as ``t1460606b9752148c4ab182f55163ba7cd``, have 33) or
is a key of ``emu.config["video_target_rec_templates"]`` (id → ``{"Body", "Pet", "Car", "Name"}``
with ``true``/``false`` strings or booleans). A well-formed id that is not in the map detects all
three targets. Any other id fails job creation with ``InvalidArgument``. ``validate(doc)`` gets no
emulator, so it looks ids up in the maps of the emulators this module was registered with.

The create answer (``POST /jobs``) carries ``TemplateName`` right after ``TemplateId`` and, like every
create answer on the page, no ``Input``; the job itself (``GET /jobs/<id>``, callbacks) keeps ``Input``.

What runs
---------
The input object is downloaded to a temporary file and decoded with PyAV. One frame is sampled
every ``emu.config["video_sample_interval"]`` seconds (default 1.0, by presentation time, starting
with the first frame), at most ``video_max_samples`` frames (default 600). Each sampled frame is
shrunk to at most ``video_max_width`` (default 640) pixels wide, and the detectors run on that
copy; boxes are mapped back to the original frame's pixels. Only OpenCV's bundled models are used,
and nothing is downloaded at run time:

* Body (``Name`` ``person``): the HOG + linear-SVM pedestrian detector
  (``cv2.HOGDescriptor_getDefaultPeopleDetector``) and the Haar cascades
  ``haarcascade_frontalface_default.xml``, ``haarcascade_upperbody.xml`` and
  ``haarcascade_fullbody.xml``. A face box is reported as it is (the person's visible part),
  never grown into an imagined body box.
* Pet (``Name`` ``cat``): ``haarcascade_frontalcatface.xml`` and
  ``haarcascade_frontalcatface_extended.xml``. These know cat faces only; nothing here can say
  ``dog``, so no dog is ever reported.
* Car (``Name`` ``car``): **OpenCV ships no car detector.** When
  ``emu.config["car_cascade_path"]`` names a Haar cascade XML file it is used; otherwise the
  ``CarRecognition`` list stays empty, the result's ``Message`` says that car detection is not
  available, and one warning is logged per job. No detection is ever invented.

Scores
------
The detectors give no calibrated probability, so ``Score`` (0-100) is a monotone map of each
detector's own evidence, built so that **50 means exactly at the acceptance threshold used here**
and higher means more evidence:

* Haar cascades: ``n`` is the number of raw detection windows that OpenCV merged into the box
  (``detectMultiScale2``'s ``numDetections``) and ``m`` the ``minNeighbors`` threshold;
  ``Score = round(100 * n / (n + m))``. A box is only kept when ``n > m``, so kept boxes score
  above 50; ``n = 3m`` gives 75 and ``n = 9m`` gives 90.
* HOG: ``w`` is the SVM decision value (distance from the hyperplane) and ``t`` the hit
  threshold (``HOG_HIT_THRESHOLD``); ``Score = round(100 / (1 + exp(-3 * (w - t))))``.

Overlapping boxes of one target type (from any of its detectors) go through greedy
non-maximum suppression by score: a box is dropped when its IoU with a kept box exceeds 0.4, or
when 70 % of the smaller box lies inside the kept box (a face inside an upper body is one person).

Result
------
``VideoTargetRecResult`` is ``State``, ``Code``, ``Message`` and the three documented arrays
``BodyRecognition``, ``PetRecognition`` and ``CarRecognition``; each entry is ``Time`` (seconds,
a string), ``Url`` (the snapshot's URL, or empty) and ``BodyInfo`` / ``PetInfo`` / ``CarInfo``
entries of ``Name``, ``Score`` (int) and ``Location`` (``X``, ``Y``, ``Width``, ``Height``).
The types follow the page's tables exactly: ``BodyInfo.Location`` values are strings, while
``PetInfo.Location`` and ``CarInfo.Location`` values are ints. Only sampled frames with at least
one detection produce an entry. With ``Operation.SnapshotPrefix`` set, each such frame is saved as
a JPEG to ``<SnapshotPrefix>/<JobId>/<index>.jpg`` (index 0, 1, … in time order) in the job's
bucket, and its URL is the entries' ``Url``.

Failures (the job ends ``Failed``; the result carries ``State``, ``Code`` and ``Message``)
-------------------------------------------------------------------------------------------
* ``InputObjectNotExist`` - the input object does not exist or cannot be read.
* ``InvalidInput``        - the object is not a video: FFmpeg cannot open it (random bytes, an
  empty file), it has no video stream (audio only), or FFmpeg reads it only as a still image or
  as text (its ``tty`` demuxer opens any text file as ANSI art).
* ``VideoDecodeFailed``   - it is a video, but cannot be decoded: an MP4/MOV, Matroska/WebM, AVI
  or FLV file FFmpeg cannot open (truncated, corrupt), a decoder error, or no frame at all.
* ``InvalidArgument``     - a configured template enables no target.
* ``SnapshotWriteFailed`` - a snapshot could not be written to the bucket.
* ``InternalError``       - PyAV, OpenCV or NumPy is not installed where the emulator runs.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import quote

from .xmlutil import insert_after

if TYPE_CHECKING:
    from .server import CiEmulator, Job

TAG = "VideoTargetRec"
RESULT_KEY = "VideoTargetRecResult"
TARGETS = ("Body", "Pet", "Car")
TEMPLATE_ID_RE = re.compile(r"^t[0-9a-f]{32,33}$")
DEFAULT_TEMPLATE_NAME = "video_target_rec_default"
MAX_PREFIX_BYTES = 800  # COS keys are at most 850 bytes; leave room for "/<JobId>/<index>.jpg"

CAR_UNAVAILABLE = ("car detection is not available in this emulator: OpenCV ships no car detector; "
                   "set car_cascade_path to a Haar cascade XML file to enable it")

# Haar cascades: (file, minNeighbors, scaleFactor, minSize). scaleFactor 1.05 for the cat faces,
# whose cascades miss at coarser pyramids.
BODY_CASCADES = (("haarcascade_frontalface_default.xml", 5, 1.1, (24, 24)),
                 ("haarcascade_upperbody.xml", 5, 1.1, (44, 36)),
                 ("haarcascade_fullbody.xml", 4, 1.1, (28, 56)))
PET_CASCADES = (("haarcascade_frontalcatface.xml", 3, 1.05, (32, 32)),
                ("haarcascade_frontalcatface_extended.xml", 3, 1.05, (32, 32)))
CAR_CASCADE_NEIGHBOURS = 4
HOG_HIT_THRESHOLD = 1.0  # SVM margin; at 0 the astronaut() photo alone gets a pedestrian at 0.70
NMS_IOU = 0.4
NMS_CONTAINED = 0.7
JPEG_QUALITY = 85

log = logging.getLogger(__name__)

# Emulators this module is registered with, so `validate(doc)` can find configured template ids.
_EMULATORS: weakref.WeakSet[Any] = weakref.WeakSet()
_local = threading.local()  # OpenCV detectors are not safe to share between worker threads


# ----- validation ---------------------------------------------------------------------------------
def _err(code: str, message: str) -> Exception:
    from .server import ApiError

    return ApiError(code, message)


def _configured_templates() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for emu in list(_EMULATORS):
        templates = emu.config.get("video_target_rec_templates") or {}
        if isinstance(templates, dict):
            out.update(templates)
    return out


def _template_known(template_id: str, templates: Optional[dict[str, Any]] = None) -> bool:
    if templates is None:
        templates = _configured_templates()
    return bool(TEMPLATE_ID_RE.match(template_id)) or template_id in templates


def _flag(value: Any) -> Optional[bool]:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    return None


def validate(doc: dict[str, Any]) -> None:
    """Reject what the VideoTargetRec pages forbid; raises `ApiError` (`MissingContent`/`InvalidArgument`)."""
    op = doc.get("Operation")
    if op in (None, "") or not isinstance(op, dict):
        raise _err("MissingContent", "Request.Operation is required")
    for name in ("TemplateId", "VideoTargetRec", "SnapshotPrefix"):
        if isinstance(op.get(name), list):
            raise _err("InvalidArgument", f"Request.Operation.{name} may appear only once")

    template_id = op.get("TemplateId")
    if template_id is not None and not isinstance(template_id, str):
        raise _err("InvalidArgument", "Request.Operation.TemplateId must be a string")
    if template_id and not _template_known(template_id):
        raise _err("InvalidArgument", f"Request.Operation.TemplateId {template_id!r} does not exist")

    vtr = op.get("VideoTargetRec")
    if vtr is not None:
        if vtr == "":
            vtr = {}
        if not isinstance(vtr, dict):
            raise _err("InvalidArgument", "Request.Operation.VideoTargetRec must be a container")
        for key, value in vtr.items():
            if key not in TARGETS:
                raise _err("InvalidArgument", f"Request.Operation.VideoTargetRec.{key} is not a recognised element")
            if _flag(value) is None:
                raise _err("InvalidArgument", f"Request.Operation.VideoTargetRec.{key} must be true or false")
    if not template_id:
        if vtr is None:
            raise _err("MissingContent", "Request.Operation needs TemplateId or VideoTargetRec: "
                                         "the video object detection parameters must be set")
        if not any(_flag(vtr.get(t, "false")) for t in TARGETS):
            raise _err("InvalidArgument", "Request.Operation.VideoTargetRec: Body, Pet and Car cannot all be false")

    prefix = op.get("SnapshotPrefix")
    if prefix is not None:
        _check_prefix(prefix)


def _check_prefix(prefix: Any) -> None:
    where = "Request.Operation.SnapshotPrefix"
    if not isinstance(prefix, str):
        raise _err("InvalidArgument", f"{where} must be a string")
    if prefix == "":
        return  # documented: no snapshot is saved when the field is empty
    if any(ord(c) < 32 or ord(c) == 127 for c in prefix):
        raise _err("InvalidArgument", f"{where} must not contain control characters")
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise _err("InvalidArgument", f"{where} must be at most {MAX_PREFIX_BYTES} bytes")
    if prefix.startswith("/"):
        raise _err("InvalidArgument", f"{where} must not start with '/'")
    segments = prefix[:-1].split("/") if prefix.endswith("/") else prefix.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise _err("InvalidArgument", f"{where} must not contain empty, '.' or '..' path segments")


def resolve_targets(op: dict[str, Any], templates: dict[str, Any]) -> tuple[dict[str, bool], Optional[str]]:
    """The enabled targets and the template name (None without a template); TemplateId wins."""
    template_id = op.get("TemplateId")
    if template_id:
        entry = templates.get(template_id)
        if entry is None:
            return dict.fromkeys(TARGETS, True), DEFAULT_TEMPLATE_NAME
        targets = {t: bool(_flag(entry.get(t, False))) for t in TARGETS}
        return targets, str(entry.get("Name") or template_id)
    vtr = op.get("VideoTargetRec") or {}
    return {t: bool(_flag(vtr.get(t, "false"))) for t in TARGETS}, None


# ----- detection ----------------------------------------------------------------------------------
@dataclass
class Detection:
    name: str
    score: int
    x: int
    y: int
    w: int
    h: int


def _haar_score(n: int, min_neighbours: int) -> int:
    return round(100 * n / (n + min_neighbours))


def _hog_score(weight: float, threshold: float = HOG_HIT_THRESHOLD) -> int:
    return round(100 / (1 + math.exp(-3 * (weight - threshold))))


class Detectors:
    """The OpenCV models for one worker thread; `car_cascade` is optional."""

    def __init__(self, car_cascade: Optional[str]):
        import cv2

        def load(path: str) -> Any:
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():
                raise OSError(f"cannot load the cascade {path}")
            return cascade

        root = cv2.data.haarcascades
        self.body = [(load(os.path.join(root, f)), n, s, m) for f, n, s, m in BODY_CASCADES]
        self.pet = [(load(os.path.join(root, f)), n, s, m) for f, n, s, m in PET_CASCADES]
        self.car = [(load(car_cascade), CAR_CASCADE_NEIGHBOURS, 1.1, (24, 24))] if car_cascade else []
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    @staticmethod
    def _haar(gray: Any, cascades: list[Any], name: str) -> list[Detection]:
        out = []
        for cascade, neighbours, scale, min_size in cascades:
            boxes, counts = cascade.detectMultiScale2(gray, scaleFactor=scale, minNeighbors=neighbours,
                                                      minSize=min_size)
            for (x, y, w, h), n in zip(boxes, counts):
                out.append(Detection(name, _haar_score(int(n), neighbours), int(x), int(y), int(w), int(h)))
        return out

    def detect(self, bgr: Any, targets: dict[str, bool]) -> dict[str, list[Detection]]:
        """Detections per target on one (already downscaled) BGR frame, after NMS."""
        import cv2
        import numpy as np

        gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        found: dict[str, list[Detection]] = {t: [] for t in TARGETS}
        if targets.get("Body"):
            found["Body"] = self._haar(gray, self.body, "person")
            rects, weights = self.hog.detectMultiScale(bgr, hitThreshold=HOG_HIT_THRESHOLD, winStride=(8, 8),
                                                       padding=(8, 8), scale=1.05)
            for (x, y, w, h), weight in zip(rects, np.ravel(weights).tolist()):
                found["Body"].append(Detection("person", _hog_score(weight), int(x), int(y), int(w), int(h)))
        if targets.get("Pet"):
            found["Pet"] = self._haar(gray, self.pet, "cat")
        if targets.get("Car") and self.car:
            found["Car"] = self._haar(gray, self.car, "car")
        return {t: nms(d) for t, d in found.items()}


def _detectors(car_cascade: Optional[str]) -> Detectors:
    cache = getattr(_local, "detectors", None)
    if cache is None or cache[0] != car_cascade:
        cache = (car_cascade, Detectors(car_cascade))
        _local.detectors = cache
    return cache[1]


def nms(dets: list[Detection]) -> list[Detection]:
    """Greedy non-maximum suppression by score (IoU > NMS_IOU, or the smaller box NMS_CONTAINED inside)."""
    kept: list[Detection] = []
    for d in sorted(dets, key=lambda d: (-d.score, -d.w * d.h)):
        ok = True
        for k in kept:
            ix = max(0, min(d.x + d.w, k.x + k.w) - max(d.x, k.x))
            iy = max(0, min(d.y + d.h, k.y + k.h) - max(d.y, k.y))
            inter = ix * iy
            if not inter:
                continue
            a, b = d.w * d.h, k.w * k.h
            if inter / (a + b - inter) > NMS_IOU or inter / min(a, b) > NMS_CONTAINED:
                ok = False
                break
        if ok:
            kept.append(d)
    return kept


# ----- decoding -----------------------------------------------------------------------------------
@dataclass
class Sample:
    time: float
    frame: Any  # BGR uint8, original size


class InputError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# FFmpeg opens some non-video inputs as "video": still images (image2, *_pipe) and any text
# file as ANSI art (tty).
NOT_VIDEO_FORMATS = ("image2", "image2pipe", "tty", "lavfi")


def _looks_like_video_container(path: str) -> bool:
    """The magic of MP4/MOV, Matroska/WebM, AVI or FLV: a truncated or corrupt video, not some other file."""
    with open(path, "rb") as f:
        head = f.read(12)
    return (head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"
            or (head[:4] == b"RIFF" and head[8:11] == b"AVI") or head[:3] == b"FLV")


def iter_samples(path: str, interval: float, max_samples: int) -> Iterator[Sample]:
    """Yield one decoded frame every `interval` seconds of presentation time; raises InputError.

    Frames are yielded as they are decoded, so a long video never sits in memory.
    """
    import av

    try:
        container = av.open(path, mode="r")
    except Exception:  # noqa: BLE001 - whatever FFmpeg cannot open is not a readable video
        if _looks_like_video_container(path):
            raise InputError("VideoDecodeFailed", "the video container is truncated or corrupt") from None
        raise InputError("InvalidInput", "the input is not a video") from None
    with container:
        fmt = container.format.name or ""
        if fmt in NOT_VIDEO_FORMATS or fmt.endswith("_pipe"):
            raise InputError("InvalidInput", f"the input is not a video (FFmpeg reads it as {fmt})")
        if not container.streams.video:
            raise InputError("InvalidInput", "the input has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        rate = float(stream.average_rate or 25)
        sampled = decoded = 0
        next_at = 0.0
        frames = container.decode(stream)
        while sampled < max_samples:
            try:
                frame = next(frames, None)
            except Exception as exc:  # noqa: BLE001 - any decoder error fails the job the same way
                raise InputError("VideoDecodeFailed", f"the video cannot be decoded: {exc}") from None
            if frame is None:
                break
            decoded += 1
            t = max(0.0, (float(frame.time) - start) if frame.time is not None else (decoded - 1) / rate)
            if t + 1e-6 < next_at:
                continue
            sampled += 1
            next_at = (math.floor(t / interval + 1e-6) + 1) * interval
            yield Sample(t, frame.to_ndarray(format="bgr24"))
    if not sampled:
        raise InputError("VideoDecodeFailed", "the video stream yields no decodable frame")


def sample_frames(path: str, interval: float, max_samples: int) -> list[Sample]:
    """All of `iter_samples` as a list."""
    return list(iter_samples(path, interval, max_samples))


# ----- the job ------------------------------------------------------------------------------------
def _fmt_time(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _location(d: Detection, as_str: bool) -> dict[str, Any]:
    values = {"X": d.x, "Y": d.y, "Width": d.w, "Height": d.h}
    return {k: str(v) for k, v in values.items()} if as_str else values


def _to_original(d: Detection, scale: float, width: int, height: int) -> Detection:
    x = min(max(0, round(d.x / scale)), width - 1)
    y = min(max(0, round(d.y / scale)), height - 1)
    w = max(1, min(round(d.w / scale), width - x))
    h = max(1, min(round(d.h / scale), height - y))
    return Detection(d.name, max(0, min(100, d.score)), x, y, w, h)


def object_url(job: Job, key: str) -> str:
    return f"http://{job.bucket}.cos.{job.region}.myqcloud.com/{quote(key, safe='/')}"


def _put_snapshot(s3: Any, job: Job, key: str, frame: Any, fail: Callable[[str, str], Exception]) -> str:
    import cv2

    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    try:
        if not ok:
            raise ValueError("JPEG encoding failed")
        s3.put_object(Bucket=job.bucket, Key=key, Body=jpeg.tobytes(), ContentType="image/jpeg")
    except Exception as exc:  # noqa: BLE001 - reported as the job's failure
        raise fail("SnapshotWriteFailed", f"cannot write the snapshot {key}: {exc}") from None
    return object_url(job, key)


def process(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    from .server import ApiError

    def fail(code: str, message: str) -> ApiError:
        err = ApiError(code, message)
        err.result = (RESULT_KEY, {"State": "Failed", "Code": code, "Message": message})  # type: ignore[attr-defined]
        return err

    try:
        import av  # noqa: F401 - checked here so a missing package fails the job, not the worker
        import cv2
        import numpy  # noqa: F401
    except ImportError as exc:
        raise fail("InternalError", f"the emulator cannot run VideoTargetRec: {exc}") from None

    op = job.request.get("Operation") or {}
    templates = emu.config.get("video_target_rec_templates") or {}
    targets, template_name = resolve_targets(op, templates)
    if template_name is not None:
        job.detail["Operation"].setdefault("TemplateName", template_name)
    if not any(targets.values()):
        raise fail("InvalidArgument", f"the template {op.get('TemplateId')} enables none of Body, Pet and Car")

    messages = []
    car_cascade = emu.config.get("car_cascade_path") or None
    if targets["Car"] and car_cascade is None:
        messages.append(CAR_UNAVAILABLE)
        log.warning("[ci-emulator] job %s: %s", job.job_id, CAR_UNAVAILABLE)
    try:
        detectors = _detectors(car_cascade)
    except OSError as exc:
        raise fail("InternalError", str(exc)) from None

    key = job.detail["Input"]["Object"]
    s3 = emu.s3()
    max_width = int(emu.config.get("video_max_width") or 640)
    interval = float(emu.config.get("video_sample_interval") or 1.0)
    max_samples = int(emu.config.get("video_max_samples") or 600)
    prefix = op.get("SnapshotPrefix") or ""
    prefix = prefix[:-1] if prefix.endswith("/") else prefix
    lists: dict[str, list[dict[str, Any]]] = {t: [] for t in TARGETS}
    snapshots = 0
    fd, path = tempfile.mkstemp(prefix="ci-vtr-", suffix=".video")
    os.close(fd)
    try:
        try:
            s3.download_file(job.bucket, key, path)
        except Exception:  # noqa: BLE001 - any failure means CI cannot read the input
            raise fail("InputObjectNotExist", f"the input object {key} does not exist or cannot be read") from None
        samples = iter_samples(path, interval, max_samples)
        while True:
            try:
                sample = next(samples, None)
            except InputError as err:
                raise fail(err.code, err.message) from None
            if sample is None:
                break
            height, width = sample.frame.shape[:2]
            scale = min(1.0, max_width / width)
            small = sample.frame if scale == 1.0 else cv2.resize(
                sample.frame, (max(1, round(width * scale)), max(1, round(height * scale))),
                interpolation=cv2.INTER_AREA)
            found = detectors.detect(small, targets)
            if not any(found.values()):
                continue
            url = ""
            if prefix:
                url = _put_snapshot(s3, job, f"{prefix}/{job.job_id}/{snapshots}.jpg", sample.frame, fail)
                snapshots += 1
            for target, dets in found.items():
                if not dets:
                    continue
                infos = [{"Name": d.name, "Score": d.score, "Location": _location(d, as_str=target == "Body")}
                         for d in (_to_original(d, scale, width, height) for d in dets)]
                lists[target].append({"Time": _fmt_time(sample.time), "Url": url, f"{target}Info": infos})
    finally:
        os.unlink(path)

    return RESULT_KEY, {"State": "Success", "Code": "Success", "Message": "; ".join(messages),
                        "BodyRecognition": lists["Body"], "PetRecognition": lists["Pet"],
                        "CarRecognition": lists["Car"]}


def on_create(emu: CiEmulator, job: Job) -> None:
    """The create answer shows TemplateName right after TemplateId when a template is used."""
    templates = emu.config.get("video_target_rec_templates") or {}
    _targets, template_name = resolve_targets(job.request.get("Operation") or {}, templates)
    if template_name is not None:
        insert_after(job.detail["Operation"], "TemplateName", template_name, after="TemplateId")


def register(emu: CiEmulator) -> None:
    emu.config.setdefault("video_sample_interval", 1.0)
    emu.config.setdefault("video_max_width", 640)
    emu.config.setdefault("video_max_samples", 600)
    emu.config.setdefault("car_cascade_path", None)
    emu.config.setdefault("video_target_rec_templates", {})
    _EMULATORS.add(emu)
    emu.processors[TAG] = process
    emu.validators[TAG] = validate
    emu.on_create[TAG] = on_create
    # The page's create answers (its sample and both examples) and its table have no Input.
    emu.create_answer_omits[TAG] = ("Input",)
