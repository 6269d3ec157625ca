"""Malformed bytes at the emulator's front door: a raw HTTP/2 client on one TLS connection, and the input decoder.

The SDK never sends a bad frame, so these bypass it: `h2` speaks HTTP/2 to the emulator directly, on 127.0.0.1 only,
and each kind of malformed input goes on a stream of its own. The service's answer is a ``validationException`` on
that stream (HTTP 200, then the exception message, as for any input the service rejects); the connection and its
other streams carry on, and a conversation opened before the fuzzing completes a turn after it.
"""

import asyncio
import struct
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from hypothesis import given
from hypothesis import strategies as st
from novabridge.emulator import EmulatorOptions, ThreadedEmulator
from novabridge.emulator.conversation import Conversation
from novabridge.emulator.faults import FaultPlan
from novabridge.emulator.recording import StreamRecording
from novabridge.emulator.scenario import Scenario
from novabridge.emulator.service import EVENT_LIMIT_BYTES, ServiceError
from novabridge.emulator.wire import InputDecoder, InputEvent, WireError
from support import docs_events as ev
from support import service_messages as says
from support.emulator_in_process import FAST
from support.fuzzing import BOUNDARY_FUZZ
from support.raw_h2 import RawH2
from support.wire_frames import CHUNK_HEADERS, chunk, client_frame, signed, wrapper_for

Body = dict[str, Any]

FUZZ = BOUNDARY_FUZZ

# ------------------------------------------------------------------------------------------------ the decoder


def decode_split(data: bytes, cuts: list[int]) -> tuple[list[InputEvent], type[Exception] | None]:
    """The events ``data`` yields fed in pieces cut at ``cuts``, and the type of the error that ended it."""
    decoder = InputDecoder()
    events: list[InputEvent] = []
    start = 0
    try:
        for cut in [*sorted(cuts), len(data)]:
            events.extend(decoder.decode(data[start:cut]))  # keeps what came before an error
            start = cut
        decoder.finish()
    except (WireError, ServiceError) as error:  # anything else fails the test
        return events, type(error)
    return events, None


frames = st.lists(
    st.dictionaries(st.text(max_size=6), st.integers() | st.text(max_size=12), max_size=3).map(
        lambda payload: {"event": {"audioInput": payload}}
    ),
    max_size=4,
)


@FUZZ
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 400), max_size=12))
def test_any_bytes_in_any_split_yield_events_or_a_wire_error(data: bytes, cuts: list[int]) -> None:
    assert decode_split(data, [cut % (len(data) + 1) for cut in cuts]) == decode_split(data, [])


@FUZZ
@given(valid=frames, garbage=st.binary(max_size=60), data=st.data())
def test_the_events_before_a_bad_frame_do_not_depend_on_the_split(valid: list[Body], garbage: bytes, data: Any) -> None:
    # The service acts on every event before the bad frame; which of them the emulator saw once depended on how
    # the network had cut the stream (the events sharing a chunk with the bad frame were lost).
    stream = b"".join(client_frame(body) for body in valid) + garbage
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10), label="cuts")
    events, error = decode_split(stream, cuts)
    assert [event.body for event in events] == valid
    assert (events, error) == decode_split(stream, [])
    if garbage:
        assert error is not None, "trailing bytes that are no frame must not end the input cleanly"


def test_input_that_ends_inside_a_frame_is_an_error() -> None:
    frame = client_frame({"event": {"sessionStart": {}}})
    decoder = InputDecoder()
    assert decoder.feed(frame[:-3]) == []
    with pytest.raises(WireError, match="ended inside"):
        decoder.finish()


def test_a_deeply_nested_chunk_wrapper_is_a_wire_error() -> None:
    with pytest.raises(WireError):
        InputDecoder().feed(signed(chunk(b"[" * 100_000)))


# ------------------------------------------------------------------------------------------------ the rules

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.just("[" * 5000),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def documented_input(prompt: str = "p") -> list[Body]:
    """A whole conversation as the user guides write it: every input event the service takes, in order."""
    tool = ev.tool_spec("lookup", "Looks things up.", {"type": "object"})
    start = ev.prompt_start(prompt, tools=[tool])
    start["event"]["promptStart"]["toolConfiguration"]["toolChoice"] = {"tool": {"name": "lookup"}}
    return [
        ev.session_start("HIGH"),
        start,
        *ev.text_block(prompt, "system", "You are a helpful assistant."),
        *ev.text_block(prompt, "history", "Hello.", role="USER"),
        ev.audio_start(prompt, "audio"),
        ev.audio_input(prompt, "audio", bytes(320)),
        *ev.text_block(prompt, "typed", "What time is it?", role="USER", interactive=True),
        ev.content_end(prompt, "audio"),
        ev.prompt_end(prompt),
        ev.session_end(),
    ]


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """``value`` with one place in it (at any depth) deleted or replaced by any JSON value."""
    if not isinstance(value, dict) or not value:
        return draw(json_values)
    key = draw(st.sampled_from(sorted(value)))
    action = draw(st.sampled_from(["deeper", "delete", "replace"]))
    copy = dict(value)
    if action == "deeper":
        copy[key] = draw(mutated(value[key]))
    elif action == "delete":
        del copy[key]
    else:
        copy[key] = draw(json_values)
    return copy


@st.composite
def broken_conversations(draw: st.DrawFn) -> list[Body]:
    """The documented conversation with one to three of its events' payloads broken somewhere."""
    events = documented_input()
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(events) - 1))
        ((name, payload),) = events[index]["event"].items()
        events[index] = {"event": {name: draw(mutated(payload))}}
    return events


@FUZZ
@given(events=broken_conversations())
def test_input_events_of_any_shape_end_the_stream_with_the_services_error_only(events: list[Body]) -> None:
    async def drive() -> None:
        conversation = Conversation(
            recording=StreamRecording(1, ev.NOVA_2), options=EmulatorOptions(), scenario=Scenario(), faults=FaultPlan()
        )
        try:
            for body in events:
                conversation.receive(body)
        except ServiceError:  # anything else escaped the reader task and left the stream hanging
            pass
        finally:
            conversation.abort("test-over")

    asyncio.run(drive())


# ------------------------------------------------------------------------------------------------ raw HTTP/2


def prelude_frame(
    frame: bytes, *, total: int | None = None, prelude_crc_flip: bool = False, crc_flip: bool = False
) -> bytes:
    """``frame`` with its length prefix replaced, or one of its checksums broken."""
    data = bytearray(frame)
    if total is not None:
        data[0:4] = struct.pack("!I", total)
    if prelude_crc_flip:
        data[8] ^= 0x01
    if crc_flip:
        data[-1] ^= 0x01
    return bytes(data)


GOOD = client_frame({"event": {"sessionStart": {}}})
MALFORMED: dict[str, bytes] = {
    "prelude-length-too-small": prelude_frame(GOOD, total=8),
    "prelude-length-too-large": prelude_frame(GOOD, total=2**31),
    "prelude-length-wrong": prelude_frame(GOOD, total=len(GOOD) - 4),
    "prelude-crc": prelude_frame(GOOD, prelude_crc_flip=True),
    "message-crc": prelude_frame(GOOD, crc_flip=True),
    "truncated-then-end": GOOD[: len(GOOD) // 2],
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)),
    "envelope-around-garbage": signed(b"\x00\x00\x00\x20not a frame at all, just bytes"),
    "not-a-chunk-event": signed(
        chunk(wrapper_for(b'{"event": {"sessionStart": {}}}'), {**CHUNK_HEADERS, ":event-type": "audioInput"})
    ),
    "not-json": signed(chunk(b"this is not JSON")),
    "not-base64": signed(chunk(b'{"bytes": "!!!"}')),
    "base64-of-not-json": signed(chunk(wrapper_for(b"\xff\xfe not json"))),
    "deeply-nested-wrapper": signed(chunk(b"[" * 50_000)),
    "unknown-event": client_frame({"event": {"noSuchEvent": {}}}),
    "two-events-in-one": client_frame({"event": {"sessionStart": {}, "promptEnd": {}}}),
    "oversized-event": client_frame({"event": {"sessionStart": {"padding": "x" * EVENT_LIMIT_BYTES}}}),
}


def conversation_frames(*bodies: Body) -> bytes:
    return b"".join(client_frame(body) for body in bodies)


@pytest.fixture
def emulator() -> Iterator[ThreadedEmulator]:
    # Signatures are not checked (credentials None): the request itself is what is under test, not SigV4.
    options: dict[str, Any] = {**FAST, "credentials": None}
    with ThreadedEmulator(options=EmulatorOptions(**options)) as threaded:
        yield threaded


def test_each_malformed_stream_gets_the_services_error_and_the_others_carry_on(emulator: ThreadedEmulator) -> None:
    client = RawH2(emulator.port, emulator.ca_file)
    try:
        good = client.open()
        prompt = "p"
        client.send(
            good,
            conversation_frames(
                ev.session_start("HIGH"),
                ev.prompt_start(prompt),
                *ev.text_block(prompt, "system", "You are a helpful assistant."),
                ev.audio_start(prompt, "audio"),
                ev.audio_input(prompt, "audio", bytes(3200)),
            ),
        )
        client.wait(lambda: client.streams[good].status is not None)
        assert client.streams[good].status == 200

        fuzzed = {name: client.open() for name in MALFORMED}
        for name, stream_id in fuzzed.items():
            client.send(stream_id, MALFORMED[name], end=name == "truncated-then-end" or name == "garbage")
        client.wait(
            lambda: all(client.streams[s].ended or client.streams[s].reset is not None for s in fuzzed.values())
        )
        answers = {name: (client.streams[s].status, client.streams[s].exceptions()) for name, s in fuzzed.items()}
        expected = (200, [("validationException", str(says.INVALID_INPUT))])
        assert answers == dict.fromkeys(MALFORMED, expected)
        assert client.streams[good].exceptions() == []
        assert not client.streams[good].ended

        # The conversation opened before the fuzzing completes a turn after it, on the same connection.
        client.send(
            good,
            conversation_frames(*ev.text_block(prompt, "typed", "What time is it?", role="USER", interactive=True)),
        )
        client.wait(lambda: any("completionEnd" in e["event"] for e in client.streams[good].events()))
        client.send(
            good,
            conversation_frames(ev.content_end(prompt, "audio"), ev.prompt_end(prompt), ev.session_end()) + signed(b""),
            end=True,
        )
        client.wait(lambda: client.streams[good].ended)
        names = [next(iter(e["event"])) for e in client.streams[good].events()]
        assert "textOutput" in names
        assert "audioOutput" in names
        assert client.streams[good].exceptions() == []
        assert client.terminated is None
    finally:
        client.close()
    outcomes = sorted(recording.outcome for recording in emulator.recordings)
    assert outcomes == sorted(["completed", *["error"] * len(MALFORMED)])


@pytest.mark.parametrize("refused", ["unknown-model", "malformed-frame"])
def test_a_stream_refused_while_its_client_still_sends_does_not_stall_the_connection(
    emulator: ThreadedEmulator, refused: str
) -> None:
    # hypercorn hands each DATA frame to the stream's app through a queue of 10 and waits on a full one with the whole
    # connection: a stream refused (a 4xx answer) or ended (an error event) while its client still sends must not
    # leave such a queue unread, or every other stream on the connection stalls, as if the service had hung.
    client = RawH2(emulator.port, emulator.ca_file)
    try:
        if refused == "unknown-model":
            first = client.open("amazon.no-such-model-v9:0")
            client.wait(lambda: client.streams[first].status == 400)
        else:
            first = client.open()
            client.send(first, MALFORMED["message-crc"])
            client.wait(lambda: bool(client.streams[first].exceptions()))
        for _ in range(30):  # one DATA frame each: three times hypercorn's queue
            client.send(first, client_frame(ev.audio_input("p", "audio", bytes(640))))
        second = client.open()
        client.send(second, conversation_frames(ev.session_start("HIGH"), ev.prompt_start("p")))
        client.wait(lambda: client.streams[second].status == 200, timeout=10)
        client.send(first, b"", end=True)
        client.send(second, signed(b""), end=True)
        client.wait(lambda: client.streams[second].ended, timeout=10)
    finally:
        client.close()
