"""The emulator on the test's event loop with fast conversation timing, and SDK clients for it (the emulator's and
the session's tests).

Importable without the emulator's dependencies (the SDK, hypercorn), so that a directory's conftest can import it on
Python 3.11; the fixtures need them, and the modules that use the fixtures skip without them.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from novabridge.emulator import Emulator

    from support.sonic_client import SonicTestClient

FAST = {"think_s": 0.05, "output_speed": 20.0, "endpointing_s": 0.3, "input_timeout_s": 20.0}
TEST_KEY = ("AKIDNOVABRIDGETEST", "novabridge-test-secret")
"""The access key the emulator checks SigV4 signatures against, and the clients sign with."""

EmulatorFactory = Callable[..., Awaitable["Emulator"]]
ClientFactory = Callable[..., Awaitable["SonicTestClient"]]


@pytest.fixture
async def make_emulator() -> AsyncIterator[EmulatorFactory]:
    """Start emulators with FAST timing (overridable per keyword) and SigV4 checked against TEST_KEY."""
    from novabridge.emulator import Emulator, EmulatorOptions

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
async def emulator(make_emulator: EmulatorFactory) -> "Emulator":
    return await make_emulator()


@pytest.fixture
async def connect(emulator: "Emulator") -> AsyncIterator[ClientFactory]:
    """Open SDK streams to the `emulator` fixture; all are closed at teardown, within 5 s each (a stream some input was
    sent into after it ended would otherwise never finish closing: `SonicTestClient.close_within`)."""
    from support.sonic_client import SonicTestClient  # the SDK: only where a test opens a stream

    clients: list[SonicTestClient] = []

    async def open_client(target: "Emulator | None" = None, **kwargs: Any) -> "SonicTestClient":
        client = SonicTestClient(target or emulator, **kwargs)
        clients.append(client)
        return await client.open()

    yield open_client
    for client in clients:
        await client.close_within(5.0)
