# SPDX-License-Identifier: Apache-2.0
"""The user audio a conversation keeps to replay: to a new stream (the session) or a replacement worker (the bridge).

A stream or a worker that fails mid-utterance takes with it what the service heard of the sentence; the audio since
the last completed turn, at most `REPLAY_LIMIT_S`, is given to its successor so the sentence is heard whole.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

__all__ = ["REPLAY_LIMIT_S", "ReplayWindow"]

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

    def add(self, chunk: bytes, *, limit: int | None = None) -> int:
        """Keep ``chunk`` as the newest audio, forgetting the oldest beyond ``limit`` (default: the window's).

        Returns the bytes forgotten.
        """
        if chunk:
            self._chunks.append(bytes(chunk))
            self._bytes += len(chunk)
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
