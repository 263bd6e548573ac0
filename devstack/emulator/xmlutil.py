"""Small XML helpers for the emulator: ordered dict → XML, defused XML → dict, and placing an element."""

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


def insert_after(d: dict[str, Any], key: str, value: Any, after: str) -> None:
    """d[key] = value; a new key goes right after `after` when that is present (the pages' element order)."""
    if key in d or after not in d:
        d[key] = value
        return
    items = list(d.items())
    i = [k for k, _ in items].index(after) + 1
    d.clear()
    d.update(items[:i] + [(key, value)] + items[i:])


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
