"""Energy voice activity detection on the input audio, on the input's own sample clock.

The clock is the number of samples received, not the wall clock: a client must stream audio in real time (the
service times out otherwise), so the two agree, and the sample clock makes every turn boundary reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_S = 0.01


@dataclass(frozen=True)
class SpeechStarted:
    """Voiced frames for at least the onset time; ``at_s`` is where the voiced run began."""

    at_s: float


@dataclass(frozen=True)
class SpeechEnded:
    """The pause after speech reached the endpointing window; ``at_s`` is where the last voiced frame ended."""

    at_s: float
    voiced_s: float
    """How much of the utterance was voiced."""


VadEvent = SpeechStarted | SpeechEnded


class EnergyVad:
    """Frame RMS against a threshold, with an onset time against clicks and a pause that ends an utterance."""

    def __init__(self, rate: int, *, pause_s: float, threshold_dbfs: float = -40.0, onset_s: float = 0.06) -> None:
        self.rate = rate
        self.pause_s = pause_s
        self._frame = max(1, round(rate * FRAME_S))
        self._threshold = 32768.0 * 10.0 ** (threshold_dbfs / 20.0)
        self._onset_frames = max(1, round(onset_s / FRAME_S))
        self._pending = bytearray()
        self._frames = 0
        self._run = 0
        self._in_speech = False
        self._last_voiced_end = 0
        self._voiced_frames = 0

    @property
    def position_s(self) -> float:
        """Seconds of input audio analysed so far."""
        return self._frames * self._frame / self.rate

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is open (started and not yet ended by a pause)."""
        return self._in_speech

    def feed(self, pcm: bytes) -> list[VadEvent]:
        """Analyse s16le mono audio; any length, split anywhere (a frame can straddle calls)."""
        self._pending += pcm
        frame_bytes = 2 * self._frame
        whole = len(self._pending) // frame_bytes
        if whole == 0:
            return []
        samples = np.frombuffer(bytes(self._pending[: whole * frame_bytes]), dtype="<i2").astype(np.float64)
        del self._pending[: whole * frame_bytes]
        rms = np.sqrt(np.mean(samples.reshape(whole, self._frame) ** 2, axis=1))
        events: list[VadEvent] = []
        for voiced in rms >= self._threshold:
            self._frames += 1
            if voiced:
                self._run += 1
                self._last_voiced_end = self._frames
                if self._in_speech:
                    self._voiced_frames += 1
                elif self._run >= self._onset_frames:
                    self._in_speech = True
                    self._voiced_frames = self._run
                    events.append(SpeechStarted(self._seconds(self._frames - self._run)))
            else:
                self._run = 0
                if self._in_speech and self._seconds(self._frames - self._last_voiced_end) >= self.pause_s:
                    self._in_speech = False
                    events.append(SpeechEnded(self._seconds(self._last_voiced_end), self._seconds(self._voiced_frames)))
        return events

    def _seconds(self, frames: int) -> float:
        return frames * self._frame / self.rate
