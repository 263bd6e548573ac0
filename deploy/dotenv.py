"""The deploy settings: `.env` (never committed; see .env.example), overridden by the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"


def read(path: Path) -> dict[str, str]:
    """`KEY=value` lines; blank lines and `#` comments are skipped, matching quotes are removed."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.removeprefix("export ").strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def load(path: Path = ENV_FILE, environ: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """`.env` values with the environment's values on top (an exported variable always wins)."""
    environ = os.environ if environ is None else environ
    merged = read(path)
    merged.update({k: v for k, v in environ.items() if k in merged or k.startswith(("TENCENT_", "CIFLOW_"))})
    return merged


def missing(values: Mapping[str, str], names: list[str]) -> list[str]:
    return [n for n in names if not values.get(n, "").strip()]
