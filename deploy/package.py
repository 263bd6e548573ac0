"""Build the SCF artifacts: `dist/function-code.zip`, `dist/layer-ciflow.zip`, `dist/layer-deps.zip`.

SCF unpacks the code to `/var/user` and every layer to `/opt`, and puts both on `PYTHONPATH`, so each
zip holds its packages at the root. The dependencies come from manylinux wheels for SCF's runtime
(CPython 3.9, Linux x86-64), never from this machine's interpreter. `crcmod`, which cos-python-sdk-v5
needs, ships only an sdist whose C extension would be compiled for this machine; its own pure-Python
fallback is packed as a wheel instead, and any compiled file not built for cp39 fails the build.

Both layers ship bytecode for SCF's CPython 3.9 next to their sources (`__pycache__/*.cpython-39.pyc`):
SCF's code and layer directories are read-only, so without it every cold start compiles every module
it imports. The bytecode is compiled by a real CPython 3.9 (`scf_runtime.python39()`), hash-based and
unchecked (PEP 552), so it depends on no file time and is loaded without reading the source again.

Zips are deterministic (sorted entries, fixed timestamps and modes, bytecode compiled with a fixed hash
seed under the runtime's own paths), so a rebuild is byte-identical. The dependencies layer, the only
slow part, is cached under `dist/.cache/` by a hash of its inputs.

    python -m deploy.package [--force] [--update-lock] [--no-bytecode]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from .scf_runtime import IMPLEMENTATION, MARKER_ENV, PLATFORM, PYTHON_VERSION, python39

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
REQUIREMENTS = ROOT / "requirements.txt"
LOCK = ROOT / "deploy" / "layer-deps.lock"

DEPS_LIMIT = 20 * 1024 * 1024
# Compiled modules must be for CPython 3.9 on x86-64 Linux (or the stable ABI).
SO_NAME = re.compile(r"\.(abi3|cpython-39-x86_64-linux-gnu)\.so$")
ELF_X86_64 = 0x3E

# What the S3 client needs from botocore's data: the s3/sts models plus the top-level files
# (endpoints.json, partitions.json, sdk-default-configuration.json, _retry.json).
BOTOCORE_SERVICES = {"s3", "sts"}
BOTO3_RESOURCES = {"s3"}
DROP_DIRS = {"__pycache__", "tests", "test"}  # not "docs": botocore.client imports botocore.docs
DROP_SUFFIXES = (".pyc", ".pyi")
DROP_FILES = {"py.typed", "RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}

FIXED_TIME = (1980, 1, 1, 0, 0, 0)

# Where SCF unpacks each artifact (platform.md §5): the bytecode names these paths in tracebacks.
LAYER_ROOT = "/opt"
CACHE_TAG = "cpython-39"
# Compiled by CPython 3.9 itself: its compiler and marshal format, hash-based unchecked .pyc (PEP 552).
# PYTHONHASHSEED is fixed because set and frozenset constants are marshalled in hash order.
_COMPILE_SCRIPT = r"""
import importlib.util, json, py_compile, sys
if sys.implementation.cache_tag != "CACHE_TAG":
    sys.exit("not CPython 3.9: " + sys.version)
failed = []
for src, cfile, dfile in json.load(sys.stdin):
    try:
        py_compile.compile(src, cfile=cfile, dfile=dfile, doraise=True,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError as exc:
        failed.append(dfile + ": " + exc.msg.strip().splitlines()[-1])
print(json.dumps({"magic": importlib.util.MAGIC_NUMBER.hex(), "failed": failed}))
""".replace("CACHE_TAG", CACHE_TAG)

Log = Callable[[str], None]


class BuildError(Exception):
    """The artifacts cannot be built as SCF needs them."""


@dataclass(frozen=True)
class Artifact:
    name: str
    path: Path
    size: int
    unzipped: int


# --- deterministic zips --------------------------------------------------------------------------

def write_zip(files: Iterable[tuple[str, Path]], out: Path) -> Artifact:
    """Zip (arcname, file) pairs in arcname order with fixed metadata, so equal inputs give equal bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for arcname, path in sorted(files):
            info = zipfile.ZipInfo(arcname, FIXED_TIME)
            info.create_system = 3  # Unix, so the mode below is honoured when unpacked
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    tmp.replace(out)
    return Artifact(out.stem, out, out.stat().st_size, unzipped)


def tree(root: Path, prefix: str = "") -> list[tuple[str, Path]]:
    """Every file under `root` as (prefix + relative path, path), minus caches, tests and stubs."""
    out = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_dir() or any(part in DROP_DIRS for part in rel.parts[:-1]):
            continue
        if path.name in DROP_FILES or path.name.endswith(DROP_SUFFIXES):
            continue
        out.append((prefix + rel.as_posix(), path))
    return out


# --- bytecode for SCF's CPython 3.9 --------------------------------------------------------------

def pyc_arcname(arcname: str) -> str:
    """`pkg/mod.py` → `pkg/__pycache__/mod.cpython-39.pyc`, where CPython 3.9 looks for it."""
    folder, _, name = arcname.rpartition("/")
    return f"{folder + '/' if folder else ''}__pycache__/{name[:-3]}.{CACHE_TAG}.pyc"


def python39_or_fail() -> str:
    py39 = python39()
    if py39 is None:
        raise BuildError("the layers ship bytecode for CPython 3.9 and none was found here (pyenv 3.9.18 or "
                         "python3.9 on PATH); install one, or build without bytecode with --no-bytecode "
                         "(every cold start then compiles the modules it imports)")
    return py39


def python39_version(python: str) -> str:
    return subprocess.run([python, "-S", "-c", "import sys; print(sys.version)"], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def with_bytecode(files: list[tuple[str, Path]], root: str, staging: Path, python: str) -> list[tuple[str, Path]]:
    """`files` plus the CPython 3.9 bytecode of every `.py` among them, compiled by `python` into
    `staging` (the sources are only read). `root` is where the artifact is unpacked on SCF, so the
    bytecode names the files as they will be there. Raises BuildError naming any file 3.9 cannot compile."""
    jobs, compiled = [], []
    for arcname, path in files:
        if not arcname.endswith(".py"):
            continue
        pyc = pyc_arcname(arcname)
        cfile = staging / pyc
        jobs.append([str(path), str(cfile), f"{root}/{arcname}"])
        compiled.append((pyc, cfile))
    if not jobs:
        return list(files)
    env = {"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"}
    proc = subprocess.run([python, "-S", "-c", _COMPILE_SCRIPT], input=json.dumps(jobs), capture_output=True,
                          text=True, env=env, check=False, timeout=900)
    if proc.returncode != 0:
        raise BuildError(f"compiling bytecode with {python} failed:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    if report["failed"]:
        raise BuildError("CPython 3.9 cannot compile:\n  " + "\n  ".join(report["failed"]))
    missing = [str(c) for _, c in compiled if not c.is_file()]
    if missing:
        raise BuildError("bytecode not written:\n  " + "\n  ".join(missing[:20]))
    return [*files, *compiled]


# --- the code and the ciflow layer ---------------------------------------------------------------

def build_function_code(out: Path) -> Artifact:
    """The handlers, at `functions/<name>.py` as the serverless.yml handlers name them."""
    return write_zip([(f"functions/{p.name}", p) for p in (ROOT / "functions").glob("*.py")], out)


def build_ciflow_layer(out: Path, python: Optional[str] = None, source: Optional[Path] = None) -> Artifact:
    """The library as `ciflow/` at the zip root (importable from /opt), with its bundled rules, and
    its bytecode for CPython 3.9 when `python` (a 3.9 interpreter) is given."""
    source = source or ROOT / "layers" / "ciflow" / "ciflow"
    files = [(a, p) for a, p in tree(source, "ciflow/") if p.suffix in (".py", ".json")]
    if python is None:
        return write_zip(files, out)
    with tempfile.TemporaryDirectory(prefix="ciflow-pyc-") as tmp:
        return write_zip(with_bytecode(files, LAYER_ROOT, Path(tmp), python), out)


# --- the dependencies layer ----------------------------------------------------------------------

def pinned(name: str, lock: Path = LOCK) -> str:
    for line in lock.read_text(encoding="utf-8").splitlines():
        req = line.split("#")[0].strip()
        if req.lower().startswith(f"{name}=="):
            return req.split("==", 1)[1]
    raise BuildError(f"{lock.name}: no pin for {name}")


def _pip(args: list[str], python: str = sys.executable) -> None:
    cmd = [python, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BuildError(f"pip {args[0]} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def crcmod_wheel(version: str, wheel_dir: Path, work: Path) -> Path:
    """A py3-none-any wheel of crcmod's pure-Python package, taken from its sdist.

    crcmod falls back to `_crcfunpy` when `_crcfunext` is missing, which is all the COS SDK needs.
    """
    _pip(["download", f"crcmod=={version}", "--no-binary", ":all:", "--no-deps", "-d", str(work)])
    sdist = next(work.glob(f"crcmod-{version}.tar.gz"), None)
    if sdist is None:
        raise BuildError(f"pip did not download the crcmod {version} sdist")
    base = f"crcmod-{version}/"
    files: dict[str, bytes] = {}
    with tarfile.open(sdist) as tf:
        for member in tf.getmembers():
            name = member.name
            if not member.isfile():
                continue
            if name.startswith(base + "python3/crcmod/") and name.endswith(".py") and not name.endswith("/test.py"):
                files["crcmod/" + name.rsplit("/", 1)[1]] = tf.extractfile(member).read()
            elif name == base + "LICENSE":
                files[f"crcmod-{version}.dist-info/LICENSE"] = tf.extractfile(member).read()
    if "crcmod/_crcfunpy.py" not in files or "crcmod/__init__.py" not in files:
        raise BuildError(f"{sdist.name}: the pure-Python crcmod package is not where it used to be")
    info = f"crcmod-{version}.dist-info"
    files[f"{info}/METADATA"] = (f"Metadata-Version: 2.1\nName: crcmod\nVersion: {version}\n"
                                 "Summary: CRC Generator (pure-Python build, no C extension)\n"
                                 "License: MIT\n").encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\nGenerator: ciflow-deploy\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    record = []
    for arc in sorted(files):
        digest = base64.urlsafe_b64encode(hashlib.sha256(files[arc]).digest()).rstrip(b"=").decode()
        record.append(f"{arc},sha256={digest},{len(files[arc])}")
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    wheel = wheel_dir / f"crcmod-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for arc in sorted(files):
            zf.writestr(zipfile.ZipInfo(arc, FIXED_TIME), files[arc])
    return wheel


def _target_args(site: Path, wheels: Path) -> list[str]:
    return ["--target", str(site), "--platform", PLATFORM, "--implementation", IMPLEMENTATION,
            "--python-version", PYTHON_VERSION, "--only-binary=:all:", "--find-links", str(wheels),
            "-r", str(REQUIREMENTS)]


def install_deps(site: Path, work: Path, log: Log) -> None:
    """pip-install the locked requirements into `site` from wheels for SCF's Python, never this machine's."""
    wheels = work / "wheels"
    wheels.mkdir(parents=True)
    crcmod_wheel(pinned("crcmod"), wheels, work)
    log(f"installing {REQUIREMENTS.name} (pinned by {LOCK.name}) for CPython {PYTHON_VERSION} on {PLATFORM} ...")
    _pip(["install", "--no-compile", "-c", str(LOCK), *_target_args(site, wheels)])


def _metadata(path: Path) -> tuple[dict[str, str], list[str]]:
    fields: dict[str, str] = {}
    requires = []
    for line in path.read_text(encoding="utf-8").split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(": ")
        if sep and key == "Requires-Dist":
            requires.append(value)
        elif sep:
            fields.setdefault(key, value)
    return fields, requires


def check_resolution(site: Path) -> None:
    """Fail unless every installed package supports Python 3.9 and every dependency it declares for
    3.9 is satisfied. pip's `--python-version` does not evaluate markers for the target (botocore
    asks for urllib3<1.27 below 3.10), and a mirror may hide Requires-Python, so this checks both."""
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet
    from packaging.utils import canonicalize_name

    dists = {}
    for meta in site.glob("*.dist-info/METADATA"):
        fields, requires = _metadata(meta)
        dists[canonicalize_name(fields["Name"])] = (fields, requires)
    problems = []
    for name, (fields, requires) in sorted(dists.items()):
        spec = fields.get("Requires-Python")
        if spec and not SpecifierSet(spec).contains(MARKER_ENV["python_full_version"], prereleases=True):
            problems.append(f"{name} {fields['Version']} requires Python {spec}")
        for raw in requires:
            req = Requirement(raw)
            if req.marker is not None and not req.marker.evaluate(MARKER_ENV):
                continue
            dep = dists.get(canonicalize_name(req.name))
            if dep is None:
                problems.append(f"{name} needs {req}, which is not installed")
            elif not req.specifier.contains(dep[0]["Version"], prereleases=True):
                problems.append(f"{name} needs {req}, but {dep[0]['Version']} is installed")
    if problems:
        raise BuildError(f"the dependencies do not fit CPython {PYTHON_VERSION} (update {LOCK.name}?):\n  "
                         + "\n  ".join(problems))


def slim(site: Path) -> None:
    """Drop what the functions never load: console scripts, other AWS services' data, stubs, caches."""
    shutil.rmtree(site / "bin", ignore_errors=True)
    for data, keep in ((site / "botocore" / "data", BOTOCORE_SERVICES), (site / "boto3" / "data", BOTO3_RESOURCES)):
        for entry in data.iterdir() if data.is_dir() else ():
            if entry.is_dir() and entry.name not in keep:
                shutil.rmtree(entry)
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in DROP_DIRS:
            shutil.rmtree(path)
        elif path.is_file() and (path.name in DROP_FILES or path.name.endswith(DROP_SUFFIXES)):
            path.unlink()


def check_binaries(site: Path) -> None:
    """Fail if any compiled module would not load on SCF's CPython 3.9 x86-64 (e.g. one built for cp311)."""
    bad = []
    for path in sorted(site.rglob("*.so")):
        head = path.read_bytes()[:20]
        elf_ok = head[:4] == b"\x7fELF" and head[4] == 2 and int.from_bytes(head[18:20], "little") == ELF_X86_64
        if not SO_NAME.search(path.name) or not elf_ok:
            bad.append(str(path.relative_to(site)))
    if bad:
        raise BuildError("compiled files not built for CPython 3.9 on x86-64 Linux:\n  " + "\n  ".join(bad))


def deps_fingerprint(compiler: str = "") -> str:
    """A hash of everything the dependencies layer is built from, including the exact CPython 3.9 that
    compiles its bytecode (`compiler`, its sys.version; empty when built without bytecode)."""
    h = hashlib.sha256()
    for part in (REQUIREMENTS.read_bytes(), LOCK.read_bytes(), Path(__file__).read_bytes(),
                 f"{PLATFORM}/{IMPLEMENTATION}/{PYTHON_VERSION}".encode(), compiler.encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def build_deps_layer(out: Path, log: Log, force: bool = False, python: Optional[str] = None) -> Artifact:
    cache = out.parent / ".cache"
    cached = cache / f"layer-deps-{deps_fingerprint(python39_version(python) if python else '')}.zip"
    if cached.exists() and not force:
        log(f"dependencies layer unchanged (cached {cached.name})")
    else:
        with tempfile.TemporaryDirectory(prefix="ciflow-deps-") as tmp:
            site = Path(tmp) / "site"
            install_deps(site, Path(tmp) / "work", log)
            check_resolution(site)
            slim(site)
            check_binaries(site)
            files = tree(site)
            if python is not None:
                log(f"compiling the dependencies' bytecode with {python} ...")
                staging = Path(tmp) / "pyc"
                files = with_bytecode(files, LAYER_ROOT, staging, python)
            cache.mkdir(parents=True, exist_ok=True)
            for stale in cache.glob("layer-deps-*.zip"):
                stale.unlink()
            write_zip(files, cached)
    shutil.copyfile(cached, out)
    art = Artifact(out.stem, out, out.stat().st_size, _unzipped(out))
    if art.size > DEPS_LIMIT:
        raise BuildError(f"{out.name} is {_mib(art.size)}, over the {_mib(DEPS_LIMIT)} budget")
    return art


def _unzipped(path: Path) -> int:
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist())


def update_lock(log: Log) -> None:
    """Re-resolve requirements.txt with a real CPython 3.9 and pin every package in the lock file.

    pip run by 3.9 evaluates markers and Requires-Python for 3.9; pip run by this machine's
    interpreter with `--python-version 3.9` does not, which is why the build installs from the lock.
    """
    py39 = python39()
    if py39 is None:
        raise BuildError("--update-lock needs a local CPython 3.9 to resolve for the runtime; none was found")
    crcmod = pinned("crcmod")
    with tempfile.TemporaryDirectory(prefix="ciflow-lock-") as tmp:
        work = Path(tmp)
        (work / "wheels").mkdir()
        crcmod_wheel(crcmod, work / "wheels", work)
        log(f"resolving {REQUIREMENTS.name} with {py39} ...")
        report = work / "report.json"
        _pip(["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
              *_target_args(work / "site", work / "wheels")], python=py39)
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    pins = sorted(f"{i['metadata']['name'].lower()}=={i['metadata']['version']}" for i in installs)
    header = (f"# Every package of the dependencies layer, resolved by CPython {PYTHON_VERSION} for {PLATFORM}.\n"
              "# Regenerate with `python -m deploy.package --update-lock` after changing requirements.txt.\n")
    LOCK.write_text(header + "\n".join(pins) + "\n", encoding="utf-8")
    log(f"wrote {LOCK.relative_to(ROOT)}")


# --- entry point ---------------------------------------------------------------------------------

def build(dist: Path = DIST, force: bool = False, log: Log = print, bytecode: bool = True) -> dict[str, Artifact]:
    """Build all three artifacts into `dist`; the dependencies layer comes from the cache when unchanged.
    With `bytecode` (the default) both layers carry CPython 3.9 bytecode, which needs a local 3.9."""
    py39 = python39_or_fail() if bytecode else None
    return {
        "function-code": build_function_code(dist / "function-code.zip"),
        "layer-ciflow": build_ciflow_layer(dist / "layer-ciflow.zip", py39),
        "layer-deps": build_deps_layer(dist / "layer-deps.zip", log, force, py39),
    }


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB"


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.package", description=__doc__.split("\n\n")[0])
    p.add_argument("--force", action="store_true", help="rebuild the dependencies layer even if cached")
    p.add_argument("--update-lock", action="store_true", help=f"re-resolve and rewrite {LOCK.name}, then build")
    p.add_argument("--no-bytecode", action="store_true",
                   help="ship sources only (no CPython 3.9 needed; every cold start compiles what it imports)")
    ns = p.parse_args(argv)
    try:
        if ns.update_lock:
            update_lock(print)
        artifacts = build(force=ns.force or ns.update_lock, bytecode=not ns.no_bytecode)
    except BuildError as exc:
        print(f"package: {exc}", file=sys.stderr)
        return 1
    for art in artifacts.values():
        note = f"   (zip limit {_mib(DEPS_LIMIT)})" if art.name == "layer-deps" else ""
        print(f"  {art.path.relative_to(ROOT)!s:<24} {_mib(art.size):>11}  unzipped {_mib(art.unzipped):>11}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
