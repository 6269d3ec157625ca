"""SonicBridge across processes: this interpreter as the host (3.11 in one pass, 3.12 in the other), a 3.12 worker,
the emulator as a 3.12 subprocess, over the real SDK, HTTP/2 and TLS."""

import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import python_for
from novabridge.bridge import BridgeError, SonicBridge
from novabridge.protocol import AudioOut, Reconnecting, SonicEvent, Transcript, TurnEnd
from novabridge.sonic import SonicConfig

FRAME = 320  # 20 ms at 16 kHz


class EmulatorProcess:
    def __init__(self, record_dir: Path) -> None:
        self.record_dir = record_dir
        self.process = subprocess.Popen(
            [
                *[python_for("312"), "-m", "novabridge", "emulator", "--endpointing", "0.3", "--think", "0.05"],
                *["--speed", "20", "--record-dir", str(record_dir)],
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], 30)
        assert ready, "the emulator did not start"
        info = json.loads(self.process.stdout.readline())
        self.config = SonicConfig(
            endpoint_uri=info["endpoint_uri"],
            ca_file=info["ca_file"],
            aws_access_key_id="AKIDTEST",
            aws_secret_access_key="secret",
        )

    def recording(self, stream_id: int, timeout: float = 10.0) -> tuple[dict[str, object], bytes, bytes]:
        path = self.record_dir / f"stream-{stream_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"no recording of stream {stream_id}"
            time.sleep(0.05)
        time.sleep(0.1)
        user = (self.record_dir / f"stream-{stream_id}-user.pcm").read_bytes()
        assistant = (self.record_dir / f"stream-{stream_id}-assistant.pcm").read_bytes()
        return json.loads(path.read_text()), user, assistant

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        finally:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path / "recordings")
    yield process
    process.stop()


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


def converse(bridge: SonicBridge, audio: np.ndarray, turns: int, timeout: float = 20.0) -> list[SonicEvent]:
    """Stream ``audio`` at about 4x real time in 20 ms frames of OAC's shape, collecting events."""
    events: list[SonicEvent] = []
    for offset in range(0, len(audio), FRAME):
        bridge.send_audio(audio[offset : offset + FRAME].reshape(1, -1))
        time.sleep(0.005)
        events += bridge.poll()
    deadline = time.monotonic() + timeout
    while sum(isinstance(e, TurnEnd) for e in events) < turns:
        assert time.monotonic() < deadline, [type(e).__name__ for e in events]
        events += bridge.poll(timeout=0.1)
    return events


def test_a_conversation_through_the_worker_accounts_for_every_byte(emulator: EmulatorProcess) -> None:
    sent = np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16), tone(0.5, 300), np.zeros(16000 * 4, np.int16)])
    with SonicBridge(emulator.config, worker_python=python_for("312")) as bridge:
        events = converse(bridge, sent, turns=2)
    summary, user, assistant = emulator.recording(1)
    assert summary["outcome"] == "completed"
    # Everything sent arrived once and in order; after it, only the session's silence keep-alive.
    assert user[: sent.nbytes] == sent.tobytes()
    assert user[sent.nbytes :] == bytes(len(user) - sent.nbytes)
    received = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    assert received == assistant
    assert {e.rate for e in events if isinstance(e, AudioOut)} == {24000}
    users = [e.text for e in events if isinstance(e, Transcript) and e.role == "USER"]
    assert users == ["(speech, 0.6 seconds)", "(speech, 0.5 seconds)"]


def test_worker_killed_mid_conversation_is_replaced_and_the_conversation_resumes(emulator: EmulatorProcess) -> None:
    with SonicBridge(emulator.config, worker_python=python_for("312")) as bridge:
        converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        os.kill(bridge.metrics()["worker_pid"], signal.SIGKILL)
        events: list[SonicEvent] = []
        deadline = time.monotonic() + 30
        while not any(isinstance(e, Reconnecting) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.2)
        assert bridge.metrics()["restarts"] == 1
        later = converse(bridge, np.concatenate([tone(0.5, 300), np.zeros(16000 * 4, np.int16)]), turns=1)
        assert any(isinstance(e, Transcript) and e.role == "ASSISTANT" for e in later)
    summary, _, _ = emulator.recording(2)
    history = [
        e["event"]["textInput"]["content"]
        for e in summary["input_events"]  # type: ignore[attr-defined]
        if "textInput" in e["event"]
    ]
    # The new worker's stream started from the transcript the host kept.
    assert "(speech, 0.6 seconds)" in history
    assert any("This is answer 1" in text for text in history)


def test_host_rate_and_float_input_are_resampled_for_the_service(emulator: EmulatorProcess) -> None:
    t = np.arange(48000) / 48000
    speech = (np.sin(2 * np.pi * 220 * t) * 0.25).astype(np.float32)
    audio = np.concatenate([speech[: 48000 * 6 // 10], np.zeros(48000 * 4, np.float32)])
    with SonicBridge(emulator.config, worker_python=python_for("312"), host_rate=48000, out_rate=16000) as bridge:
        events: list[SonicEvent] = []
        for offset in range(0, len(audio), 960):
            bridge.send_audio(audio[offset : offset + 960])
            time.sleep(0.005)
            events += bridge.poll()
        deadline = time.monotonic() + 20
        while not any(isinstance(e, TurnEnd) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.1)
    _, user, assistant = emulator.recording(1)
    assert abs(len(user) // 2 - len(audio) // 3) <= 16000  # 48 kHz in, 16 kHz to the service (+ keep-alive)
    out = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    assert abs(len(out) - len(assistant) * 2 // 3) <= 64  # 24 kHz from the service, 16 kHz to the host
    assert {e.rate for e in events if isinstance(e, AudioOut)} == {16000}


def test_bad_input_raises_typed_errors_and_keeps_the_bridge_working(emulator: EmulatorProcess) -> None:
    bridge = SonicBridge(emulator.config, worker_python=python_for("312"))
    with pytest.raises(BridgeError, match="not started"):
        bridge.send_audio(np.zeros(320, np.int16))
    with bridge:
        with pytest.raises(TypeError, match="int16 or float32"):
            bridge.send_audio(np.zeros(320, np.float64))
        with pytest.raises(TypeError, match="numpy array"):
            bridge.send_audio(b"\x00\x00")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mono"):
            bridge.send_audio(np.zeros((2, 320), np.int16))
        with pytest.raises(ValueError, match=r"finite|NaN"):
            bridge.send_audio(np.full(320, np.nan, np.float32))
        with pytest.raises(ValueError, match="non-empty"):
            bridge.send_text("")
        events = converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        assert any(isinstance(e, TurnEnd) for e in events)
        started = time.monotonic()
    assert time.monotonic() - started < 2.0
    with pytest.raises(BridgeError, match="closed"):
        bridge.poll()


def test_close_under_load_is_bounded_and_leaves_no_process(emulator: EmulatorProcess) -> None:
    bridge = SonicBridge(emulator.config, worker_python=python_for("312"))
    bridge.start()
    pid = bridge.metrics()["worker_pid"]
    for offset in range(0, 16000 * 2, FRAME):
        bridge.send_audio(tone(2.0)[offset : offset + FRAME])
    started = time.monotonic()
    bridge.close()
    assert time.monotonic() - started < 2.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    bridge.close()  # idempotent


def test_a_host_older_than_312_must_name_a_worker_python(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    with pytest.raises(BridgeError, match=r"Python >= 3\.12"):
        SonicBridge(SonicConfig(aws_access_key_id="a", aws_secret_access_key="b"))


def test_a_worker_python_without_the_sdk_fails_clearly(emulator: EmulatorProcess) -> None:
    with pytest.raises(BridgeError, match="did not start"):
        SonicBridge(emulator.config, worker_python=python_for("311")).start()
