"""Energy voice activity detection on the input audio, on the input's own sample clock.

The clock is the number of samples received, not the wall clock: a client must stream audio in real time (the
service times out otherwise), so the two agree, and the sample clock makes every turn boundary reproducible.

`find_utterances` runs the same detector over a whole recording (the demo's user side, any WAV given to
``novabridge chat``), with a threshold taken from that recording's own noise floor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from novabridge import pcm

FRAME_S = 0.01
NOISE_FLOOR_PERCENTILE = 5.0
"""The frame level taken for a recording's noise floor: its quietest frames, which any pause between words has."""
SPEECH_OVER_FLOOR_DB = 10.0
"""Speech is at least this far above the noise floor (the frame level of steady noise varies by about 1 dB)."""
QUIETEST_SPEECH_DBFS = -50.0
"""Never a lower threshold, so the digital silence of a synthetic recording does not make every hiss speech."""


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

    def finish(self) -> list[VadEvent]:
        """The input has ended: an open utterance ends where its last voiced frame did."""
        if not self._in_speech:
            return []
        self._in_speech = False
        return [SpeechEnded(self._seconds(self._last_voiced_end), self._seconds(self._voiced_frames))]

    def _seconds(self, frames: int) -> float:
        return frames * self._frame / self.rate


@dataclass(frozen=True)
class Utterance:
    """A stretch of speech in a recording, in seconds from its first sample."""

    start_s: float
    end_s: float
    """Where the last voiced frame ended: the end of speech a reply's latency is counted from."""


def noise_floor_threshold_dbfs(samples: npt.NDArray[np.int16], rate: int) -> float:
    """The speech threshold for a recording: `SPEECH_OVER_FLOOR_DB` over its noise floor, or `QUIETEST_SPEECH_DBFS`.

    The floor is the `NOISE_FLOOR_PERCENTILE` of its frames' RMS levels, so the recording must have some pause.
    """
    frame = max(1, round(rate * FRAME_S))
    whole = len(samples) // frame
    if whole == 0:
        return QUIETEST_SPEECH_DBFS
    frames = samples[: whole * frame].astype(np.float64).reshape(whole, frame)
    floor = float(np.percentile(np.sqrt(np.mean(frames**2, axis=1)), NOISE_FLOOR_PERCENTILE))
    if floor <= 0.0:
        return QUIETEST_SPEECH_DBFS
    return max(QUIETEST_SPEECH_DBFS, 20.0 * math.log10(floor / 32768.0) + SPEECH_OVER_FLOOR_DB)


def find_utterances(
    samples: npt.NDArray[Any],
    rate: int,
    *,
    hangover_s: float = 0.3,
    onset_s: float = 0.06,
    threshold_dbfs: float | None = None,
) -> list[Utterance]:
    """The utterances of a whole recording, by frame energy.

    Args:
        samples: mono int16, or float32 in [-1, 1]; shape (N,) or (1, N).
        rate: the sample rate in Hz.
        hangover_s: how long speech holds over a quiet stretch; a shorter pause does not end an utterance.
        onset_s: how long a voiced run must last to start one (shorter clicks are not speech).
        threshold_dbfs: the frame RMS level of speech; by default `noise_floor_threshold_dbfs` of the recording.

    Raises:
        TypeError, ValueError: samples that are not mono int16 or float32 (see `novabridge.pcm.mono`), a rate
            that is not a positive integer, or a hangover or onset that is not positive.
    """
    audio = pcm.mono(samples)
    if audio.dtype == np.float32:
        audio = pcm.to_int16(audio)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"rate must be a positive integer, got {rate!r}")
    if not hangover_s > 0 or not onset_s > 0:
        raise ValueError(f"hangover_s and onset_s must be positive, got {hangover_s!r} and {onset_s!r}")
    if threshold_dbfs is None:
        threshold_dbfs = noise_floor_threshold_dbfs(audio, rate)
    vad = EnergyVad(rate, pause_s=hangover_s, threshold_dbfs=threshold_dbfs, onset_s=onset_s)
    events = vad.feed(np.ascontiguousarray(audio, dtype="<i2").tobytes()) + vad.finish()
    starts = [e.at_s for e in events if isinstance(e, SpeechStarted)]
    ends = [e.at_s for e in events if isinstance(e, SpeechEnded)]
    return [Utterance(start, end) for start, end in zip(starts, ends, strict=True)]
