"""The input rules the service enforces, one broken rule per case, through the real SDK.

Every case sends a valid prefix and then the single event that breaks a rule, so the stream must end at exactly
that event: the SDK raises the service's ValidationException with the service's wording, and the emulator records
which rule fired. The positive controls send well-formed conversations at the limits and must not be rejected.
"""

import asyncio
import json
from typing import Any

import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from aws_sdk_bedrock_runtime.models import ValidationException
from novabridge.emulator import Emulator, Scenario, ToolCall, Turn
from support import docs_events as ev
from support import service_messages as says
from support.emulator_in_process import ClientFactory, EmulatorFactory
from support.sonic_client import Event, SonicTestClient, silence, tone

P = "p"
SYSTEM = "You are a helpful assistant."
WEATHER = ev.tool_spec("getWeather", "The weather in a city.", {"type": "object", "properties": {}, "required": []})


def opening(*, sensitivity: str | None = "HIGH", tools: list[Event] | None = None) -> list[Event]:
    """sessionStart, promptStart and the SYSTEM block, as the AWS guide orders them."""
    return [ev.session_start(sensitivity), ev.prompt_start(P, tools=tools), *ev.text_block(P, "system", SYSTEM)]


def with_audio() -> list[Event]:
    """The opening followed by the AUDIO contentStart: the stream is live."""
    return [*opening(), ev.audio_start(P, "audio")]


def prompt_without(key: str) -> Event:
    event = ev.prompt_start(P)
    del event["event"]["promptStart"][key]
    return event


def prompt_with_tool_schema(schema: Any) -> Event:
    tool = {"toolSpec": {"name": "getWeather", "description": "The weather.", "inputSchema": {"json": schema}}}
    return ev.prompt_start(P, tools=[tool])


def flat_session_start() -> Event:
    """The v1 shape: endpointingSensitivity directly in sessionStart."""
    start = ev.session_start(None)
    start["event"]["sessionStart"]["endpointingSensitivity"] = "HIGH"
    return start


def audio_content(content: str) -> Event:
    return {"event": {"audioInput": {"promptName": P, "contentName": "audio", "content": content}}}


def history(blocks: int, size: int) -> list[Event]:
    """``blocks`` alternating USER/ASSISTANT history blocks of ``size`` bytes each, USER first."""
    events: list[Event] = []
    for number in range(blocks):
        role = "USER" if number % 2 == 0 else "ASSISTANT"
        events += ev.text_block(P, f"history-{number}", chr(ord("a") + number % 26) * size, role=role)
    return events


def names(body: Event) -> list[str]:
    """The event name(s) in an input body, or its top-level keys when it is not an event envelope."""
    return list(body.get("event", body))


async def rejected(client: SonicTestClient, events: list[Event]) -> ValidationException:
    """Send ``events`` and return the ValidationException that ends the stream."""
    await client.send_all(events)
    error = await client.wait_closed()
    assert isinstance(error, ValidationException), f"expected a ValidationException, got {error!r}"
    return error


async def play_out(client: SonicTestClient, *, limit_s: float = 60.0) -> None:
    """Stream silence until the turn's completionEnd: the emulator's playout clock is the input audio."""
    streamed_s = 0.0
    while "completionEnd" not in client.names():
        assert not client.closed.is_set(), f"stream ended ({client.error!r}) before completionEnd"
        assert streamed_s < limit_s, f"no completionEnd after {limit_s} s of silence; got {client.names()}"
        await client.stream_audio(silence(0.25), speed=25.0)
        streamed_s += 0.25


# (events, model id, message on the wire, the rule the emulator records)
CASES = [
    pytest.param(
        [ev.prompt_start(P)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "promptStart must follow sessionStart, once",
        id="promptStart-before-sessionStart",
    ),
    pytest.param(
        [ev.text_input(P, "system", SYSTEM)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "textInput before promptStart",
        id="textInput-first",
    ),
    pytest.param(
        [ev.session_start(), ev.text_start(P, "system")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "contentStart before promptStart",
        id="contentStart-before-promptStart",
    ),
    pytest.param(
        [ev.session_start(), ev.session_start()],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "sessionStart must come first, once",
        id="sessionStart-twice",
    ),
    pytest.param(
        [ev.session_start(), prompt_without("audioOutputConfiguration")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "promptStart.audioOutputConfiguration must be an object",
        id="promptStart-without-audioOutputConfiguration",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P, voice="nobody")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "voiceId 'nobody' is not a voice of amazon.nova-2-sonic-v1:0",
        id="unknown-voice",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P, voice="greta")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "voiceId 'greta' is not a voice of amazon.nova-2-sonic-v1:0",
        id="v1-only-voice-on-nova-2",
    ),
    pytest.param(
        [ev.session_start(None), ev.prompt_start(P, voice="olivia")],
        ev.NOVA_1,
        says.INVALID_INPUT,
        "voiceId 'olivia' is not a voice of amazon.nova-sonic-v1:0",
        id="nova-2-only-voice-on-v1",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P, rate=44100)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioOutputConfiguration.sampleRateHertz must be 8000, 16000 or 24000",
        id="output-rate-44100",
    ),
    pytest.param(
        [*opening(), ev.audio_start(P, "audio", rate=44100)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInputConfiguration.sampleRateHertz must be 8000, 16000 or 24000",
        id="input-rate-44100",
    ),
    pytest.param(
        [*opening(sensitivity=None), ev.text_start(P, "speech", role="SYSTEM_SPEECH")],
        ev.NOVA_1,
        says.INVALID_INPUT,
        "contentStart.role 'SYSTEM_SPEECH' is not one of ['ASSISTANT', 'SYSTEM', 'TOOL', 'USER']",
        id="v1-SYSTEM_SPEECH",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P), ev.text_start(P, "first", role="SYSTEM_SPEECH")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "the first content block must be TEXT with role SYSTEM",
        id="SYSTEM_SPEECH-before-SYSTEM",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P), ev.text_start(P, "first", role="USER")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "the first content block must be TEXT with role SYSTEM",
        id="first-block-USER",
    ),
    pytest.param(
        [ev.session_start(), ev.prompt_start(P), ev.audio_start(P, "audio")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "the first content block must be TEXT with role SYSTEM",
        id="first-block-AUDIO",
    ),
    pytest.param(
        [flat_session_start()],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "the flat v1 endpointingSensitivity is not accepted by Nova 2",
        id="nova-2-flat-endpointingSensitivity",
    ),
    pytest.param(
        [ev.session_start("VERY_HIGH")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "endpointingSensitivity must be HIGH, MEDIUM or LOW",
        id="nested-endpointingSensitivity-unknown",
    ),
    pytest.param(
        [ev.session_start("high")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "endpointingSensitivity must be HIGH, MEDIUM or LOW",
        id="nested-endpointingSensitivity-lowercase",
    ),
    pytest.param(
        [*opening(), ev.text_start(P, "history-0", role="ASSISTANT")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "chat history must start with a USER message",
        id="history-starts-with-ASSISTANT",
    ),
    pytest.param(
        [*opening(), ev.text_start(P, "history-0", role="USER"), ev.text_input(P, "history-0", "x" * 1025)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "textInput is 1025 bytes, over 1024",
        id="textInput-1025-bytes",
    ),
    pytest.param(
        [*opening(), ev.text_start(P, "history-0", role="USER"), ev.text_input(P, "history-0", "é" * 513)],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "textInput is 1026 bytes, over 1024",
        id="textInput-513-chars-1026-bytes",
    ),
    pytest.param(
        [*opening(), ev.text_start(P, "history-0", role="USER"), ev.audio_input(P, "audio", tone(0.032))],
        ev.NOVA_2,
        says.HISTORY_BEFORE_AUDIO,
        "audioInput while a TEXT block is open",
        id="audioInput-inside-history-block",
    ),
    pytest.param(
        [
            *with_audio(),
            ev.audio_input(P, "audio", silence(0.032)),
            ev.text_start(P, "typed", role="USER", interactive=True),
            ev.audio_input(P, "audio", silence(0.032)),
        ],
        ev.NOVA_2,
        says.HISTORY_BEFORE_AUDIO,
        "audioInput while a TEXT block is open",
        id="audioInput-inside-cross-modal-text-block",
    ),
    pytest.param(
        [ev.session_start(), prompt_with_tool_schema({"type": "object", "properties": {}})],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "tool getWeather: inputSchema.json must be a JSON string",
        id="tool-schema-not-a-string",
    ),
    pytest.param(
        [ev.session_start(), prompt_with_tool_schema("{type: object")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "tool getWeather: inputSchema.json is not valid JSON",
        id="tool-schema-not-json",
    ),
    pytest.param(
        [*with_audio(), ev.tool_result(P, "tool-result", "no-such-tool-use", '{"temp": 20}')[0]],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "toolUseId 'no-such-tool-use' does not answer a pending toolUse",
        id="toolResult-for-unknown-toolUseId",
    ),
    pytest.param(
        [*opening(), ev.text_start("q", "history-0", role="USER")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "contentStart.promptName does not match promptStart",
        id="wrong-promptName",
    ),
    pytest.param(
        [*with_audio(), ev.audio_input("q", "audio", silence(0.032))],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInput.promptName does not match promptStart",
        id="wrong-promptName-on-audio",
    ),
    pytest.param(
        [*with_audio(), ev.content_end(P, "audio"), ev.prompt_end(P), ev.audio_start(P, "audio-2")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "contentStart after promptEnd",
        id="contentStart-after-promptEnd",
    ),
    pytest.param(
        [*with_audio(), ev.content_end(P, "audio"), ev.prompt_end(P), ev.audio_input(P, "audio", silence(0.032))],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInput after promptEnd",
        id="audioInput-after-promptEnd",
    ),
    pytest.param(
        [*with_audio(), audio_content("%%% this is not base64 %%%")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInput.content is not base64",
        id="audioInput-not-base64",
    ),
    pytest.param(
        [*with_audio(), ev.audio_input(P, "audio", b"\x01\x02\x03")],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInput holds an odd number of bytes",
        id="audioInput-odd-byte-count",
    ),
    pytest.param(
        [*opening(), ev.audio_input(P, "audio", silence(0.032))],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "audioInput outside an open AUDIO block",
        id="audioInput-without-AUDIO-block",
    ),
    pytest.param(
        [{"event": {"audioStart": {"promptName": P}}}],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "unknown input event 'audioStart'",
        id="unknown-event",
    ),
    pytest.param(
        [*with_audio(), {"event": {"connectionEnd": {}}}],
        ev.NOVA_2,
        says.INVALID_INPUT,
        "unknown input event 'connectionEnd'",
        id="connectionEnd-before-promptEnd",
    ),
    pytest.param(
        [{"sessionStart": {}}],
        ev.NOVA_2,
        says.INVALID_INPUT,
        'an input must be {"event": {<one event name>: {...}}}',
        id="not-an-event-envelope",
    ),
]


@pytest.mark.parametrize(("events", "model_id", "message", "rule"), CASES)
async def test_a_broken_rule_ends_the_stream_at_that_event(
    emulator: Emulator, connect: ClientFactory, events: list[Event], model_id: str, message: str, rule: str
) -> None:
    client = await connect(model_id=model_id)
    error = await rejected(client, events)
    assert error.message == message
    recording = emulator.recordings[0]
    assert recording.error == ("validationException", message, rule)
    assert recording.outcome == "error"
    # The log says which rule fired, as the client's message does not (issue 16, item 7).
    assert any(line.endswith(f" validationException: {message} [{rule}]") for line in recording.log), recording.log
    # Every event before the last was accepted: the last one is the one that broke the rule.
    assert [names(e) for e in recording.input_events[: len(events) - 1]] == [names(e) for e in events[:-1]]
    assert "completionStart" not in client.names()
    assert emulator.rejected == []


def ends_with_audio(case: Any) -> bool:
    events: list[Event] = case.values[0]
    return names(events[-1]) == ["audioInput"]


AUDIO_CASES = [case for case in CASES if ends_with_audio(case)]


@pytest.mark.parametrize(("events", "model_id", "message", "rule"), AUDIO_CASES)
async def test_a_rejected_audio_input_is_recorded(
    emulator: Emulator, connect: ClientFactory, events: list[Event], model_id: str, message: str, rule: str
) -> None:
    # StreamRecording.input_events holds "every event received, in order", the one that broke a rule included.
    client = await connect(model_id=model_id)
    await rejected(client, events)
    recording = emulator.recordings[0]
    assert recording.error == ("validationException", message, rule)
    assert [names(e) for e in recording.input_events] == [names(e) for e in events]


async def test_chat_history_over_40_kb_is_rejected_when_audio_starts(
    emulator: Emulator, connect: ClientFactory
) -> None:
    client = await connect()
    # 41 blocks of 1000 bytes: each block is within the 1 KB textInput limit, the whole is 41000 > 40960 bytes.
    await client.send_all([*opening(), *history(41, 1000)])
    await asyncio.sleep(0.3)
    assert not client.closed.is_set(), f"history rejected before the AUDIO contentStart: {client.error!r}"
    assert emulator.recordings[0].error is None
    error = await rejected(client, [ev.audio_start(P, "audio")])
    assert error.message == says.INVALID_INPUT
    recording = emulator.recordings[0]
    assert recording.error == ("validationException", says.INVALID_INPUT, "chat history is 41000 bytes, over 40960")
    assert recording.event_names()[-1] == "contentStart"
    assert recording.input_events[-1] == ev.audio_start(P, "audio")


async def asked_for_the_weather(
    make_emulator: EmulatorFactory, connect: ClientFactory, model_id: str = ev.NOVA_2
) -> tuple[Emulator, SonicTestClient, str]:
    """A stream whose first spoken turn asks for getWeather: the emulator, the client, and the toolUseId."""
    scenario = Scenario(turns=(Turn(assistant="It is {result[temp]} degrees.", tool=ToolCall("getWeather", {})),))
    emulator = await make_emulator(scenario=scenario)
    client = await connect(emulator, model_id=model_id)
    await client.start_conversation(P, tools=[WEATHER], sensitivity="HIGH" if model_id != ev.NOVA_1 else None)
    await client.stream_audio(tone(0.5) + silence(0.4))
    tool_use = (await client.wait_for_name("toolUse"))["event"]["toolUse"]
    assert tool_use["toolName"] == "getWeather"
    return emulator, client, str(tool_use["toolUseId"])


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("sunny, 20 degrees", id="not-json"),
        pytest.param({"temp": 20}, id="object-not-string"),
        pytest.param('{"temp": NaN}', id="nan-is-not-json"),
        pytest.param('{"temp": -Infinity}', id="infinity-is-not-json"),
    ],
)
async def test_a_tool_result_that_is_not_a_json_string_is_a_parse_error(
    make_emulator: EmulatorFactory, connect: ClientFactory, content: Any
) -> None:
    emulator, client, tool_use_id = await asked_for_the_weather(make_emulator, connect)
    start, result, _ = ev.tool_result(P, "tool-result", tool_use_id, "{}")
    result["event"]["toolResult"]["content"] = content
    error = await rejected(client, [start, result])
    assert error.message == says.TOOL_RESULT_PARSE
    recording = emulator.recordings[0]
    assert recording.error == (
        "validationException",
        says.TOOL_RESULT_PARSE,
        "toolResult.content is not a JSON string",
    )
    assert recording.turns[0].tool_result is None


async def test_on_v1_a_tool_result_after_its_turn_was_interrupted_is_refused(
    make_emulator: EmulatorFactory, connect: ClientFactory
) -> None:
    emulator, client, tool_use_id = await asked_for_the_weather(make_emulator, connect, ev.NOVA_1)
    await client.stream_audio(tone(0.3))  # the user speaks again while the tool runs: the turn is interrupted
    ended = await client.wait_for_name("completionEnd")
    assert ended["event"]["completionEnd"]["stopReason"] == "INTERRUPTED"
    error = await rejected(client, ev.tool_result(P, "late-result", tool_use_id, '{"temp": 20}'))
    assert error.message == says.INVALID_INPUT
    recording = emulator.recordings[0]
    assert recording.error == (
        "validationException",
        says.INVALID_INPUT,
        f"toolUseId {tool_use_id!r} does not answer a pending toolUse",
    )
    assert recording.turns[0].interrupted
    assert recording.turns[0].tool_result is None


async def test_on_nova_2_a_tool_result_after_its_turn_was_interrupted_is_answered_after_the_next_turn(
    make_emulator: EmulatorFactory, connect: ClientFactory
) -> None:
    emulator, client, tool_use_id = await asked_for_the_weather(make_emulator, connect)
    await client.stream_audio(tone(0.3) + silence(0.4))  # the user asks something else while the tool runs
    await client.wait_for(lambda e: e["event"].get("completionEnd", {}).get("stopReason") == "END_TURN")
    await client.send(*ev.tool_result(P, "late-result", tool_use_id, '{"temp": 20}'))
    await client.stream_audio(silence(0.3))
    await client.wait_for(lambda e: "It is 20 degrees." in json.dumps(e))
    ends = [p["stopReason"] for p in client.payloads("completionEnd")]
    assert ends[:2] == ["INTERRUPTED", "END_TURN"]
    recording = emulator.recordings[0]
    assert recording.error is None
    assert [(t.index, t.source, t.tool_use_id, t.tool_result) for t in recording.turns] == [
        (0, "speech", tool_use_id, None),
        (1, "speech", None, None),
        (0, "tool", tool_use_id, '{"temp": 20}'),
    ]


async def test_a_tool_result_event_of_exactly_1000000_bytes_is_taken(
    make_emulator: EmulatorFactory, connect: ClientFactory
) -> None:
    emulator, client, tool_use_id = await asked_for_the_weather(make_emulator, connect)
    start, result, end = ev.tool_result(P, "big-result", tool_use_id, '{"temp": 20, "pad": ""}')
    pad = 1_000_000 - len(json.dumps(result).encode())  # each "x" adds one byte, escaped or not
    result["event"]["toolResult"]["content"] = '{"temp": 20, "pad": "' + "x" * pad + '"}'
    assert len(json.dumps(result).encode()) == 1_000_000
    await client.send(start, result, end)
    await client.wait_for(lambda e: "It is 20 degrees." in json.dumps(e))
    recording = emulator.recordings[0]
    assert recording.error is None
    assert recording.turns[0].tool_result == result["event"]["toolResult"]["content"]


# The API takes events of at most 1,000,000 bytes (BidirectionalInputPayloadPart.bytes); this one is just over.
OVERSIZED_EVENT = json.dumps(ev.text_input(P, "system", "x" * 1_000_000)).encode()


@pytest.mark.parametrize(
    ("payload", "rule"),
    [
        pytest.param(b"\xff\xfe\x00 garbage", "malformed event stream: chunk payload is not base64 JSON", id="garbage"),
        pytest.param(b"[1, 2, 3]", "malformed event stream: the event is not a JSON object", id="json-array"),
        pytest.param(
            OVERSIZED_EVENT,
            f"the event is {len(OVERSIZED_EVENT)} bytes, over the 1000000 an input event may hold",
            id="event-over-1000000-bytes",
        ),
    ],
)
async def test_a_chunk_that_is_not_a_json_event_is_invalid_input(
    emulator: Emulator, connect: ClientFactory, payload: bytes, rule: str
) -> None:
    client = await connect()
    await client.send_all(opening())
    await client.send_raw(payload)
    error = await client.wait_closed()
    assert isinstance(error, ValidationException), repr(error)
    assert error.message == says.INVALID_INPUT
    recording = emulator.recordings[0]
    assert recording.error is not None
    member, message, detail = recording.error
    assert (member, message) == ("validationException", says.INVALID_INPUT)
    assert detail.startswith(rule), detail
    assert len(recording.input_events) == len(opening())


async def test_an_unknown_model_id_is_refused_at_connect(emulator: Emulator, connect: ClientFactory) -> None:
    client = await connect(model_id="amazon.nova-3-sonic-v1:0")
    error = await client.wait_closed()
    assert isinstance(error, ValidationException), repr(error)
    assert error.message == says.UNKNOWN_MODEL
    assert error.response_metadata.http_status_code == 400
    assert emulator.rejected == [(400, "ValidationException", says.UNKNOWN_MODEL)]
    assert emulator.recordings == []


async def test_the_flat_endpointing_sensitivity_is_accepted_by_v1(emulator: Emulator, connect: ClientFactory) -> None:
    client = await connect(model_id=ev.NOVA_1)
    await client.send(flat_session_start(), ev.prompt_start(P))
    await client.send_all(ev.text_block(P, "system", SYSTEM))
    await client.send(ev.audio_start(P, "audio"))
    await client.stream_audio(tone(0.5) + silence(0.4))
    await play_out(client)
    await client.end(P)
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert recording.model_id == ev.NOVA_1
    assert (recording.outcome, recording.error) == ("completed", None)
    assert len(recording.turns) == 1


async def test_connection_end_after_prompt_end_ends_the_session_as_strands_sends_it(
    emulator: Emulator, connect: ClientFactory
) -> None:
    # Strands' BidiAgent closes with promptEnd then connectionEnd (no sessionEnd), an event the AWS docs do not list.
    client = await connect()
    await client.send(ev.session_start("MEDIUM"), ev.prompt_start(P))
    await client.send_all(ev.text_block(P, "system", SYSTEM))
    await client.send(ev.audio_start(P, "audio"))
    await client.stream_audio(tone(0.5) + silence(0.4))
    await play_out(client)
    await client.send(ev.content_end(P, "audio"), ev.prompt_end(P), {"event": {"connectionEnd": {}}})
    await client.close()
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert (recording.outcome, recording.error) == ("completed", None)
    assert recording.event_names()[-2:] == ["promptEnd", "connectionEnd"]
    assert len(recording.turns) == 1


async def test_a_well_formed_conversation_at_the_limits_is_not_rejected(
    emulator: Emulator, connect: ClientFactory
) -> None:
    client = await connect()
    # History of exactly 40 KB in 40 textInputs of exactly 1 KB, a tool declared, then a spoken turn.
    await client.send(ev.session_start("MEDIUM"), ev.prompt_start(P, voice="tiffany", tools=[WEATHER]))
    await client.send_all(ev.text_block(P, "system", SYSTEM))
    await client.send_all(history(40, 1024))
    await client.send(ev.audio_start(P, "audio"))
    pcm = tone(0.5) + silence(0.4)
    await client.stream_audio(pcm)
    await play_out(client)
    await client.end(P)
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert (recording.outcome, recording.error) == ("completed", None)
    assert emulator.rejected == []
    assert bytes(recording.user_audio)[: len(pcm)] == pcm
    assert client.audio_out() == bytes(recording.assistant_audio)
    assert recording.event_names()[-3:] == ["contentEnd", "promptEnd", "sessionEnd"]
    assert recording.input_events[1] == ev.prompt_start(P, voice="tiffany", tools=[WEATHER])
