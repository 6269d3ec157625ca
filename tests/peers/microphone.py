"""A microphone for the peers' tests: 16 kHz s16le mono streamed in real time, silence between utterances.

Nova Sonic expects audio at the pace it is captured, and the emulator's clocks (its VAD's sample count, the modelled
playout of an answer) count on it, so the chunks go out on a wall-clock schedule, as a live input would send them.
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

RATE = 16000
CHUNK_S = 0.02


def speech(seconds: float) -> bytes:
    """Voiced sound with a syllable rhythm: a 140 Hz harmonic tone whose loudness swings four times a second.

    Its quietest moments stay well above the emulator's -40 dBFS speech threshold, so one call is one utterance.
    """
    t = np.arange(round(seconds * RATE)) / RATE
    voice = sum(np.sin(2 * np.pi * 140.0 * k * t) / k for k in (1, 2, 3))
    syllables = 0.4 + 0.6 * np.abs(np.sin(np.pi * 4.0 * t))
    return (voice * syllables * 6000).astype("<i2").tobytes()


class Microphone:
    """Sends 20 ms chunks to ``send`` on a wall-clock schedule: what `say` queued, else silence."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]]) -> None:
        self._send = send
        self._pending = bytearray()
        self._said = asyncio.Event()
        self._live = asyncio.Event()
        self.chunks_sent = 0

    async def say(self, seconds: float) -> None:
        """Speak for ``seconds``; returns once the last of it has been sent."""
        self._pending += speech(seconds)
        self._said.clear()
        await self._said.wait()

    async def _stream(self) -> None:
        chunk_bytes = round(RATE * CHUNK_S) * 2
        started = time.monotonic()
        while True:
            chunk = bytes(self._pending[:chunk_bytes]).ljust(chunk_bytes, b"\0")
            del self._pending[:chunk_bytes]
            await self._send(chunk)
            self.chunks_sent += 1
            self._live.set()
            if not self._pending:
                self._said.set()
            await asyncio.sleep(max(0.0, started + self.chunks_sent * CHUNK_S - time.monotonic()))

    @contextlib.asynccontextmanager
    async def live(self) -> AsyncIterator["Microphone"]:
        """Stream for the duration of the block, which starts once the first chunk has been sent."""
        task = asyncio.create_task(self._stream())
        try:
            await self._live.wait()
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def seconds_of(pcm: bytes, rate: int) -> float:
    """The duration of s16le mono ``pcm`` at ``rate``."""
    return len(pcm) / 2 / rate
