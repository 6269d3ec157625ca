"""Fixes for hypercorn's HTTP/2 serving, applied when the emulator starts.

hypercorn forgets a stream as soon as its response ends. DATA that the client is still sending on that stream (it
may not have seen the end yet, or it is closing its side) then raises KeyError inside hypercorn's connection
handler, which tears down the whole connection and every other stream on it. Nova Sonic clients multiplex streams
on one connection (the SDK pools it; a session renewal overlaps two streams), and the service ends responses on
errors while the request is still open, so the emulator needs this case handled. hypercorn already ignores the
matching StreamEnded event ("Response sent before full request received"); this does the same for DATA: the flow
control window is credited and the bytes dropped.

A connection that closes under open streams (the client went away, a fault severed it) leaked in two ways, and a
long run's emulator grew with every such connection (its TLS buffers, HTTP/2 state, tasks, and the streams' state):
hypercorn's sender stops with the connection, but a stream's response end waits for its send buffer to drain, so
the stream's application never returned; and when a stream ends, hypercorn restarts the connection's keep-alive
timer even if the connection is over, which then holds it for the whole timeout (an hour in the emulator). A closed
connection's send buffers are closed (what they held can no longer be sent), and the timer is not restarted once the
connection has stopped reading.
"""

from __future__ import annotations

from typing import Any

import h2.events
from hypercorn.asyncio import tcp_server
from hypercorn.events import Closed, Updated
from hypercorn.protocol import h2 as hypercorn_h2

_MARK = "_novabridge_ignores_data_after_response"
_READ_ENDED = "_novabridge_read_ended"


def install() -> None:
    """Patch `hypercorn.protocol.h2.H2Protocol` and `hypercorn.asyncio.tcp_server.TCPServer` once per process."""
    protocol: Any = hypercorn_h2.H2Protocol
    if getattr(protocol, _MARK, False):
        return
    original = protocol._handle_events

    async def handle_events(self: Any, events: list[h2.events.Event]) -> None:
        # One event at a time: a stream opened by an event of this batch must exist before its DATA is judged.
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                await self._flush()
            else:
                await original(self, [event])

    original_handle = protocol.handle

    async def handle(self: Any, event: Any) -> None:
        if isinstance(event, Closed):
            # Its sender is gone: a stream's end waiting for the buffer to drain would wait forever.
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()
        await original_handle(self, event)

    protocol._handle_events = handle_events
    protocol.handle = handle

    server: Any = tcp_server.TCPServer
    original_read = server._read_data
    original_send = server.protocol_send

    async def read_data(self: Any) -> None:
        try:
            await original_read(self)
        finally:
            setattr(self, _READ_ENDED, True)
            await self.idle_task.stop()

    async def protocol_send(self: Any, event: Any) -> None:
        if isinstance(event, Updated) and getattr(self, _READ_ENDED, False):
            return  # a stream ended on a connection that is over: no keep-alive timer to restart
        await original_send(self, event)

    server._read_data = read_data
    server.protocol_send = protocol_send
    setattr(protocol, _MARK, True)
