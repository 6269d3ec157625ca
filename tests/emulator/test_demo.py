"""`novabridge demo`, as `make demo` runs it: a 3.11 host, a 3.12 worker, the emulator, in real time."""

import subprocess
import wave
from pathlib import Path

import pytest
from conftest import python_for


@pytest.mark.timeout(120)
def test_the_demo_converses_three_turns_and_writes_its_outputs(tmp_path: Path) -> None:
    run = subprocess.run(
        [python_for("311"), "-m", "novabridge", "demo", "--worker-python", python_for("312"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "host Python 3.11" in run.stdout
    assert run.stdout.count("done: END_TURN") == 2
    assert run.stdout.count("done: INTERRUPTED") == 1
    assert "| 3 | Sorry, and what about tomorrow? |" in run.stdout
    with wave.open(str(tmp_path / "assistant.wav"), "rb") as wav:
        assert wav.getframerate() == 24000
        audio = wav.readframes(wav.getnframes())
    assert any(audio)  # the assistant spoke
    assert (tmp_path / "latency.png").read_bytes().startswith(b"\x89PNG")
