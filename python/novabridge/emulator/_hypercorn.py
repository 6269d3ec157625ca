"""A fix for hypercorn's HTTP/2 duplex streams, applied when the emulator starts.

hypercorn forgets a stream as soon as its response ends. DATA that the client is still sending on that stream (it
may not have seen the end yet, or it is closing its side) then raises KeyError inside hypercorn's connection
handler, which tears down the whole connection and every other stream on it. Nova Sonic clients multiplex streams
on one connection (the SDK pools it; a session renewal overlaps two streams), and the service ends responses on
errors while the request is still open, so the emulator needs this case handled. hypercorn already ignores the
matching StreamEnded event ("Response sent before full request received"); this does the same for DATA: the flow
control window is credited and the bytes dropped.
"""

from __future__ import annotations

from typing import Any

import h2.events
from hypercorn.protocol import h2 as hypercorn_h2

_MARK = "_novabridge_ignores_data_after_response"


def install() -> None:
    """Patch `hypercorn.protocol.h2.H2Protocol` once per process."""
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

    protocol._handle_events = handle_events
    setattr(protocol, _MARK, True)
