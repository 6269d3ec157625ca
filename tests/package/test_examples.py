"""The ring example (examples/ring_echo.py, shown in docs/ring.md) runs: a Python 3.11 host and a Python 3.12 worker."""

import re
import subprocess

from support.interpreters import ROOT, python_for


def test_ring_echo_example_across_interpreters() -> None:
    result = subprocess.run(
        [python_for("311"), str(ROOT / "examples" / "ring_echo.py"), python_for("312")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert re.search(r"50 frames echoed by a Python 3\.12\.\d+ worker; round trip median \d+ us", result.stdout)
    assert "records_written=52, records_read=52" in result.stdout
