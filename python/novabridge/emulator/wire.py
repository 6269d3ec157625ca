"""The AWS event-stream framing of InvokeModelWithBidirectionalStream, through the SDK's own codec.

Client to server, each message is a signed envelope (headers ``:date`` and ``:chunk-signature``) whose payload is
the inner ``chunk`` event, whose JSON payload carries the Nova Sonic event as base64 ``bytes``. An envelope with an
empty payload ends the input. Server to client, events are ``chunk`` events of the same inner shape; errors are
``exception`` messages named by the output union's member (``validationException``, ...).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from smithy_aws_event_stream.events import Event, EventMessage
from smithy_aws_event_stream.exceptions import EventError

from novabridge.emulator.service import EVENT_LIMIT_BYTES, invalid_input

# The service caps one event-stream message well below this; a larger prelude is garbage, not a big event.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
_PRELUDE = struct.Struct("!I")


class WireError(Exception):
    """Bytes from the client that are not a well-formed Nova Sonic input event."""


@dataclass(frozen=True)
class InputEvent:
    """One decoded client event: its JSON object and the size of its frame on the wire."""

    body: dict[str, Any]
    wire_bytes: int


class InputDecoder:
    """Incremental decoder of the request body: feed it chunks as they arrive, in any split."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.ended = False
        """True once the client's empty closing envelope arrived."""

    def feed(self, data: bytes) -> list[InputEvent]:
        """Decode every complete message in ``data`` plus what was buffered before.

        Raises:
            WireError: a frame is malformed, fails its checksum, or does not hold a JSON event.
            ServiceError: an event larger than the API takes (``EVENT_LIMIT_BYTES``).
        """
        return list(self.decode(data))

    def decode(self, data: bytes) -> Iterator[InputEvent]:
        """`feed`, one event at a time: the events before a bad frame come before its error.

        The service acts on each event as its frame arrives; with `feed`, the events that shared a chunk with a bad
        frame would be lost or not depending on how the network split the stream.
        """
        self._buffer += data
        return self._frames()

    def finish(self) -> None:
        """The client ended its request.

        Raises:
            WireError: it ended inside a frame.
        """
        if self._buffer:
            raise WireError(f"the input ended inside an event-stream message ({len(self._buffer)} bytes of it)")

    def _frames(self) -> Iterator[InputEvent]:
        while len(self._buffer) >= _PRELUDE.size:
            (total,) = _PRELUDE.unpack_from(self._buffer)
            if total < 16 or total > MAX_MESSAGE_BYTES:
                raise WireError(f"event-stream message length {total} is out of range")
            if len(self._buffer) < total:
                break
            frame = bytes(self._buffer[:total])
            del self._buffer[:total]
            if self.ended:
                raise WireError("data after the end of the input stream")
            body = _decode_envelope(frame)
            if body is None:
                self.ended = True
            else:
                yield InputEvent(body, total)


def _decode_message(frame: bytes, what: str) -> EventMessage:
    try:
        event = Event.decode(io.BytesIO(frame))
    except (EventError, struct.error, ValueError, KeyError, IndexError, TypeError) as error:
        # The SDK's decoder trusts the header type bytes; an unknown type surfaces as a KeyError.
        raise WireError(f"{what}: {type(error).__name__} {error}") from None
    if event is None:
        raise WireError(f"{what}: empty frame")
    return event.message


def _decode_envelope(frame: bytes) -> dict[str, Any] | None:
    outer = _decode_message(frame, "signed envelope")
    for header in (":date", ":chunk-signature"):
        if header not in outer.headers:
            raise WireError(f"signed envelope lacks the {header} header")
    if not outer.payload:
        return None
    inner = _decode_message(outer.payload, "chunk event")
    if inner.headers.get(":message-type") != "event" or inner.headers.get(":event-type") != "chunk":
        raise WireError(f"expected a chunk event, got headers {sorted(inner.headers)}")
    try:
        wrapper = json.loads(inner.payload)
        encoded = wrapper["bytes"]
        raw = base64.b64decode(encoded, validate=True)
    # RecursionError: JSON nested deeper than Python recurses, which json reports as no ValueError.
    except (ValueError, KeyError, TypeError, binascii.Error, RecursionError) as error:
        raise WireError(f"chunk payload is not base64 JSON: {type(error).__name__}") from None
    if len(raw) > EVENT_LIMIT_BYTES:
        raise invalid_input(f"the event is {len(raw)} bytes, over the {EVENT_LIMIT_BYTES} an input event may hold")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        raise WireError(f"chunk payload is not base64 JSON: {type(error).__name__}") from None
    if not isinstance(body, dict):
        raise WireError("the event is not a JSON object")
    return body


def encode_output_event(body: dict[str, Any]) -> bytes:
    """Frame one Nova Sonic output event as the service does."""
    payload = json.dumps({"bytes": base64.b64encode(json.dumps(body).encode()).decode()}).encode()
    return EventMessage(
        headers={":message-type": "event", ":event-type": "chunk", ":content-type": "application/json"},
        payload=payload,
    ).encode()


def encode_exception(member: str, message: str, **fields: Any) -> bytes:
    """Frame a modelled error of the output union, e.g. ``validationException``."""
    return EventMessage(
        headers={":message-type": "exception", ":exception-type": member, ":content-type": "application/json"},
        payload=json.dumps({"message": message, **fields}).encode(),
    ).encode()


def truncated_frame() -> bytes:
    """The first bytes of a valid frame. Sent last, it makes the client's decoder raise ``InvalidEventBytes``.

    This is how a stream cut mid-answer looks from the client (pipecat#3387, livekit/agents#4530).
    """
    return encode_output_event({"event": {"truncated": {}}})[:6]
