"""The project's two interpreters: Python 3.11 runs the host, Python 3.12 the worker (and the SDK, the emulator)."""

import os
import sys
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"

Version = Literal["311", "312"]


def python_for(version: Version) -> str:
    """The venv interpreter of Python 3.11 (the host) or 3.12 (the worker), as the Makefile exports them."""
    default = ROOT / (".venv-host" if version == "311" else ".venv") / "bin" / "python"
    return os.environ.get(f"NOVABRIDGE_PY{version}") or str(default)


def this_version() -> Version:
    return "311" if sys.version_info[:2] == (3, 11) else "312"


def other_version() -> Version:
    return "312" if this_version() == "311" else "311"
