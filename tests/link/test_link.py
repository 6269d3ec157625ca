"""The host-worker link format (`novabridge.link`): every record round-trips, garbage raises `LinkError` alone.

Pure Python: runs on the host's 3.11 and the worker's 3.12, without the SDK.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from dataclasses import dataclass

import novabridge as nb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from novabridge import link
from novabridge.events import (
    Error,
    Interrupted,
    Reconnecting,
    Renewed,
    Stage,
    ToolCall,
    Transcript,
    TurnEnd,
    Usage,
    event_to_json,
)
from novabridge.exceptions import BridgeError, LinkError
from novabridge.ring import RecordKind
from novabridge.sonic.config import HistoryMessage, SonicConfig
from novabridge.sonic.keys import AWS_KEY_FIELDS, reveal_keys

BOUNDARY_FUZZ = settings(
    max_examples=200, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
"""Derandomized, so a run is the same run on either interpreter and in CI."""


@dataclass(frozen=True)
class Written:
    """A ring record as the peer reads it: kind, flags and payload as written."""

    kind: int
    flags: int
    payload: bytes


def as_read(frame: link.Frame) -> Written:
    return Written(int(frame.kind), frame.flags, frame.payload)


UPLINK_RECORDS: list[link.UplinkRecord] = [
    link.UserAudio(b"\x01\x00\xff\x7f"),
    link.UserAudio(b""),
    link.TextCommand("What is the weather in Lisbon?"),
    link.TextCommand('quotes " and \\ and é and 🎙'),
    link.ToolResultCommand("tooluse-1", '{"temperature": 21}'),
]
DOWNLINK_RECORDS: list[link.DownlinkRecord] = [
    link.AssistantAudio(123_456_789_012, 7, b"\x10\x00\x20\x00"),
    link.AssistantAudio(0, 0, b""),
    link.AssistantAudio(2**64 - 1, 0xFFFF, b"\x00\x80"),
    link.SessionEvent(Transcript("USER", "hello", Stage.FINAL, "t1")),
    link.SessionEvent(Interrupted("t1", 640)),
    link.SessionEvent(ToolCall("tooluse-1", "weather", {"city": "Lisbon"}, "t2")),
    link.SessionEvent(TurnEnd("t2", "END_TURN")),
    link.SessionEvent(Usage(10, 20, "t2")),
    link.SessionEvent(Renewed(3)),
    link.SessionEvent(Reconnecting("StreamEnded: gone", 1)),
    link.SessionEvent(Error("ThrottlingException", "slow down", True)),
    link.Warm(),
    link.Ready(),
    link.TurnStart(1, "0f7c-turn"),
    link.UplinkTimings((0.001, 0.0025), 6400),
    link.UplinkTimings((), 0),
]


@pytest.mark.parametrize("record", UPLINK_RECORDS, ids=repr)
def test_every_uplink_record_round_trips(record: link.UplinkRecord) -> None:
    assert link.decode_uplink(as_read(record.encode())) == record
    frame = record.encode()
    assert type(record).decode(frame.payload, frame.flags) == record


@pytest.mark.parametrize("record", DOWNLINK_RECORDS, ids=repr)
def test_every_downlink_record_round_trips(record: link.DownlinkRecord) -> None:
    assert link.decode_downlink(as_read(record.encode())) == record
    frame = record.encode()
    assert type(record).decode(frame.payload, frame.flags) == record


def test_records_are_frozen_and_slotted() -> None:
    for record in [*UPLINK_RECORDS, *DOWNLINK_RECORDS]:
        assert not hasattr(record, "__dict__"), type(record)
        for field in dataclasses.fields(record):
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(record, field.name, None)


def test_each_direction_uses_its_ring_kinds() -> None:
    assert link.UserAudio(b"").encode().kind is RecordKind.AUDIO
    assert link.AssistantAudio(0, 1, b"").encode().kind is RecordKind.AUDIO
    assert link.TextCommand("x").encode().kind is RecordKind.EVENT
    assert link.SessionEvent(Renewed(1)).encode().kind is RecordKind.EVENT
    for control in (link.Warm(), link.Ready(), link.TurnStart(1, "t"), link.UplinkTimings((1.0,), 0)):
        assert control.encode().kind is RecordKind.CONTROL


def test_the_assistant_audio_stamp_is_a_little_endian_u64_before_the_pcm() -> None:
    frame = link.AssistantAudio(0x0102030405060708, 42, b"\xaa\xbb").encode()
    assert frame.payload == bytes([8, 7, 6, 5, 4, 3, 2, 1]) + b"\xaa\xbb"
    assert frame.flags == 42, "the turn ordinal rides in the record's flags"
    assert link.AUDIO_STAMP.format == "<Q"
    assert link.AUDIO_STAMP.size == 8
    assert struct.unpack_from("<Q", frame.payload) == (0x0102030405060708,)


def test_user_audio_is_the_pcm_as_it_is_and_events_are_protocols_json() -> None:
    assert link.UserAudio(b"\x01\x02").encode() == (RecordKind.AUDIO, b"\x01\x02", 0)
    event = Transcript("ASSISTANT", "hi", Stage.SPECULATIVE, "t")
    assert link.SessionEvent(event).encode().payload == event_to_json(event)


def test_control_and_command_records_carry_an_explicit_tag() -> None:
    tags: dict[link.UplinkRecord | link.DownlinkRecord, tuple[str, str]] = {
        link.Warm(): ("control", "warm"),
        link.Ready(): ("control", "ready"),
        link.TurnStart(2, "t"): ("control", "turn_start"),
        link.UplinkTimings((0.5,), 0): ("control", "uplink_timings"),
        link.TextCommand("x"): ("op", "text"),
        link.ToolResultCommand("id", "{}"): ("op", "tool_result"),
    }
    for record, (key, tag) in tags.items():
        assert json.loads(record.encode().payload)[key] == tag
    # A record's own decode refuses another record's payload that happens to have the same fields.
    with pytest.raises(LinkError):
        link.Warm.decode(link.Ready().encode().payload)
    with pytest.raises(LinkError):
        link.TextCommand.decode(json.dumps({"op": "tool_result", "text": "x"}).encode())


# --------------------------------------------------------------------------------------------------- properties

pcm_bytes = st.binary(max_size=512).map(lambda data: data[: len(data) // 2 * 2])
text = st.text(max_size=200)
floats = st.floats(allow_nan=False, allow_infinity=False)
events = st.one_of(
    st.builds(Transcript, st.sampled_from(["USER", "ASSISTANT"]), text, st.sampled_from(list(Stage)), text),
    st.builds(Interrupted, text, st.integers(0, 2**40)),
    st.builds(TurnEnd, text, text),
    st.builds(Usage, st.integers(0, 2**40), st.integers(0, 2**40), text),
    st.builds(Renewed, st.integers(0, 2**31)),
    st.builds(Reconnecting, text, st.integers(0, 100)),
    st.builds(Error, text, text, st.booleans()),
)
uplink_records = st.one_of(
    st.builds(link.UserAudio, pcm_bytes),
    st.builds(link.TextCommand, text),
    st.builds(link.ToolResultCommand, text, text),
)
downlink_records = st.one_of(
    st.builds(link.AssistantAudio, st.integers(0, 2**64 - 1), st.integers(0, 0xFFFF), pcm_bytes),
    st.builds(link.SessionEvent, events),
    st.just(link.Warm()),
    st.just(link.Ready()),
    st.builds(link.TurnStart, st.integers(0, 0xFFFF), text),
    st.builds(link.UplinkTimings, st.lists(floats, max_size=50).map(tuple), st.integers(0, 2**62)),
)


@BOUNDARY_FUZZ
@given(uplink_records)
def test_any_uplink_record_round_trips(record: link.UplinkRecord) -> None:
    assert link.decode_uplink(as_read(record.encode())) == record


@BOUNDARY_FUZZ
@given(downlink_records)
def test_any_downlink_record_round_trips(record: link.DownlinkRecord) -> None:
    assert link.decode_downlink(as_read(record.encode())) == record


@BOUNDARY_FUZZ
@given(st.integers(0, 0xFFFF), st.binary(max_size=300), st.integers(0, 0xFFFF))
def test_any_bytes_decode_to_a_record_or_raise_link_error(kind: int, payload: bytes, flags: int) -> None:
    record = Written(kind, flags, payload)
    for decode in (link.decode_uplink, link.decode_downlink):
        try:
            decoded = decode(record)
        except LinkError:
            continue
        assert decoded == decode(as_read(decoded.encode())), "what decodes encodes back to the same record"


@BOUNDARY_FUZZ
@given(downlink_records, st.data())
def test_a_truncated_record_raises_link_error_or_decodes_to_a_record(
    record: link.DownlinkRecord, data: st.DataObject
) -> None:
    frame = record.encode()
    cut = data.draw(st.integers(0, max(0, len(frame.payload) - 1)))
    truncated = Written(int(frame.kind), frame.flags, frame.payload[:cut])
    try:
        decoded = link.decode_downlink(truncated)
    except LinkError:
        return
    # Only audio can lose bytes and stay a record: whole samples, its stamp untouched.
    assert isinstance(record, link.AssistantAudio)
    assert isinstance(decoded, link.AssistantAudio)
    assert decoded.received_ns == record.received_ns
    assert record.pcm.startswith(decoded.pcm)


# ------------------------------------------------------------------------------------------------------ garbage


@pytest.mark.parametrize(
    ("direction", "kind", "payload", "flags"),
    [
        ("uplink", RecordKind.AUDIO, b"\x01\x02\x03", 0),  # half a sample
        ("uplink", RecordKind.EVENT, b"", 0),
        ("uplink", RecordKind.EVENT, b"\xff\xfe not utf-8", 0),
        ("uplink", RecordKind.EVENT, b"[1, 2]", 0),
        ("uplink", RecordKind.EVENT, b'{"op": "shout", "text": "x"}', 0),
        ("uplink", RecordKind.EVENT, b'{"op": "text"}', 0),
        ("uplink", RecordKind.EVENT, b'{"op": "text", "text": 5}', 0),
        ("uplink", RecordKind.EVENT, b'{"op": "tool_result", "tool_use_id": "a", "result": {"x": 1}}', 0),
        ("uplink", RecordKind.EVENT, b"[" * 100_000, 0),  # deeper than Python recurses
        ("uplink", RecordKind.CONTROL, b'{"control": "warm"}', 0),  # the worker's records, not the host's
        ("uplink", 99, b"", 0),
        ("downlink", RecordKind.AUDIO, b"\x01\x02\x03\x04\x05\x06\x07", 1),  # shorter than the stamp
        ("downlink", RecordKind.AUDIO, b"\x00" * 8 + b"\x01", 1),  # a stamp and half a sample
        ("downlink", RecordKind.EVENT, b'{"type": "AudioOut", "pcm": "", "rate": 1, "turn_id": ""}', 0),
        ("downlink", RecordKind.EVENT, b'{"type": "Renewed"}', 0),
        ("downlink", RecordKind.EVENT, b"null", 0),
        ("downlink", RecordKind.CONTROL, b'{"state": "warm"}', 0),  # no tag: nothing is guessed from the keys
        ("downlink", RecordKind.CONTROL, b'{"control": "cold"}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "turn_start", "ordinal": "1", "turn_id": "t"}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "turn_start", "ordinal": true, "turn_id": "t"}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "turn_start", "ordinal": 65536, "turn_id": "t"}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "turn_start", "ordinal": -1, "turn_id": "t"}', 0),
        (
            "downlink",
            RecordKind.CONTROL,
            b'{"control": "uplink_timings", "samples_s": [0.1, "x"], "settled_bytes": 0}',
            0,
        ),
        ("downlink", RecordKind.CONTROL, b'{"control": "uplink_timings", "samples_s": 0.1}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "uplink_timings", "samples_s": []}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "uplink_timings", "samples_s": [], "settled_bytes": -2}', 0),
        ("downlink", RecordKind.CONTROL, b'{"control": "uplink_timings", "samples_s": [], "settled_bytes": 1.0}', 0),
        ("downlink", RecordKind.CONTROL, b"\x00", 0),
        ("downlink", 0, b"", 0),
    ],
)
def test_garbage_raises_link_error(direction: str, kind: int, payload: bytes, flags: int) -> None:
    decode = link.decode_uplink if direction == "uplink" else link.decode_downlink
    with pytest.raises(LinkError):
        decode(Written(kind, flags, payload))


def test_link_error_is_a_bridge_error_and_a_value_error() -> None:
    assert issubclass(LinkError, BridgeError)
    assert issubclass(LinkError, ValueError)


def test_a_bad_record_on_a_ring_loses_nothing_else() -> None:
    ring = nb.Ring.create(1 << 16)
    try:
        good: list[link.DownlinkRecord] = [
            link.Ready(),
            link.AssistantAudio(5, 1, b"\x01\x00"),
            link.SessionEvent(Renewed(2)),
        ]
        link.write(ring, good[0])
        ring.write(RecordKind.CONTROL, b'{"control": "nonsense"}')
        link.write(ring, good[1])
        ring.write(RecordKind.AUDIO, b"\x00\x01")
        link.write(ring, good[2])
        decoded: list[link.DownlinkRecord] = []
        errors = 0
        while (record := ring.read_nowait()) is not None:
            try:
                decoded.append(link.decode_downlink(record))
            except LinkError:
                errors += 1
        assert decoded == good
        assert errors == 2
    finally:
        ring.close()


def test_the_session_config_reaches_the_worker_whole_with_its_keys() -> None:
    config = SonicConfig(
        aws_access_key_id="AKIDLINKTEST",
        aws_secret_access_key="secret-link-test",
        aws_session_token="token-link-test",
        region="eu-north-1",
        history=(HistoryMessage(role="USER", text="Hi"), HistoryMessage(role="ASSISTANT", text="Hello.")),
    )
    data = link.encode_config(config)
    for secret in (b"AKIDLINKTEST", b"secret-link-test", b"token-link-test"):
        assert secret in data, "the worker signs with the keys: they travel in plain text over its stdin"
    decoded = link.decode_config(data)
    assert decoded == config
    assert reveal_keys(decoded) == {
        "aws_access_key_id": "AKIDLINKTEST",
        "aws_secret_access_key": "secret-link-test",
        "aws_session_token": "token-link-test",
    }
    assert reveal_keys(SonicConfig()) == dict.fromkeys(AWS_KEY_FIELDS)
    assert "secret-link-test" not in repr(decoded)
