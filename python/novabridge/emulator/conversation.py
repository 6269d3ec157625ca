"""One emulated stream: the input rules the service enforces, and a deterministic turn-taking model.

Input events are checked in order as the service checks them; a violation ends the stream with the service's
exception and message. Audio goes through an energy VAD on its own sample clock; the endpointing pause ends a user
turn, and the assistant answers from the scenario with a synthetic voice, sent faster than real time. The playout
of that answer is modelled from its first chunk on: user speech while it would still be playing is a barge-in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

from novabridge.emulator import service
from novabridge.emulator.faults import MID_TURN_FAULTS, STREAM_FAULTS, Fault, FaultKind, FaultPlan
from novabridge.emulator.options import EmulatorOptions
from novabridge.emulator.recording import StreamRecording, TurnRecord, summarize_audio_event
from novabridge.emulator.scenario import Scenario, render
from novabridge.emulator.service import Endpointing, Generation, Message, ServiceError, invalid_input, validation
from novabridge.emulator.vad import EnergyVad, SpeechEnded, SpeechStarted
from novabridge.emulator.voice import split_sentences, synthesize

logger = logging.getLogger("novabridge.emulator")

_TOKENS_PER_SPEECH_SECOND = 25
_FAULT_POLL_S = 0.05


class StreamAbort(Exception):
    """End the response without an event: ``reset`` severs the connection, ``corrupt-frame`` cuts a frame."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(frozen=True)
class End:
    """The last item of a stream's output queue; ``abort`` names a StreamAbort kind, or None for a clean end."""

    abort: str | None = None


@dataclass
class _Block:
    name: str
    type: str
    role: str
    interactive: bool
    texts: list[str] = field(default_factory=list)
    tool_use_id: str | None = None
    result: str | None = None


@dataclass
class _TurnState:
    record: TurnRecord
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)
    interrupted_at_s: float | None = None


def _expect(condition: bool, detail: str) -> None:
    if not condition:
        raise invalid_input(detail)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_input(f"{where} must be an object")
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_input(f"{where} must be a non-empty string")
    return value


def _among(value: Any, choices: Collection[Any]) -> bool:
    """``value in choices`` for any JSON value: a list or an object is in no set of names (and has no hash)."""
    return isinstance(value, (str, int, float)) and value in choices


class Conversation:
    """The state of one stream; the server feeds it input events and drains ``output`` onto the wire."""

    def __init__(
        self,
        *,
        recording: StreamRecording,
        options: EmulatorOptions,
        scenario: Scenario,
        faults: FaultPlan,
    ) -> None:
        self.recording = recording
        self.options = options
        self.scenario = scenario
        self.faults = faults
        self.model_id = recording.model_id
        generation = options.generation(self.model_id)
        assert generation is not None, "the server serves only the models the options offer"
        self.generation = generation
        self._voices = service.VOICES.get(self.model_id) or service.VOICES[service.NEWEST[generation]]
        self.output: asyncio.Queue[dict[str, Any] | tuple[str, ServiceError] | End] = asyncio.Queue()
        self.finished = False
        self.session_id = self._new_id()
        self.last_input = time.monotonic()

        self._stage = "sessionStart"
        self._prompt_name = ""
        self._voice = "matthew"
        self._out_rate = 24000
        self._tools: set[str] = set()
        self._pause_s = Endpointing.MEDIUM.pause_s
        self._blocks: dict[str, _Block] = {}
        self._used_names: set[str] = set()
        self._history_bytes = 0
        self._history_roles: list[str] = []
        self._audio_started = False
        self._vad: EnergyVad | None = None
        self._clock_offset_s = 0.0
        self._last_voice_s = 0.0
        self._silence_limit_s = options.silence_limit_s
        self._extra_think_s = 0.0
        self._speed = options.output_speed
        self._pending_tools: dict[str, asyncio.Future[str]] = {}
        self._late_results: deque[TurnRecord] = deque()
        """Tool results that came after their turn had ended (Nova 2), each answered once no answer is being given."""
        self._reject_input_at: float | None = None
        """A reject-input fault: the first input event from this time (``time.monotonic()``) on is refused."""
        self._stall_at: float | None = None
        """A stall fault: from this time (``time.monotonic()``) on, the server stops reading the request."""
        self.stalled = False
        """A stall fault fired: the server stopped reading the request until the stream ended."""
        self._ended = asyncio.Event()
        self._wake = asyncio.Event()
        self._turn: _TurnState | None = None
        self._responder: asyncio.Task[None] | None = None
        self._turn_count = 0
        lifetime = ServiceError("modelTimeoutException", Message.MODEL_TIMEOUT, "connection lifetime reached")
        self._deadlines: list[tuple[float, ServiceError]] = [(time.monotonic() + options.session_limit_s, lifetime)]
        self._claim_stream_faults()

    # ----------------------------------------------------------------------------------------------- input side

    def receive(self, body: dict[str, Any]) -> None:
        """Apply one input event.

        Raises:
            ServiceError: the event breaks a rule the service enforces.
        """
        self.last_input = time.monotonic()
        event = body.get("event")
        if not isinstance(event, dict) or len(event) != 1:
            self._record(body)
            raise invalid_input('an input must be {"event": {<one event name>: {...}}}')
        ((name, payload),) = event.items()
        handler = self._handlers.get(name)
        if handler is None or not isinstance(payload, dict):
            self._record(body)
            raise invalid_input(f"unknown input event {name!r}")
        if name != "audioInput":
            self._record(body)
        try:
            if self._reject_input_at is not None and self.last_input >= self._reject_input_at:
                self._reject_input_at = None
                raise invalid_input(f"fault reject-input: {name}")
            if self._stage == "ended":
                raise invalid_input(f"{name} after sessionEnd")
            if name not in ("sessionStart", "promptStart", "sessionEnd", "connectionEnd"):
                _expect(self._stage in ("content", "system", "promptEnded"), f"{name} before promptStart")
                _expect(payload.get("promptName") == self._prompt_name, f"{name}.promptName does not match promptStart")
                _expect(self._stage != "promptEnded", f"{name} after promptEnd")
        except ServiceError:
            if name == "audioInput":  # recorded by its handler otherwise, with the audio summarised
                self._record(body)
            raise
        handler(self, payload)

    def input_ended(self) -> None:
        """The client closed its side (the empty signed envelope) without sessionEnd."""
        if not self.finished:
            self._finish("client-closed")

    def _on_session_start(self, p: dict[str, Any]) -> None:
        _expect(self._stage == "sessionStart", "sessionStart must come first, once")
        inference = p.get("inferenceConfiguration")
        if inference is not None:
            _expect(isinstance(inference, dict), "inferenceConfiguration must be an object")
            for key, low, high in (("maxTokens", 1, 10_000), ("topP", 0.0, 1.0), ("temperature", 0.0, 1.0)):
                value = inference.get(key)
                if value is not None:
                    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
                    _expect(ok, f"inferenceConfiguration.{key} out of range")
        detection = p.get("turnDetectionConfiguration")
        if self.generation is Generation.SONIC_2:
            _expect("endpointingSensitivity" not in p, "the flat v1 endpointingSensitivity is not accepted by Nova 2")
            if detection is not None:
                _expect(isinstance(detection, dict), "turnDetectionConfiguration must be an object")
                sensitivity = detection.get("endpointingSensitivity")
                _expect(
                    _among(sensitivity, Endpointing.__members__), "endpointingSensitivity must be HIGH, MEDIUM or LOW"
                )
                self._pause_s = Endpointing(sensitivity).pause_s
        if self.options.endpointing_s is not None:
            self._pause_s = self.options.endpointing_s
        self._stage = "promptStart"

    def _on_prompt_start(self, p: dict[str, Any]) -> None:
        _expect(self._stage == "promptStart", "promptStart must follow sessionStart, once")
        name = _string(p.get("promptName"), "promptStart.promptName")
        audio = _object(p.get("audioOutputConfiguration"), "promptStart.audioOutputConfiguration")
        self._check_lpcm(audio, "audioOutputConfiguration")
        voice = _string(audio.get("voiceId"), "audioOutputConfiguration.voiceId")
        _expect(voice in self._voices, f"voiceId {voice!r} is not a voice of {self.model_id}")
        text = p.get("textOutputConfiguration")
        _expect(
            text is None or (isinstance(text, dict) and text.get("mediaType") == "text/plain"),
            "text output must be text/plain",
        )
        tool_config = p.get("toolConfiguration")
        if tool_config is not None:
            self._tools = self._check_tools(tool_config)
        self._prompt_name = name
        self._voice = voice
        self._out_rate = audio["sampleRateHertz"]
        self._stage = "system"

    def _check_lpcm(self, config: dict[str, Any], where: str) -> None:
        _expect(config.get("mediaType") == "audio/lpcm", f"{where}.mediaType must be audio/lpcm")
        _expect(
            _among(config.get("sampleRateHertz"), service.SAMPLE_RATES),
            f"{where}.sampleRateHertz must be 8000, 16000 or 24000",
        )
        _expect(config.get("sampleSizeBits") == 16, f"{where}.sampleSizeBits must be 16")
        _expect(config.get("channelCount") == 1, f"{where}.channelCount must be 1")
        _expect(config.get("encoding") == "base64", f"{where}.encoding must be base64")
        _expect(config.get("audioType", "SPEECH") == "SPEECH", f"{where}.audioType must be SPEECH")

    def _check_tools(self, config: Any) -> set[str]:
        _expect(
            isinstance(config, dict) and isinstance(config.get("tools"), list), "toolConfiguration.tools must be a list"
        )
        names: set[str] = set()
        for tool in config["tools"]:
            spec = _object(_object(tool, "tools[]").get("toolSpec"), "toolSpec")
            name = _string(spec.get("name"), "toolSpec.name")
            _expect(name not in names, f"tool {name} is declared twice")
            _expect(isinstance(spec.get("description"), str), f"tool {name}: description must be a string")
            schema = _object(spec.get("inputSchema"), f"tool {name}: inputSchema")
            _expect(isinstance(schema.get("json"), str), f"tool {name}: inputSchema.json must be a JSON string")
            try:
                parsed = json.loads(schema["json"])
            except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
                raise invalid_input(f"tool {name}: inputSchema.json is not valid JSON") from None
            _expect(isinstance(parsed, dict), f"tool {name}: inputSchema.json must be a JSON object")
            names.add(name)
        choice = config.get("toolChoice")
        if choice is not None:
            ok = isinstance(choice, dict) and len(choice) == 1 and next(iter(choice)) in ("auto", "any", "tool")
            _expect(ok, "toolChoice must be one of auto, any, tool")
            if "tool" in choice:
                tool_choice = _object(choice["tool"], "toolChoice.tool")
                _expect(_among(tool_choice.get("name"), names), "toolChoice names an undeclared tool")
        return names

    def _on_content_start(self, p: dict[str, Any]) -> None:
        name = _string(p.get("contentName"), "contentStart.contentName")
        _expect(name not in self._used_names, f"contentName {name} was already used")
        kind, role = p.get("type"), p.get("role")
        interactive = p.get("interactive", False)
        _expect(isinstance(interactive, bool), "contentStart.interactive must be a boolean")
        roles = {"SYSTEM", "USER", "ASSISTANT", "TOOL"} | (
            {"SYSTEM_SPEECH"} if self.generation is Generation.SONIC_2 else set()
        )
        _expect(_among(role, roles), f"contentStart.role {role!r} is not one of {sorted(roles)}")
        if self._stage == "system":
            _expect(kind == "TEXT" and role == "SYSTEM", "the first content block must be TEXT with role SYSTEM")
        open_text = [b for b in self._blocks.values() if b.type in ("TEXT", "TOOL")]
        block = _Block(name, str(kind), str(role), interactive)
        if kind == "TEXT":
            _expect(not open_text, "a text block is already open")
            config = p.get("textInputConfiguration")
            _expect(
                isinstance(config, dict) and config.get("mediaType") == "text/plain",
                "textInputConfiguration.mediaType must be text/plain",
            )
            # Interactive text is a turn, before audio too ("model-start-first" in the cross-modal guide); before
            # audio, text that is not interactive is the chat history.
            if role == "USER" and (self._audio_started or interactive):
                _expect(self.generation is Generation.SONIC_2, "interactive text input during a session is Nova 2 only")
            elif role in ("USER", "ASSISTANT"):
                _expect(
                    self._audio_started or bool(self._history_roles) or role == "USER",
                    "chat history must start with a USER message",
                )
                _expect(not self._audio_started, "chat history must be sent before audio")
        elif kind == "AUDIO":
            _expect(role == "USER", "audio input must have role USER")
            _expect(not any(b.type == "AUDIO" for b in self._blocks.values()), "an audio block is already open")
            config = _object(p.get("audioInputConfiguration"), "audioInputConfiguration")
            self._check_lpcm(config, "audioInputConfiguration")
            self._start_audio(config["sampleRateHertz"])
        elif kind == "TOOL":
            _expect(role == "TOOL", "tool results must have role TOOL")
            _expect(not open_text, "a text block is already open")
            config = _object(p.get("toolResultInputConfiguration"), "toolResultInputConfiguration")
            tool_use_id = _string(config.get("toolUseId"), "toolResultInputConfiguration.toolUseId")
            _expect(tool_use_id in self._pending_tools, f"toolUseId {tool_use_id!r} does not answer a pending toolUse")
            block.tool_use_id = tool_use_id
        else:
            raise invalid_input(f"contentStart.type {kind!r} is not TEXT, AUDIO or TOOL")
        self._stage = "content"
        self._blocks[name] = block
        self._used_names.add(name)

    def _start_audio(self, rate: int) -> None:
        if self._vad is not None:
            self._clock_offset_s += self._vad.position_s
        if not self._audio_started:
            self._audio_started = True
            if self._history_bytes > service.HISTORY_LIMIT_BYTES:
                raise invalid_input(f"chat history is {self._history_bytes} bytes, over {service.HISTORY_LIMIT_BYTES}")
        self._vad = EnergyVad(rate, pause_s=self._pause_s, threshold_dbfs=self.options.vad_threshold_dbfs)

    def _on_text_input(self, p: dict[str, Any]) -> None:
        block = self._open_block(p)
        _expect(block is not None and block.type == "TEXT", "textInput outside an open TEXT block")
        content = p.get("content")
        if not isinstance(content, str):
            raise invalid_input("textInput.content must be a string")
        size = len(content.encode())
        _expect(
            size <= service.TEXT_INPUT_LIMIT_BYTES, f"textInput is {size} bytes, over {service.TEXT_INPUT_LIMIT_BYTES}"
        )
        assert block is not None
        block.texts.append(content)

    def _on_audio_input(self, p: dict[str, Any]) -> None:
        if any(b.type == "TEXT" for b in self._blocks.values()):
            self._record({"event": {"audioInput": p}})
            raise validation(Message.HISTORY_BEFORE_AUDIO, "audioInput while a TEXT block is open")
        block = self._open_block(p)
        content = p.get("content")
        try:
            pcm = base64.b64decode(content, validate=True) if isinstance(content, str) else None
        except (binascii.Error, ValueError):
            pcm = None
        if pcm is None:
            self._record({"event": {"audioInput": p}})
            raise invalid_input("audioInput.content is not base64")
        self.recording.add_input_event(summarize_audio_event({"event": {"audioInput": p}}, "audioInput", pcm))
        _expect(block is not None and block.type == "AUDIO", "audioInput outside an open AUDIO block")
        _expect(len(pcm) % 2 == 0, "audioInput holds an odd number of bytes")
        self.recording.add_user_audio(pcm)
        assert self._vad is not None
        for vad_event in self._vad.feed(pcm):
            at_s = self._clock_offset_s + vad_event.at_s
            if isinstance(vad_event, SpeechStarted):
                self._on_speech_started(at_s)
            elif isinstance(vad_event, SpeechEnded):
                self._last_voice_s = at_s
                self._start_turn("speech", speech_end_s=at_s, voiced_s=vad_event.voiced_s)
        self._wake.set()
        if not self._vad.in_speech and self.clock_s - self._last_voice_s >= self._silence_limit_s:
            raise validation(Message.RST_STREAM_531, f"no user speech for {self._silence_limit_s} s")

    def _on_tool_result(self, p: dict[str, Any]) -> None:
        block = self._open_block(p)
        _expect(block is not None and block.type == "TOOL", "toolResult outside an open TOOL block")
        content = p.get("content")
        try:
            # Strict JSON (RFC 8259): Python's own NaN and Infinity are not JSON.
            json.loads(content, parse_constant=_refuse_constant) if isinstance(content, str) else None
            ok = isinstance(content, str)
        except (ValueError, RecursionError):
            ok = False
        if not ok:
            raise validation(Message.TOOL_RESULT_PARSE, "toolResult.content is not a JSON string")
        assert block is not None
        block.result = content

    def _on_content_end(self, p: dict[str, Any]) -> None:
        block = self._open_block(p)
        _expect(block is not None, "contentEnd for a block that is not open")
        assert block is not None
        del self._blocks[block.name]
        if block.type == "TEXT":
            text = "".join(block.texts)
            if block.role == "USER" and (self._audio_started or block.interactive):
                self._start_turn("text", user_text=text)
            elif block.role in ("USER", "ASSISTANT"):
                self._history_bytes += len(text.encode())
                self._history_roles.append(block.role)
            elif block.role == "SYSTEM_SPEECH":
                self.recording.speech_prompt = text
                self.recording.note(f"speech prompt: {text!r}")
        elif block.type == "TOOL":
            _expect(block.result is not None, "a TOOL block ended without a toolResult")
            assert block.tool_use_id is not None
            assert block.result is not None
            future = self._pending_tools.pop(block.tool_use_id, None)
            if future is not None and not future.done():  # its turn may have been interrupted since contentStart
                future.set_result(block.result)

    def _open_block(self, p: dict[str, Any]) -> _Block | None:
        """The open block ``p`` names, if any (a contentName that is no string names none, and has no hash)."""
        name = p.get("contentName")
        return self._blocks.get(name) if isinstance(name, str) else None

    def _on_prompt_end(self, p: dict[str, Any]) -> None:
        self._stage = "promptEnded"
        self._stop_turn()

    def _on_session_end(self, p: dict[str, Any]) -> None:
        self._stage = "ended"
        self._finish("completed")

    def _on_connection_end(self, p: dict[str, Any]) -> None:
        # Not an input event of the AWS docs, which close with promptEnd then sessionEnd. Strands' BidiAgent sends it
        # after promptEnd instead of sessionEnd and works against Bedrock, so after promptEnd it ends the session as
        # sessionEnd would; anywhere else it is refused as the unknown event it is.
        if self._stage != "promptEnded":
            raise invalid_input("unknown input event 'connectionEnd'")
        self._stage = "ended"
        self._finish("completed")

    _handlers: ClassVar[dict[str, Callable[[Conversation, dict[str, Any]], None]]] = {
        "sessionStart": _on_session_start,
        "promptStart": _on_prompt_start,
        "contentStart": _on_content_start,
        "textInput": _on_text_input,
        "audioInput": _on_audio_input,
        "toolResult": _on_tool_result,
        "contentEnd": _on_content_end,
        "promptEnd": _on_prompt_end,
        "sessionEnd": _on_session_end,
        "connectionEnd": _on_connection_end,
    }

    def _record(self, body: dict[str, Any]) -> None:
        self.recording.add_input_event(body)

    @property
    def clock_s(self) -> float:
        """Seconds of user audio received on this stream: the emulator's notion of conversation time."""
        return self._clock_offset_s + (self._vad.position_s if self._vad else 0.0)

    # ---------------------------------------------------------------------------------------------- output side

    def _new_id(self) -> str:
        # Random, as the service's: ids counted per stream repeated after a restart, and a client that remembers
        # the turns it interrupted took a new turn for an old one (found by the soak run).
        return str(uuid.uuid4())

    def _emit(self, name: str, payload: dict[str, Any]) -> None:
        if self.finished:
            return
        self.output.put_nowait({"event": {name: payload}})

    def fail(self, error: ServiceError) -> None:
        """End the stream with a modelled exception event."""
        if self.finished:
            return
        self.recording.note(f"{error.member}: {error.message} [{error.detail}]", logging.WARNING)
        self.recording.error = (error.member, error.message, error.detail)
        self.output.put_nowait(("exception", error))
        self._close("error", End())

    def abort(self, kind: str) -> None:
        """End the stream abruptly (a severed connection or a cut frame)."""
        if not self.finished:
            self._close(kind, End(abort=kind))

    def _finish(self, outcome: str) -> None:
        self._close(outcome, End())

    def _close(self, outcome: str, end: End) -> None:
        self.finished = True
        self._ended.set()
        self.recording.outcome = outcome
        self.recording.closed_at = time.monotonic()
        self.output.put_nowait(end)
        self._stop_turn()
        for future in self._pending_tools.values():
            future.cancel()

    async def stall_if_due(self) -> None:
        """Under a stall fault that is due, return only once the stream has ended (the server reads nothing meanwhile).

        The end comes as for any stream: the input timeout (no input gets through), the lifetime, or the server's
        stop, which aborts every stream. A client's reset of the stream is not seen: reading is what would see it.
        """
        if self._stall_at is None or time.monotonic() < self._stall_at or self.finished:
            return
        self._stall_at = None
        self.stalled = True
        self.recording.note("fault stall: reading nothing more", logging.WARNING)
        await self._ended.wait()

    def _stop_turn(self) -> None:
        if self._responder is not None and not self._responder.done():
            self._responder.cancel()

    # ------------------------------------------------------------------------------------------------ turn model

    def _on_speech_started(self, at_s: float) -> None:
        turn = self._turn
        if (
            turn is not None
            and not turn.interrupted.is_set()
            and self._responder is not None
            and not self._responder.done()
        ):
            turn.interrupted_at_s = at_s
            turn.interrupted.set()

    def _start_turn(
        self, source: str, *, user_text: str | None = None, speech_end_s: float | None = None, voiced_s: float = 0.0
    ) -> None:
        if self.finished:
            return
        if self._turn is not None and not self._turn.interrupted.is_set():
            self._turn.interrupted_at_s = self.clock_s
            self._turn.interrupted.set()
        index = self._turn_count
        self._turn_count += 1
        script = self.scenario.turn(index)
        if user_text is None:
            user_text = render(script.user or self.scenario.default_user, n=index + 1, seconds=voiced_s, result=None)
        record = TurnRecord(index=index, source=source, user_text=user_text, answer="", speech_end_s=speech_end_s)
        self.recording.turns.append(record)
        self.recording.note(f"turn {index + 1} ({source}): user {user_text!r}")
        state = _TurnState(record)
        previous = self._responder
        self._turn = state
        self._responder = asyncio.get_running_loop().create_task(self._run_turn(state, previous, voiced_s))

    async def _run_turn(self, state: _TurnState, previous: asyncio.Task[None] | None, voiced_s: float) -> None:
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await previous
        try:
            await self._respond(state, voiced_s)
            record = state.record
            ended = f"interrupted after {record.played_s:.1f} s" if record.interrupted else "answered"
            self.recording.note(f"turn {record.index + 1} {ended}: {record.answer!r}")
        except ServiceError as error:
            self.fail(error)
        except StreamAbort as abort:
            self.recording.note(f"fault {abort.kind}: the stream is cut", logging.WARNING)
            self.recording.error = ("", "", abort.kind)
            self.abort(abort.kind)
        else:
            asyncio.get_running_loop().call_soon(self._answer_late_results)  # once this task is done

    def _late_result(self, asking: TurnRecord, future: asyncio.Future[str]) -> None:
        if future.cancelled() or self.finished:
            return
        record = TurnRecord(
            index=asking.index,
            source="tool",
            user_text=asking.user_text,
            answer="",
            tool_use_id=asking.tool_use_id,
            tool_result=future.result(),
        )
        self._late_results.append(record)
        self._answer_late_results()

    def _answer_late_results(self) -> None:
        """Answer the oldest late tool result, unless the stream has ended or an answer is being given."""
        if self.finished or not self._late_results or (self._responder is not None and not self._responder.done()):
            return
        record = self._late_results.popleft()
        self.recording.turns.append(record)
        self.recording.note(f"turn {record.index + 1}'s tool result came after the turn: answering it now")
        self._turn = _TurnState(record)
        self._responder = asyncio.get_running_loop().create_task(self._run_turn(self._turn, None, 0.0))

    def _ids_for(self, completion_id: str) -> dict[str, str]:
        return {"sessionId": self.session_id, "promptName": self._prompt_name, "completionId": completion_id}

    def _text_block(self, ids: dict[str, str], role: str, stage: str, texts: list[str], stop: str) -> None:
        content_id = self._new_id()
        self._emit(
            "contentStart",
            {
                **ids,
                "contentId": content_id,
                "type": "TEXT",
                "role": role,
                "additionalModelFields": json.dumps({"generationStage": stage}),
                "textOutputConfiguration": {"mediaType": "text/plain"},
            },
        )
        for text in texts:
            self._emit("textOutput", {**ids, "contentId": content_id, "role": role, "content": text})
        self._emit("contentEnd", {**ids, "contentId": content_id, "type": "TEXT", "stopReason": stop})

    def _usage(self, ids: dict[str, str], totals: dict[str, int], **delta: int) -> None:
        for key, value in delta.items():
            totals[key] += value
        split = {
            "input": {"speechTokens": delta.get("input_speech", 0), "textTokens": delta.get("input_text", 0)},
            "output": {"speechTokens": delta.get("output_speech", 0), "textTokens": delta.get("output_text", 0)},
        }
        total = {
            "input": {"speechTokens": totals["input_speech"], "textTokens": totals["input_text"]},
            "output": {"speechTokens": totals["output_speech"], "textTokens": totals["output_text"]},
        }
        total_in = totals["input_speech"] + totals["input_text"]
        total_out = totals["output_speech"] + totals["output_text"]
        self._emit(
            "usageEvent",
            {
                **ids,
                "details": {"delta": split, "total": total},
                "totalInputTokens": total_in,
                "totalOutputTokens": total_out,
                "totalTokens": total_in + total_out,
            },
        )

    async def _wait(self, state: _TurnState, seconds: float) -> bool:
        """Sleep on the wall clock; False if the turn was interrupted meanwhile."""
        if state.interrupted.is_set():
            return False
        if seconds <= 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.interrupted.wait(), seconds)
        return not state.interrupted.is_set()

    async def _respond(self, state: _TurnState, voiced_s: float) -> None:
        record = state.record
        script = self.scenario.turn(record.index)
        completion_id = self._new_id()
        ids = self._ids_for(completion_id)
        totals = dict.fromkeys(("input_speech", "input_text", "output_speech", "output_text"), 0)
        self._emit("completionStart", ids)
        self.recording.begin_answer(record, completion_id)
        if record.source == "speech":
            self._text_block(ids, "USER", "FINAL", [record.user_text], "END_TURN")
            self._usage(ids, totals, input_speech=round(voiced_s * _TOKENS_PER_SPEECH_SECOND))
        elif record.source == "text":
            self._usage(ids, totals, input_text=len(record.user_text.split()))

        result: Any = None
        if record.source == "tool":
            assert record.tool_result is not None
            result = json.loads(record.tool_result)
        elif script.tool is not None and script.tool.name in self._tools:
            tool_use_id = self._new_id()
            record.tool_use_id = tool_use_id
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self._pending_tools[tool_use_id] = future
            content_id = self._new_id()
            self._emit(
                "contentStart",
                {
                    **ids,
                    "contentId": content_id,
                    "type": "TOOL",
                    "role": "TOOL",
                    "toolUseOutputConfiguration": {"mediaType": "application/json"},
                },
            )
            self._emit(
                "toolUse",
                {
                    **ids,
                    "contentId": content_id,
                    "toolName": script.tool.name,
                    "toolUseId": tool_use_id,
                    "content": json.dumps(dict(script.tool.input)),
                },
            )
            self._emit("contentEnd", {**ids, "contentId": content_id, "type": "TOOL", "stopReason": "TOOL_USE"})
            interrupted: asyncio.Future[Any] = asyncio.ensure_future(state.interrupted.wait())
            try:
                await asyncio.wait([future, interrupted], return_when=asyncio.FIRST_COMPLETED)
            finally:
                interrupted.cancel()
            if not future.done():
                if self.generation is Generation.SONIC_1:
                    # v1 stops waiting for the tools of an interrupted turn: a late result is refused.
                    self._pending_tools.pop(tool_use_id, None)
                else:
                    # Nova 2 keeps waiting through barge-ins and new turns ("asynchronous tool calling").
                    future.add_done_callback(functools.partial(self._late_result, record))
                self._end_interrupted(state, ids, totals, played=[])
                return
            record.tool_result = future.result()
            result = json.loads(record.tool_result)
        answer = render(script.assistant, n=record.index + 1, seconds=voiced_s, result=result)
        record.answer = answer

        if not await self._wait(state, self.options.think_s + self._extra_think_s):
            self._end_interrupted(state, ids, totals, played=[])
            return

        rate = self._out_rate
        chunk_bytes = 2 * max(1, round(self.options.output_chunk_s * rate))
        playout_clock = self.clock_s
        playout_wall = time.monotonic()
        spoken_s = 0.0
        finals: deque[tuple[float, str, bool]] = deque()  # (playout end, sentence, last)
        sentences = split_sentences(answer) or [answer]
        chunk_index = 0

        def played_s() -> float:
            return max(self.clock_s - playout_clock, time.monotonic() - playout_wall)

        def flush_finals() -> None:
            while finals and finals[0][0] <= played_s():
                _, sentence, last = finals.popleft()
                self._text_block(ids, "ASSISTANT", "FINAL", [sentence], "END_TURN" if last else "PARTIAL_TURN")

        for number, sentence in enumerate(sentences):
            last = number == len(sentences) - 1
            self._text_block(ids, "ASSISTANT", "SPECULATIVE", [sentence], "PARTIAL_TURN")
            pcm = synthesize(sentence, voice=self._voice, rate=rate)
            content_id = self._new_id()
            self._emit(
                "contentStart",
                {
                    **ids,
                    "contentId": content_id,
                    "type": "AUDIO",
                    "role": "ASSISTANT",
                    "audioOutputConfiguration": {
                        "mediaType": "audio/lpcm",
                        "sampleRateHertz": rate,
                        "sampleSizeBits": 16,
                        "channelCount": 1,
                        "encoding": "base64",
                    },
                },
            )
            cut = False
            for start in range(0, len(pcm), chunk_bytes):
                fault = self.faults.take(MID_TURN_FAULTS, chunk=chunk_index)
                if fault is not None:
                    self._raise_mid_turn(fault)
                chunk = pcm[start : start + chunk_bytes]
                # Pace by the audio already sent, so the emulator stays `speed` times ahead of real time.
                ahead = (spoken_s + start / (2 * rate)) / self._speed - (time.monotonic() - playout_wall)
                if not await self._wait(state, ahead):
                    cut = True
                    break
                self._emit("audioOutput", {**ids, "contentId": content_id, "content": base64.b64encode(chunk).decode()})
                self.recording.add_output_event(
                    summarize_audio_event(
                        {"event": {"audioOutput": {**ids, "contentId": content_id}}}, "audioOutput", chunk
                    )
                )
                self.recording.add_assistant_audio(record, completion_id, chunk)
                chunk_index += 1
            sent_s = (start if cut else len(pcm)) / (2 * rate)
            self._emit(
                "contentEnd",
                {
                    **ids,
                    "contentId": content_id,
                    "type": "AUDIO",
                    "stopReason": "INTERRUPTED" if cut else ("END_TURN" if last else "PARTIAL_TURN"),
                },
            )
            finals.append((spoken_s + sent_s, sentence, last))
            spoken_s += sent_s
            flush_finals()  # between blocks only: output content blocks never nest
            if cut:
                break
        self._usage(
            ids, totals, output_speech=round(spoken_s * _TOKENS_PER_SPEECH_SECOND), output_text=len(answer.split())
        )

        # The turn lasts until its audio has played out; speech before then interrupts it.
        while finals and not state.interrupted.is_set():
            flush_finals()
            if not finals:
                break
            self._wake.clear()
            remaining = finals[0][0] - played_s()
            wake = asyncio.ensure_future(self._wake.wait())
            interrupted = asyncio.ensure_future(state.interrupted.wait())
            try:
                await asyncio.wait(
                    {wake, interrupted}, timeout=max(remaining, 0.0), return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                wake.cancel()
                interrupted.cancel()
        record.played_s = min(played_s(), spoken_s)
        if state.interrupted.is_set():
            self._end_interrupted(state, ids, totals, played=[sentence for _, sentence, _ in finals][:1])
            return
        self._emit("completionEnd", {**ids, "stopReason": "END_TURN"})

    def _end_interrupted(
        self, state: _TurnState, ids: dict[str, str], totals: dict[str, int], played: list[str]
    ) -> None:
        state.record.interrupted = True
        self._text_block(ids, "ASSISTANT", "FINAL", [*played, service.BARGE_IN_MARKER], "INTERRUPTED")
        self._emit("completionEnd", {**ids, "stopReason": "INTERRUPTED"})

    def _raise_mid_turn(self, fault: Fault) -> None:
        if fault.kind is FaultKind.MODEL_STREAM_ERROR:
            raise ServiceError(
                "modelStreamErrorException",
                Message.MODEL_STREAM_ERROR,
                "fault model-stream-error",
                originalStatusCode=500,
                originalMessage="Internal model error",
            )
        raise StreamAbort(fault.kind.value)

    # ---------------------------------------------------------------------------------------------- the watchdog

    def _claim_stream_faults(self) -> None:
        now = time.monotonic()
        while (fault := self.faults.take(STREAM_FAULTS)) is not None:
            if fault.kind is FaultKind.SLOW:
                self._extra_think_s += fault.delay_s
                self._speed = 1.0
            elif fault.kind is FaultKind.RST_531:
                self._silence_limit_s = fault.after_s
            elif fault.kind is FaultKind.INSTABILITY:
                self._deadlines.append((now + fault.after_s, validation(Message.INSTABILITY, "fault instability")))
            elif fault.kind is FaultKind.REJECT_INPUT:
                self._reject_input_at = now + fault.after_s
            elif fault.kind is FaultKind.STALL:
                self._stall_at = now + fault.after_s
            else:
                error = ServiceError("modelTimeoutException", Message.MODEL_TIMEOUT, "fault expire")
                self._deadlines.append((now + fault.after_s, error))

    async def watchdog(self) -> None:
        """Enforce the lifetime, the input timeout and timed faults (claimed as they are armed) until the end."""
        while not self.finished:
            self._claim_stream_faults()
            now = time.monotonic()
            input_deadline = self.last_input + self.options.input_timeout_s
            if now >= input_deadline:
                self.fail(validation(Message.INPUT_TIMEOUT, f"no input event for {self.options.input_timeout_s} s"))
                return
            for deadline, error in self._deadlines:
                if now >= deadline:
                    self.fail(error)
                    return
            wake = min(input_deadline, now + _FAULT_POLL_S, *(d for d, _ in self._deadlines))
            await asyncio.sleep(wake - now + 0.001)
