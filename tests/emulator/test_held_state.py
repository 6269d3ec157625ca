"""What a long-running emulator holds after streams and connections have come and gone: nothing of theirs."""

import asyncio
import gc
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from hypercorn.asyncio import tcp_server
from novabridge.emulator import EmulatorOptions, ThreadedEmulator, server
from support import docs_events as ev
from support.emulator_in_process import FAST
from support.raw_h2 import RawH2
from support.wire_frames import client_frame


@pytest.fixture
def threaded() -> Iterator[ThreadedEmulator]:
    # On a loop of its own, so that what runs there is the emulator's alone.
    options: dict[str, Any] = {**FAST, "credentials": None}
    with ThreadedEmulator(options=EmulatorOptions(**options)) as emulator:
        yield emulator


def tasks_of(emulator: ThreadedEmulator) -> int:
    """How many tasks run on the emulator's loop, besides the one counting them."""

    async def count() -> int:
        return len(asyncio.all_tasks()) - 1

    assert emulator._loop is not None
    return asyncio.run_coroutine_threadsafe(count(), emulator._loop).result(timeout=5)


def settled(emulator: ThreadedEmulator, tasks: int, timeout_s: float = 10.0) -> int:
    """The emulator's task count once it is back to ``tasks``, or what it still is after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while (now := tasks_of(emulator)) != tasks and time.monotonic() < deadline:
        time.sleep(0.1)
    return now


def test_connections_closed_under_open_streams_leave_nothing_running(threaded: ThreadedEmulator) -> None:
    # A client that goes away with its stream open (a process killed, a connection dropped or severed) closes the
    # connection before the stream ends. The stream's end then waited forever for hypercorn to send what it had
    # buffered, and once that was fixed, the ended stream restarted the closed connection's keep-alive timer, which
    # held it for an hour: a soak run's emulator grew with every such connection.
    idle = tasks_of(threaded)
    for _ in range(3):
        clients = [RawH2(threaded.port, threaded.ca_file) for _ in range(2)]
        for client in clients:
            stream = client.open()
            client.send(
                stream, b"".join(client_frame(body) for body in (ev.session_start("HIGH"), ev.prompt_start("p")))
            )
            client.wait(lambda: client.streams[stream].status == 200)  # noqa: B023 - called before the loop goes on
        deadline = time.monotonic() + 10
        while threaded.active_streams < len(clients):
            assert time.monotonic() < deadline, "the streams did not open"
            time.sleep(0.05)
        for client in clients:
            client.close()
    deadline = time.monotonic() + 10
    while threaded.active_streams:
        assert time.monotonic() < deadline, f"{threaded.active_streams} streams outlived their connections"
        time.sleep(0.05)
    assert settled(threaded, idle) == idle


def test_idle_connections_closed_by_their_clients_leave_nothing_running(threaded: ThreadedEmulator) -> None:
    # A connection whose streams have all ended runs hypercorn's keep-alive timer; a client that closed it then still
    # left the timer, and with it the connection, for the whole keep-alive timeout.
    idle = tasks_of(threaded)
    for _ in range(3):
        clients = [RawH2(threaded.port, threaded.ca_file) for _ in range(2)]
        for client in clients:
            stream = client.open("amazon.no-such-model-v9:0")
            client.wait(lambda: client.streams[stream].ended)  # noqa: B023 - called before the loop goes on
        for client in clients:
            client.close()
    assert settled(threaded, idle) == idle


def test_a_server_that_keeps_no_recordings_keeps_no_refusals() -> None:
    # The CLI's emulator serves for days and nobody reads what it keeps in process: a refusal (a throttle fault, a
    # stream over the limit) must not be kept there for ever either.
    options: dict[str, Any] = {**FAST, "credentials": None}
    with ThreadedEmulator(options=EmulatorOptions(**options), keep_recordings=False) as emulator:
        client = RawH2(emulator.port, emulator.ca_file)
        try:
            streams = [client.open("amazon.no-such-model-v9:0") for _ in range(5)]
            client.wait(lambda: all(client.streams[stream].status == 400 for stream in streams))
        finally:
            client.close()
        assert (emulator.rejected, emulator.recordings) == ([], [])


def test_a_stream_refused_with_its_request_already_sent_ends_and_its_connection_serves_on(
    threaded: ThreadedEmulator,
) -> None:
    # The SDK sends its first events as it opens a stream. hypercorn hands a request's DATA to the application through
    # a queue of 10 and, as a response ends, puts the stream's end in that queue too: a refusal (throttled, over the
    # stream limit, an unknown model) with more than that already sent waited on the queue for ever, and so did the
    # connection's reading, holding the connection and everything on it.
    idle = tasks_of(threaded)
    client = RawH2(threaded.port, threaded.ca_file)
    try:
        audio = client_frame(ev.audio_input("p", "audio", bytes(640)))
        refused = client.open("amazon.no-such-model-v9:0", frames=[audio] * 30)
        client.wait(lambda: client.streams[refused].ended)
        assert client.streams[refused].status == 400
        served = client.open()
        client.send(served, client_frame(ev.session_start("HIGH")))
        client.wait(lambda: client.streams[served].status == 200)
    finally:
        client.close()
    assert settled(threaded, idle) == idle


def test_closed_connections_are_freed_without_waiting_for_a_full_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the soak run: a closed connection is a reference cycle (hypercorn's protocol, its streams and tasks,
    # the TLS transport), freed only by a full collection, which Python runs rarely in a process of the emulator's
    # size. Closed connections and their TLS buffers stayed for minutes. With Python's own collections off, as
    # good as never in that process, the emulator must free them itself.
    monkeypatch.setattr(server, "TRIM_EVERY_S", 0.2)
    options: dict[str, Any] = {**FAST, "credentials": None}
    gc.disable()
    try:
        with ThreadedEmulator(options=EmulatorOptions(**options), keep_recordings=False) as emulator:
            for _ in range(3):
                client = RawH2(emulator.port, emulator.ca_file)
                stream = client.open()
                client.send(
                    stream, b"".join(client_frame(body) for body in (ev.session_start("HIGH"), ev.prompt_start("p")))
                )
                client.wait(lambda: client.streams[stream].status == 200)  # noqa: B023 - called before the loop goes on
                client.close()
            deadline = time.monotonic() + 10
            while emulator.active_streams or connections() > 0:
                assert time.monotonic() < deadline, f"{connections()} closed connections are still held"
                time.sleep(0.1)
    finally:
        gc.enable()


def connections() -> int:
    """hypercorn's connections in this process, closed ones not yet freed included."""
    return sum(type(o) is tcp_server.TCPServer for o in gc.get_objects())
