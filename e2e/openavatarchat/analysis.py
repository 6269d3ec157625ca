"""What the end-to-end run measured, worked out from the page's and the emulator's records (pure numpy).

Times are seconds on one clock unless a name says otherwise. The page records its microphone and what it plays as
RMS samples every 10 ms (`page_probe.js`); the user's WAV is known sample by sample. Aligning the two envelopes
puts the WAV's own speech boundaries on the page's clock, which is more exact than thresholding the page's meter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from novabridge import measure

Array = np.ndarray[Any, Any]

HOP_S = 0.01
"""The page samples its meters every 10 ms; envelopes here use the same hop."""
VOICE_RMS = 0.01
"""RMS (full scale 1.0) above which a 10 ms window counts as voice: -40 dBFS."""
QUIET_S = 0.2
"""Silence this long in what the page plays counts as quiet (an answer's own pauses between words are shorter)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of voice: ``[start_s, end_s)``."""

    start_s: float
    end_s: float


def envelope(samples: Array, rate: int, hop_s: float = HOP_S) -> Array:
    """RMS per ``hop_s`` window of int16 or float samples, full scale 1.0."""
    values = samples.astype(np.float64) / (32768.0 if samples.dtype == np.int16 else 1.0)
    hop = round(rate * hop_s)
    whole = len(values) // hop * hop
    return np.sqrt(np.mean(values[:whole].reshape(-1, hop) ** 2, axis=1))


def voice_segments(samples: Array, rate: int, *, min_gap_s: float = 0.3, threshold: float = VOICE_RMS) -> list[Segment]:
    """Stretches of voice in a recording; pauses shorter than ``min_gap_s`` do not split one."""
    loud = envelope(samples, rate) > threshold
    return _segments(np.flatnonzero(loud) * HOP_S, min_gap_s)


def _segments(voiced_times: Array, min_gap_s: float) -> list[Segment]:
    segments: list[Segment] = []
    for time in voiced_times:
        if segments and time - segments[-1].end_s < min_gap_s:
            segments[-1] = Segment(segments[-1].start_s, float(time) + HOP_S)
        else:
            segments.append(Segment(float(time), float(time) + HOP_S))
    return segments


def resample_series(times: Array, values: Array, start: float, count: int, hop_s: float = HOP_S) -> Array:
    """``values`` sampled at irregular ``times``, read on the regular grid ``start + i * hop_s`` (nearest earlier)."""
    grid = start + np.arange(count) * hop_s
    index = np.clip(np.searchsorted(times, grid, side="right") - 1, 0, len(values) - 1)
    return values[index]


def align(reference: Array, times: Array, values: Array, *, max_lag_s: float) -> tuple[float, float]:
    """Where a known envelope ``reference`` (from t=0, `HOP_S` apart) lies in a measured series.

    The reference may have begun up to ``max_lag_s`` before the measured series or after its start (a fake
    microphone starts playing when the page opens it, before the page's meter is attached). Returns ``(offset,
    correlation)``: the measured clock's time of the reference's t=0, and the normalised correlation of the
    log-envelopes where they overlap (1.0: the same shape).
    """
    start = float(times[0])
    count = int((times[-1] - start) / HOP_S) + 1
    measured = np.log10(resample_series(times, values, start, count) + 1e-4)
    wanted = np.log10(reference + 1e-4)
    best = (start, -1.0)
    reach = round(max_lag_s / HOP_S)
    for lag in range(-reach, reach + 1):  # measured[i] is wanted[i - lag]
        first, last = max(0, lag), min(count, lag + len(wanted))
        if last - first < len(wanted) // 2:
            continue
        a = measured[first:last] - measured[first:last].mean()
        b = wanted[first - lag : last - lag] - wanted[first - lag : last - lag].mean()
        denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
        correlation = float((a * b).sum() / denominator) if denominator > 0 else 0.0
        if correlation > best[1]:
            best = (start + lag * HOP_S, correlation)
    return best


def heard_segments(heard: Sequence[Sequence[float]], *, min_gap_s: float = QUIET_S) -> list[Segment]:
    """Stretches of audio the page played: loud windows while its media element was playing.

    ``heard`` rows are ``(time_s, rms, playing)``.
    """
    rows = np.asarray(heard, dtype=np.float64).reshape(-1, 3)
    voiced = rows[(rows[:, 1] > VOICE_RMS) & (rows[:, 2] > 0), 0]
    return _segments(voiced, min_gap_s)


def first_after(segments: Sequence[Segment], time_s: float) -> Segment | None:
    """The first segment that starts after ``time_s``."""
    return next((s for s in segments if s.start_s > time_s), None)


def quiet_after(segments: Sequence[Segment], time_s: float) -> float | None:
    """When what the page plays goes quiet after ``time_s``: the end of the segment playing then, or ``time_s``."""
    for segment in segments:
        if segment.start_s <= time_s < segment.end_s:
            return segment.end_s
    return time_s if any(s.end_s <= time_s for s in segments) else None


def locate(needle: Array, haystack: Array, rate: int, *, search_from: int = 0) -> tuple[int, float]:
    """Where ``needle`` best matches in ``haystack`` from ``search_from`` on: ``(sample, normalised correlation)``.

    Both are 1-D sample arrays at ``rate``; the correlation is of the waveforms, so a match survives a lossy codec
    (Opus, here) but not a different sound.
    """
    a = needle.astype(np.float64)
    b = haystack[search_from:].astype(np.float64)
    if len(b) < len(a) or not a.any():
        return search_from, 0.0
    size = 1 << int(np.ceil(np.log2(len(a) + len(b))))
    product = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)[: len(b) - len(a) + 1]
    window_energy = np.convolve(b * b, np.ones(len(a)), mode="valid")
    scores = product / np.sqrt(np.maximum(window_energy, 1e-12) * float((a * a).sum()))
    best = int(np.argmax(scores))
    return search_from + best, float(scores[best])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile (`novabridge.measure.percentile`), or None for no values."""
    value = measure.percentile(values, q)
    return None if value is None else float(value)
