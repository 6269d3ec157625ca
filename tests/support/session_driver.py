"""Driving a SonicSession in the tests: its config for an emulator, its events collected in the background, audio
sent in 20 ms frames as a host sends it."""

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from novabridge.emulator import Emulator
from novabridge.events import AudioOut, SonicEvent
from novabridge.sonic import SonicConfig, SonicSession

from support.emulator_in_process import TEST_KEY
from support.sonic_client import silence, tone

T = TypeVar("T")
FRAME = 640  # 20 ms at 16 kHz, as a host sends it


def config_for(emulator: Emulator, **overrides: Any) -> SonicConfig:
    return SonicConfig(
        endpoint_uri=emulator.endpoint_uri,
        ca_file=Path(emulator.ca_file),
        aws_access_key_id=TEST_KEY[0],
        aws_secret_access_key=TEST_KEY[1],
        **overrides,
    )


class Collector:
    """Reads a session's events in the background."""

    def __init__(self, session: SonicSession) -> None:
        self.events: list[SonicEvent] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(session.events()))

    async def _run(self, events: AsyncIterator[SonicEvent]) -> None:
        async for event in events:
            self.events.append(event)
            self._changed.set()
        self._changed.set()

    async def wait_for(self, predicate: Callable[[SonicEvent], bool], count: int = 1, timeout: float = 20.0) -> None:
        async with asyncio.timeout(timeout):
            while sum(map(predicate, self.events)) < count:
                if self._task.done():
                    raise AssertionError(f"events ended before the condition: {self.kinds()}")
                self._changed.clear()
                await self._changed.wait()

    async def finished(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self._task

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.events if not isinstance(e, AudioOut)]

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]


async def stream(session: SonicSession, pcm: bytes, *, speed: float = 4.0) -> None:
    """Send ``pcm`` in 20 ms frames at ``speed`` times real time."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for offset in range(0, len(pcm), FRAME):
        await session.send_audio(pcm[offset : offset + FRAME])
        await asyncio.sleep(max(0.0, start + (offset + FRAME) / 32000 / speed - loop.time()))


def utterance(seconds: float = 0.6, pause: float = 4.5) -> bytes:
    """Speech, then a pause long enough for the answer to play out (no barge-in)."""
    return tone(seconds) + silence(pause)
