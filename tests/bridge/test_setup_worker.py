"""`novabridge setup-worker` makes a worker environment from the wheel that a host on this Python can use, with the
emulator in it; `novabridge emulator` from the host's environment then runs there. A home folder of the tests' own
stands in for the user's, so both commands run with their defaults, as the README gives them."""

import json
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from support.interpreters import python_for, this_version
from support.wheel import built_wheel


def in_home(home: Path) -> dict[str, str]:
    # pip keeps its usual cache, so the fresh environment does not download every package again.
    cache = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")
    return {**os.environ, "HOME": str(home), "PIP_CACHE_DIR": cache}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def worker(home: Path) -> Path:
    """``novabridge setup-worker`` with its default folder, from the wheel under test."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "novabridge",
            "setup-worker",
            "--python",
            python_for("312"),
            "--wheel",
            str(built_wheel()),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=in_home(home),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    interpreter = Path(result.stdout.strip().splitlines()[-1])
    assert interpreter == home / ".novabridge" / "worker" / "bin" / "python"
    assert "worker_python:" in result.stderr
    return interpreter


@pytest.mark.timeout(660)
def test_setup_worker_makes_an_environment_with_the_sdk_and_the_emulator(worker: Path) -> None:
    script = "import sys, aws_sdk_bedrock_runtime, novabridge.worker.main, novabridge.emulator.server; "
    script += "print(sys.version_info >= (3, 12))"
    check = subprocess.run(
        [str(worker), "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "True"


@pytest.mark.timeout(660)
def test_the_hosts_novabridge_emulator_serves_and_publishes_for_openavatarchat(worker: Path, home: Path) -> None:
    """No options: on a 3.11 host it runs on the worker environment; it publishes where the handler looks."""
    process = subprocess.Popen(
        [sys.executable, "-m", "novabridge", "emulator"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=in_home(home),
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no ready line within 60 s"
        line = process.stdout.readline()
        assert line, process.stderr.read().decode() if process.stderr else ""
        endpoint = json.loads(line)
        state_file = home / ".novabridge" / "emulator" / "endpoint.json"
        assert json.loads(state_file.read_text()) == {**endpoint, "pid": process.pid}
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        serving = str(worker) if this_version() == "311" else sys.executable
        assert argv[:4] == [serving.encode(), b"-m", b"novabridge", b"emulator"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert not state_file.exists()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


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
