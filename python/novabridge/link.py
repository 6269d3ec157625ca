# SPDX-License-Identifier: Apache-2.0
"""The host-worker link: every record that crosses the two rings between `SonicBridge` and its worker.

Each record below is one ring record (a `RecordKind`, a payload and 16 bits of flags); ``encode`` gives that
triple as a `Frame`, and `decode_uplink` / `decode_downlink` turn a ring record back into the typed record, or raise
`LinkError` and nothing else. A record that does not decode is lost alone: the ring frames records, so the next one
decodes as if the bad one had never been written.

Before the rings carry anything, the worker is given its session's `SonicConfig` on stdin (`encode_config`,
`decode_config`): keys included, so they never appear in argv or the environment.

Uplink (host -> worker):

- `UserAudio`: AUDIO, s16le mono PCM at ``config.input_rate``, flags 0. The ring stamps each record with its write
  time (``Record.t_ns``), which dates the uplink hop.
- `TextCommand`, `ToolResultCommand`: EVENT, JSON tagged by ``"op"`` (``"text"``, ``"tool_result"``).

Downlink (worker -> host):

- `AssistantAudio`: AUDIO, ``AUDIO_STAMP`` (u64 little-endian, the ``CLOCK_MONOTONIC`` ns at which the SDK handed the
  audio over) then s16le PCM at ``config.output_rate``; flags carry the turn's ordinal (see `TurnStart`).
- `SessionEvent`: EVENT, a typed event other than `AudioOut` as `novabridge.events.event_to_json` writes it.
- `Warm`, `Ready`, `TurnStart`, `UplinkTimings`: CONTROL, JSON tagged by ``"control"``: the worker has imported the
  SDK and attached the rings; its session is connected; the ordinal that the audio of a turn id carries from now
  on (sent before the turn's first audio); the host-write-to-SDK-send time of each frame of user audio sent since
  the last such record.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar

from novabridge._novabridge import Ring
from novabridge.events import SonicEvent, event_from_json, event_to_json
from novabridge.exceptions import LinkError, ProtocolError
from novabridge.ring import RecordKind
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.keys import reveal_keys

__all__ = [
    "AUDIO_STAMP",
    "AssistantAudio",
    "Command",
    "Control",
    "DownlinkRecord",
    "Frame",
    "LinkError",
    "Ready",
    "SessionEvent",
    "TextCommand",
    "ToolResultCommand",
    "TurnStart",
    "UplinkRecord",
    "UplinkTimings",
    "UserAudio",
    "Warm",
    "decode_config",
    "decode_downlink",
    "decode_uplink",
    "encode_config",
    "write",
]

AUDIO_STAMP = struct.Struct("<Q")
"""The prefix of a downlink audio record: when the SDK handed the audio to the worker's session."""
TURN_ORDINALS = 1 << 16
"""Turn ordinals live in the record's 16 flag bits (the worker counts them from 1, modulo this)."""


class Frame(NamedTuple):
    """One ring record's worth: what `Ring.write` takes."""

    kind: RecordKind
    payload: bytes
    flags: int = 0


class RingRecord(Protocol):
    """What decoding reads of a ring record (`novabridge._novabridge.Record`, or a test's stand-in)."""

    @property
    def kind(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def payload(self) -> bytes: ...


def _pcm(payload: bytes, what: str) -> bytes:
    if len(payload) % 2:
        raise LinkError(f"{what}: s16le PCM has an even number of bytes, got {len(payload)}")
    return payload


def _json_object(payload: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise LinkError(f"{what}: not JSON ({type(error).__name__}: {error})") from None
    if not isinstance(value, dict):
        raise LinkError(f"{what}: a JSON object was expected, got {type(value).__name__}")
    return value


_T = TypeVar("_T")
_R = TypeVar("_R", bound="_Tagged")


def _field(message: dict[str, Any], name: str, kind: type[_T], what: str) -> _T:
    value = message.get(name)
    # bool is an int to Python, never a count or an ordinal here.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LinkError(f"{what}: field {name!r} must be {kind.__name__}, got {value!r:.80}")
    return value


class _Tagged:
    """A record whose payload is a JSON object that names it, ``{KEY: TAG, <its fields>}``, on ``RING_KIND``."""

    __slots__ = ()
    RING_KIND: ClassVar[RecordKind]
    KEY: ClassVar[str]
    TAG: ClassVar[str]

    def fields(self) -> dict[str, object]:
        """The record's fields as JSON values."""
        return {}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        """From the decoded JSON object (its tag already checked); raises `LinkError`."""
        return cls()

    def encode(self) -> Frame:
        """The ring record."""
        return Frame(self.RING_KIND, json.dumps({self.KEY: self.TAG, **self.fields()}).encode())

    @classmethod
    def decode(cls, payload: bytes, flags: int = 0) -> Self:
        """The inverse of `encode`; raises `LinkError`."""
        message = _json_object(payload, f"{cls.TAG} record")
        if message.get(cls.KEY) != cls.TAG:
            raise LinkError(f"{cls.TAG} record: {cls.KEY} {cls.TAG!r} was expected, got {message.get(cls.KEY)!r:.80}")
        return cls.from_json(message)


def _by_tag(message: dict[str, Any], key: str, records: dict[str, type[_R]], what: str) -> _R:
    tag = message.get(key)
    record = records.get(tag) if isinstance(tag, str) else None
    if record is None:
        raise LinkError(f"unknown {what} {tag!r:.80}")
    return record.from_json(message)


# ------------------------------------------------------------------------------------------------------- uplink


@dataclass(frozen=True, slots=True)
class UserAudio:
    """User audio for the session: s16le mono PCM at the session's input rate."""

    pcm: bytes

    def encode(self) -> Frame:
        """The ring record."""
        return Frame(RecordKind.AUDIO, self.pcm)

    @classmethod
    def decode(cls, payload: bytes, flags: int = 0) -> Self:
        """The inverse of `encode`; raises `LinkError`."""
        return cls(_pcm(payload, "user audio"))


class _Command(_Tagged):
    __slots__ = ()
    RING_KIND = RecordKind.EVENT
    KEY = "op"


@dataclass(frozen=True, slots=True)
class TextCommand(_Command):
    """Typed user text for the session (`SonicSession.send_text`)."""

    TAG: ClassVar[str] = "text"
    text: str

    def fields(self) -> dict[str, object]:
        """The record's fields as JSON values."""
        return {"text": self.text}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        """From the decoded JSON object; raises `LinkError`."""
        return cls(_field(message, "text", str, "text command"))


@dataclass(frozen=True, slots=True)
class ToolResultCommand(_Command):
    """A tool's result for the session (`SonicSession.send_tool_result`): ``result`` is checked JSON text."""

    TAG: ClassVar[str] = "tool_result"
    tool_use_id: str
    result: str

    def fields(self) -> dict[str, object]:
        """The record's fields as JSON values."""
        return {"tool_use_id": self.tool_use_id, "result": self.result}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        """From the decoded JSON object; raises `LinkError`."""
        what = "tool result command"
        return cls(_field(message, "tool_use_id", str, what), _field(message, "result", str, what))


Command = TextCommand | ToolResultCommand
_COMMANDS: dict[str, type[Command]] = {record.TAG: record for record in (TextCommand, ToolResultCommand)}
UplinkRecord = UserAudio | Command


def decode_uplink(record: RingRecord) -> UplinkRecord:
    """The typed record a host wrote to the uplink.

    Raises:
        LinkError: a kind the uplink does not carry, an unknown command, or a payload that is not its record's.
    """
    if record.kind == RecordKind.AUDIO:
        return UserAudio.decode(record.payload, record.flags)
    if record.kind == RecordKind.EVENT:
        return _by_tag(_json_object(record.payload, "command"), "op", _COMMANDS, "command")
    raise LinkError(f"the uplink carries no records of kind {record.kind}")


# ----------------------------------------------------------------------------------------------------- downlink


@dataclass(frozen=True, slots=True)
class AssistantAudio:
    """Assistant audio: s16le mono PCM at the session's output rate, of the turn whose ordinal is ``turn``."""

    received_ns: int
    """``time.monotonic_ns()`` when the SDK handed the audio to the worker's session."""
    turn: int
    """The turn's ordinal (announced by a `TurnStart` before its first audio)."""
    pcm: bytes

    def encode(self) -> Frame:
        """The ring record."""
        return Frame(RecordKind.AUDIO, AUDIO_STAMP.pack(self.received_ns) + self.pcm, self.turn)

    @classmethod
    def decode(cls, payload: bytes, flags: int = 0) -> Self:
        """The inverse of `encode`; raises `LinkError`."""
        if len(payload) < AUDIO_STAMP.size:
            raise LinkError(f"assistant audio: {len(payload)} bytes cannot hold its {AUDIO_STAMP.size}-byte stamp")
        (received_ns,) = AUDIO_STAMP.unpack_from(payload)
        return cls(received_ns, flags, _pcm(payload[AUDIO_STAMP.size :], "assistant audio"))


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A typed event of the worker's session, other than `AudioOut` (which travels as `AssistantAudio`)."""

    event: SonicEvent

    def encode(self) -> Frame:
        """The ring record."""
        return Frame(RecordKind.EVENT, event_to_json(self.event))

    @classmethod
    def decode(cls, payload: bytes, flags: int = 0) -> Self:
        """The inverse of `encode`; raises `LinkError`."""
        try:
            return cls(event_from_json(payload))
        except ProtocolError as error:
            raise LinkError(f"session event: {error}") from None


class _Control(_Tagged):
    __slots__ = ()
    RING_KIND = RecordKind.CONTROL
    KEY = "control"


@dataclass(frozen=True, slots=True)
class Warm(_Control):
    """The worker imported the SDK and attached its rings: it waits for a session's config."""

    TAG: ClassVar[str] = "warm"


@dataclass(frozen=True, slots=True)
class Ready(_Control):
    """The worker's session is connected."""

    TAG: ClassVar[str] = "ready"


@dataclass(frozen=True, slots=True)
class TurnStart(_Control):
    """From now on the audio of turn ``turn_id`` carries ``ordinal`` (the service's ids do not fit the flags)."""

    TAG: ClassVar[str] = "turn_start"
    ordinal: int
    turn_id: str

    def fields(self) -> dict[str, object]:
        """The record's fields as JSON values."""
        return {"ordinal": self.ordinal, "turn_id": self.turn_id}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        """From the decoded JSON object; raises `LinkError`."""
        ordinal = _field(message, "ordinal", int, "turn start")
        if not 0 <= ordinal < TURN_ORDINALS:
            raise LinkError(f"turn start: ordinal {ordinal} does not fit the record's flags")
        return cls(ordinal, _field(message, "turn_id", str, "turn start"))


@dataclass(frozen=True, slots=True)
class UplinkTimings(_Control):
    """How the worker's uplink goes: the hop of each frame it sent, and how far its user audio is settled.

    Per frame of user audio the session sent: seconds from the host's write to the SDK's send.
    """

    TAG: ClassVar[str] = "uplink_timings"
    samples_s: tuple[float, ...]
    settled_bytes: int
    """The bytes of user audio this worker read that the session has sent, or reported dropped: what follows would
    die with the worker (the session holds it while it reconnects), so the host keeps it for a replacement."""

    def fields(self) -> dict[str, object]:
        """The record's fields as JSON values."""
        return {"samples_s": list(self.samples_s), "settled_bytes": self.settled_bytes}

    @classmethod
    def from_json(cls, message: dict[str, Any]) -> Self:
        """From the decoded JSON object; raises `LinkError`."""
        samples = _field(message, "samples_s", list, "uplink timings")
        if not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in samples):
            raise LinkError("uplink timings: samples_s must hold numbers")
        settled = _field(message, "settled_bytes", int, "uplink timings")
        if settled < 0:
            raise LinkError(f"uplink timings: settled_bytes {settled} is negative")
        return cls(tuple(float(s) for s in samples), settled)


Control = Warm | Ready | TurnStart | UplinkTimings
_CONTROLS: dict[str, type[Control]] = {record.TAG: record for record in (Warm, Ready, TurnStart, UplinkTimings)}
DownlinkRecord = AssistantAudio | SessionEvent | Control


def decode_downlink(record: RingRecord) -> DownlinkRecord:
    """The typed record a worker wrote to the downlink.

    Raises:
        LinkError: a kind the downlink does not carry, an unknown control record, or a payload that is not its
            record's.
    """
    if record.kind == RecordKind.AUDIO:
        return AssistantAudio.decode(record.payload, record.flags)
    if record.kind == RecordKind.EVENT:
        return SessionEvent.decode(record.payload, record.flags)
    if record.kind == RecordKind.CONTROL:
        return _by_tag(_json_object(record.payload, "control record"), "control", _CONTROLS, "control record")
    raise LinkError(f"the downlink carries no records of kind {record.kind}")


def write(ring: Ring, record: UplinkRecord | DownlinkRecord, *, timeout: float | None = 0.0) -> int:
    """Write ``record`` to ``ring`` (`Ring.write`'s ``timeout`` and errors); the record's sequence number."""
    kind, payload, flags = record.encode()
    return ring.write(kind, payload, flags=flags, timeout=timeout)


def encode_config(config: SonicConfig) -> bytes:
    """The session's config for the worker's stdin, its keys in plain text (a pipe, never argv or the environment)."""
    data = config.model_dump(mode="json")
    data.update(reveal_keys(config))
    return json.dumps(data).encode()


def decode_config(data: str | bytes) -> SonicConfig:
    """The inverse of `encode_config` (pydantic's ``ValidationError`` for anything else)."""
    return SonicConfig.model_validate_json(data)
