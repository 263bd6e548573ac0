"""ImageInspect in the emulator: read the object, find data after the image's real end.

What the real service answers for a damaged image with nothing hidden behind it (cut off, or its
structure broken) is unverified: decoders open such files, so it is CLEAN by default, and the switch
`damaged_image` = `clean` | `failed` makes it FAILED (`InvalidImage`) instead. The tests run both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .image_inspect import MAX_IMAGE_BYTES, InspectError, inspect_image

if TYPE_CHECKING:
    from .server import CiEmulator, Job

PROCESS_TYPES = ("BackupObject", "SwitchObjectToPrivate", "DeleteObject")
BACKUP_PREFIX = "abnormal_images_backup/"


def validate(doc: dict[str, Any]) -> None:
    from .server import ApiError

    op = doc.get("Operation") or {}
    ii = op.get("ImageInspect") if isinstance(op, dict) else None
    if ii in (None, ""):
        return
    if not isinstance(ii, dict):
        raise ApiError("InvalidArgument", "Request.Operation.ImageInspect must be a container")
    auto = ii.get("AutoProcess", "false")
    if auto not in ("true", "false"):
        raise ApiError("InvalidArgument", "Request.Operation.ImageInspect.AutoProcess must be true or false")
    ptype = ii.get("ProcessType", "BackupObject")
    if ptype not in PROCESS_TYPES:
        raise ApiError("InvalidArgument",
                       f"Request.Operation.ImageInspect.ProcessType must be one of {', '.join(PROCESS_TYPES)}")


def process(emu: CiEmulator, job: Job) -> tuple[str, dict[str, Any]]:
    from .server import ApiError

    key = job.detail["Input"]["Object"]
    base = {"InputObjectName": key, "InputObjectUrl": emu.input_url(job)}

    def fail(code: str, message: str) -> ApiError:
        err = ApiError(code, message)
        err.result = ("ImageInspectResult", {"Code": code, "Message": message, **base,  # type: ignore[attr-defined]
                                             "State": "Failed"})
        return err

    s3 = emu.s3()
    try:
        head = s3.head_object(Bucket=job.bucket, Key=key)
    except Exception:  # noqa: BLE001 - any lookup failure means CI cannot read the input
        raise fail("InputObjectNotExist", f"the input object {key} does not exist or cannot be read") from None
    if int(head["ContentLength"]) > MAX_IMAGE_BYTES:
        raise fail("InputFileTooLarge", "ImageInspect accepts images up to 32 MB")
    data = s3.get_object(Bucket=job.bucket, Key=key)["Body"].read()
    try:
        r = inspect_image(data)
    except InspectError as err:
        raise fail(err.code, err.message) from None
    if r.damaged and emu.config.get("damaged_image", "clean") == "failed":
        raise fail("InvalidImage", f"the {r.pic_type} image is damaged (cut off or its structure broken)")
    pr: dict[str, Any] = {"PicSize": r.pic_size, "PicType": r.pic_type, "Suspicious": r.suspicious}
    if r.suspicious:
        pr.update({"SuspiciousBeginByte": r.suspicious_begin, "SuspiciousEndByte": r.suspicious_end,
                   "SuspiciousSize": r.suspicious_size, "SuspiciousType": r.suspicious_type})
    ii = (job.request.get("Operation") or {}).get("ImageInspect") or {}
    if isinstance(ii, dict) and ii.get("AutoProcess") == "true" and r.suspicious:
        pr["AutoProcessResult"] = _auto_process(s3, job.bucket, key, ii.get("ProcessType") or "BackupObject")
    return "ImageInspectResult", {"Code": "Success", "Message": "", **base, "ProcessResult": pr,
                                  "State": "Success"}


def _auto_process(s3: Any, bucket: str, key: str, ptype: str) -> dict[str, str]:
    try:
        if ptype == "BackupObject":
            s3.copy_object(Bucket=bucket, Key=BACKUP_PREFIX + key, CopySource={"Bucket": bucket, "Key": key})
            s3.delete_object(Bucket=bucket, Key=key)
        elif ptype == "SwitchObjectToPrivate":
            s3.put_object_acl(Bucket=bucket, Key=key, ACL="private")
        elif ptype == "DeleteObject":
            s3.delete_object(Bucket=bucket, Key=key)
    except Exception as exc:  # noqa: BLE001 - reported in the result, as CI does
        return {"Code": "Failed", "Message": str(exc)[:200]}
    return {"Code": "Success", "Message": "Success"}


def register(emu: CiEmulator) -> None:
    emu.processors["ImageInspect"] = process
    emu.validators["ImageInspect"] = validate
