"""Property tests of `novabridge.sonic.wire` where bytes enter: the output parser and the input event builders.

The parser is the trust boundary of the service's output: whatever arrives, it returns typed events whose fields
have their declared types, or raises `ProtocolError` (which the session reports as a non-fatal Error event); an
event it refused leaves no trace in what it parses next. The builders give JSON the service takes, within its
documented limits, or refuse with `InvalidInput`. Pure Python: runs on 3.11 and 3.12.
"""

import base64
import contextlib
import copy
import json
import typing
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from novabridge import InvalidInput
from novabridge.events import (
    _EVENT_TYPES,
    AudioOut,
    Error,
    Interrupted,
    Reconnecting,
    Renewed,
    SonicEvent,
    Stage,
    ToolCall,
    Transcript,
    TurnEnd,
    Usage,
    event_from_json,
    event_to_json,
)
from novabridge.exceptions import ProtocolError
from novabridge.sonic import wire
from novabridge.sonic.models import NOVA_2_SONIC
from novabridge.sonic.wire import EVENT_LIMIT_BYTES, TEXT_INPUT_LIMIT_BYTES, OutputParser
from support.fuzzing import BOUNDARY_FUZZ

Body = dict[str, Any]

PROPERTY = BOUNDARY_FUZZ
FEW = settings(PROPERTY, max_examples=40)

# ------------------------------------------------------------------------------------------------ strategies

ODD_CHARACTERS = ["\x00", "\ufeff", "\u202e", "\u0301", "\U0001f600", "é", "€", "\ud800", "\udfff", "\n", '"', "\\"]
"""NUL, a BOM, right-to-left override, a combining accent, 4-, 2- and 3-byte UTF-8, lone surrogates, escapes."""

odd_text = st.text(st.sampled_from(ODD_CHARACTERS) | st.characters(), max_size=24)
huge_text = st.builds(
    lambda piece, n: piece * n, st.sampled_from(["x", "€", "\U0001f600", "\ud800"]), st.integers(0, 70_000)
)
strings = odd_text | huge_text | st.sampled_from(["", " ", "null", "{}", "[", wire.BARGE_IN_MARKER, "INTERRUPTED"])
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and the infinities too: Python's json reads them
    | strings
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(odd_text, children, max_size=4),
    max_leaves=10,
)
deep_json = st.integers(1, 100_000).map(lambda depth: "[" * depth + "]" * depth)
"""Nesting deeper than Python's recursion limit, where json.loads raises RecursionError (not a ValueError)."""

ids = st.sampled_from(["c1", "c2", "c3"])
turns = st.sampled_from(["t1", "t2"])
good_pcm = st.binary(max_size=64).map(lambda b: b[: len(b) // 2 * 2])
bad_base64 = st.sampled_from(["!!!", "QQ", "QQ=", "Q", "é", "QUFB\n", "AAA=AAA=", " QUFB"]) | odd_text


def _documented_payload(name: str, draw: st.DrawFn) -> Body:
    """One output event as the user guides document it (v1 "Handling output events", Nova 2)."""
    common: Body = {"sessionId": "s", "promptName": "p", "completionId": draw(turns)}
    content = draw(ids)
    if name == "contentStart":
        kind = draw(st.sampled_from(["TEXT", "AUDIO", "TOOL"]))
        stage = draw(st.sampled_from(["SPECULATIVE", "FINAL"]))
        payload = {
            **common,
            "contentId": content,
            "type": kind,
            "role": draw(st.sampled_from(["USER", "ASSISTANT", "TOOL"])),
            "additionalModelFields": json.dumps({"generationStage": stage}),
        }
        if kind == "AUDIO":
            payload["audioOutputConfiguration"] = {"mediaType": "audio/lpcm", "sampleRateHertz": 24000}
        return payload
    if name == "textOutput":
        text = draw(st.text(max_size=12) | st.just(wire.BARGE_IN_MARKER))
        return {**common, "contentId": content, "role": draw(st.sampled_from(["USER", "ASSISTANT"])), "content": text}
    if name == "audioOutput":
        return {**common, "contentId": content, "content": base64.b64encode(draw(good_pcm)).decode()}
    if name == "toolUse":
        tool_input = draw(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
        return {
            **common,
            "contentId": content,
            "toolUseId": draw(st.sampled_from(["u1", "u2"])),
            "toolName": "lookup",
            "content": json.dumps(tool_input),
        }
    if name == "contentEnd":
        stop = draw(st.sampled_from(["END_TURN", "PARTIAL_TURN", "INTERRUPTED", "TOOL_USE"]))
        return {**common, "contentId": content, "type": "TEXT", "stopReason": stop}
    if name == "usageEvent":
        return {
            **common,
            "totalInputTokens": draw(st.integers(0, 10**6)),
            "totalOutputTokens": draw(st.integers(0, 99)),
        }
    if name == "completionEnd":
        return {**common, "stopReason": "END_TURN"}
    return common  # completionStart


EVENT_NAMES = [
    "contentStart",
    "textOutput",
    "audioOutput",
    "toolUse",
    "contentEnd",
    "completionStart",
    "completionEnd",
    "usageEvent",
]


@st.composite
def documented_events(draw: st.DrawFn) -> Body:
    name = draw(st.sampled_from(EVENT_NAMES))
    return {"event": {name: _documented_payload(name, draw)}}


@st.composite
def plausible_wrong_events(draw: st.DrawFn) -> Body:
    """A documented event with fields missing, of the wrong type, huge or odd, bad base64, or inner JSON gone bad."""
    name = draw(st.sampled_from([*EVENT_NAMES, "unknownEvent"]))
    payload = _documented_payload(name, draw)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(payload) or ["contentId"]) | st.sampled_from(["content", "role", "toolName"]))
        action = draw(st.sampled_from(["delete", "value", "bad-base64", "bad-inner-json", "deep", "odd-config"]))
        if action == "delete":
            payload.pop(key, None)
        elif action == "value":
            payload[key] = draw(json_values)
        elif action == "bad-base64":
            payload["content"] = draw(bad_base64)
        elif action == "bad-inner-json":
            inner = draw(strings | json_values.map(json.dumps))
            payload[draw(st.sampled_from(["additionalModelFields", "content"]))] = inner
        elif action == "deep":
            payload[draw(st.sampled_from(["additionalModelFields", "content"]))] = draw(deep_json)
        else:
            payload["audioOutputConfiguration"] = draw(
                json_values | st.fixed_dictionaries({"sampleRateHertz": json_values})
            )
    return {"event": {name: payload}}


def _garbage_id(body: Body) -> Body:
    """``body`` with its ids moved to a namespace of their own, so that it cannot touch the valid events' blocks."""
    ((name, payload),) = body["event"].items()
    moved = {
        key: f"garbage-{value}" if key in ("contentId", "completionId") and isinstance(value, str) else value
        for key, value in payload.items()
    }
    return {"event": {name: moved}}


garbage = (
    st.binary(max_size=80)
    | json_values.map(json.dumps)
    | deep_json
    | plausible_wrong_events().map(_garbage_id)
    | json_values.map(lambda value: {"event": value})
)

# ------------------------------------------------------------------------------------------------ helpers

_HINTS = {cls: typing.get_type_hints(cls) for cls in typing.get_args(SonicEvent)}


def assert_well_typed(event: SonicEvent) -> None:
    """``event`` holds what its class declares: the consumers (history, tools, the host) rely on it."""
    assert type(event) in _HINTS, event
    for field in fields(event):
        value = getattr(event, field.name)
        expected = typing.get_origin(_HINTS[type(event)][field.name]) or _HINTS[type(event)][field.name]
        assert isinstance(value, expected), f"{type(event).__name__}.{field.name} = {value!r}"
        if isinstance(value, str):
            value.encode()  # valid UTF-8: history and the host's JSON encode it
    if isinstance(event, AudioOut):
        assert event.rate > 0
        assert len(event.pcm) % 2 == 0


def parse_or_refuse(parser: OutputParser, raw: bytes | str | Body) -> list[SonicEvent] | None:
    """The events of ``raw``, or None when the parser refused it with ProtocolError (nothing else may escape)."""
    try:
        events = parser.parse(raw)
    except ProtocolError:
        return None
    for event in events:
        assert_well_typed(event)
    return events


def parser_state(parser: OutputParser) -> tuple[dict[str, Any], set[str]]:
    return copy.deepcopy(parser._blocks), set(parser._interrupted)


# ------------------------------------------------------------------------------------------------ the parser


@PROPERTY
@given(raw=st.binary(max_size=200))
def test_the_parser_takes_any_bytes(raw: bytes) -> None:
    parse_or_refuse(OutputParser(), raw)


@PROPERTY
@given(value=json_values)
def test_the_parser_takes_any_json_value(value: Any) -> None:
    parser = OutputParser()
    parse_or_refuse(parser, json.dumps(value))
    parse_or_refuse(parser, json.dumps({"event": value}).encode())
    if isinstance(value, dict):
        parse_or_refuse(parser, {"event": value})


@FEW
@given(raw=deep_json)
def test_the_parser_refuses_nesting_deeper_than_python_recurses(raw: str) -> None:
    parse_or_refuse(OutputParser(), raw)
    parse_or_refuse(
        OutputParser(), f'{{"event": {{"toolUse": {{"toolUseId": "u", "toolName": "n", "content": "{raw}"}}}}}}'
    )


@PROPERTY
@given(body=plausible_wrong_events())
def test_a_refused_event_leaves_no_trace(body: Body) -> None:
    parser = OutputParser()
    parser.parse({"event": {"contentStart": {"contentId": "open", "type": "AUDIO", "completionId": "t"}}})
    before = parser_state(parser)
    for raw in (body, json.dumps(body), json.dumps(body).encode()):
        if parse_or_refuse(parser, raw) is None:
            assert parser_state(parser) == before
        before = parser_state(parser)


@PROPERTY
@given(
    valid=st.lists(documented_events(), max_size=12),
    noise=st.lists(st.tuples(st.integers(0, 12), garbage), max_size=8),
)
def test_garbage_between_valid_events_does_not_change_what_they_yield(
    valid: list[Body], noise: list[tuple[int, Any]]
) -> None:
    alone = OutputParser()
    expected = [event for body in valid for event in alone.parse(body)]
    for event in expected:
        assert_well_typed(event)

    mixed = OutputParser()
    got: list[SonicEvent] = []
    for index in range(len(valid) + 1):
        for _, raw in (item for item in noise if item[0] == index):
            parse_or_refuse(mixed, raw)  # what garbage yields is its own (its ids are apart); it must not raise
        if index < len(valid):
            got += mixed.parse(valid[index])
    assert got == expected


def test_the_documented_turn_yields_its_typed_events() -> None:
    parser = OutputParser()
    ids = {"completionId": "t1"}
    pcm = b"\x01\x00\x02\x00"
    out: list[SonicEvent] = []
    for body in [
        {"completionStart": {**ids}},
        {
            "contentStart": {
                **ids,
                "contentId": "a",
                "type": "TEXT",
                "role": "ASSISTANT",
                "additionalModelFields": '{"generationStage":"SPECULATIVE"}',
            }
        },
        {"textOutput": {**ids, "contentId": "a", "role": "ASSISTANT", "content": "Hello."}},
        {"contentEnd": {**ids, "contentId": "a", "stopReason": "PARTIAL_TURN"}},
        {
            "contentStart": {
                **ids,
                "contentId": "b",
                "type": "AUDIO",
                "role": "ASSISTANT",
                "audioOutputConfiguration": {"sampleRateHertz": 16000},
            }
        },
        {"audioOutput": {**ids, "contentId": "b", "content": base64.b64encode(pcm).decode()}},
        {"contentEnd": {**ids, "contentId": "b", "stopReason": "INTERRUPTED"}},
        {"toolUse": {**ids, "contentId": "c", "toolUseId": "u", "toolName": "f", "content": '{"x": 1}'}},
        {"usageEvent": {**ids, "totalInputTokens": 3, "totalOutputTokens": 4}},
        {"completionEnd": {**ids, "stopReason": "END_TURN"}},
    ]:
        out += parser.parse({"event": body})
    assert out == [
        Transcript("ASSISTANT", "Hello.", Stage.SPECULATIVE, "t1"),
        AudioOut(pcm, 16000, "t1"),
        Interrupted("t1"),
        ToolCall("u", "f", {"x": 1}, "t1"),
        Usage(3, 4, "t1"),
        TurnEnd("t1", "END_TURN"),
    ]


@pytest.mark.parametrize(
    "body",
    [
        # Each of these once escaped as another exception, or yielded an event whose fields lie about their types.
        '{"event": {"contentStart": {"contentId": "c", "type": "TEXT", "additionalModelFields": "[1]"}}}',
        '{"event": {"contentStart": {"contentId": "c", "type": "AUDIO", "audioOutputConfiguration": 5}}}',
        json.dumps(
            {
                "event": {
                    "contentStart": {
                        "contentId": "c",
                        "type": "AUDIO",
                        "audioOutputConfiguration": {"sampleRateHertz": 0},
                    }
                }
            }
        ),
        '{"event": {"contentStart": {"contentId": ["c"], "type": "TEXT"}}}',
        '{"event": {"contentStart": {"contentId": "c", "type": 7}}}',
        '{"event": {"usageEvent": {"totalInputTokens": 1e400}}}',
        '{"event": {"usageEvent": {"totalOutputTokens": -Infinity}}}',
        '{"event": {"toolUse": {"toolUseId": [1], "toolName": "f"}}}',
        '{"event": {"toolUse": {"toolUseId": "u", "toolName": 2}}}',
        '{"event": {"textOutput": {"contentId": "c", "content": "x", "role": 5}}}',
        '{"event": {"textOutput": {"contentId": "c", "content": "x\\ud800"}}}',
        '{"event": {"textOutput": {"contentId": "c", "content": "x", "completionId": {"a": 1}}}}',
        '{"event": {"completionEnd": {"stopReason": ["END_TURN"]}}}',
        "[" * 100_000,
        '{"event": {"contentStart": {"contentId": "c", "type": "TEXT", "additionalModelFields": "'
        + "[" * 10_000
        + '"}}}',
    ],
)
def test_malformed_events_found_by_the_properties_are_refused(body: str) -> None:
    with pytest.raises(ProtocolError):
        OutputParser().parse(body)


# ------------------------------------------------------------------------------------------------ typed events as JSON

typed_events = st.one_of(
    st.builds(Transcript, odd_text, odd_text, st.sampled_from(Stage), odd_text),
    st.builds(Interrupted, odd_text, st.integers(0, 2**62)),
    st.builds(ToolCall, odd_text, odd_text, st.dictionaries(odd_text, json_values, max_size=3), odd_text),
    st.builds(TurnEnd, odd_text, odd_text),
    st.builds(Usage, st.integers(0, 2**62), st.integers(0, 2**62), odd_text),
    st.builds(Renewed, st.integers(0, 2**31)),
    st.builds(Reconnecting, odd_text, st.integers(0, 100)),
    st.builds(Error, odd_text, odd_text, st.booleans()),
)


@PROPERTY
@given(event=typed_events)
def test_typed_events_round_trip_through_json(event: SonicEvent) -> None:
    data = event_to_json(event)
    json.loads(data)
    back = event_from_json(data)
    if isinstance(event, ToolCall):  # NaN is not equal to itself: compare as JSON
        assert event_to_json(back) == data
    else:
        assert back == event


@PROPERTY
@given(value=json_values, kind=st.sampled_from(sorted(_EVENT_TYPES)), raw=st.binary(max_size=60))
def test_event_from_json_refuses_what_is_not_a_typed_event(value: Any, kind: str, raw: bytes) -> None:
    named = {"type": kind, **value} if isinstance(value, dict) else {"type": kind, "value": value}
    for data in (json.dumps(value).encode(), json.dumps(named).encode(), raw):
        with contextlib.suppress(ProtocolError):
            event_from_json(data)


def test_event_from_json_refuses_deep_nesting() -> None:
    with pytest.raises(ProtocolError):
        event_from_json(b"[" * 100_000)


# ------------------------------------------------------------------------------------------------ input builders

utf8_boundary_text = st.text(st.sampled_from(["a", "\x00", "é", "€", "\U0001f600"]), max_size=300)
"""Characters of 1 to 4 UTF-8 bytes, so that a piece boundary often falls inside one."""


def wire_size(body: Body) -> int:
    """The event's size as the session sends it (json.dumps, ASCII escapes)."""
    return len(json.dumps(body).encode())


def strict_json_round_trip(body: Body) -> None:
    text = json.dumps(body, allow_nan=False)
    assert json.loads(text) == body


@PROPERTY
@given(text=utf8_boundary_text | odd_text, limit=st.integers(4, 40) | st.just(TEXT_INPUT_LIMIT_BYTES))
def test_split_utf8_pieces_fit_and_join_back(text: str, limit: int) -> None:
    try:
        pieces = wire.split_utf8(text, limit)
    except InvalidInput:
        with pytest.raises(UnicodeEncodeError):
            text.encode()
        return
    assert "".join(pieces) == text
    assert all(len(piece.encode()) <= limit for piece in pieces)
    assert all(pieces) or pieces == [""]


@FEW
@given(text=utf8_boundary_text, limit=st.integers(-3, 3))
def test_split_utf8_refuses_a_limit_smaller_than_a_character(text: str, limit: int) -> None:
    with pytest.raises(ValueError, match="at least 4"):
        wire.split_utf8(text, limit)


@PROPERTY
@given(text=utf8_boundary_text | odd_text | huge_text, role=st.sampled_from(["SYSTEM", "USER", "ASSISTANT"]))
def test_text_blocks_are_json_within_the_text_input_limit(text: str, role: str) -> None:
    try:
        events = wire.text_block("p", "c", text, role=role)
    except InvalidInput:
        with pytest.raises(UnicodeEncodeError):
            text.encode()
        return
    for body in events:
        strict_json_round_trip(body)
        assert wire_size(body) <= EVENT_LIMIT_BYTES
    inputs = [body["event"]["textInput"]["content"] for body in events[1:-1]]
    assert "".join(inputs) == text
    assert all(len(piece.encode()) <= TEXT_INPUT_LIMIT_BYTES for piece in inputs)


@PROPERTY
@given(text=utf8_boundary_text | odd_text | huge_text | json_values)
def test_check_text_takes_what_one_text_input_holds_or_refuses(text: Any) -> None:
    try:
        checked = wire.check_text(text, NOVA_2_SONIC)
    except InvalidInput:
        return
    assert checked == text
    (content,) = [b["event"]["textInput"]["content"] for b in wire.text_block("p", "c", checked, role="USER")[1:-1]]
    assert content == text


@PROPERTY
@given(result=json_values | odd_text | json_values.map(json.dumps) | deep_json | huge_text, tool_use_id=json_values)
def test_tool_results_are_strict_json_within_one_event_or_refused(result: Any, tool_use_id: Any) -> None:
    try:
        content = wire.tool_result_content(result)
    except InvalidInput:
        return
    json.loads(content, parse_constant=_refuse)  # strict JSON, as the service parses it
    try:
        use_id = wire.check_tool_use_id(tool_use_id)
    except InvalidInput:
        use_id = "u"
    events = wire.tool_result("p", "c", use_id, content)
    for body in events:
        strict_json_round_trip(body)
    assert wire_size(events[1]) <= EVENT_LIMIT_BYTES


def _refuse(name: str) -> None:
    raise AssertionError(f"{name} is not strict JSON")


@PROPERTY
@given(text=odd_text, pcm=st.binary(max_size=300))
def test_the_other_builders_give_strict_json(text: str, pcm: bytes) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        text = "p"
    bodies = [
        wire.session_start(max_tokens=1024, top_p=0.5, temperature=0.1, endpointing="HIGH"),
        wire.prompt_start(text, voice="matthew", tools=[{"name": text, "description": text, "schema": {"a": text}}]),
        wire.audio_start(text, text),
        wire.audio_input(text, text, pcm),
        wire.content_end(text, text),
        wire.prompt_end(text),
        wire.session_end(),
    ]
    for body in bodies:
        strict_json_round_trip(body)
    assert base64.b64decode(bodies[3]["event"]["audioInput"]["content"], validate=True) == pcm


history_messages = st.lists(
    st.tuples(
        st.sampled_from(["USER", "ASSISTANT"]), utf8_boundary_text | st.sampled_from(["", " ", "\n"]) | huge_text
    ),
    max_size=8,
)


@PROPERTY
@given(messages=history_messages, limit=st.integers(-1, 50_000) | st.just(wire.HISTORY_LIMIT_BYTES))
def test_trimmed_history_fits_and_opens_with_a_user_message(messages: list[tuple[str, str]], limit: int) -> None:
    try:
        chosen = wire.trim_history(messages, limit)
    except InvalidInput:
        with pytest.raises(UnicodeEncodeError):
            "".join(text for _, text in messages).encode()
        return
    assert sum(len(text.encode()) for _, text in chosen) <= max(limit, 0)
    assert all(text.strip() for _, text in chosen), "a blank message would be an empty text block"
    if chosen:
        assert chosen[0][0] == "USER"
        # The newest messages that say something, the oldest of them possibly cut from its beginning.
        spoken = [message for message in messages if message[1].strip()]
        assert chosen[1:] == spoken[len(spoken) - len(chosen) + 1 :]
        for body in wire.text_block("p", "h", chosen[0][1], role=chosen[0][0]):
            strict_json_round_trip(body)


def test_history_whose_user_message_is_blank_does_not_open_with_the_assistant() -> None:
    assert wire.trim_history([("USER", "  "), ("ASSISTANT", "Hello.")]) == []
    assert wire.trim_history([("USER", "Hi"), ("ASSISTANT", ""), ("USER", "")]) == [("USER", "Hi")]
