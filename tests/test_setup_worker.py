"""`novabridge setup-worker` makes a worker environment from the wheel that a host on this Python can use."""

import subprocess
import sys
from pathlib import Path

from conftest import python_for
from test_wheel import _wheel


def test_setup_worker_makes_an_environment_the_bridge_can_use(tmp_path: Path) -> None:
    target = tmp_path / "worker"
    result = subprocess.run(
        [
            *[sys.executable, "-m", "novabridge", "setup-worker", "--dir", str(target)],
            *["--python", python_for("312"), "--wheel", str(_wheel())],
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    interpreter = Path(result.stdout.strip().splitlines()[-1])
    assert interpreter == target / "bin" / "python"
    assert "worker_python:" in result.stderr
    check = subprocess.run(
        [str(interpreter), "-c", "import sys, aws_sdk_bedrock_runtime, novabridge.worker; print(sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() >= "(3, 12)"


def test_setup_worker_refuses_a_python_older_than_312(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "novabridge",
            "setup-worker",
            "--dir",
            str(tmp_path / "w"),
            "--python",
            python_for("311"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert "not a Python >= 3.12" in result.stderr
    assert not (tmp_path / "w").exists()
