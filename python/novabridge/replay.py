# SPDX-License-Identifier: Apache-2.0
"""What a conversation gives a successor (a new stream in the session, a replacement worker in the bridge).

A stream or a worker that fails mid-utterance takes with it what the service heard of the sentence, and any question
it had not answered in full: its successor is asked those again as text (`Unanswered.asks`), and given the audio
since the last completed turn, at most `REPLAY_LIMIT_S` (`ReplayWindow`), so nothing said is lost or unanswered.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

from novabridge.sonic.config import SonicConfig
from novabridge.sonic.models import model_for

__all__ = ["REPLAY_LIMIT_S", "ReplayWindow", "Unanswered"]

REPLAY_LIMIT_S = 3.0
"""At most this much recent user audio is replayed (the AWS session-continuation window)."""


def limit_bytes(seconds: float, rate: int) -> int:
    """``seconds`` of s16le mono at ``rate`` Hz, in bytes (whole samples)."""
    return int(seconds * rate) * 2


class ReplayWindow:
    """The newest user audio, at most ``limit`` bytes of it, as the chunks it came in (the oldest may be cut)."""

    def __init__(self, limit: int) -> None:
        if limit < 0 or limit % 2:
            raise ValueError(f"a replay window holds whole s16le samples: limit {limit} bytes")
        self.limit = limit
        self._chunks: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self.total = 0
        """The bytes ever added: a position in the audio, for `since`."""

    def add(self, chunk: bytes, *, limit: int | None = None) -> int:
        """Keep ``chunk`` as the newest audio, forgetting the oldest beyond ``limit`` (default: the window's).

        Returns the bytes forgotten.
        """
        if chunk:
            self._chunks.append(bytes(chunk))
            self._bytes += len(chunk)
            self.total += len(chunk)
        return self.trim(self.limit if limit is None else limit)

    def trim(self, limit: int) -> int:
        """Forget the oldest audio beyond ``limit`` bytes; the bytes forgotten."""
        excess = self._bytes - limit
        if excess <= 0:
            return 0
        forgotten = excess
        chunks = self._chunks
        while chunks and excess >= len(chunks[0]):
            excess -= len(chunks.popleft())
        if excess:
            chunks[0] = chunks[0][excess:]
        self._bytes -= forgotten
        return forgotten

    def since(self, position: int) -> bytes:
        """The audio kept from ``position`` (a past `total`) on."""
        kept = bytes(self)
        return kept[max(0, len(kept) - (self.total - position)) :]

    def clear(self) -> None:
        """The audio kept was answered: nothing needs it."""
        self._chunks.clear()
        self._bytes = 0

    def __len__(self) -> int:
        """The bytes kept."""
        return self._bytes

    def __iter__(self) -> Iterator[bytes]:
        """The chunks kept, oldest first."""
        return iter(self._chunks)

    def __bytes__(self) -> bytes:
        return b"".join(self._chunks)


class Unanswered:
    """The user's turns not answered in full, as text, and the audio since the last completed turn."""

    def __init__(self, config: SonicConfig) -> None:
        self.asks: list[str] = []
        """Typed turns, and on Nova 2 recognised speech: a successor would not answer them from the history."""
        self.audio = ReplayWindow(limit_bytes(REPLAY_LIMIT_S, config.input_rate))
        self.holding = False
        """The audio is held for a successor already (a dead worker's replacement): answers do not clear it."""
        self._asks_as_text = model_for(config.model_id).cross_modal

    def typed(self, text: str) -> None:
        """The user typed ``text``."""
        self.asks.append(text)

    def user_final(self, text: str) -> None:
        """The service recognised the user's speech as ``text``."""
        # The speech is a question in text now: not replayed, asked again if cut. Audio held for a successor keeps
        # it, and would have it answered twice.
        if self._asks_as_text and not self.holding:
            self.asks.append(text)
            self.audio.clear()

    def turn_end(self, stop_reason: str) -> None:
        """An answer ended: what was asked is answered."""
        self.asks.clear()
        if stop_reason != "INTERRUPTED":  # else the user is speaking over it: keep the start
            self._forget_audio()

    def _forget_audio(self) -> None:
        if not self.holding:
            self.audio.clear()
