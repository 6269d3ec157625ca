"""The README's ring example runs as shown: a Python 3.11 host and a Python 3.12 worker."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _python(version: str) -> str:
    default = ROOT / (".venv-host" if version == "311" else ".venv") / "bin" / "python"
    return os.environ.get(f"NOVABRIDGE_PY{version}", str(default))


def test_ring_echo_example_across_interpreters() -> None:
    result = subprocess.run(
        [_python("311"), str(ROOT / "examples" / "ring_echo.py"), _python("312")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.search(r"50 frames echoed by a Python 3\.12\.\d+ worker; round trip median \d+ us", result.stdout)
    assert "records_written=52, records_read=52" in result.stdout
