"""Emulator fixtures: an emulator on the test's loop with fast conversation timing, and SDK clients for it."""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from novabridge.emulator import Emulator, EmulatorOptions

from emulator.client import TEST_KEY, SonicTestClient

FAST = {"think_s": 0.05, "output_speed": 20.0, "endpointing_s": 0.3, "input_timeout_s": 20.0}

EmulatorFactory = Callable[..., Awaitable[Emulator]]
ClientFactory = Callable[..., Awaitable[SonicTestClient]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with FAST timing (overridable per keyword) and SigV4 checked against TEST_KEY."""
    started: list[Emulator] = []

    async def make(**kwargs: Any) -> Emulator:
        options = {**FAST, "credentials": TEST_KEY, **kwargs.pop("options", {})}
        emulator = Emulator(options=EmulatorOptions(**options), **kwargs)
        await emulator.start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        await emulator.stop()


@pytest.fixture
async def emulator(make_emulator: EmulatorFactory) -> Emulator:
    return await make_emulator()


@pytest.fixture
async def connect(emulator: Emulator) -> AsyncIterator[ClientFactory]:
    """Open SDK streams to the `emulator` fixture; all are closed at teardown."""
    clients: list[SonicTestClient] = []

    async def open_client(target: Emulator | None = None, **kwargs: Any) -> SonicTestClient:
        client = SonicTestClient(target or emulator, **kwargs)
        clients.append(client)
        return await client.open()

    yield open_client
    for client in clients:
        await client.close()
