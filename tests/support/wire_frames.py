"""Client frames of the emulator's wire as the SDK builds them: a signed envelope (``:date``,
``:chunk-signature``) around the ``chunk`` event, whose JSON payload carries the Nova Sonic event as base64 ``bytes``.
"""

import base64
import datetime
import hashlib
import json
from typing import Any

from smithy_aws_event_stream.events import EventMessage

Body = dict[str, Any]

CHUNK_HEADERS: dict[str, str] = {
    ":message-type": "event",
    ":event-type": "chunk",
    ":content-type": "application/json",
}


def signed(payload: bytes) -> bytes:
    """The SDK's signed envelope around ``payload`` (b"" is the closing envelope)."""
    return EventMessage(
        headers={":date": datetime.datetime.now(datetime.UTC), ":chunk-signature": hashlib.sha256(payload).digest()},
        payload=payload,
    ).encode()


def chunk(wrapper: bytes, headers: dict[str, str] | None = None) -> bytes:
    """The inner ``chunk`` event with a raw JSON wrapper payload."""
    return EventMessage(headers=dict(CHUNK_HEADERS if headers is None else headers), payload=wrapper).encode()


def wrapper_for(raw_event: bytes) -> bytes:
    return json.dumps({"bytes": base64.b64encode(raw_event).decode()}).encode()


def client_frame(body: Body) -> bytes:
    """One client event as the SDK sends it."""
    return signed(chunk(wrapper_for(json.dumps(body).encode())))
