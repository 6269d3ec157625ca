# SPDX-License-Identifier: Apache-2.0
"""The typed events a conversation gives its host: shared by the host process and the worker.

A session (`novabridge.sonic.SonicSession`, in the worker) makes them from the service's output
(`novabridge.sonic.wire.OutputParser`); the worker sends them to the host over the link as JSON
(`event_to_json`), and `SonicBridge` hands them out. Pure Python, so a Python 3.11 host imports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from novabridge.exceptions import ProtocolError

__all__ = [
    "ANSWER_EVENTS",
    "AudioOut",
    "Error",
    "Interrupted",
    "Reconnecting",
    "Renewed",
    "SonicEvent",
    "Stage",
    "ToolCall",
    "Transcript",
    "TurnEnd",
    "Usage",
    "event_from_json",
    "event_to_json",
]


class Stage(StrEnum):
    """``generationStage`` of assistant text: a preview of what will be said, or what was said."""

    SPECULATIVE = "SPECULATIVE"
    FINAL = "FINAL"


# ------------------------------------------------------------------------------------------------ typed events


@dataclass(frozen=True, slots=True)
class AudioOut:
    """Assistant speech: s16le mono PCM at ``rate``."""

    pcm: bytes
    rate: int
    turn_id: str


@dataclass(frozen=True, slots=True)
class Transcript:
    """Text of a turn: the user's (FINAL) or the assistant's (SPECULATIVE before audio, FINAL after)."""

    role: str
    text: str
    stage: Stage
    turn_id: str


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The user barged in: audio of ``turn_id`` not yet played must be dropped."""

    turn_id: str
    dropped_bytes: int = 0
    """Assistant audio of the turn that was queued and discarded (filled in by the session or the bridge)."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    """The model asks for a tool; answer with the result (the session does this for registered tools)."""

    tool_use_id: str
    name: str
    input: dict[str, Any]
    turn_id: str


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """A completion ended (``END_TURN``, ``INTERRUPTED``, ...)."""

    turn_id: str
    stop_reason: str


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the service (totals for the session so far)."""

    input_tokens: int
    output_tokens: int
    turn_id: str


@dataclass(frozen=True, slots=True)
class Renewed:
    """The session moved to a new stream before the connection lifetime ran out."""

    generation: int


@dataclass(frozen=True, slots=True)
class Reconnecting:
    """The stream failed with a transient error; the session reconnects and resumes from the history."""

    reason: str
    attempt: int


@dataclass(frozen=True, slots=True)
class Error:
    """An error of the session; ``fatal`` ends it."""

    kind: str
    message: str
    fatal: bool


SonicEvent = AudioOut | Transcript | Interrupted | ToolCall | TurnEnd | Usage | Renewed | Reconnecting | Error

ANSWER_EVENTS = (AudioOut, Transcript, Interrupted, ToolCall, Usage)
"""The events of an answer under way, each naming it by its ``turn_id`` (a `TurnEnd` ends it)."""


_EVENT_TYPES: dict[str, type[SonicEvent]] = {
    cls.__name__: cls for cls in (Transcript, Interrupted, ToolCall, TurnEnd, Usage, Renewed, Reconnecting, Error)
}


def event_to_json(event: SonicEvent) -> bytes:
    """A typed event (other than `AudioOut`, whose PCM travels as it is) as JSON, for the worker-to-host ring."""
    if isinstance(event, AudioOut):
        raise TypeError("AudioOut travels as PCM, not JSON")
    fields = {name: getattr(event, name) for name in event.__slots__}
    return json.dumps({"type": type(event).__name__, **fields}).encode()


def event_from_json(data: bytes) -> SonicEvent:
    """The inverse of `event_to_json`.

    Raises:
        ProtocolError: not one of the typed events.
    """
    try:
        fields = json.loads(data)
        cls = _EVENT_TYPES[fields.pop("type")]
        if cls is Transcript:
            fields["stage"] = Stage(fields["stage"])
        return cls(**fields)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
        # RecursionError: JSON nested deeper than Python recurses, which json reports as no ValueError.
        raise ProtocolError(f"not a typed event: {type(error).__name__} {error}") from None
