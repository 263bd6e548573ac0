"""The packaging rules that need no download: deterministic zips, exclusions, binary and resolution checks."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from deploy import package


def write(path: Path, data: bytes = b"x = 1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_zips_are_byte_identical_whatever_the_file_times_and_order(tmp_path: Path) -> None:
    # Given the same files, written at different times
    a, b = write(tmp_path / "src" / "pkg" / "a.py"), write(tmp_path / "src" / "pkg" / "b.json", b"{}")
    package.write_zip([("pkg/b.json", b), ("pkg/a.py", a)], tmp_path / "one.zip")
    os.utime(a, (1_900_000_000, 1_900_000_000))
    # When they are zipped again, listed in another order
    package.write_zip([("pkg/a.py", a), ("pkg/b.json", b)], tmp_path / "two.zip")
    # Then the archives are identical, sorted, with fixed times and modes
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "one.zip") as zf:
        assert zf.namelist() == ["pkg/a.py", "pkg/b.json"]
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert {i.external_attr >> 16 for i in zf.infolist()} == {0o100644}


def test_tree_leaves_out_caches_tests_and_stubs(tmp_path: Path) -> None:
    for rel in ("pkg/mod.py", "pkg/__pycache__/mod.cpython-311.pyc", "pkg/tests/test_mod.py", "pkg/mod.pyi",
                "pkg/py.typed", "pkg/data/keep.json", "pkg-1.0.dist-info/RECORD", "pkg-1.0.dist-info/METADATA"):
        write(tmp_path / rel)
    assert sorted(arc for arc, _ in package.tree(tmp_path, "opt/")) == [
        "opt/pkg-1.0.dist-info/METADATA", "opt/pkg/data/keep.json", "opt/pkg/mod.py"]


def test_slim_keeps_only_the_s3_and_sts_models_of_botocore(tmp_path: Path) -> None:
    data = tmp_path / "botocore" / "data"
    for rel in ("endpoints.json", "partitions.json", "s3/2006-03-01/service-2.json.gz",
                "sts/2011-06-15/service-2.json.gz", "ec2/2016-11-15/service-2.json.gz"):
        write(data / rel)
    write(tmp_path / "bin" / "jp.py")
    package.slim(tmp_path)
    assert sorted(p.name for p in data.iterdir()) == ["endpoints.json", "partitions.json", "s3", "sts"]
    assert not (tmp_path / "bin").exists()


ELF_X86_64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + b"\x3e\x00"
ELF_ARM64 = b"\x7fELF\x02\x01\x01" + b"\x00" * 11 + b"\xb7\x00"


@pytest.mark.parametrize("name, header, ok", [
    ("md.cpython-39-x86_64-linux-gnu.so", ELF_X86_64, True),
    ("_raw_aes.abi3.so", ELF_X86_64, True),
    ("_crcfunext.cpython-311-x86_64-linux-gnu.so", ELF_X86_64, False),  # built for this machine's Python
    ("md.cpython-39-aarch64-linux-gnu.so", ELF_ARM64, False),
    ("_raw_aes.abi3.so", ELF_ARM64, False),
])
def test_only_binaries_for_cpython39_on_x86_64_pass(tmp_path: Path, name: str, header: bytes, ok: bool) -> None:
    write(tmp_path / "pkg" / name, header + b"\x00" * 64)
    if ok:
        package.check_binaries(tmp_path)
    else:
        with pytest.raises(package.BuildError, match=name.replace(".", r"\.")):
            package.check_binaries(tmp_path)


def dist_info(site: Path, name: str, version: str, *lines: str) -> None:
    write(site / f"{name}-{version}.dist-info" / "METADATA",
          "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *lines]).encode())


def test_resolution_is_checked_with_python39_markers(tmp_path: Path) -> None:
    # Given botocore, which wants urllib3<1.27 below Python 3.10, next to urllib3 2.x (what pip picks
    # when its --python-version does not apply to markers) and a package that needs Python 3.10
    dist_info(tmp_path, "botocore", "1.42.97", 'Requires-Dist: urllib3<1.27,>=1.25.4; python_version < "3.10"',
              'Requires-Dist: urllib3!=2.2.0,<3,>=1.25.4; python_version >= "3.10"',
              'Requires-Dist: awscrt==0.1; extra == "crt"')
    dist_info(tmp_path, "urllib3", "2.8.0", "Requires-Python: >=3.10")
    # When the layer is checked for CPython 3.9
    with pytest.raises(package.BuildError) as err:
        package.check_resolution(tmp_path)
    # Then both problems are reported (and the extra is not)
    assert "botocore needs urllib3<1.27,>=1.25.4" in str(err.value) and "but 2.8.0 is installed" in str(err.value)
    assert "urllib3 2.8.0 requires Python >=3.10" in str(err.value)
    assert "awscrt" not in str(err.value)


def test_a_consistent_python39_resolution_passes(tmp_path: Path) -> None:
    dist_info(tmp_path, "botocore", "1.42.97", 'Requires-Dist: urllib3<1.27,>=1.25.4; python_version < "3.10"')
    dist_info(tmp_path, "urllib3", "1.26.20", "Requires-Python: >=2.7, !=3.0.*, !=3.1.*")
    package.check_resolution(tmp_path)


def test_the_lock_pins_every_requirement_at_its_version_and_crcmod() -> None:
    def pins(path: Path) -> dict[str, str]:
        lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
        return {canonicalize_name(n): v for n, _, v in (line.partition("==") for line in lines if "==" in line)}

    locked, wanted = pins(package.LOCK), pins(package.REQUIREMENTS)
    assert {name: locked.get(name) for name in wanted} == wanted, "layer-deps.lock is stale: --update-lock"
    assert "crcmod" in locked


# --- bytecode for SCF's CPython 3.9 ----------------------------------------------------------------

MAGIC_39 = bytes.fromhex("610d0d0a")  # importlib.util.MAGIC_NUMBER of CPython 3.9


@pytest.fixture(scope="module")
def py39() -> str:
    from deploy.scf_runtime import python39

    found = python39()
    if found is None:
        pytest.skip("no CPython 3.9 here (pyenv 3.9.18 or python3.9 on PATH): bytecode is compiled by 3.9")
    return found


def zipped_with_bytecode(src: Path, staging: Path, out: Path, py39: str) -> dict[str, bytes]:
    files = package.with_bytecode(package.tree(src, "pkg/"), package.LAYER_ROOT, staging, py39)
    package.write_zip(files, out)
    with zipfile.ZipFile(out) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_bytecode_is_compiled_by_python39_unchecked_and_identical_whatever_the_times(tmp_path: Path,
                                                                                      py39: str) -> None:
    # Given a module with a set constant (marshalled in hash order) and a package init
    src = tmp_path / "src"
    write(src / "__init__.py", b"")
    mod = write(src / "mod.py", b"def f(x):\n    return x in {'a', 'b', 'c', 'd', 'e'}\n")
    # When it is zipped with its bytecode twice, from other staging folders, the sources touched between
    one = zipped_with_bytecode(src, tmp_path / "stage-one", tmp_path / "one.zip", py39)
    os.utime(mod, (1_900_000_000, 1_900_000_000))
    two = zipped_with_bytecode(src, tmp_path / "stage-two", tmp_path / "two.zip", py39)
    assert two == one
    # Then the archives are byte-identical, with a .pyc where CPython 3.9 looks for each module
    assert (tmp_path / "one.zip").read_bytes() == (tmp_path / "two.zip").read_bytes()
    assert sorted(one) == ["pkg/__init__.py", "pkg/__pycache__/__init__.cpython-39.pyc",
                           "pkg/__pycache__/mod.cpython-39.pyc", "pkg/mod.py"]
    pyc = one["pkg/__pycache__/mod.cpython-39.pyc"]
    # 3.9's magic number; flags 0b01: hash-based and unchecked (PEP 552), so no mtime is involved
    assert pyc[:4] == MAGIC_39 and int.from_bytes(pyc[4:8], "little") == 0b01
    # named as SCF unpacks it, never by the build's temporary paths
    assert b"/opt/pkg/mod.py" in pyc and str(tmp_path).encode() not in pyc


def test_bytecode_that_python39_cannot_compile_fails_the_build_naming_the_file(tmp_path: Path, py39: str) -> None:
    write(tmp_path / "src" / "new.py", b"match x:\n    case 1:\n        pass\n")  # 3.10 syntax
    with pytest.raises(package.BuildError, match=r"/opt/pkg/new\.py"):
        package.with_bytecode(package.tree(tmp_path / "src", "pkg/"), package.LAYER_ROOT, tmp_path / "stage", py39)


def test_the_ciflow_layer_ships_bytecode_for_every_module_and_rebuilds_identically(tmp_path: Path,
                                                                                    py39: str) -> None:
    # A snapshot of the library, so a concurrent edit of the working tree cannot tell the builds apart
    import shutil

    src = tmp_path / "ciflow"
    shutil.copytree(package.ROOT / "layers" / "ciflow" / "ciflow", src,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    one = package.build_ciflow_layer(tmp_path / "one" / "layer-ciflow.zip", py39, src)
    two = package.build_ciflow_layer(tmp_path / "two" / "layer-ciflow.zip", py39, src)
    assert one.path.read_bytes() == two.path.read_bytes()
    names = zipfile.ZipFile(one.path).namelist()
    sources = [n for n in names if n.endswith(".py")]
    assert sources and sorted(package.pyc_arcname(n) for n in sources) == sorted(n for n in names if n.endswith(".pyc"))


def test_without_python39_the_build_says_how_to_go_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(package, "python39", lambda: None)
    with pytest.raises(package.BuildError, match="--no-bytecode"):
        package.build(tmp_path, log=lambda _: None)
