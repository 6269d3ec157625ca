# SPDX-License-Identifier: Apache-2.0
"""What a conversation gives a successor (a new stream in the session, a replacement worker in the bridge).

A stream or a worker that fails mid-utterance takes with it what the service heard of the sentence, and any question
it had not answered in full: its successor is asked those again as text (`Unanswered.asks`), and given the audio
since the last completed turn, at most `REPLAY_LIMIT_S` (`ReplayWindow`), so nothing said is lost or unanswered.
"""

from __future__ import annotations

import collections
import mmap
from collections.abc import Iterable, Iterator

from novabridge.sonic.config import SonicConfig
from novabridge.sonic.models import model_for

__all__ = ["REPLAY_LIMIT_S", "ReplayWindow", "Unanswered"]

REPLAY_LIMIT_S = 3.0
"""At most this much recent user audio is replayed (the AWS session-continuation window)."""
ANSWERS_FOLLOWED = 16
"""`Unanswered` follows this many answers at most: the newest."""


def limit_bytes(seconds: float, rate: int) -> int:
    """``seconds`` of s16le mono at ``rate`` Hz, in bytes (whole samples)."""
    return int(seconds * rate) * 2


class ReplayWindow:
    """The newest user audio, at most ``limit`` bytes of it, as the chunks it came in (the oldest may be cut).

    The audio is kept in blocks of ``block_bytes`` mapped from the system on their own, and a block is unmapped as
    soon as its audio is forgotten (one spare is kept, so a window that only slides maps nothing). Kept as a bytes
    object per frame, the audio a bridge held while its stream was down (after a soak run's emulator restart, 8
    sessions' 12 s: 2,400 blocks of 1.3 KB) was freed among blocks that outlived it, which glibc cannot give back:
    the host's heap kept 2 MiB of it as free memory.
    """

    BLOCK_BYTES = 16 * 1024
    """Half a second at 16 kHz: what a window holds beyond its audio is less than a block and the spare."""

    def __init__(self, limit: int, *, block_bytes: int = BLOCK_BYTES) -> None:
        if limit < 0 or limit % 2:
            raise ValueError(f"a replay window holds whole s16le samples: limit {limit} bytes")
        if block_bytes <= 0:
            raise ValueError(f"a replay window's blocks hold at least one byte: {block_bytes}")
        self.limit = limit
        self.block_bytes = block_bytes
        self._blocks: collections.deque[mmap.mmap] = collections.deque()
        self._spare: mmap.mmap | None = None
        self._head = 0
        """Where the oldest byte kept is in the first block."""
        self._bytes = 0
        self._chunks: collections.deque[int] = collections.deque()
        """The lengths of the chunks kept, oldest first."""
        self.total = 0
        """The bytes ever added: a position in the audio, for `since`."""

    @property
    def mapped_bytes(self) -> int:
        """The memory the window holds from the system now, its spare block included."""
        return (len(self._blocks) + (self._spare is not None)) * self.block_bytes

    def add(self, chunk: bytes, *, limit: int | None = None) -> int:
        """Keep ``chunk`` as the newest audio, forgetting the oldest beyond ``limit`` (default: the window's).

        Returns the bytes forgotten.
        """
        limit = self.limit if limit is None else limit
        data = chunk if type(chunk) is bytes else memoryview(chunk).cast("B")
        size = len(data)
        self.total += size
        kept = min(size, limit)
        forgotten = size - kept + self.trim(limit - kept) if self._bytes + size > limit else 0
        if kept:
            self._write(data[size - kept :] if kept < size else data)
            self._chunks.append(kept)
        return forgotten

    def trim(self, limit: int) -> int:
        """Forget the oldest audio beyond ``limit`` bytes; the bytes forgotten."""
        excess = self._bytes - limit
        if excess <= 0:
            return 0
        self._bytes -= excess
        self._head += excess
        while self._blocks and (self._head >= self.block_bytes or not self._bytes):
            self._unmap(self._blocks.popleft())
            self._head = max(0, self._head - self.block_bytes)
        chunks = self._chunks
        cut = excess
        while chunks and cut >= chunks[0]:
            cut -= chunks.popleft()
        if cut:
            chunks[0] -= cut
        return excess

    def since(self, position: int) -> bytes:
        """The audio kept from ``position`` (a past `total`) on."""
        length = max(0, min(self._bytes, self.total - position))
        return self._copy(self._bytes - length, length)

    def clear(self) -> None:
        """The audio kept was answered: nothing needs it."""
        self.trim(0)

    def __len__(self) -> int:
        """The bytes kept."""
        return self._bytes

    def __iter__(self) -> Iterator[bytes]:
        """The chunks kept, oldest first, each copied as it is reached (so the window must not change meanwhile)."""
        offset = 0
        for length in list(self._chunks):
            yield self._copy(offset, length)
            offset += length

    def __bytes__(self) -> bytes:
        return self._copy(0, self._bytes)

    def _write(self, data: bytes | memoryview) -> None:
        """Put ``data`` after what is kept, in new blocks as the last fills."""
        size = self.block_bytes
        at = self._head + self._bytes
        offset = at % size
        if self._blocks and at < len(self._blocks) * size and offset + len(data) <= size:
            self._blocks[-1][offset : offset + len(data)] = data  # the usual frame: it fits in the last block
            self._bytes += len(data)
            return
        written = 0
        while written < len(data):
            at = self._head + self._bytes
            if at == len(self._blocks) * size:
                self._blocks.append(self._map())
            offset = at % size
            step = min(len(data) - written, size - offset)
            self._blocks[at // size][offset : offset + step] = data[written : written + step]
            written += step
            self._bytes += step

    def _copy(self, offset: int, length: int) -> bytes:
        """``length`` bytes of what is kept, from ``offset`` bytes after the oldest."""
        size = self.block_bytes
        pieces = []
        at = self._head + offset
        end = at + length
        while at < end:
            step = min(end - at, size - at % size)
            pieces.append(self._blocks[at // size][at % size : at % size + step])
            at += step
        return b"".join(pieces)

    def _map(self) -> mmap.mmap:
        block, self._spare = self._spare, None
        return block if block is not None else mmap.mmap(-1, self.block_bytes, flags=mmap.MAP_PRIVATE)

    def _unmap(self, block: mmap.mmap) -> None:
        if self._spare is None:
            self._spare = block
        else:
            block.close()


class Unanswered:
    """The user's turns not answered in full, as text, and the audio since the last completed turn."""

    def __init__(self, config: SonicConfig) -> None:
        self._asks: list[tuple[str, int | None]] = []
        """`asks`, each with where in the audio it was typed (`ReplayWindow.total`); None for recognised speech."""
        self.audio = ReplayWindow(limit_bytes(REPLAY_LIMIT_S, config.input_rate))
        self.holding = False
        """The audio is held for a successor already (a dead worker's replacement): answers do not clear it."""
        self._asks_as_text = model_for(config.model_id).cross_modal
        self._answers: dict[str, int] = {}
        """Per answer under way (its turn id): how many of the oldest asks it answers, those made before it began."""

    @property
    def asks(self) -> list[str]:
        """Typed turns, and on Nova 2 recognised speech: a successor would not answer them from the history."""
        return [text for text, _ in self._asks]

    def typed(self, text: str) -> None:
        """The user typed ``text``, after all the audio given to `audio` so far."""
        self._asks.append((text, self.audio.total))

    def answer_seen(self, turn_id: str) -> None:
        """An event of the answer ``turn_id`` arrived: the asks made by now are the ones it answers.

        Text typed while an answer plays interrupts it, and is answered by an answer of its own: the end of the one it
        interrupted does not answer it (a soak run lost such a text when a renewal took over right after that end).
        """
        if turn_id and turn_id not in self._answers:
            self._answers[turn_id] = len(self._asks)
            while len(self._answers) > ANSWERS_FOLLOWED:  # the answers of a failed stream never end
                del self._answers[next(iter(self._answers))]

    def user_final(self, text: str, turn_id: str = "") -> None:
        """The service recognised the user's speech as ``text``, in the answer ``turn_id``."""
        # The speech is a question in text now: not replayed, asked again if cut. Audio held for a successor keeps
        # it, and would have it answered twice.
        if self._asks_as_text and not self.holding:
            self._asks.append((text, None))
            self.audio.clear()
        if turn_id:  # the answer it begins answers it
            self._answers[turn_id] = len(self._asks)

    def turn_end(self, stop_reason: str, turn_id: str = "") -> None:
        """The answer ``turn_id`` ended: what was asked before it began is answered."""
        answered = self._answers.pop(turn_id, len(self._asks))
        del self._asks[:answered]
        for other, count in self._answers.items():
            self._answers[other] = max(0, count - answered)
        if stop_reason != "INTERRUPTED":  # else the user is speaking over it: keep the start
            self._forget_audio()

    def in_order(self, audio: Iterable[bytes], audio_bytes: int) -> Iterator[bytes | str]:
        """The asks among ``audio`` (the newest ``audio_bytes`` given to `audio`, in chunks) in the order they came.

        A successor given the asks before the audio would hear a text typed after a sentence before that sentence
        (a soak run's reordered turns): a typed ask goes after the audio that came before it, cutting a chunk if it
        must. Recognised speech goes as early as its place among the asks allows: its audio is not in the replay.
        """
        start = self.audio.total - audio_bytes
        pending = collections.deque(self._asks)
        offset = 0
        for chunk in audio:
            while pending and (pending[0][1] is None or pending[0][1] - start < offset + len(chunk)):
                text, at = pending.popleft()
                cut = 0 if at is None else max(0, at - start - offset)
                if cut:
                    yield chunk[:cut]
                    chunk, offset = chunk[cut:], offset + cut
                yield text
            if chunk:
                yield chunk
                offset += len(chunk)
        yield from (text for text, _ in pending)

    def _forget_audio(self) -> None:
        if not self.holding:
            self.audio.clear()
