# SPDX-License-Identifier: Apache-2.0
"""What the session (in the worker) and the bridge (in the host) both follow per turn.

`FirstAudioClock` times each answer's first audio from the user's FINAL transcript, each side as it sees them;
`withdraw_audio` takes the queued audio of a turn a barge-in cut out of a queue; `StaleOutput` is the bridge's
filter built on it, which also drops what the cut turn still sends.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from novabridge.events import AudioOut, Interrupted, SonicEvent

__all__ = [
    "RECENT_TURNS",
    "TIMING_SAMPLES",
    "FirstAudioClock",
    "StaleOutput",
    "forget_oldest",
    "timings",
    "withdraw_audio",
]

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")

RECENT_TURNS = 64
"""Turns a per-turn record (a turn's name, a cut turn) is kept for: output of an older turn no longer arrives, and a
conversation of days must not grow its process with a record per turn."""

TIMING_SAMPLES = 1000
"""The newest timings a per-turn, per-frame or per-event series keeps: a session may run for days, and a series that
kept every sample would grow its process's memory all along (the soak run measured it in the worker)."""

_Item = TypeVar("_Item")


def forget_oldest(records: dict[_Key, _Value], keep: int = RECENT_TURNS) -> None:
    """Drop the records first added to ``records`` until ``keep`` are left."""
    while len(records) > keep:
        del records[next(iter(records))]


def timings() -> collections.deque[float]:
    """An empty series of timings that keeps the newest `TIMING_SAMPLES`."""
    return collections.deque(maxlen=TIMING_SAMPLES)


class FirstAudioClock:
    """Per answer: seconds from the user's FINAL transcript to the answer's first audio (the newest ones)."""

    def __init__(self, samples: collections.deque[float] | None = None) -> None:
        """``samples``: the series the times are appended to (a metrics field), else a new `timings` one."""
        self.samples: collections.deque[float] = timings() if samples is None else samples
        self._heard_at: float | None = None

    def user_final(self) -> None:
        """The user's FINAL transcript arrived: the next audio is the answer's first."""
        self._heard_at = time.monotonic()

    def audio(self) -> None:
        """Assistant audio arrived: the first since the user's FINAL transcript is timed."""
        if self._heard_at is not None:
            self.samples.append(time.monotonic() - self._heard_at)
            self._heard_at = None

    def cancel(self) -> None:
        """The turn ended without audio: no answer is being waited for."""
        self._heard_at = None


def withdraw_audio(
    items: Iterable[_Item], turn_id: str, event_of: Callable[[_Item], object] = lambda item: item
) -> tuple[list[_Item], int]:
    """``items`` without the `AudioOut` of ``turn_id``, and the PCM bytes taken out.

    ``event_of`` finds the event in an item (a queue may hold events with their times, or markers).
    """
    kept: list[_Item] = []
    withdrawn = 0
    for item in items:
        event = event_of(item)
        if isinstance(event, AudioOut) and event.turn_id == turn_id:
            withdrawn += len(event.pcm)
        else:
            kept.append(item)
    return kept, withdrawn


class StaleOutput:
    """Answers a barge-in cut: their audio not yet handed out is dropped, what is queued and what comes later.

    A barge-in is the service's `Interrupted`, or the host's own (`interrupt`). ``dropped_bytes`` counts all the
    audio dropped, at the rate it is handed out at.
    """

    def __init__(self, out_bytes: Callable[[int], int]) -> None:
        """``out_bytes`` converts the service's count of bytes it dropped to the rate audio is handed out at."""
        self._out_bytes = out_bytes
        self._cut: dict[str, None] = {}
        """The turns cut lately (`RECENT_TURNS`), oldest first."""
        self._last_audio_turn = ""
        self.dropped_bytes = 0

    def interrupt(self, queued: list[SonicEvent], turn_id: str | None = None) -> tuple[list[SonicEvent], int]:
        """The host's barge-in: the answer ``turn_id`` is cut, or (None) the one being played and all in ``queued``.

        Returns the rest of ``queued``, and the bytes dropped now.
        """
        if turn_id is not None:
            self._cut_turn(turn_id)
            kept, dropped = withdraw_audio(queued, turn_id)
            self.dropped_bytes += dropped
            return kept, dropped
        if self._last_audio_turn:
            self._cut_turn(self._last_audio_turn)
        kept = []
        dropped = 0
        for event in queued:
            if isinstance(event, AudioOut):
                self._cut_turn(event.turn_id)
                dropped += len(event.pcm)
            else:
                kept.append(event)
        self.dropped_bytes += dropped
        return kept, dropped

    def _cut_turn(self, turn_id: str) -> None:
        self._cut[turn_id] = None
        forget_oldest(self._cut)

    def filter(self, events: list[SonicEvent]) -> list[SonicEvent]:
        """``events`` as the host may have them.

        An `Interrupted` withdraws its turn's audio before it (its ``dropped_bytes`` then counts that too), and the
        audio of cut turns after it is dropped.
        """
        kept: list[SonicEvent] = []
        for event in events:
            if isinstance(event, AudioOut):
                if event.turn_id in self._cut:
                    self.dropped_bytes += len(event.pcm)
                    continue
                self._last_audio_turn = event.turn_id
            elif isinstance(event, Interrupted):
                self._cut_turn(event.turn_id)
                kept, withdrawn = withdraw_audio(kept, event.turn_id)
                event = dataclasses.replace(event, dropped_bytes=self._out_bytes(event.dropped_bytes) + withdrawn)
                self.dropped_bytes += event.dropped_bytes
            kept.append(event)
        return kept
