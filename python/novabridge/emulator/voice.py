"""A deterministic synthetic voice: text in, speech-like s16le PCM out, identical to the byte on every run.

Each word is a voiced tone with a few harmonics, its pitch and length taken from the word itself, shaped by a
raised-cosine envelope, with short gaps between words and longer ones after sentences. It sounds like murmured
speech, it carries the rhythm of the text and it needs no model download.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

_WORD = re.compile(r"[\w']+(?:[.,][\w']+)*[.!?,;:]*")
# A sentence ends at . ! or ? followed by a space or the end, so "0.6" stays one number.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_RAMP_S = 0.01
_WORD_GAP_S = 0.05
_SENTENCE_GAP_S = 0.25
_LEVEL = 0.3


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``; the service transcribes and speaks a turn sentence by sentence."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def base_pitch_hz(voice: str) -> float:
    """A voice's fundamental, fixed per voice name."""
    return 95.0 + zlib.crc32(voice.encode()) % 130


def synthesize(text: str, *, voice: str, rate: int) -> bytes:
    """Speak ``text`` with ``voice`` at ``rate`` Hz as s16le mono."""
    base = base_pitch_hz(voice)
    pieces: list[np.ndarray] = []
    for match in _WORD.finditer(text):
        word = match.group()
        letters = sum(ch.isalnum() for ch in word)
        duration = min(0.6, max(0.12, 0.065 * letters))
        n = round(duration * rate)
        t = np.arange(n, dtype=np.float64) / rate
        f0 = base * (0.85 + 0.05 * (zlib.crc32(word.lower().encode()) % 7))
        tone = np.sin(2 * np.pi * f0 * t) + 0.5 * np.sin(4 * np.pi * f0 * t) + 0.25 * np.sin(6 * np.pi * f0 * t)
        ramp = min(n // 2, round(_RAMP_S * rate))
        envelope = np.ones(n)
        if ramp:
            rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
            envelope[:ramp] = rise
            envelope[n - ramp :] = rise[::-1]
        pieces.append(_LEVEL / 1.75 * tone * envelope)
        gap = _SENTENCE_GAP_S if word[-1] in ".!?" else _WORD_GAP_S
        pieces.append(np.zeros(round(gap * rate)))
    if not pieces:
        return b""
    pcm = np.round(np.concatenate(pieces) * 32767.0).astype("<i2")
    return pcm.tobytes()
