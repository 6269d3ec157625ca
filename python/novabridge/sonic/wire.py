# SPDX-License-Identifier: Apache-2.0
"""Nova Sonic's wire: the input events the client sends, and the service's output events parsed into typed events.

Builders for the input events, checks of what the service would refuse, and `OutputParser`, which turns the
output events into `novabridge.events`. Pure Python with no SDK import, so the host (Python 3.11) checks input with the same rules the worker sends by. The
JSON shapes follow the AWS user guides (v1 "Handling input/output events", Nova 2 turn detection, cross-modal
input, chat history), listed with their URLs in docs/nova-sonic.md.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from novabridge.events import (
    AudioOut,
    Interrupted,
    SonicEvent,
    Stage,
    ToolCall,
    Transcript,
    TurnEnd,
    Usage,
)
from novabridge.exceptions import InvalidInput, ProtocolError
from novabridge.sonic.models import NOVA_2_5_SONIC, NOVA_2_SONIC, model_for

BARGE_IN_MARKER = '{ "interrupted" : true }'
"""The textOutput content by which the service announces a barge-in."""

TEXT_INPUT_LIMIT_BYTES = 1024
"""One ``textInput`` holds at most 1 KB of text (Nova 2 user guide, "Managing chat history")."""
HISTORY_LIMIT_BYTES = 40 * 1024
"""The chat history given to a new stream is at most 40 KB in all (Nova 2 user guide, "Managing chat history")."""
EVENT_LIMIT_BYTES = 1_000_000
"""The largest input event: ``BidirectionalInputPayloadPart.bytes`` has a maximum length of 1,000,000 (Amazon
Bedrock API Reference)."""
TOOL_RESULT_LIMIT_BYTES = EVENT_LIMIT_BYTES - 1024
"""The largest tool result, counted as it travels (its JSON text as the toolResult event's escaped content string):
the event's names and fields keep 1 KB of the event limit."""


# ------------------------------------------------------------------------------------------------ input checks
# What the service would reject in the caller's text and tool results is refused before it is sent: a rejected
# input ends the service's stream, so one bad call would otherwise cost the conversation its stream.


def check_text(text: object, model_id: str) -> str:
    """``text`` as Nova 2 cross-modal input (the user's typed text), checked against what the service takes.

    Raises:
        InvalidInput: the model is not Nova 2, the text is empty, not valid UTF-8, or longer than one textInput
            (`TEXT_INPUT_LIMIT_BYTES`).
    """
    if not model_for(model_id).cross_modal:
        raise InvalidInput(
            f"text input during a session needs a Nova 2 generation model ({NOVA_2_5_SONIC}, {NOVA_2_SONIC}); this "
            f"session runs {model_id}"
        )
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("text must be a non-empty string")
    size = len(_utf8(text, "the text"))
    if size > TEXT_INPUT_LIMIT_BYTES:
        raise InvalidInput(
            f"the text is {size} bytes of UTF-8, over the {TEXT_INPUT_LIMIT_BYTES} bytes Nova Sonic takes in one "
            "text input; send it as shorter messages"
        )
    return text


def check_tool_use_id(tool_use_id: object) -> str:
    """``tool_use_id`` if it can name a `ToolCall`.

    Raises:
        InvalidInput: not a non-empty string of valid UTF-8.
    """
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise InvalidInput("tool_use_id must be the id of a ToolCall")
    _utf8(tool_use_id, "tool_use_id")
    return tool_use_id


def tool_result_content(result: object) -> str:
    """The toolResult content for ``result``: strict JSON text, within `TOOL_RESULT_LIMIT_BYTES`.

    A string that is strict JSON text goes as it is; any other string is plain text and goes as
    ``{"result": text}``; anything else is serialised as JSON.

    Raises:
        InvalidInput: NaN or infinity, a value JSON cannot carry, a lone surrogate, or too large for one event.
    """
    if isinstance(result, str):
        _utf8(result, "the tool result")
        try:
            parsed = json.loads(result, parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            text = json.dumps({"result": result}, ensure_ascii=False)
        else:
            _strict_json(parsed)  # its escapes may still spell a lone surrogate
            text = result
    else:
        text = _strict_json(result)
    size = len(json.dumps(text))
    if size > TOOL_RESULT_LIMIT_BYTES:
        raise InvalidInput(
            f"the tool result is {size} bytes as it travels, over the {TOOL_RESULT_LIMIT_BYTES} that fit in one "
            f"toolResult event (the service takes at most {EVENT_LIMIT_BYTES} bytes per input event); return less"
        )
    return text


def _strict_json(value: object) -> str:
    """``value`` as JSON text that any strict parser reads back (RFC 8259), keeping non-ASCII characters."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInput(f"the tool result is not strict JSON: {error}") from None
    try:
        text.encode()
    except UnicodeEncodeError as error:
        raise InvalidInput(
            f"the tool result is not valid UTF-8: a string in it holds a lone surrogate {text[error.start]!r}"
        ) from None
    return text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as error:
        raise InvalidInput(
            f"{what} is not valid UTF-8: it holds a lone surrogate {text[error.start]!r} at index {error.start}"
        ) from None


# ------------------------------------------------------------------------------------------------ input builders


def event(name: str, body: dict[str, Any]) -> dict[str, Any]:
    """``{"event": {name: body}}``."""
    return {"event": {name: body}}


def session_start(
    *,
    max_tokens: int = 1024,
    top_p: float = 0.9,
    temperature: float = 0.7,
    endpointing: str | None = None,
) -> dict[str, Any]:
    """The sessionStart event; ``endpointing`` (HIGH/MEDIUM/LOW) goes in Nova 2's nested turnDetectionConfiguration."""
    body: dict[str, Any] = {
        "inferenceConfiguration": {"maxTokens": max_tokens, "topP": top_p, "temperature": temperature}
    }
    if endpointing is not None:
        body["turnDetectionConfiguration"] = {"endpointingSensitivity": endpointing}
    return event("sessionStart", body)


def prompt_start(
    prompt: str, *, voice: str, output_rate: int = 24000, tools: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The promptStart event, with text and audio output; ``tools`` are ``{"name", "description", "schema"}`` mappings."""
    body: dict[str, Any] = {
        "promptName": prompt,
        "textOutputConfiguration": {"mediaType": "text/plain"},
        "audioOutputConfiguration": {
            "mediaType": "audio/lpcm",
            "sampleRateHertz": output_rate,
            "sampleSizeBits": 16,
            "channelCount": 1,
            "voiceId": voice,
            "encoding": "base64",
            "audioType": "SPEECH",
        },
    }
    if tools:
        body["toolUseOutputConfiguration"] = {"mediaType": "application/json"}
        body["toolConfiguration"] = {
            "toolChoice": {"auto": {}},
            "tools": [
                {
                    "toolSpec": {
                        "name": tool["name"],
                        "description": tool["description"],
                        # The schema travels as a JSON string, not an object.
                        "inputSchema": {"json": json.dumps(tool["schema"])},
                    }
                }
                for tool in tools
            ],
        }
    return event("promptStart", body)


def text_block(prompt: str, content: str, text: str, *, role: str, interactive: bool = False) -> list[dict[str, Any]]:
    """A TEXT content block; text over the 1 KB per-textInput limit is split into several textInputs."""
    events = [
        event(
            "contentStart",
            {
                "promptName": prompt,
                "contentName": content,
                "type": "TEXT",
                "interactive": interactive,
                "role": role,
                "textInputConfiguration": {"mediaType": "text/plain"},
            },
        )
    ]
    events += [
        event("textInput", {"promptName": prompt, "contentName": content, "content": piece})
        for piece in split_utf8(text, TEXT_INPUT_LIMIT_BYTES)
    ]
    events.append(content_end(prompt, content))
    return events


def split_utf8(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes, never splitting a character.

    Raises:
        ValueError: ``limit`` is under 4 bytes, the longest UTF-8 character (a smaller one could not always be met).
        InvalidInput: ``text`` is not valid UTF-8 (a lone surrogate).
    """
    if limit < 4:
        # A character longer than the limit would be cut to nothing, again and again.
        raise ValueError(f"the limit must be at least 4 bytes (one UTF-8 character), got {limit}")
    pieces: list[str] = []
    data = _utf8(text, "the text")
    while len(data) > limit:
        cut = limit
        while cut > 0 and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        pieces.append(data[:cut].decode())
        data = data[cut:]
    pieces.append(data.decode())
    return pieces


def audio_start(prompt: str, content: str, *, input_rate: int = 16000) -> dict[str, Any]:
    """The USER AUDIO contentStart."""
    return event(
        "contentStart",
        {
            "promptName": prompt,
            "contentName": content,
            "type": "AUDIO",
            "interactive": True,
            "role": "USER",
            "audioInputConfiguration": {
                "mediaType": "audio/lpcm",
                "sampleRateHertz": input_rate,
                "sampleSizeBits": 16,
                "channelCount": 1,
                "audioType": "SPEECH",
                "encoding": "base64",
            },
        },
    )


def audio_input(prompt: str, content: str, pcm: bytes) -> dict[str, Any]:
    """One audioInput of s16le mono PCM."""
    return event(
        "audioInput", {"promptName": prompt, "contentName": content, "content": base64.b64encode(pcm).decode()}
    )


def tool_result(prompt: str, content: str, tool_use_id: str, result: Any) -> list[dict[str, Any]]:
    """A TOOL block answering ``tool_use_id``; the result travels as a JSON string."""
    text = result if isinstance(result, str) else json.dumps(result)
    return [
        event(
            "contentStart",
            {
                "promptName": prompt,
                "contentName": content,
                "interactive": False,
                "type": "TOOL",
                "role": "TOOL",
                "toolResultInputConfiguration": {
                    "toolUseId": tool_use_id,
                    "type": "TEXT",
                    "textInputConfiguration": {"mediaType": "text/plain"},
                },
            },
        ),
        event("toolResult", {"promptName": prompt, "contentName": content, "content": text}),
        content_end(prompt, content),
    ]


def content_end(prompt: str, content: str) -> dict[str, Any]:
    """The contentEnd of a block the client opened."""
    return event("contentEnd", {"promptName": prompt, "contentName": content})


def prompt_end(prompt: str) -> dict[str, Any]:
    """The promptEnd event."""
    return event("promptEnd", {"promptName": prompt})


def session_end() -> dict[str, Any]:
    """The sessionEnd event."""
    return event("sessionEnd", {})


def trim_history(messages: list[tuple[str, str]], limit_bytes: int = HISTORY_LIMIT_BYTES) -> list[tuple[str, str]]:
    """What a new stream may be given: the newest messages within ``limit_bytes``, starting with USER.

    The service wants the history to open with a USER message and to stay within 40 KB; older messages are dropped
    first, and a message that alone exceeds the budget is cut from its beginning. Blank messages are left out (an
    empty text block says nothing, and a blank USER message must not be what lets the history open with USER).

    Raises:
        InvalidInput: a message is not valid UTF-8 (a lone surrogate).
    """
    chosen: list[tuple[str, str]] = []
    budget = limit_bytes
    for role, text in reversed(messages):
        if not text.strip():
            continue
        data = _utf8(text, "a history message")
        if len(data) > budget:
            cut = data[len(data) - budget :].decode(errors="ignore").strip() if budget > 0 and not chosen else ""
            if cut:
                chosen.append((role, cut))
            break
        chosen.append((role, text))
        budget -= len(data)
    chosen.reverse()
    while chosen and chosen[0][0] != "USER":
        chosen.pop(0)
    return chosen


# ------------------------------------------------------------------------------------------------ output parser


@dataclass
class _Block:
    type: str
    role: str
    stage: Stage
    rate: int


class OutputParser:
    """Turns the service's output events into typed events, tracking content blocks and turns.

    Barge-in arrives three ways (the marker text, a TEXT contentEnd ``INTERRUPTED``, an AUDIO contentEnd
    ``INTERRUPTED``); all three give one `Interrupted` per turn, and the marker never becomes a transcript.
    """

    def __init__(self) -> None:
        self._blocks: dict[str, _Block] = {}
        self._interrupted: set[str] = set()

    def parse(self, raw: bytes | str | dict[str, Any]) -> list[SonicEvent]:
        """Parse one output event.

        Raises:
            ProtocolError: not JSON, or a known event without its required fields or with one of the wrong type
                (nothing else escapes, and the parser's state is as it was).
        """
        try:
            body = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
            inner = body["event"]
            ((name, payload),) = inner.items()
        # RecursionError: JSON nested deeper than Python recurses, which json reports as no ValueError.
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as error:
            raise ProtocolError(f"not a Nova Sonic output event: {error}") from None
        if not isinstance(payload, dict):
            raise ProtocolError(f"{name}: the payload is not an object")
        try:
            return self._dispatch(name, payload)
        # OverflowError: a token count of 1e400 (json reads it as infinity) has no int.
        except (KeyError, TypeError, ValueError, binascii.Error, RecursionError, OverflowError) as error:
            raise ProtocolError(f"{name}: {type(error).__name__} {error}") from None

    def _dispatch(self, name: str, p: dict[str, Any]) -> list[SonicEvent]:
        # Every field that reaches a typed event is checked for its type here: the consumers key dicts by ids and
        # names, and encode texts (history, the host's JSON), so a wrong type would fail far from its cause.
        turn = _string(p.get("completionId", ""), "completionId")
        if name == "contentStart":
            fields = json.loads(_string(p.get("additionalModelFields") or "{}", "additionalModelFields"))
            audio = p.get("audioOutputConfiguration", {})
            if not isinstance(fields, dict) or not isinstance(audio, dict):
                raise TypeError("additionalModelFields or audioOutputConfiguration is not an object")
            rate = int(audio.get("sampleRateHertz", 24000))
            if rate <= 0:
                raise ValueError(f"sampleRateHertz {rate} is not a rate")
            self._blocks[_string(p["contentId"], "contentId")] = _Block(
                _string(p["type"], "type"),
                _string(p.get("role", ""), "role"),
                Stage(fields.get("generationStage", "FINAL")),
                rate,
            )
            return []
        if name == "textOutput":
            block = self._blocks.get(_string(p["contentId"], "contentId"))
            text = _string(p["content"], "textOutput.content")
            if text.strip() == BARGE_IN_MARKER or BARGE_IN_MARKER in text:
                return self._interrupt(turn)
            stage = block.stage if block is not None else Stage.FINAL
            role = _string(p.get("role") or (block.role if block else ""), "role")
            return [Transcript(role, text, stage, turn)]
        if name == "audioOutput":
            block = self._blocks.get(_string(p["contentId"], "contentId"))
            pcm = base64.b64decode(p["content"], validate=True)
            if len(pcm) % 2:
                raise ValueError("odd number of PCM bytes")
            return [AudioOut(pcm, block.rate if block else 24000, turn)]
        if name == "toolUse":
            tool_input = json.loads(p["content"]) if p.get("content") else {}
            if not isinstance(tool_input, dict):
                raise TypeError("toolUse.content is not a JSON object")
            return [
                ToolCall(_string(p["toolUseId"], "toolUseId"), _string(p["toolName"], "toolName"), tool_input, turn)
            ]
        if name == "contentEnd":
            self._blocks.pop(p.get("contentId", ""), None)
            if p.get("stopReason") == "INTERRUPTED":
                return self._interrupt(turn)
            return []
        if name == "completionEnd":
            return [TurnEnd(turn, _string(p.get("stopReason", ""), "stopReason"))]
        if name == "usageEvent":
            return [Usage(int(p.get("totalInputTokens", 0)), int(p.get("totalOutputTokens", 0)), turn)]
        return []  # completionStart and events newer than this parser carry nothing to act on

    def _interrupt(self, turn: str) -> list[SonicEvent]:
        if turn in self._interrupted:
            return []
        self._interrupted.add(turn)
        return [Interrupted(turn)]


def _string(value: object, what: str) -> str:
    """``value`` if it is a string of valid UTF-8.

    Raises:
        TypeError: not a string.
        UnicodeEncodeError: a lone surrogate, which a JSON escape can spell.
    """
    if not isinstance(value, str):
        raise TypeError(f"{what} is not a string")
    value.encode()
    return value
