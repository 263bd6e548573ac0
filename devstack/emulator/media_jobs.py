"""VideoEnhance and DigitalWatermark in the emulator: the jobs, run on real media with PyAV.

Both job types read `Input.Object` from the job's bucket, process it with FFmpeg's libraries (the ones
inside the PyAV wheel; no ffmpeg binary) and write the result to `Operation.Output` — which may name
another bucket — with `${ext}` (the container's extension) and `${jobid}` (the JobId) expanded in
`Output.Object`. A finished job carries, in `JobsDetail.Operation`, `MediaInfo` (measured by opening the
OUTPUT, `media_probe`) and `MediaResult` (`OutputFile`: Bucket, Region, ObjectName, ObjectPrefix, Md5Info).
Both pages say these two are not returned while the job is incomplete, so a failed job has neither.

VideoEnhance: the request becomes a plan (`media_plans`) that `media_render` runs. The create answer shows
`Progress` 0, `TemplateName` (with a `TemplateId`) and, with a `DigitalWatermark`, its `State` Running,
which goes to Success; a source that is too short marks it Failed and fails the job, unless
`IgnoreError=true`, when the job goes on without the digital watermark.

DigitalWatermark: the source must be longer than 90 s (`config["digital_watermark_min_seconds"]`); the
output keeps the input's container, size and frame rate (H.264 at CRF 18, audio re-encoded), and carries
the message as `digital_watermark` writes it.

Values, templates and error codes: `media_spec`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import shutil
import tempfile
from typing import TYPE_CHECKING, Any, Callable, Optional

from .digital_watermark import extract_digital_watermark
from .errors import ApiError
from .media_plans import (
    AudioPlan,
    EnhancePlan,
    resolve_digital_watermark,
    resolve_video_enhance,
    validate_digital_watermark,
    validate_video_enhance,
)
from .media_probe import SourceInfo, inspect_source, probe_media_info
from .media_render import Overlay, image_watermark, object_ref, render, render_text_watermark, watermark_position
from .media_spec import (
    CONTAINERS,
    DEFAULT_TEMPLATES,
    ERR_INPUT_NOT_EXIST,
    ERR_INTERNAL,
    ERR_INVALID_INPUT,
    ERR_UNSUPPORTED,
    TAG_DIGITAL_WATERMARK,
    TAG_VIDEO_ENHANCE,
)
from .xmlutil import insert_after

if TYPE_CHECKING:
    from .server import CiEmulator, Job

# The one reader of what the emulator embeds, for tools outside the emulator (demo, tests).
__all__ = ["extract_digital_watermark", "register"]


def _set_op(emu: Any, job: Any, key: str, value: Any, after: str = "") -> None:
    lock = getattr(emu, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        insert_after(job.detail["Operation"], key, value, after)


def _set_progress(emu: Any, job: Any, pct: float) -> None:
    lock = getattr(emu, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        insert_after(job.detail, "Progress", str(int(pct)), after="State")


def _dw_state(request_dw: dict[str, Any], state: str) -> dict[str, Any]:
    """Operation.DigitalWatermark as the page shows it: State, then the request's own elements."""
    return {"State": state, **{k: v for k, v in request_dw.items() if k != "State"}}


def on_create_video_enhance(emu: CiEmulator, job: Job) -> None:
    """What the create answer shows beyond the request: Progress 0, TemplateName, DigitalWatermark.State."""
    plan = resolve_video_enhance(job.request, emu.config)
    insert_after(job.detail, "Progress", "0", after="State")
    if plan.template_name is not None:
        insert_after(job.detail["Operation"], "TemplateName", plan.template_name, after="TemplateId")
    if plan.digital_watermark is not None:
        job.detail["Operation"]["DigitalWatermark"] = _dw_state(job.request["Operation"]["DigitalWatermark"],
                                                                "Running")


def _expand(obj: str, ext: str, job_id: str) -> str:
    return obj.replace("${ext}", ext).replace("${jobid}", job_id)


def _download_input(emu: Any, job: Any, workdir: str) -> str:
    key = job.detail["Input"]["Object"]
    s3 = emu.s3()
    try:
        s3.head_object(Bucket=job.bucket, Key=key)
    except Exception:  # noqa: BLE001 - any lookup failure means CI cannot read the input
        raise ApiError(ERR_INPUT_NOT_EXIST, f"the input object {key} does not exist or cannot be read") from None
    path = os.path.join(workdir, "input")  # no extension: FFmpeg probes the content, as CI does
    with open(path, "wb") as fh:
        body = s3.get_object(Bucket=job.bucket, Key=key)["Body"]
        shutil.copyfileobj(body, fh, 1 << 20)
    return path


def _upload_output(emu: Any, job: Any, local: str, ext: str) -> dict[str, Any]:
    out = job.request["Operation"]["Output"]
    bucket, region = str(out["Bucket"]).strip(), str(out["Region"]).strip()
    key = _expand(str(out["Object"]).strip(), ext, job.detail["JobId"])
    md5 = hashlib.md5()
    with open(local, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            md5.update(chunk)
    try:
        with open(local, "rb") as fh:
            emu.s3().put_object(Bucket=bucket, Key=key, Body=fh, ContentType=_content_type(ext))
    except Exception as exc:  # noqa: BLE001 - reported as the job's failure
        raise ApiError(ERR_INTERNAL, f"cannot write the output {bucket}/{key}: {str(exc)[:200]}") from None
    return {"OutputFile": {"Bucket": bucket, "Md5Info": {"Md5": md5.hexdigest(), "ObjectName": key},
                           "ObjectName": key, "ObjectPrefix": "", "Region": region}}


def _content_type(ext: str) -> str:
    return {"mp4": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska", "flv": "video/x-flv",
            "ts": "video/mp2t", "webm": "video/webm"}.get(ext, "application/octet-stream")


def _overlay_factory(emu: Any, job: Any, plan: EnhancePlan) -> Callable[[int, int], list[Overlay]]:
    def build(out_w: int, out_h: int) -> list[Overlay]:
        overlays = []
        for wm in plan.watermarks:
            if wm.type == "Text":
                t = wm.text or {}
                img = render_text_watermark(t["text"], int(t["font_size"]), t.get("font_type"), t["color"],
                                            t["opacity"])
            else:
                spec = wm.image or {}
                bucket, key = object_ref(spec["url"])
                try:
                    data = emu.s3().get_object(Bucket=bucket or job.bucket, Key=key)["Body"].read()
                    img = image_watermark(data, spec, out_w, out_h)
                except Exception:  # noqa: BLE001 - unreadable or not an image
                    raise ApiError(ERR_INVALID_INPUT, f"the watermark image {spec['url']} cannot be read "
                                                        "as an image") from None
            x, y = watermark_position(wm, out_w, out_h, img.width, img.height)
            overlays.append(Overlay(img, x, y, wm.start, wm.end))
        return overlays

    return build


def _min_seconds(emu: Any) -> float:
    return float(emu.config.get("digital_watermark_min_seconds", 90))


def _too_short(info: SourceInfo, emu: Any) -> Optional[str]:
    limit = _min_seconds(emu)
    if info.duration > limit:
        return None
    return f"the source file duration must be greater than {limit:g}s for a digital watermark, " \
           f"got {info.duration:.3f}s"


def _finish(emu: Any, job: Any, local: str, ext: str) -> tuple[str, dict[str, Any]]:
    try:
        info = probe_media_info(local)
    except Exception as exc:  # noqa: BLE001 - an output PyAV cannot read back is our failure
        raise ApiError(ERR_INTERNAL, f"the output cannot be read back: {exc}") from None
    result = _upload_output(emu, job, local, ext)
    _set_op(emu, job, "MediaInfo", info)  # the server sets it again from the return value; this fixes the order
    _set_op(emu, job, "MediaResult", result)
    _set_progress(emu, job, 100)
    return "MediaInfo", info


def _guarded(run: Callable[[CiEmulator, Job], tuple[str, dict[str, Any]]]) -> Callable[..., Any]:
    """A failure nobody anticipated still fails the job (InternalError) instead of leaving it Running."""

    def processor(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
        try:
            return run(emu, job)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported as the job's failure, as CI reports its own
            raise ApiError(ERR_INTERNAL, f"media processing failed: {type(exc).__name__}: {exc}"[:500]) from exc

    processor.__name__ = run.__name__
    processor.__doc__ = run.__doc__
    return processor


def process_video_enhance(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    plan = resolve_video_enhance(job.request, emu.config)
    if plan.template_name is not None:
        _set_op(emu, job, "TemplateName", plan.template_name, after="TemplateId")
    if plan.transcode_template_name is not None:
        _set_op(emu, job, "TranscodeTemplateName", plan.transcode_template_name, after="TranscodeTemplateId")
    dw_req = job.request["Operation"].get("DigitalWatermark")
    if plan.digital_watermark is not None:
        _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Running"))
    _set_progress(emu, job, 0)
    workdir = tempfile.mkdtemp(prefix="ci-media-")
    try:
        src = _download_input(emu, job, workdir)
        info = inspect_source(src)
        if plan.digital_watermark is not None:
            why = _too_short(info, emu)
            if why is not None:
                if not plan.digital_watermark.ignore_error:
                    _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Failed"))
                    raise ApiError(ERR_UNSUPPORTED, why)
                _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Failed"))
                plan.digital_watermark = None
        ext = CONTAINERS[plan.container][1]
        dst = os.path.join(workdir, "output." + ext)
        render(src, dst, plan, overlays_for=_overlay_factory(emu, job, plan),
               preset=str(emu.config.get("media_x264_preset", "veryfast")),
               progress=lambda pct: _set_progress(emu, job, pct))
        if plan.digital_watermark is not None:
            _set_op(emu, job, "DigitalWatermark", _dw_state(dw_req, "Success"))
        return _finish(emu, job, dst, ext)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _container_of(format_name: str) -> str:
    names = set(format_name.split(","))
    for fmt, muxer in (("mp4", "mp4"), ("mkv", "matroska"), ("webm", "webm"), ("flv", "flv"), ("ts", "mpegts")):
        if muxer in names:
            return fmt
    return "mp4"


def process_digital_watermark(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    dw = resolve_digital_watermark(job.request)
    _set_progress(emu, job, 0)
    workdir = tempfile.mkdtemp(prefix="ci-media-")
    try:
        src = _download_input(emu, job, workdir)
        info = inspect_source(src)
        why = _too_short(info, emu)
        if why is not None:
            raise ApiError(ERR_UNSUPPORTED, why)
        container = _container_of(info.format_name)
        plan = EnhancePlan(container=container, video_codec="VP9" if container == "webm" else "H.264",
                           crf=18, keep_source_size=True, digital_watermark=dw,
                           audio=AudioPlan(codec="opus" if container == "webm" else "aac"))
        ext = CONTAINERS[container][1]
        dst = os.path.join(workdir, "output." + ext)
        render(src, dst, plan, overlays_for=lambda w, h: [],
               preset=str(emu.config.get("media_x264_preset", "veryfast")),
               progress=lambda pct: _set_progress(emu, job, pct))
        return _finish(emu, job, dst, ext)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def register(emu: CiEmulator) -> None:
    emu.config.setdefault("media_templates", copy.deepcopy(DEFAULT_TEMPLATES))
    emu.config.setdefault("digital_watermark_min_seconds", 90)
    emu.config.setdefault("media_x264_preset", "veryfast")

    def validate_ve(doc: dict[str, Any]) -> None:
        validate_video_enhance(doc, emu.config)

    def validate_dw(doc: dict[str, Any]) -> None:
        validate_digital_watermark(doc, emu.config)

    emu.processors[TAG_VIDEO_ENHANCE] = _guarded(process_video_enhance)
    emu.validators[TAG_VIDEO_ENHANCE] = validate_ve
    emu.on_create[TAG_VIDEO_ENHANCE] = on_create_video_enhance
    emu.processors[TAG_DIGITAL_WATERMARK] = _guarded(process_digital_watermark)
    emu.validators[TAG_DIGITAL_WATERMARK] = validate_dw
