"""The built wheel and the interpreters to install it into fresh environments with."""

import os
import subprocess
from pathlib import Path

from support.interpreters import ROOT, Version, python_for


def built_wheel() -> Path:
    """The release wheel in dist/ (`make wheel`), or the one NOVABRIDGE_WHEEL names."""
    env = os.environ.get("NOVABRIDGE_WHEEL")
    if env:
        return Path(env)
    wheels = sorted((ROOT / "dist").glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel in dist/, found {wheels}"
    return wheels[0]


def base_python(version: Version) -> str:
    """The interpreter a venv of `version` was made from, to make fresh venvs with."""
    out = subprocess.run(
        [python_for(version), "-c", "import sys; print(sys._base_executable)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()
