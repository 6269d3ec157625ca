"""`novabridge demo` and `novabridge chat`, as `make demo` runs them: a 3.11 host, a 3.12 worker, the emulator."""

import re
import struct
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from novabridge.emulator.voice import synthesize
from support.interpreters import python_for

pytestmark = pytest.mark.interpreter_independent


def run_host(*args: str) -> str:
    run = subprocess.run(
        [python_for("311"), "-m", "novabridge", *args, "--worker-python", python_for("312")],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "host Python 3.11" in run.stdout
    return run.stdout


def written(stdout: str) -> list[Path]:
    """The files the run says it wrote; each must exist."""
    (line,) = [line for line in stdout.splitlines() if line.startswith("wrote ")]
    paths = [Path(name) for name in line.removeprefix("wrote ").split(", ")]
    for path in paths:
        assert path.is_file(), f"{path} is named in {line!r} but was not written"
    return paths


def assert_timeline_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    assert 800 <= width <= 2400
    assert 400 <= height <= 1200


def latencies_ms(stdout: str) -> list[int]:
    return [int(ms) for ms in re.findall(r"done: \w+; end of speech to first audio (\d+) ms", stdout)]


@pytest.mark.timeout(120)
def test_the_demo_converses_three_turns_and_writes_its_outputs(tmp_path: Path) -> None:
    stdout = run_host("demo", "--out", str(tmp_path))
    assert stdout.count("done: END_TURN") == 2
    assert stdout.count("done: INTERRUPTED") == 1
    # Every turn is timed from the end of speech found in the user's audio: 600 ms endpointing and 300 ms think.
    latencies = latencies_ms(stdout)
    assert len(latencies) == 3
    assert all(800 <= ms <= 3000 for ms in latencies), latencies
    assert re.search(r"\| 2 \| What will the weather be like this weekend\? \| \d+ ms \| yes, quiet \d+ ms", stdout)
    assert re.search(r"\| 3 \| Sorry, and what about tomorrow\? \| \d+ ms \| no \|", stdout)
    assert sorted(path.name for path in written(stdout)) == [
        "assistant.wav",
        "scenario.json",
        "timeline.png",
        "user.wav",
    ]
    with wave.open(str(tmp_path / "assistant.wav"), "rb") as wav:
        assert wav.getframerate() == 24000
        audio = wav.readframes(wav.getnframes())
    assert any(audio)  # the assistant spoke
    assert_timeline_png(tmp_path / "timeline.png")


@pytest.mark.timeout(120)
def test_chat_times_each_utterance_of_any_wav(tmp_path: Path) -> None:
    # Two sentences at 22.05 kHz over a little hiss, as a recording would be: the bridge resamples, the
    # detector finds where each sentence ended.
    rate = 22050
    sentences = [synthesize(text, voice="caller", rate=rate) for text in ("What time is it in Paris?", "Thanks!")]
    pause = np.zeros(5 * rate, np.int16)  # longer than the first answer, so the user does not barge in
    clean = np.concatenate([pause[: rate // 4], np.frombuffer(sentences[0], "<i2"), pause])
    clean = np.concatenate([clean, np.frombuffer(sentences[1], "<i2"), pause[: rate // 2]])
    hiss = np.random.default_rng(5).normal(0.0, 30.0, len(clean))
    samples = np.clip(clean + hiss, -32768, 32767).astype("<i2")
    user = tmp_path / "user side.wav"
    with wave.open(str(user), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    said = tmp_path / "said.wav"
    stdout = run_host("chat", "--input", str(user), "--output", str(said), "--out", str(tmp_path / "out"))
    assert "2 utterance(s) found" in stdout
    assert stdout.count("done: END_TURN") == 2
    latencies = latencies_ms(stdout)
    assert len(latencies) == 2
    assert all(800 <= ms <= 3000 for ms in latencies), latencies
    assert "n/a" not in stdout
    paths = written(stdout)
    assert said in paths
    assert tmp_path / "out" / "timeline.png" in paths
    assert not (tmp_path / "out" / "assistant.wav").exists()  # --output is where the assistant's audio goes
    assert_timeline_png(tmp_path / "out" / "timeline.png")
