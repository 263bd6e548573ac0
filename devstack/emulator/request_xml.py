"""Reading a `POST /jobs` body as CI does: defused XML with bounded size, depth and element count.

Whatever a client sends, the answer is a `ParseError` with a documented code: `MissingContent` for an
empty body, `InvalidContent` for anything that is not one small, well-formed `<Request>` document
without a DTD or entities (bad UTF-8, a wrong encoding declaration, deep nesting, a huge body, ...).
Nothing here recurses on the client's structure, so no body can exhaust the stack.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import TreeBuilder

from .errors import ApiError
from .xmlutil import element_to_dict

MAX_BODY_BYTES = 1 << 20   # far above any documented request (the largest, VideoEnhance, is a few KB)
MAX_DEPTH = 16             # the deepest documented path is Request.Operation.VideoEnhance.Transcode.Video.Codec
MAX_ELEMENTS = 5000


class _TooBig(Exception):
    pass


class _BoundedBuilder(TreeBuilder):
    """A TreeBuilder that stops the parse as soon as the tree is too deep or has too many elements."""

    def __init__(self, max_depth: int, max_elements: int):
        super().__init__()
        self.depth = 0
        self.count = 0
        self.max_depth = max_depth
        self.max_elements = max_elements

    def start(self, tag: str, attrs: Any) -> Any:
        self.depth += 1
        self.count += 1
        if self.depth > self.max_depth:
            raise _TooBig(f"elements are nested more than {self.max_depth} deep")
        if self.count > self.max_elements:
            raise _TooBig(f"the body has more than {self.max_elements} elements")
        return super().start(tag, attrs)

    def end(self, tag: str) -> Any:
        self.depth -= 1
        return super().end(tag)


def parse_request(body: bytes, max_bytes: int = MAX_BODY_BYTES, max_depth: int = MAX_DEPTH,
                  max_elements: int = MAX_ELEMENTS) -> dict[str, Any]:
    """The `<Request>` body as nested dicts (repeated elements become lists); raises ApiError."""
    from defusedxml.ElementTree import DefusedXMLParser

    if len(body) > max_bytes:
        raise ApiError("InvalidContent", f"the request body is larger than {max_bytes} bytes")
    if not body.strip():
        raise ApiError("MissingContent", "the request body is empty")
    parser = DefusedXMLParser(target=_BoundedBuilder(max_depth, max_elements), forbid_dtd=True)
    try:
        parser.feed(body)
        root = parser.close()
    except _TooBig as exc:
        raise ApiError("InvalidContent", f"the request body is not accepted: {exc}") from None
    except Exception:  # noqa: BLE001 - malformed XML, bad encodings, DTDs and entities are the client's fault
        raise ApiError("InvalidContent", "the request body is not well-formed XML without a DTD or entities") from None
    if root.tag != "Request":
        raise ApiError("InvalidContent", "the root element must be Request")
    doc = element_to_dict(root)
    if not isinstance(doc, dict):
        raise ApiError("MissingContent", "Request is empty")
    return doc
