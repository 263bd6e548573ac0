"""The real-world corpus and the exiftool oracle, fetched from package registries and cached.

* Pillow's published test images (``Tests/images`` of the Pillow source distribution on PyPI,
  fetched with ``pip download``): several hundred PNG, JPEG, GIF, BMP (the bmpsuite good, bad
  and questionable sets), WebP and MPO files that the Pillow project collected from the wild or
  built to reproduce bugs.
* The sample images that scikit-image ships in its wheel (photographs and scans).
* ExifTool, Phil Harvey's Perl distribution as the npm package ``exiftool-vendored.pl``
  (fetched with ``npm pack``), run with the machine's ``perl``.

Everything is cached under ``$CIFLOW_CORPUS_DIR`` (default ``~/.cache/ciflow/corpus``). When a
registry cannot be reached, or ``perl``/``npm`` are missing, :class:`Unavailable` says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

PILLOW_SDIST = "pillow==13.0.0"
EXIFTOOL_NPM = "exiftool-vendored.pl@13.59.3"
MAX_BYTES = 32 * 1024 * 1024
_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8", b"GIF87a", b"GIF89a", b"BM")


class Unavailable(Exception):
    """The corpus or the oracle cannot be had on this machine."""


def cache_dir() -> Path:
    root = Path(os.environ.get("CIFLOW_CORPUS_DIR") or Path.home() / ".cache" / "ciflow" / "corpus")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise Unavailable(f"{cmd[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        tail = exc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise Unavailable(f"{' '.join(cmd[:3])} failed: {' | '.join(tail)}") from exc
    except subprocess.TimeoutExpired as exc:
        raise Unavailable(f"{' '.join(cmd[:3])} timed out") from exc


def _extract(archive: Path, dest: Path, keep: str) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if keep in m.name and (m.isfile() or m.isdir())]
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(dest)


def pillow_test_images() -> Path:
    """Directory holding Pillow's ``Tests/images``."""
    root = cache_dir()
    dest = root / PILLOW_SDIST.replace("==", "-")
    if not dest.is_dir():
        download = root / "downloads"
        download.mkdir(exist_ok=True)
        archives = list(download.glob("pillow-*.tar.gz"))
        if not archives:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                  "--disable-pip-version-check", "-d", str(download), PILLOW_SDIST], cwd=root)
            archives = list(download.glob("pillow-*.tar.gz"))
        if not archives:
            raise Unavailable("pip download left no Pillow source archive")
        _extract(archives[0], dest, "/Tests/images/")
    found = list(dest.glob("*/Tests/images"))
    if not found:
        raise Unavailable(f"no Tests/images in {dest}")
    return found[0]


def skimage_images() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def exiftool() -> list[str]:
    """The command that runs ExifTool."""
    if shutil.which("perl") is None:
        raise Unavailable("perl is not installed")
    root = cache_dir()
    dest = root / EXIFTOOL_NPM.replace("@", "-")
    if not dest.is_dir():
        download = root / "downloads"
        download.mkdir(exist_ok=True)
        name = EXIFTOOL_NPM.split("@")[0] + "-" + EXIFTOOL_NPM.split("@")[1] + ".tgz"
        if not (download / name).exists():
            _run(["npm", "pack", EXIFTOOL_NPM, "--pack-destination", str(download), "--silent"], cwd=root)
        _extract(download / name, dest, "package/bin")
    script = dest / "package" / "bin" / "exiftool"
    if not script.exists():
        raise Unavailable(f"no exiftool script in {dest}")
    return ["perl", str(script)]


def is_image(data: bytes) -> bool:
    webp = data.startswith(b"RIFF") and data[8:12] == b"WEBP"
    return webp or data.startswith(_SIGNATURES)


def corpus_files() -> list[tuple[str, Path]]:
    """(name, path) of every PNG, JPEG, GIF, BMP and WebP file in the corpus, by content."""
    out = []
    for label, root in (("pillow", pillow_test_images()), ("skimage", skimage_images())):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.stat().st_size > MAX_BYTES:
                continue
            with path.open("rb") as f:
                head = f.read(12)
            if is_image(head):
                out.append((f"{label}/{path.relative_to(root).as_posix()}", path))
    return out
