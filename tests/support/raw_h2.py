"""A raw HTTP/2 client over TLS for the emulator, on 127.0.0.1 only: for what the SDK never sends or never does
(malformed frames, a connection dropped under an open stream)."""

import base64
import io
import json
import socket
import ssl
import struct
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from smithy_aws_event_stream.events import Event

from support import docs_events as ev

Body = dict[str, Any]


@dataclass
class StreamState:
    status: int | None = None
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    def messages(self) -> list[tuple[dict[str, Any], bytes]]:
        """The complete event-stream messages received so far: (headers, payload)."""
        out = []
        offset = 0
        while offset + 4 <= len(self.body):
            (total,) = struct.unpack_from("!I", self.body, offset)
            if offset + total > len(self.body):
                break
            event = Event.decode(io.BytesIO(bytes(self.body[offset : offset + total])))
            assert event is not None
            out.append((dict(event.message.headers), event.message.payload))
            offset += total
        return out

    def events(self) -> list[Body]:
        return [
            json.loads(base64.b64decode(json.loads(p)["bytes"]))
            for h, p in self.messages()
            if h[":message-type"] == "event"
        ]

    def exceptions(self) -> list[tuple[str, str]]:
        return [
            (h[":exception-type"], json.loads(p)["message"])
            for h, p in self.messages()
            if h[":message-type"] == "exception"
        ]


class RawH2:
    """A blocking HTTP/2 client over TLS with the emulator's CA: only what the test needs, flow control included."""

    def __init__(self, port: int, ca_file: str) -> None:
        context = ssl.create_default_context(cafile=ca_file)
        context.set_alpn_protocols(["h2"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        assert self.sock.selected_alpn_protocol() == "h2"
        self.sock.settimeout(0.1)
        self.port = port
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.initiate_connection()
        self.streams: dict[int, StreamState] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None
        self._flush()

    def close(self) -> None:
        self.sock.close()

    def _flush(self) -> None:
        if data := self.conn.data_to_send():
            self.sock.sendall(data)

    def open(self, model_id: str = ev.NOVA_2, *, frames: Iterable[bytes] = ()) -> int:
        """Open a stream; ``frames`` go with its headers in the same write, each as a DATA frame of its own."""
        stream_id = self.conn.get_next_available_stream_id()
        path = f"/model/{urllib.parse.quote(model_id, safe='')}/invoke-with-bidirectional-stream"
        headers = [
            (":method", "POST"),
            (":scheme", "https"),
            (":authority", f"127.0.0.1:{self.port}"),
            (":path", path),
            ("content-type", "application/vnd.amazon.eventstream"),
            ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-EVENTS"),
        ]
        self.conn.send_headers(stream_id, headers)
        for frame in frames:
            self.conn.send_data(stream_id, frame)
        self.streams[stream_id] = StreamState()
        self._flush()
        return stream_id

    def send(self, stream_id: int, data: bytes, *, end: bool = False) -> None:
        """Send ``data`` as the stream's flow-control windows allow; stops if the server closed the stream."""
        deadline = time.monotonic() + 20
        while data:
            state = self.streams[stream_id]
            if state.reset is not None or state.ended:
                return
            window = min(self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size)
            if window <= 0:
                assert time.monotonic() < deadline, "the server stopped reading"
                self.pump()
                continue
            try:
                self.conn.send_data(stream_id, data[:window])
            except h2.exceptions.StreamClosedError:
                return
            data = data[window:]
            self._flush()
        if end:
            try:
                self.conn.end_stream(stream_id)
            except h2.exceptions.StreamClosedError:
                return
            self._flush()

    def pump(self) -> None:
        """Read what arrived (waiting at most 0.1 s) and answer what HTTP/2 asks of a client."""
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return
        if not data:
            raise ConnectionError("the server closed the connection")
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                self.streams[event.stream_id].body += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.streams[event.stream_id].reset = event.error_code
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.terminated = event
        self._flush()

    def wait(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.terminated is None, f"the connection was terminated: {self.terminated}"
            assert time.monotonic() < deadline, "timed out"
            self.pump()
