"""CI's error answer: `ApiError` carries the code, message and HTTP status; `error_xml` writes the
documented `<Error><Code/><Message/><RequestId/><TraceId/></Error>` body."""

from __future__ import annotations

import uuid

from .xmlutil import to_xml


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def error_xml(code: str, message: str, resource: str = "") -> bytes:
    # COS/CI errors carry Resource too; the SDK's error parser gives up without it.
    return to_xml("Error", {"Code": code, "Message": message, "Resource": resource or "-",
                            "RequestId": uuid.uuid4().hex, "TraceId": uuid.uuid4().hex}).encode()
