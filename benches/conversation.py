# SPDX-License-Identifier: Apache-2.0
"""The conversation every bridge benchmark holds: the emulator and its settings, the user's script, and the host's
loop that streams the script in real time and reads what comes back.

The user's audio: 32 ms frames of 16 kHz int16 (512 samples, so one frame is one record is one SDK frame at
`SonicConfig.frame_ms` = 32), a lead-in of silence, then turns of a 0.6 s tone followed by silence long enough for
the emulator's answer to play out (`Script`). The host sends frame ``k`` at ``start + k * 32 ms`` and, between
sends, waits for events with the peer's own blocking wait, so it reads as soon as something arrives (`converse`).
A late send is a user frame sent more than one frame (32 ms) after its slot.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
from novabridge.emulator.process import EmulatorProcess
from novabridge.events import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, TurnEnd
from novabridge.exceptions import RingFull

from benches.playout import TOLERANCE_S, Chunk, Playout

ROOT: Final = Path(__file__).resolve().parent.parent
RATE: Final = 16000
FRAME: Final = 512
"""Samples per user frame: 32 ms at 16 kHz, the session's `frame_ms`, so one ring record is one SDK frame."""
FRAME_S: Final = FRAME / RATE
TONE_S: Final = 0.6
ANSWER_S: Final = 3.35
"""The emulator's default answer ("This is answer N. I heard 0.6 seconds of speech.") spoken by its voice."""
START_TIMEOUT_S: Final = 120.0
LINGER_S: Final = 0.7
"""Reading on after a window: the worker sends its uplink timings twice a second."""


def python312() -> str:
    """The worker's interpreter: NOVABRIDGE_PY312 (the Makefile exports it), else this one if it is >= 3.12."""
    if env := os.environ.get("NOVABRIDGE_PY312"):
        return env
    if sys.version_info >= (3, 12):
        return sys.executable
    return str(ROOT / ".venv" / "bin" / "python")


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


# ---------------------------------------------------------------------------------------------------------------
# The emulator and the user's audio


@dataclasses.dataclass(frozen=True)
class EmulatorSettings:
    """The emulator's command line: timing of the conversation model."""

    speed: float = 1.0
    """Assistant audio leaves at this multiple of real time (1: at the playout cadence, the strict case)."""
    think_s: float = 0.3
    endpointing_s: float = 0.5
    max_streams: int = 256

    def args(self) -> list[str]:
        return [
            *["--speed", f"{self.speed:g}", "--think", f"{self.think_s:g}"],
            *["--endpointing", f"{self.endpointing_s:g}", "--max-streams", str(self.max_streams)],
        ]

    @property
    def gap_s(self) -> float:
        """Silence after each tone: the pause that ends the turn, the think time, the answer, and 0.6 s to spare.

        The emulator holds a turn open until its answer has played out in real time, whatever ``speed`` is, and
        speech before then is a barge-in.
        """
        return self.endpointing_s + self.think_s + ANSWER_S + 0.6

    @property
    def answer_within_s(self) -> float:
        """After a tone ends, its answer's first audio is expected within this (1 s beyond the model's delays)."""
        return self.endpointing_s + self.think_s + 1.0


class Emulator(EmulatorProcess):
    """``python -m novabridge emulator`` with the benchmark's settings, as a subprocess on a free port."""

    def __init__(self, settings: EmulatorSettings, python: str | None = None) -> None:
        self.settings = settings
        super().__init__(python or python312(), settings.args())


@dataclasses.dataclass(frozen=True)
class Script:
    """The user's side: ``lead_s`` of silence, then turns of a 0.6 s tone and ``gap_s`` of silence; ``seconds``."""

    seconds: float
    gap_s: float
    lead_s: float = 0.2

    def tone_ends(self) -> list[float]:
        ends = []
        at = self.lead_s
        while at + TONE_S <= self.seconds:
            ends.append(at + TONE_S)
            at += TONE_S + self.gap_s
        return ends

    def audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        frames = math.ceil(self.seconds * RATE / FRAME)
        audio = np.zeros(frames * FRAME, np.int16)
        t = np.arange(round(TONE_S * RATE)) / RATE
        for turn, end in enumerate(self.tone_ends()):
            hz = (220.0, 300.0, 260.0)[turn % 3]
            first = round((end - TONE_S) * RATE)
            audio[first : first + len(t)] = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
        return audio

    def frames(self) -> list[np.ndarray[Any, np.dtype[np.int16]]]:
        """The audio in 32 ms frames (views)."""
        audio = self.audio()
        return [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]

    def expected_answers(self, settings: EmulatorSettings) -> int:
        """Turns whose answer should have started before the script ends."""
        return sum(end + settings.answer_within_s <= self.seconds for end in self.tone_ends())


# ---------------------------------------------------------------------------------------------------------------
# What the host saw, and the loop that streams the script


@dataclasses.dataclass
class Conversation:
    """What one host session saw while it streamed a script."""

    playout: Playout
    frames: int = 0
    late_sends: int = 0
    worst_slip_s: float = 0.0
    ring_full: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    interrupts: int = 0
    turn_ends: int = 0
    audio_bytes: int = 0
    started: float = 0.0
    ended: float = 0.0
    host_thread_cpu_s: float = 0.0
    chunk_log: list[Chunk] = dataclasses.field(default_factory=list)
    """(turn id, arrival, seconds) of each assistant chunk, in order."""

    def take(self, events: Sequence[SonicEvent], now: float) -> None:
        for event in events:
            if isinstance(event, AudioOut):
                self.audio_bytes += len(event.pcm)
                seconds = len(event.pcm) / (2 * event.rate)
                self.playout.chunk(event.turn_id, now, seconds)
                self.chunk_log.append((event.turn_id, now, seconds))
            elif isinstance(event, (Error, Reconnecting)):
                self.errors.append(repr(event)[:200])
            elif isinstance(event, Interrupted):
                self.interrupts += 1
            elif isinstance(event, TurnEnd):
                self.turn_ends += 1


def converse(
    frames: Sequence[np.ndarray[Any, np.dtype[np.int16]]],
    start: float,
    send: Callable[[np.ndarray[Any, np.dtype[np.int16]]], None],
    receive: Callable[[float], list[SonicEvent]],
    *,
    tolerance_s: float = TOLERANCE_S,
    on_start: Callable[[], None] | None = None,
    linger_s: float = 0.0,
) -> Conversation:
    """Send frame k at ``start + k * FRAME_S``; between sends, wait in ``receive(timeout)`` for events.

    After the window, keep reading (and dropping) events for ``linger_s``, so what arrives then is read promptly
    too (the bridge times its reads) and the worker's last batch of uplink timings comes in.
    """
    conversation = Conversation(Playout(tolerance_s))

    def until(deadline: float, take: bool = True) -> None:
        while (left := deadline - time.monotonic()) > 0:
            events = receive(left)
            if take:
                conversation.take(events, time.monotonic())

    until(start)
    if on_start is not None:
        on_start()
    thread_cpu = time.thread_time()
    conversation.started = time.monotonic()
    for k, frame in enumerate(frames):
        due = start + k * FRAME_S
        until(due)
        slip = time.monotonic() - due
        conversation.worst_slip_s = max(conversation.worst_slip_s, slip)
        if slip > FRAME_S:
            conversation.late_sends += 1
        try:
            send(frame)
        except RingFull:
            conversation.ring_full += 1
        conversation.frames += 1
    until(start + len(frames) * FRAME_S)
    conversation.ended = time.monotonic()
    conversation.host_thread_cpu_s = time.thread_time() - thread_cpu
    until(conversation.ended + linger_s, take=False)
    return conversation
