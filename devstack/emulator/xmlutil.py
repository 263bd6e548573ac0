"""Small XML helpers for the emulator: ordered dict → XML, and defused XML → dict."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape


def to_xml(tag: str, value: Any) -> str:
    """Serialise nested dicts/lists/scalars; lists become repeated elements."""
    if isinstance(value, list):
        return "".join(to_xml(tag, v) for v in value)
    if isinstance(value, dict):
        inner = "".join(to_xml(k, v) for k, v in value.items())
        return f"<{tag}>{inner}</{tag}>"
    if value is None or value == "":
        return f"<{tag}/>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def element_to_dict(elem: Any) -> Any:
    children = list(elem)
    if not children:
        return elem.text or ""
    out: dict[str, Any] = {}
    for child in children:
        v = element_to_dict(child)
        if child.tag in out:
            if not isinstance(out[child.tag], list):
                out[child.tag] = [out[child.tag]]
            out[child.tag].append(v)
        else:
            out[child.tag] = v
    return out
