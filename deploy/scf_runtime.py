"""How SCF runs our artifacts, and how to reproduce that locally.

SCF's Python 3.9 runtime is CPython 3.9 on Linux x86-64. It unpacks the code zip to `/var/user` and
every layer zip to `/opt`, and runs with `PYTHONPATH=/var/user:/opt` (platform.md §5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

PLATFORM, IMPLEMENTATION, PYTHON_VERSION = "manylinux2014_x86_64", "cp", "3.9"
# The marker environment of the target, for checking wheels' Requires-Python and Requires-Dist.
# The runtime's patch release is not documented, so the oldest 3.9 is assumed.
MARKER_ENV = {
    "python_version": "3.9", "python_full_version": "3.9.0", "implementation_name": "cpython",
    "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
    "platform_machine": "x86_64", "os_name": "posix", "extra": "",
}

PYENV_PYTHON39 = "/root/.pyenv/versions/3.9.18/bin/python3.9"


def python39() -> Optional[str]:
    """A local CPython 3.9 interpreter (pyenv's 3.9.18, else `python3.9` on PATH), or None."""
    for candidate in (PYENV_PYTHON39, shutil.which("python3.9")):
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run([candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                 capture_output=True, text=True, timeout=30, check=False).stdout.strip()
        except OSError:
            continue
        if out == PYTHON_VERSION:  # a pyenv shim may exist for a version that is not installed
            return candidate
    return None


def lay_out(root: Path, code: Path, layers: Iterable[Path]) -> Path:
    """Unzip `code` into `root/var/user` and the layers into `root/opt`, as SCF does; returns `root`.

    `python -m devstack serve --function-root ROOT` runs functions from this layout.
    """
    for stale in (root / "var" / "user", root / "opt"):
        shutil.rmtree(stale, ignore_errors=True)
    for zip_path, dest in [(code, root / "var" / "user"), *((layer, root / "opt") for layer in layers)]:
        dest.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(dest)
    return root


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m deploy.scf_runtime DIR`: lay dist/*.zip out under DIR and print how to serve them."""
    dist = Path(__file__).resolve().parent.parent / "dist"
    p = argparse.ArgumentParser(prog="python -m deploy.scf_runtime", description=main.__doc__)
    p.add_argument("root", type=Path)
    ns = p.parse_args(argv)
    root = lay_out(ns.root.resolve(), dist / "function-code.zip", [dist / "layer-ciflow.zip", dist / "layer-deps.zip"])
    print(f"laid out {root}/var/user and {root}/opt; run the local stack on them with:\n"
          f"  .venv/bin/python -m devstack serve --function-python {python39() or 'PYTHON3.9'} --function-root {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
