"""`novabridge setup-worker`: a Python >= 3.12 environment with ``novabridge[sonic,emulator]`` for the workers.

OpenAvatarChat runs on Python 3.11 and the Nova Sonic SDK needs 3.12, so the worker gets a virtual environment of
its own. The command makes one, installs the same novabridge version as the host's (from a wheel, or the index),
checks that the SDK and the emulator import there, and prints the interpreter to name as ``worker_python``. The
emulator comes with it (a few small packages) because it needs the same Python as the SDK: ``novabridge emulator``
run from the host's environment starts it here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from novabridge._novabridge import __version__

DEFAULT_DIR = Path.home() / ".novabridge" / "worker"
CANDIDATES = ("python3.14", "python3.13", "python3.12")
EXTRAS = "sonic,emulator"
CHECK = (
    "import aws_sdk_bedrock_runtime, awscrt, novabridge.sonic.session, novabridge.emulator.server, novabridge; "
    "print(novabridge.__version__)"
)


class SetupError(RuntimeError):
    """The worker environment could not be made."""


def find_python() -> str:
    """A Python >= 3.12 on the PATH: this one if it qualifies, else the newest of python3.14 ... python3.12."""
    if sys.version_info >= (3, 12):
        return sys.executable
    for name in CANDIDATES:
        path = shutil.which(name)
        if path is not None:
            return path
    raise SetupError("no Python >= 3.12 found on the PATH; pass --python /path/to/python3.12")


def setup(target: Path, *, python: str | None = None, wheel: Path | None = None, extras: str = EXTRAS) -> Path:
    """Make (or update) the environment at ``target``; returns its interpreter."""
    base = python or find_python()
    version = subprocess.run(
        [base, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True, check=False
    )
    if version.stdout.strip() != "True":
        raise SetupError(f"{base} is not a Python >= 3.12 ({version.stderr.strip() or version.stdout.strip()})")
    if not (target / "bin" / "python").exists():
        subprocess.run([base, "-m", "venv", str(target)], check=True)
    interpreter = target / "bin" / "python"
    requirement = f"{wheel}[{extras}]" if wheel is not None else f"novabridge[{extras}]=={__version__}"
    install = subprocess.run(
        [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
        capture_output=True,
        text=True,
        check=False,
    )
    if install.returncode != 0:
        raise SetupError(f"pip install {requirement} failed:\n{install.stderr.strip()}")
    check = subprocess.run([str(interpreter), "-c", CHECK], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SetupError(f"the worker environment does not import the SDK or the emulator:\n{check.stderr.strip()}")
    if check.stdout.strip() != __version__:
        raise SetupError(
            f"the worker has novabridge {check.stdout.strip()}, the host {__version__}: use the same wheel"
        )
    return interpreter


def main(target: Path, python: str | None, wheel: Path | None) -> int:
    """The command: prints progress to stderr and the worker interpreter alone on stdout."""
    try:
        interpreter = setup(target, python=python, wheel=wheel)
    except (SetupError, subprocess.CalledProcessError) as error:
        print(f"novabridge setup-worker: {error}", file=sys.stderr)
        return 1
    print(
        f"novabridge setup-worker: ready; in the handler's YAML: worker_python: {interpreter} "
        "(`novabridge openavatarchat install OAC_DIR` writes it there)",
        file=sys.stderr,
    )
    print(interpreter)
    return 0
