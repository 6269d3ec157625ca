"""Local barge-in in the OpenAvatarChat handler, inside OAC's real engine with the emulator: the user's voice on the
microphone pauses the answer before Nova Sonic's verdict; the service's confirmation drops the rest, and a sound it
does not take for a barge-in lets the answer resume with nothing lost."""

import collections
import itertools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from support.audio import tone
from support.emulator_process import EmulatorProcess
from support.oac import oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig
from support.oac_engine import FRAME, Session, audio_of, ends
from support.oac_engine import make_handler as make_handler  # noqa: PLC0414 - a fixture, shared by its name

RATE = 16000
ANSWER = "This answer goes on for quite a while. " * 2
"""About 5.2 s of synthetic voice: long enough to interrupt, short enough to hear out twice in a test."""


@pytest.fixture
def answering_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """The emulator with the test timing (0.3 s endpointing, answers sent at 20x) and a 5 s answer to every turn."""
    scenario = tmp_path / "answer.json"
    scenario.write_text(json.dumps({"turns": [{"assistant": ANSWER}] * 3}))
    process = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario))
    yield process
    process.stop()


class Microphone:
    """OAC's RTC client side of the microphone: a 60 ms frame every 60 ms, quiet room noise unless something is said.

    What is said starts on the next frame boundary; the time each frame was put on the engine's input is kept.
    """

    def __init__(self, session: Session, noise_dbfs: float = -75.0) -> None:
        self.session = session
        self.noise = np.random.default_rng(7).normal(0.0, 32768 * 10 ** (noise_dbfs / 20), FRAME * 50)
        self.pending: collections.deque[np.ndarray] = collections.deque()
        self.lock = threading.Lock()
        self.sent: list[float] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def say(self, audio: np.ndarray) -> int:
        """Queue ``audio`` (int16 at 16 kHz) from the next frame on; returns the index of that frame."""
        frames = [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]
        frames[-1] = np.pad(frames[-1], (0, FRAME - len(frames[-1])))
        with self.lock:
            first = len(self.sent) + len(self.pending)
            self.pending.extend(frames)
        return first

    def _run(self) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            with self.lock:
                said = self.pending.popleft() if self.pending else np.zeros(FRAME)
                index = len(self.sent)
                self.sent.append(time.monotonic())
            bed = self.noise[(index % 50) * FRAME : (index % 50 + 1) * FRAME]
            frame = np.clip(np.rint(said + bed), -32768, 32767).astype(np.int16)
            self.session.mic.put((RATE, frame.reshape(1, -1)))
            due += FRAME / RATE
            time.sleep(max(0.0, due - time.monotonic()))

    def wait_connected(self) -> None:
        """Wait until the session's stream is open and what was held meanwhile has reached the service.

        The service's clock is the audio it has heard: a second held while the worker connected, arriving at once
        after the question, would make the emulator think that much of the answer had already played.
        """
        wait_for(lambda: self.session.nova.bridge is not None and self.session.nova.bridge.ready, 30.0, "no stream")
        time.sleep(0.3)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def stamp_calls(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[tuple[float, ChatData]]:
    """Patch ``handler.handle`` to note when each call returned, with its input (the engine looks it up per call)."""
    calls: list[tuple[float, ChatData]] = []
    original = handler.handle

    def handle(context: Any, inputs: ChatData, output_definitions: Any) -> None:
        original(context, inputs, output_definitions)
        calls.append((time.monotonic(), inputs))

    monkeypatch.setattr(handler, "handle", handle)
    return calls


def peak(item: ChatData) -> float:
    assert item.data is not None
    samples = item.data.get_main_data()
    assert isinstance(samples, np.ndarray)
    return float(np.abs(samples.astype(np.float64)).max())


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def answer_stamps(session: Session, speech_id: str) -> tuple[list[float], float]:
    """When each voiced slice of an answer was submitted, and when its end marker was."""
    voiced, end = [], None
    for stamp, item in session.audio_out.stamps:
        if item.data is not None and item.data.get_meta("speech_id") == speech_id:
            if item.data.get_meta("avatar_speech_end"):
                end = stamp
            else:
                voiced.append(stamp)
    assert end is not None
    return voiced, end


def test_the_users_voice_pauses_the_answer_before_the_service_confirms(
    answering_emulator: EmulatorProcess, make_handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler: HandlerNovaSonic = make_handler(answering_emulator)
    assert handler.config.local_barge_in  # the default
    mic_calls = stamp_calls(monkeypatch, handler)
    session = Session(handler, "oac-local-barge")
    client_calls = stamp_calls(monkeypatch, session.client)
    mic = Microphone(session)
    try:
        mic.wait_connected()
        mic.say(tone(0.6))
        session.collect(lambda seen: len(audio_of(seen)) >= 50)  # a second of the answer handed to the avatar
        # The voice starts 30 ms into a frame. The host's detector needs 20 ms of it, so it pauses on that frame;
        # the emulator's VAD needs 60 ms, so its barge-in comes with the next frame, 60 ms later: a pause that
        # waited for the service would let about three more 20 ms slices out.
        said_at = time.monotonic()
        onset_frame = mic.say(np.concatenate([np.zeros(FRAME // 2, np.int16), tone(1.0, 300)]))
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        stats = session.nova.barge_in_stats()
    finally:
        mic.stop()
        session.stop()
    onset_handled = next(t for t, item in mic_calls if t > said_at and peak(item) > 1000)
    speech_id = audio_of(seen)[0][0]
    voiced, end = answer_stamps(session, speech_id)
    # Paced up to the onset (a slice within the last 100 ms), and not one sample submitted after its frame.
    assert onset_handled - 0.1 < voiced[-1] <= onset_handled
    assert end > onset_handled
    received = [t for t, item in client_calls if item.type == ChatDataType.AVATAR_AUDIO and item.data is not None]
    assert received[-1] >= end  # the client got the end marker last
    voiced_received = [
        t
        for t, item in client_calls
        if item.type == ChatDataType.AVATAR_AUDIO
        and item.data is not None
        and not item.data.get_meta("avatar_speech_end")
        and item.data.get_meta("speech_id") == speech_id
    ]
    assert voiced_received[-1] - onset_handled < 0.15  # what the avatar received last: taken before the pause
    assert stats.pauses == 1
    assert stats.confirmed == 1  # the emulator's Interrupted
    assert stats.false == 0
    assert not stats.holding
    assert stats.unpaused_interruptions == 0
    assert stats.onset_to_pause_ms_max is not None
    assert stats.onset_to_pause_ms_max < 150  # 30 ms of voice in the onset frame, plus the time in handle()
    assert stats.confirm_ms_max is not None
    recording, _, assistant = answering_emulator.recording(1)
    turns = recording["turns"]
    assert isinstance(turns, list)
    assert turns[0]["interrupted"]
    # What the avatar got is the start of what the service sent, in order; the rest was dropped.
    played = np.concatenate([a[0] for sid, a, end in audio_of(seen) if sid == speech_id and not end])
    first_turn = np.frombuffer(assistant, dtype="<i2")[: turns[0]["assistant_audio_bytes"] // 2]
    assert len(played) < len(first_turn)
    assert np.allclose(played, first_turn[: len(played)].astype(np.float32) / 32768, atol=1e-4)
    assert mic.sent[onset_frame] <= onset_handled


def test_a_sound_the_service_ignores_pauses_the_answer_which_then_resumes_whole(
    answering_emulator: EmulatorProcess,
    make_handler: Any,
    monkeypatch: pytest.MonkeyPatch,
    oac_log: list[tuple[str, str]],
) -> None:
    handler: HandlerNovaSonic = make_handler(answering_emulator)
    session = Session(handler, "oac-false-barge")
    mic = Microphone(session)
    rng = np.random.default_rng(3)
    # Two sounds the host's detector takes for an onset and the emulator's VAD does not take for speech (it wants
    # 60 ms of frames over -40 dBFS): a 30 ms click at -12 dBFS, and a 300 ms murmur ("mm-hm") at -47 dBFS, loud
    # over the room's -75 dBFS but under the emulator's threshold. Real Nova Sonic ignores such sounds its own way;
    # here the emulator stands in for it deterministically.
    click = (rng.uniform(-1, 1, round(0.03 * RATE)) * 8000).astype(np.int16)
    murmur = (voiced_murmur(0.3) * 32768 * 10 ** (-47 / 20)).astype(np.int16)
    try:
        mic.wait_connected()
        mic.say(tone(0.6))
        session.collect(lambda seen: len(audio_of(seen)) >= 30)
        mic.say(click)
        wait_for(lambda: session.nova.barge_in_stats().false == 1, 3.0, "the click's pause did not end")
        time.sleep(0.5)
        mic.say(murmur)
        wait_for(lambda: session.nova.barge_in_stats().false == 2, 3.0, "the murmur's pause did not end")
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        stats = session.nova.barge_in_stats()
    finally:
        mic.stop()
        session.stop()
    assert stats.pauses == 2
    assert stats.false == 2
    assert stats.confirmed == 0
    assert stats.unpaused_interruptions == 0
    false_lines = [message for level, message in oac_log if "false barge-in" in message]
    assert len(false_lines) == 2
    assert all(level == "INFO" for level, message in oac_log if "false barge-in" in message)
    assert "oac-false-barge" in false_lines[0]
    recording, _, assistant = answering_emulator.recording(1)
    turns = recording["turns"]
    assert isinstance(turns, list)
    assert len(turns) == 1  # neither sound was a user turn for the service
    assert not turns[0]["interrupted"]
    # Every sample the service sent reached the avatar, in order, under one speech_id.
    audio = audio_of(seen)
    assert len({sid for sid, _, _ in audio}) == 1
    played = np.concatenate([a[0] for _, a, end in audio if not end])
    assert len(played) * 2 == turns[0]["assistant_audio_bytes"] == len(assistant)
    assert np.allclose(played, np.frombuffer(assistant, dtype="<i2").astype(np.float32) / 32768, atol=1e-4)
    # The pacing really stopped twice: two gaps in the submissions, each as long as the wait for the service.
    voiced, _ = answer_stamps(session, audio[0][0])
    gaps = [b - a for a, b in itertools.pairwise(voiced) if b - a > 0.3]
    assert len(gaps) == 2, gaps
    assert all(gap >= handler.config.barge_in_resume_ms / 1000 for gap in gaps)


def voiced_murmur(seconds: float) -> np.ndarray:
    """A hummed "mm-hm" in [-1, 1] with RMS 1 before scaling: two low syllables with soft edges."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = np.sin(2 * np.pi * 120 * t) + 0.5 * np.sin(2 * np.pi * 240 * t)
    envelope = np.sin(np.pi * np.clip(t / seconds, 0, 1)) ** 0.5 * (0.6 + 0.4 * np.cos(2 * np.pi * t / seconds * 2))
    signal = wave * envelope
    return np.asarray(signal / np.sqrt(np.mean(signal**2)))


def test_without_local_barge_in_the_service_alone_interrupts(
    answering_emulator: EmulatorProcess, make_handler: Any
) -> None:
    session = Session(make_handler(answering_emulator, local_barge_in=False), "oac-no-local")
    mic = Microphone(session)
    try:
        assert session.nova.detector is None
        mic.wait_connected()
        mic.say(tone(0.6))
        session.collect(lambda seen: len(audio_of(seen)) >= 30)
        mic.say(tone(1.0, 300))
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        stats = session.nova.barge_in_stats()
    finally:
        mic.stop()
        session.stop()
    assert stats.pauses == 0
    assert stats.unpaused_interruptions == 1  # the service's barge-in, with no pause before it
    recording, _, _ = answering_emulator.recording(1)
    assert recording["turns"][0]["interrupted"]  # type: ignore[index]


def test_barge_in_settings_are_checked() -> None:
    assert NovaSonicConfig().pacing_lead_ms > 30  # above OAC's 30 ms pump poll
    for bad in (
        {"pacing_lead_ms": 30},
        {"barge_in_threshold_db": 0},
        {"barge_in_resume_ms": -1},
        {"barge_in_max_hold_ms": 50},
        {"local_barge_in": "sometimes"},
    ):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            NovaSonicConfig.model_validate(bad)
