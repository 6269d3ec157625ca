"""The worker's naming of turns for the host (`TurnStart` records), with stand-ins for the session and the ring."""

import asyncio
import tracemalloc
from collections.abc import AsyncIterator

import pytest

pytest.importorskip("aws_sdk_bedrock_runtime", reason="the worker runs the session on the Nova Sonic SDK (Python 3.12)")

from novabridge import link
from novabridge.events import AudioOut, SonicEvent
from novabridge.worker.main import _downlink

TURNS = 20_000


class Session:
    """Two chunks of audio for each of `TURNS` turns, as `SonicSession.timed_events` hands them out."""

    async def timed_events(self) -> AsyncIterator[tuple[SonicEvent, int]]:
        for n in range(TURNS):
            for _ in range(2):
                yield AudioOut(b"\0\0", 24000, f"turn-{n:032d}"), 0


class Host:
    """Takes the records the worker writes; notes the worker's traced memory at the 1,000th turn and the last."""

    def __init__(self) -> None:
        self.turns = 0
        self.misnumbered = 0
        self.traced: list[int] = []

    async def write(self, record: link.DownlinkRecord) -> None:
        if isinstance(record, link.TurnStart):
            self.turns += 1
            self.misnumbered += record.ordinal != self.turns
            if self.turns in (1000, TURNS):
                self.traced.append(tracemalloc.get_traced_memory()[0])


def test_the_worker_names_each_turn_once_and_keeps_the_recent_names_only() -> None:
    # A name per turn kept for the worker's life grew it with every turn of the conversation.
    host = Host()
    tracemalloc.start()
    try:
        asyncio.run(_downlink(host, Session()))  # type: ignore[arg-type] # stand-ins for the ring and the session
    finally:
        tracemalloc.stop()
    assert (host.turns, host.misnumbered) == (TURNS, 0), "one TurnStart per turn, numbered in order"
    grown = host.traced[1] - host.traced[0]
    assert grown < 64 * 1024, f"{TURNS - 1000} more turns kept {grown} bytes"
