# SPDX-License-Identifier: Apache-2.0
"""A streaming voice-activity detector for a host's microphone: frame energy against an adaptive noise floor.

Made for a host-side barge-in (`novabridge.openavatarchat.handler_novasonic` pauses the avatar on an onset), so it
is tuned to report an onset early and cheaply, and leaves the verdict on whether the sound was really the user
taking the floor to the service:

- The audio is cut into 10 ms frames on its own sample clock (a frame may straddle calls), so the events are the
  same whatever the chunking. A frame's level is its RMS in dBFS, with the frame's DC offset removed.
- The noise floor follows the quietest frames: it drops to a quieter frame at once and rises towards louder ones
  slowly (`FLOOR_RISE_S`). Speech has a quiet frame every few hundred milliseconds (pauses, stop consonants), so the
  floor stays under it; a steady sound has none, so noise, hiss or a hum, whether present from the first frame or
  begun later, becomes the floor and stops counting as voice.
- A frame is voiced when it is ``threshold_db`` over the floor and over ``min_level_dbfs``. An onset is
  ``onset_s`` of consecutive voiced frames (20 ms by default: a click that short is reported, a tick of a frame or
  less is not); the voice ends after ``hangover_s`` without a frame ``HYSTERESIS_DB`` under the onset level.

Numpy only, and cheap enough for OAC's pump thread: about 50 µs per 60 ms chunk of 16 kHz audio on one core.

`last_voice_end` judges a stretch of audio whole instead: where the user's voice stopped before the pause that ended
their turn (the session replays from there after a failure).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from novabridge import pcm

__all__ = ["FRAME_S", "VoiceDetector", "VoiceEnded", "VoiceEvent", "VoiceStarted", "last_voice_end"]

FRAME_S = 0.01
"""The analysis frame: short enough for a 20 ms onset, long enough for a stable level at 16 kHz (160 samples)."""
FLOOR_RISE_S = 2.0
"""Time constant (in the dB domain) of the floor's rise towards louder frames. A second of unbroken voice moves it
less than half way (speech breaks long before that); a steady sound 30 dB over the old floor stops being voice
after about 2.5 s."""
HYSTERESIS_DB = 3.0
"""How far under the onset level a frame still continues the voice, so a voice near the threshold is not chopped."""
SILENCE_DBFS = -120.0
"""The level of a frame of digital silence (its true level, minus infinity, would break the floor's arithmetic)."""
_SILENCE_POWER = 10.0 ** (SILENCE_DBFS / 10.0)


@dataclass(frozen=True)
class VoiceStarted:
    """Voice began at ``at_s`` (where its first voiced frame starts, on the stream's sample clock)."""

    at_s: float
    detected_at_s: float
    """The end of the frame that completed the onset: ``detected_at_s - at_s`` is the detector's own delay."""


@dataclass(frozen=True)
class VoiceEnded:
    """The voice stopped at ``at_s`` (the end of its last voiced frame); reported ``hangover_s`` later."""

    at_s: float
    detected_at_s: float
    voiced_s: float
    """How much of it, from onset to end, was voiced frames (a click: a few tens of milliseconds)."""


VoiceEvent = VoiceStarted | VoiceEnded


class VoiceDetector:
    """Reports where voice starts and stops in a mono stream fed in chunks of any length.

    Args:
        rate: the sample rate in Hz (16000 for OpenAvatarChat's microphone).
        threshold_db: how far over the noise floor a frame counts as voice.
        min_level_dbfs: the quietest frame that can count as voice, whatever the floor (so the hiss of a
            near-silent line is never voice).
        onset_s: how much unbroken voice makes an onset (rounded to whole 10 ms frames, at least one).
        hangover_s: how long the voice may pause before it has ended.

    Raises:
        ValueError: a rate that is not a positive integer, or a setting out of its range.
    """

    def __init__(
        self,
        rate: int = 16000,
        *,
        threshold_db: float = 12.0,
        min_level_dbfs: float = -55.0,
        onset_s: float = 0.02,
        hangover_s: float = 0.2,
    ) -> None:
        if isinstance(rate, bool) or not isinstance(rate, int) or rate < round(1 / FRAME_S):
            raise ValueError(f"rate must be an integer of at least {round(1 / FRAME_S)} Hz, got {rate!r}")
        if not 0.0 < threshold_db <= 60.0:
            raise ValueError(f"threshold_db must be in (0, 60], got {threshold_db!r}")
        if not SILENCE_DBFS < min_level_dbfs < 0.0:
            raise ValueError(f"min_level_dbfs must be in ({SILENCE_DBFS}, 0), got {min_level_dbfs!r}")
        if not 0.0 < onset_s <= 1.0:
            raise ValueError(f"onset_s must be in (0, 1] seconds, got {onset_s!r}")
        if not 0.0 <= hangover_s <= 5.0:
            raise ValueError(f"hangover_s must be in [0, 5] seconds, got {hangover_s!r}")
        self.rate = rate
        self.threshold_db = float(threshold_db)
        self.min_level_dbfs = float(min_level_dbfs)
        self._frame = round(rate * FRAME_S)
        self._onset_frames = max(1, round(onset_s / FRAME_S))
        self._hangover_frames = round(hangover_s / FRAME_S)
        self._rise = FRAME_S / FLOOR_RISE_S
        self._pending: npt.NDArray[np.float64] = np.zeros(0)
        self._frames = 0
        self._floor = math.inf  # the first frame sets it: a sound present from the start is the floor
        self._run = 0
        self._in_voice = False
        self._onset_frame = 0
        self._last_voiced_end = 0
        self._voiced_frames = 0

    @property
    def position_s(self) -> float:
        """Seconds of audio analysed so far (whole frames; a partial frame waits for the next call)."""
        return self._frames * self._frame / self.rate

    @property
    def in_voice(self) -> bool:
        """Whether an onset was reported and its end has not been."""
        return self._in_voice

    @property
    def noise_floor_dbfs(self) -> float:
        """The current noise floor (``SILENCE_DBFS`` for digital silence; infinity before the first frame)."""
        return self._floor

    def feed(self, audio: npt.NDArray[Any]) -> list[VoiceEvent]:
        """Analyse the next chunk: int16, or float32 in [-1, 1]; shape (N,) or (1, N); any N, split anywhere.

        Raises:
            TypeError, ValueError: audio that is not mono int16 or float32, or has non-finite samples (see
                `novabridge.pcm.mono`); the detector's state is unchanged then.
        """
        samples = pcm.mono(audio)
        scaled = samples.astype(np.float64)
        if samples.dtype == np.int16:
            scaled *= 1.0 / 32768.0
        if self._pending.size:
            scaled = np.concatenate([self._pending, scaled])
        whole = scaled.size // self._frame
        self._pending = scaled[whole * self._frame :].copy()
        if whole == 0:
            return []
        levels = _levels(scaled[: whole * self._frame].reshape(whole, self._frame))
        events: list[VoiceEvent] = []
        for level in levels.tolist():
            self._step(level, events)
        return events

    def _step(self, level: float, events: list[VoiceEvent]) -> None:
        self._frames += 1
        if level <= self._floor:
            self._floor = level
        else:
            self._floor += (level - self._floor) * self._rise
        onset_level = max(self._floor + self.threshold_db, self.min_level_dbfs)
        if self._in_voice:
            if level >= onset_level - HYSTERESIS_DB:
                self._last_voiced_end = self._frames
                self._voiced_frames += 1
            elif self._frames - self._last_voiced_end >= self._hangover_frames:
                self._in_voice = False
                self._run = 0
                events.append(
                    VoiceEnded(
                        self._seconds(self._last_voiced_end),
                        self._seconds(self._frames),
                        self._seconds(self._voiced_frames),
                    )
                )
            return
        if level < onset_level:
            self._run = 0
            return
        self._run += 1
        if self._run >= self._onset_frames:
            self._in_voice = True
            self._onset_frame = self._frames - self._run
            self._last_voiced_end = self._frames
            self._voiced_frames = self._run
            events.append(VoiceStarted(self._seconds(self._onset_frame), self._seconds(self._frames)))

    def _seconds(self, frames: int) -> float:
        return frames * self._frame / self.rate


def _levels(frames: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each row's level in dBFS (samples in [-1, 1]), with its DC removed: mean square minus squared mean."""
    # Plain reductions: on frames this small, np.mean's own overhead would cost more than the arithmetic.
    size = frames.shape[1]
    means = np.add.reduce(frames, axis=1) / size
    power = np.add.reduce(frames * frames, axis=1) / size - means * means
    levels: npt.NDArray[np.float64] = 10.0 * np.log10(np.maximum(power, _SILENCE_POWER))
    return levels


def last_voice_end(
    audio: npt.NDArray[np.int16],
    rate: int,
    *,
    min_pause_s: float = 0.2,
    threshold_db: float = 12.0,
    min_level_dbfs: float = -55.0,
) -> int | None:
    """Where the last voice in ``audio`` that a pause of ``min_pause_s`` follows ends, in samples.

    Judged on the stretch as a whole: a frame is voice when it is ``threshold_db`` over the stretch's quietest frame
    and over ``min_level_dbfs``. So a voice from the first sample counts (`VoiceDetector` would take it for the
    floor), but only a stretch that holds a pause can say where a voice ended.

    Returns 0 when nothing in ``audio`` is voice, and None when it cannot tell: voice, but no pause after any of it.
    """
    frame = round(rate * FRAME_S)
    whole = audio.size // frame
    if whole == 0:
        return 0
    levels = _levels(audio[: whole * frame].reshape(whole, frame) / 32768.0)
    voiced = levels >= max(float(levels.min()) + threshold_db, min_level_dbfs)
    pause = max(1, round(min_pause_s / FRAME_S))
    # A voiced frame's run of unvoiced frames after it, up to the end: the number of frames to the next voiced one.
    voiced_at = np.flatnonzero(voiced)
    if voiced_at.size == 0:
        return 0
    runs = np.diff(np.append(voiced_at, whole)) - 1
    paused = np.flatnonzero(runs >= pause)
    if paused.size == 0:
        return None
    return int(voiced_at[paused[-1]] + 1) * frame
