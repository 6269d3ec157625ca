# SPDX-License-Identifier: Apache-2.0
"""The resamplers compared on a 20 ms real-time hop, behind one call shape: a 20 ms frame in, samples out."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final, Literal

import novabridge as nb
import numpy as np
import samplerate
import soxr
from scipy import signal

Frame = np.ndarray[Any, Any]
Process = Callable[[Frame], Frame]

CONVERSIONS: Final = ((16000, 24000), (24000, 16000), (48000, 16000), (16000, 48000))
PEERS: Final = ("novabridge voice", "soxr HQ", "soxr QQ", "samplerate sinc_fastest", "scipy resample_poly")


def make(peer: str, in_rate: int, out_rate: int, *, floating: bool = False) -> tuple[Process, np.dtype[Any]]:
    """A fresh streaming resampler of `peer` and the dtype it is fed: int16 where the peer takes PCM directly
    (its fast path for a PCM bridge), float32 with `floating` or where it takes nothing else."""
    pcm_dtype: Literal["int16", "float32"] = "float32" if floating else "int16"
    if peer == "novabridge voice":
        return nb.Resampler(in_rate, out_rate, dtype=pcm_dtype).process, np.dtype(pcm_dtype)
    if peer.startswith("soxr"):
        stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype=pcm_dtype, quality=peer.split()[1])
        return stream.resample_chunk, np.dtype(pcm_dtype)
    if peer == "samplerate sinc_fastest":
        converter = samplerate.Resampler("sinc_fastest", channels=1)
        ratio = out_rate / in_rate
        return (lambda frame: converter.process(frame, ratio)), np.dtype(np.float32)
    if peer == "scipy resample_poly":
        up_down = Fraction(out_rate, in_rate)
        # Stateless: each call filters its own frame with zero-padded edges, as a per-chunk user would.
        return (lambda frame: signal.resample_poly(frame, up_down.numerator, up_down.denominator)), np.dtype(np.float32)
    raise ValueError(peer)


def frame_of(dtype: np.dtype[Any], in_rate: int, seed: int = 0) -> Frame:
    """20 ms of speech-level noise in `dtype` (int16 PCM or float in [-1, 1])."""
    noise = np.random.default_rng(seed).standard_normal(in_rate // 50) * 0.1
    return (noise * 32767).astype(np.int16) if dtype == np.int16 else noise.astype(dtype)


@dataclass(frozen=True)
class Profile:
    peer: str
    in_rate: int
    out_rate: int
    us_per_call: float
    lag_ms: float
    """Output the stream still owes after 100 frames (its buffering, plus its filter's delay for novabridge)."""
    burst_max: int
    """The most samples one 20 ms call returned; a steady stream returns about `out_rate / 50`."""
    rejection_db: float | None
    """Level of a full-scale tone between the new Nyquist frequency and the old one (float32), when downsampling."""


def per_call_us(process: Process, frame: Frame, calls: int) -> float:
    """Median wall time of one call, in microseconds."""
    times = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        process(frame)
        times.append(time.perf_counter_ns() - start)
    times.sort()
    return times[len(times) // 2] / 1000


def profile(peer: str, in_rate: int, out_rate: int, calls: int) -> Profile:
    process, dtype = make(peer, in_rate, out_rate)
    us = per_call_us(process, frame_of(dtype, in_rate), calls)
    process, dtype = make(peer, in_rate, out_rate)
    sizes = [len(process(frame_of(dtype, in_rate, seed))) for seed in range(100)]
    owed = 100 * (in_rate // 50) * out_rate / in_rate - sum(sizes)
    rejection = None
    if out_rate < in_rate:
        # In float: through int16 the rounding noise floor (about -100 dB) would hide the filter's own rejection.
        process, dtype = make(peer, in_rate, out_rate, floating=True)
        freq = out_rate * 0.5625  # 9 kHz for 16 kHz output: above its Nyquist, below the input's
        n = np.arange(in_rate)
        tone = np.sin(2 * math.pi * freq * n / in_rate)
        tone_in = (tone * 32767).astype(np.int16) if dtype == np.int16 else tone.astype(dtype)
        out = np.concatenate([process(chunk) for chunk in np.split(tone_in, 50)]).astype(np.float64)
        if dtype == np.int16:
            out /= 32767
        settled = out[len(out) // 4 :]
        rms = float(np.sqrt(np.mean(settled**2))) if len(settled) else 0.0
        rejection = 20 * math.log10(max(rms, 1e-12) / (1 / math.sqrt(2)))
    return Profile(peer, in_rate, out_rate, us, 1000 * owed / out_rate, max(sizes), rejection)


def markdown(profiles: list[Profile]) -> str:
    header = (
        "| conversion | resampler | µs per 20 ms call (median) | output owed after 100 frames (ms) "
        "| largest call (samples) | tone above new Nyquist (dB) |"
    )
    rows = [
        header,
        "|---|---|--:|--:|--:|--:|",
    ]
    for p in profiles:
        rejection = "—" if p.rejection_db is None else f"{p.rejection_db:.0f}"
        rows.append(
            f"| {p.in_rate // 1000}k→{p.out_rate // 1000}k | {p.peer} | {p.us_per_call:.1f} | {p.lag_ms:.1f} "
            f"| {p.burst_max} | {rejection} |"
        )
    return "\n".join(rows)
