"""The built abi3 wheel installs into fresh virtual environments of Python 3.11 and 3.12 and works there."""

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest
from support.interpreters import ROOT, Version, python_for
from support.wheel import base_python, built_wheel

pytestmark = pytest.mark.interpreter_independent

CHECK_SCRIPT = """
import json, sys
import novabridge
from novabridge import _novabridge
ring = novabridge.Ring.create(4096, name="wheel")
seq = ring.write(novabridge.RecordKind.EVENT, b'{"ok": true}', flags=5)
record = ring.read(timeout=1.0)
ring.close()
import numpy
resampled = novabridge.Resampler(16000, 24000).process(numpy.zeros(320, numpy.int16))
print(json.dumps({
    "version": novabridge.__version__,
    "extension": _novabridge.__file__,
    "package": novabridge.__file__,
    "python": list(sys.version_info[:2]),
    "prefix": sys.prefix,
    "seq": seq,
    "record": [record.kind, record.flags, record.seq, record.payload.decode()],
    "closed": ring.closed,
    "resampled": [resampled.dtype.name, len(resampled)],
}))
"""


def test_wheel_name_is_abi3_for_cp311() -> None:
    name = built_wheel().name
    assert name.startswith("novabridge-")
    assert name.endswith(".whl")
    assert "abi3" in name
    assert "cp311" in name
    assert "linux" in name


GLIBC_FLOOR = (2, 26)
"""The oldest glibc the wheel is for (manylinux_2_26: Amazon Linux 2 has 2.26)."""


ARCH = os.environ.get("NOVABRIDGE_WHEEL_ARCH", "x86_64")
"""The architecture the wheel is for: `make check-aarch64` runs these tests on the aarch64 wheel."""


def test_wheel_is_manylinux_2_26_and_auditwheel_agrees() -> None:
    wheel = built_wheel()
    assert wheel.name.endswith(f"-manylinux_2_26_{ARCH}.whl")
    shown = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "auditwheel"), "show", str(wheel)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert f'is consistent with the following platform tag: "manylinux_2_26_{ARCH}"' in " ".join(shown.stdout.split())


def test_the_extension_needs_no_glibc_symbol_newer_than_the_floor(tmp_path: Path) -> None:
    # auditwheel reads symbol versions only: a strong symbol without one (glibc's memfd_create wrapper, which the
    # glibc the wheel is linked against does not have) passed it, and would fail the import on an older system.
    # auditwheel's own ELF reader, in the 3.12 environment
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection, GNUVerSymSection
    from elftools.elf.sections import SymbolTableSection

    with zipfile.ZipFile(built_wheel()) as archive:
        (name,) = [n for n in archive.namelist() if n.startswith("novabridge/_novabridge") and n.endswith(".so")]
        library = Path(archive.extract(name, tmp_path))
    unversioned, too_new = [], []
    with library.open("rb") as file:
        elf = ELFFile(file)
        symbols = elf.get_section_by_name(".dynsym")
        versions = elf.get_section_by_name(".gnu.version")
        requirements = elf.get_section_by_name(".gnu.version_r")
        assert isinstance(symbols, SymbolTableSection)
        assert isinstance(versions, GNUVerSymSection)
        assert isinstance(requirements, GNUVerNeedSection)
        names = {aux.entry["vna_other"]: aux.name for _, auxes in requirements.iter_versions() for aux in auxes}
        for index, symbol in enumerate(symbols.iter_symbols()):
            if symbol["st_shndx"] != "SHN_UNDEF" or symbol["st_info"]["bind"] != "STB_GLOBAL" or not symbol.name:
                continue  # defined here, weak (looked up at run time), or the null symbol
            if symbol.name.startswith(("Py", "_Py")):
                continue  # Python's C API, found in the interpreter
            version = names.get(versions.get_symbol(index)["ndx"])
            if version is None:
                unversioned.append(symbol.name)
            elif version.startswith("GLIBC_") and tuple(map(int, version[6:].split("."))) > GLIBC_FLOOR:
                too_new.append(f"{symbol.name}@{version}")
    assert unversioned == []
    assert too_new == []


@pytest.mark.timeout(110)
@pytest.mark.parametrize("version", ["311", "312"])
def test_wheel_installs_and_works_in_fresh_venv(version: Version, tmp_path: Path) -> None:
    wheel = built_wheel()
    base = base_python(version)
    venv = tmp_path / f"venv{version}"
    # A clean environment: nothing inherited that could point the child at the repository's sources.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    subprocess.run([base, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60, env=env)
    python = venv / "bin" / "python"
    install = subprocess.run(
        # With its declared dependencies, as a user installs it (pip's cache usually has them already).
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(wheel)],
        check=False,
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    run = subprocess.run(
        [str(python), "-c", CHECK_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        env=env,
    )
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["python"] == [3, int(version[1:])]
    assert info["version"] == wheel.name.split("-")[1]
    venv_dir = venv.resolve()
    extension = Path(info["extension"]).resolve()
    assert extension.is_relative_to(venv_dir), extension
    assert not extension.is_relative_to(ROOT.resolve())
    assert Path(info["package"]).resolve().is_relative_to(venv_dir)
    assert extension.name.endswith(".abi3.so")
    assert info["seq"] == 0
    assert info["record"] == [2, 5, 0, '{"ok": true}']
    assert info["closed"] is True
    assert info["resampled"] == ["int16", 480]


@pytest.mark.interpreter_independent
@pytest.mark.timeout(400)
def test_the_sdist_builds_a_wheel_that_works(tmp_path: Path) -> None:
    # A user on a platform without a wheel (musl, another architecture) installs from the sdist: it must hold the
    # whole Rust workspace and build with what pip fetches for it (maturin), then work as the release wheel does.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    sdist_dir = tmp_path / "sdist"
    subprocess.run(
        [python_for("312"), "-m", "maturin", "sdist", "--out", str(sdist_dir)],
        check=True,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    [sdist] = sdist_dir.glob("novabridge-*.tar.gz")
    venv = tmp_path / "venv"
    subprocess.run([base_python("311"), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60, env=env)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", str(sdist)],
        check=False,
        capture_output=True,
        text=True,
        timeout=330,
        env=env,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    run = subprocess.run(
        [str(python), "-c", CHECK_SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=str(tmp_path),
        env=env,
    )
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout)
    assert info["version"] == sdist.name.removeprefix("novabridge-").removesuffix(".tar.gz")
    assert Path(info["extension"]).resolve().is_relative_to(venv.resolve())
    assert info["record"] == [2, 5, 0, '{"ok": true}']
