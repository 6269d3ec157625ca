"""Conversations through the real SDK: scripted turns, tools, barge-in, cross-modal text, the voice, endpointing.

The emulator's clock is the input audio's sample count, so the tests stream audio faster than real time and push
the assistant's playout forward by streaming silence; every turn boundary below is therefore deterministic.
"""

import asyncio
import base64
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

import yaml
from aws_sdk_bedrock_runtime.models import ValidationException
from novabridge.emulator import BARGE_IN_MARKER, Emulator, Scenario, StreamRecording, synthesize
from support import docs_events as ev
from support.emulator_in_process import EmulatorFactory
from support.sonic_client import Event, SonicTestClient, name_of, silence, tone

PROMPT = "p"
VOICE = "matthew"
RATE = 24000
CONTENT_EVENTS = ("contentStart", "textOutput", "audioOutput", "toolUse", "contentEnd")

OpenClient = Callable[..., Awaitable[SonicTestClient]]


# ------------------------------------------------------------------------------------------------------ helpers


@pytest.fixture
async def open_client() -> AsyncIterator[OpenClient]:
    """SDK streams to a given emulator, closed at teardown."""
    clients: list[SonicTestClient] = []

    async def open_one(target: Emulator, **kwargs: Any) -> SonicTestClient:
        client = SonicTestClient(target, **kwargs)
        clients.append(client)
        return await client.open()

    yield open_one
    for client in clients:
        await client.close()


def write_scenario(tmp_path: Path, turns: list[dict[str, Any]]) -> Scenario:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump({"turns": turns}, sort_keys=False), encoding="utf-8")
    return Scenario.load(path)


def speech(text: str, *, voice: str = VOICE, rate: int = RATE) -> bytes:
    return synthesize(text, voice=voice, rate=rate)


class Speaker:
    """Streams user audio and keeps every byte sent, to compare with what the emulator recorded."""

    def __init__(self, client: SonicTestClient) -> None:
        self.client = client
        self.sent = bytearray()

    @property
    def clock_s(self) -> float:
        """Seconds of input audio sent so far: the emulator's conversation clock once it has all arrived."""
        return len(self.sent) / 32000

    async def say(self, pcm: bytes, *, speed: float = 8.0) -> None:
        self.sent += pcm
        await self.client.stream_audio(pcm, speed=speed)

    async def advance_until(
        self, predicate: Callable[[Event], bool], *, step_s: float = 0.25, speed: float = 25.0, limit_s: float = 60.0
    ) -> Event:
        """Stream silence until an event satisfying ``predicate`` has arrived; silence moves the playout clock."""
        streamed = 0.0
        while True:
            found = next((event for event in self.client.events if predicate(event)), None)
            if found is not None:
                return found
            if self.client.closed.is_set() or streamed >= limit_s:
                raise AssertionError(f"no such event after {streamed:.2f} s of silence; got {self.client.names()}")
            await self.say(silence(step_s), speed=speed)
            streamed += step_s


def of_completion(name: str, completion_id: str, **fields: Any) -> Callable[[Event], bool]:
    """Matches event ``name`` of ``completion_id`` whose payload has the given field values."""

    def match(event: Event) -> bool:
        if name_of(event) != name:
            return False
        payload = event["event"][name]
        return payload.get("completionId") == completion_id and all(payload.get(k) == v for k, v in fields.items())

    return match


async def next_completion(client: SonicTestClient, number: int, timeout: float = 15.0) -> str:
    """The completionId of the ``number``-th (1-based) completionStart."""
    event = await client.wait_for_name("completionStart", count=number, timeout=timeout)
    completion_id: str = event["event"]["completionStart"]["completionId"]
    return completion_id


async def play_out(speaker: Speaker, completion_id: str) -> Event:
    """Wait for the turn's first audio, then stream silence until its completionEnd."""
    await speaker.client.wait_for(of_completion("audioOutput", completion_id))
    return await speaker.advance_until(of_completion("completionEnd", completion_id))


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.005)


async def received(recording: StreamRecording, size: int) -> None:
    """Wait until the emulator has taken in ``size`` bytes of input audio (and run its VAD over them)."""
    await until(lambda: len(recording.user_audio) >= size)


async def recording_of(emulator: Emulator, index: int = 0) -> StreamRecording:
    await until(lambda: len(emulator.recordings) > index)
    return emulator.recordings[index]


@dataclass
class Block:
    """One output content block: contentStart, its text/audio/tool events, contentEnd (indices in the turn)."""

    content_id: str
    type: str
    role: str
    stage: str | None
    start: int
    start_event: dict[str, Any]
    end: int | None = None
    stop: str | None = None
    texts: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    tool_uses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def closed(self) -> int:
        """Index of the block's contentEnd; the block must have ended."""
        assert self.end is not None, f"{self.type} block {self.content_id} has no contentEnd"
        return self.end


@dataclass
class Turn:
    """The output events of one completion, and its content blocks in order of their contentStart."""

    completion_id: str
    events: list[Event]
    blocks: list[Block]

    def of(self, type_: str, role: str | None = None, stage: str | None = None) -> list[Block]:
        return [
            b
            for b in self.blocks
            if b.type == type_ and (role is None or b.role == role) and (stage is None or b.stage == stage)
        ]

    def texts(self, role: str, stage: str) -> list[str]:
        return [text for block in self.of("TEXT", role, stage) for text in block.texts]

    def audio(self) -> bytes:
        return b"".join(bytes(block.audio) for block in self.of("AUDIO", "ASSISTANT"))

    def names(self) -> list[str]:
        return [name_of(event) for event in self.events]

    def end_reason(self) -> str | None:
        ends = [e["event"]["completionEnd"] for e in self.events if name_of(e) == "completionEnd"]
        return ends[-1]["stopReason"] if ends else None


def turn_of(client: SonicTestClient, completion_id: str) -> Turn:
    events = [e for e in client.events if e["event"][name_of(e)].get("completionId") == completion_id]
    blocks: dict[str, Block] = {}
    for index, event in enumerate(events):
        name = name_of(event)
        payload = event["event"][name]
        if name == "contentStart":
            fields = json.loads(payload.get("additionalModelFields", "{}"))
            blocks[payload["contentId"]] = Block(
                payload["contentId"], payload["type"], payload["role"], fields.get("generationStage"), index, payload
            )
        elif name in CONTENT_EVENTS:
            block = blocks[payload["contentId"]]
            if name == "contentEnd":
                block.end, block.stop = index, payload.get("stopReason")
            elif name == "textOutput":
                block.texts.append(payload["content"])
            elif name == "audioOutput":
                block.audio += base64.b64decode(payload["content"])
            else:
                block.tool_uses.append(payload)
    return Turn(completion_id, events, sorted(blocks.values(), key=lambda b: b.start))


def completion_ids(client: SonicTestClient) -> list[str]:
    return [p["completionId"] for p in client.payloads("completionStart")]


def check_ids(client: SonicTestClient) -> None:
    """Every output event carries sessionId/promptName/completionId; content events a contentId of an open block."""
    session_ids = set()
    for event in client.events:
        name = name_of(event)
        payload = event["event"][name]
        for key in ("sessionId", "promptName", "completionId"):
            assert isinstance(payload.get(key), str), f"{name} lacks {key}: {payload}"
            assert payload[key], f"{name} has an empty {key}"
        assert payload["promptName"] == PROMPT
        session_ids.add(payload["sessionId"])
        if name in CONTENT_EVENTS:
            assert isinstance(payload.get("contentId"), str), f"{name} lacks contentId: {payload}"
    assert len(session_ids) == 1
    starts = client.payloads("completionStart")
    assert len({p["completionId"] for p in starts}) == len(starts), "completionIds repeat"
    content_ids = [p["contentId"] for p in client.payloads("contentStart")]
    assert len(set(content_ids)) == len(content_ids), "contentIds repeat"
    assert {p["contentId"] for p in client.payloads("contentEnd")} == set(content_ids)


def check_spoken_answer(turn: Turn, sentences: list[str], *, last_stop: str = "END_TURN") -> None:
    """SPECULATIVE text, then the sentence's AUDIO, then its FINAL text, sentence by sentence, in order."""
    speculative = turn.of("TEXT", "ASSISTANT", "SPECULATIVE")
    audio = turn.of("AUDIO", "ASSISTANT")
    final = turn.of("TEXT", "ASSISTANT", "FINAL")
    assert [b.texts for b in speculative] == [[s] for s in sentences]
    assert [b.texts for b in final] == [[s] for s in sentences]
    assert len(audio) == len(sentences)
    partial = ["PARTIAL_TURN"] * (len(sentences) - 1)
    assert [b.stop for b in speculative] == ["PARTIAL_TURN"] * len(sentences)
    assert [b.stop for b in audio] == [*partial, last_stop]
    assert [b.stop for b in final] == [*partial, last_stop]
    for number, (spec, sound, fin) in enumerate(zip(speculative, audio, final, strict=True)):
        assert spec.closed < sound.start < sound.closed < fin.start, f"sentence {number}: {turn.names()}"
        assert fin.closed > fin.start
        assert bytes(sound.audio) == speech(sentences[number])
        if number:
            assert speculative[number - 1].closed < spec.start
            assert audio[number - 1].closed < sound.start
            assert final[number - 1].closed < fin.start


def check_spoken_turn(turn: Turn, user: str, sentences: list[str]) -> None:
    """The documented shape of a turn answering speech: completionStart, USER FINAL text, the answer, completionEnd."""
    names = turn.names()
    assert names[0] == "completionStart"
    assert names[-1] == "completionEnd"
    assert names.count("completionStart") == names.count("completionEnd") == 1
    assert turn.end_reason() == "END_TURN"
    assert "usageEvent" in names
    assert turn.blocks[0].type == "TEXT"
    assert (turn.blocks[0].role, turn.blocks[0].stage, turn.blocks[0].texts) == ("USER", "FINAL", [user])
    assert turn.blocks[0].stop == "END_TURN"
    assert all(b.start > turn.blocks[0].closed for b in turn.blocks[1:])
    assert [b for b in turn.blocks if b.role == "USER"] == [turn.blocks[0]]
    assert turn.of("TOOL") == []
    check_spoken_answer(turn, sentences)
    for block in turn.of("AUDIO", "ASSISTANT"):
        config = block.start_event["audioOutputConfiguration"]
        assert (config["mediaType"], config["sampleRateHertz"], config["encoding"]) == ("audio/lpcm", RATE, "base64")


def interleavings(events: list[Event]) -> list[str]:
    """Content blocks that start while another block is still open, and content events outside their block."""
    problems: list[str] = []
    open_blocks: dict[str, str] = {}
    for index, event in enumerate(events):
        name = name_of(event)
        if name not in CONTENT_EVENTS:
            continue
        payload = event["event"][name]
        content_id = payload["contentId"]
        if name == "contentStart":
            fields = json.loads(payload.get("additionalModelFields", "{}"))
            kind = " ".join(filter(None, [payload["type"], payload["role"], fields.get("generationStage")]))
            if open_blocks:
                problems.append(f"event #{index}: a {kind} block starts while {list(open_blocks.values())} is open")
            open_blocks[content_id] = kind
        elif content_id not in open_blocks:
            problems.append(f"event #{index}: {name} outside its block")
        elif name == "contentEnd":
            del open_blocks[content_id]
    return problems


# -------------------------------------------------------------------------------------------- scripted turns

SCENARIO_YAML = """\
turns:
  - user: "What's the weather like in Lisbon?"
    assistant: "It is sunny in Lisbon today. Expect a high of twenty-four degrees!"
  - user: And tomorrow?
    assistant: Tomorrow brings light rain in the morning. It clears up by noon. Take an umbrella.
  - user: Thanks, that's all.
    assistant: "You're welcome, have a nice day!"
"""


async def test_scripted_three_turn_conversation_follows_the_documented_order(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    path = tmp_path / "weather.yaml"
    path.write_text(SCENARIO_YAML, encoding="utf-8")
    scenario = Scenario.load(path)
    script = yaml.safe_load(SCENARIO_YAML)["turns"]
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)

    utterances = [0.5, 0.7, 0.4]
    speech_ends: list[float] = []
    for number, seconds in enumerate(utterances, start=1):
        await speaker.say(tone(seconds))
        speech_ends.append(speaker.clock_s)
        await speaker.say(silence(0.5))
        completion_id = await next_completion(client, number)
        end = await play_out(speaker, completion_id)
        assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"

    await client.end(PROMPT)
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert recording.outcome == "completed"

    # Each utterance became one turn, transcribed with the scenario's user text and answered with its answer.
    users = [turn["user"] for turn in script]
    answers = [turn["assistant"] for turn in script]
    sentences = [
        ["It is sunny in Lisbon today.", "Expect a high of twenty-four degrees!"],
        ["Tomorrow brings light rain in the morning.", "It clears up by noon.", "Take an umbrella."],
        ["You're welcome, have a nice day!"],
    ]
    assert client.texts("USER") == users
    assert client.texts("ASSISTANT", "SPECULATIVE") == [s for turn in sentences for s in turn]
    assert client.texts("ASSISTANT", "FINAL") == [s for turn in sentences for s in turn]
    assert [(t.index, t.source, t.user_text, t.answer) for t in recording.turns] == [
        (i, "speech", user, answer) for i, (user, answer) in enumerate(zip(users, answers, strict=True))
    ]
    ids = completion_ids(client)
    assert len(ids) == 3
    for number, completion_id in enumerate(ids):
        turn = turn_of(client, completion_id)
        check_spoken_turn(turn, users[number], sentences[number])
        record = recording.turns[number]
        assert turn.audio() == bytes(record.assistant_audio) == speech(answers[number])
        assert not record.interrupted
        assert record.played_s == pytest.approx(len(record.assistant_audio) / (2 * RATE), abs=0.01)
        assert record.speech_end_s == pytest.approx(speech_ends[number], abs=0.015)
    # Turns do not overlap: each completion ends before the next starts.
    names = client.names()
    assert [n for n in names if n in ("completionStart", "completionEnd")] == ["completionStart", "completionEnd"] * 3
    check_ids(client)

    assert client.audio_out() == bytes(recording.assistant_audio)
    assert bytes(recording.user_audio) == bytes(speaker.sent)
    assert recording.user_audio_sha256 == hashlib.sha256(speaker.sent).hexdigest()


async def test_turns_past_the_scenario_get_the_default_answer(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path, [{"user": "Hello.", "assistant": "Hi there."}])
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    for number, seconds in enumerate((0.5, 0.6), start=1):
        await speaker.say(tone(seconds) + silence(0.5))
        completion_id = await next_completion(client, number)
        await play_out(speaker, completion_id)
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    answer = "This is answer 2. I heard 0.6 seconds of speech."
    assert client.texts("USER") == ["Hello.", "(speech, 0.6 seconds)"]
    assert emulator.recordings[0].turns[1].answer == answer
    second = turn_of(client, completion_ids(client)[1])
    assert second.audio() == speech(answer)
    # The transcript is the answer's sentences; "0.6" is a number, not the end of a sentence.
    check_spoken_turn(second, "(speech, 0.6 seconds)", ["This is answer 2.", "I heard 0.6 seconds of speech."])


async def test_output_content_blocks_are_delivered_one_after_another(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    """A block's contentStart ... contentEnd is never cut into by another block (pipecat's receive loop relies on it).

    A short first sentence, then a longer one. The emulator sends at twice the client's pace, as with its defaults
    (output_speed 2.0, a client streaming in real time), here both four times faster: the first sentence has played
    out while the second one's audio is still being sent.
    """
    answer = "Sure. Here is a longer second sentence that keeps the audio going."
    scenario = write_scenario(tmp_path, [{"user": "Go on.", "assistant": answer}])
    emulator = await make_emulator(scenario=scenario, options={"output_speed": 8.0})
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    await speaker.say(tone(0.4) + silence(0.4))
    completion_id = await next_completion(client, 1)
    await client.wait_for(of_completion("audioOutput", completion_id))
    await speaker.advance_until(of_completion("completionEnd", completion_id), step_s=0.1, speed=4.0)
    await client.end(PROMPT)
    turn = turn_of(client, completion_id)
    check_spoken_answer(turn, ["Sure.", answer.removeprefix("Sure. ")])
    assert interleavings(client.events) == []


# ------------------------------------------------------------------------------------------------------ tools

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_tool_use_round_trip_speaks_the_result(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    tool_input = {"city": "Lisbon", "unit": "celsius"}
    scenario = write_scenario(
        tmp_path,
        [
            {
                "user": "How warm is it in Lisbon?",
                "tool": {"name": "getWeather", "input": tool_input},
                "assistant": "It is {result[temperature]} degrees and {result[sky]} in {result[city]}.",
            },
            {"user": "Thanks.", "assistant": "Any time."},
        ],
    )
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    tools = [ev.tool_spec("getTime", "The current time."), ev.tool_spec("getWeather", "Weather.", WEATHER_SCHEMA)]
    await client.start_conversation(PROMPT, tools=tools)
    await speaker.say(tone(0.5) + silence(0.5))
    completion_id = await next_completion(client, 1)

    tool_use = (await client.wait_for(of_completion("toolUse", completion_id)))["event"]["toolUse"]
    assert tool_use["toolName"] == "getWeather"
    assert isinstance(tool_use["toolUseId"], str)
    assert tool_use["toolUseId"]
    assert isinstance(tool_use["content"], str)
    assert json.loads(tool_use["content"]) == tool_input
    await client.wait_for(of_completion("contentEnd", completion_id, type="TOOL"))
    # The answer waits for the result: some input audio later, still nothing spoken.
    await speaker.say(silence(1.0))
    await asyncio.sleep(0.2)
    assert not [e for e in client.events if of_completion("audioOutput", completion_id)(e)]

    result = {"temperature": 23, "sky": "clear", "city": "Lisbon"}
    await client.send_all(ev.tool_result(PROMPT, "tool-result-1", tool_use["toolUseId"], json.dumps(result)))
    end = await play_out(speaker, completion_id)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"

    spoken = "It is 23 degrees and clear in Lisbon."
    turn = turn_of(client, completion_id)
    tool_blocks = turn.of("TOOL", "TOOL")
    assert len(tool_blocks) == 1
    block = tool_blocks[0]
    assert block.start_event["toolUseOutputConfiguration"] == {"mediaType": "application/json"}
    assert [u["toolUseId"] for u in block.tool_uses] == [tool_use["toolUseId"]]
    assert block.stop == "TOOL_USE"
    user_block = turn.blocks[0]
    assert (user_block.type, user_block.role, user_block.texts) == ("TEXT", "USER", ["How warm is it in Lisbon?"])
    assert user_block.closed < block.start
    assert all(b.start > block.closed for b in turn.blocks if b.role == "ASSISTANT")
    check_spoken_answer(turn, [spoken])
    assert turn.audio() == speech(spoken)

    # The conversation goes on normally.
    await speaker.say(tone(0.4) + silence(0.5))
    second = await next_completion(client, 2)
    await play_out(speaker, second)
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert recording.turns[0].tool_use_id == tool_use["toolUseId"]
    assert recording.turns[0].tool_result == json.dumps(result)
    assert recording.turns[0].answer == spoken
    assert recording.turns[1].tool_result is None
    assert recording.turns[1].answer == "Any time."
    assert client.texts("ASSISTANT", "FINAL") == [spoken, "Any time."]
    check_ids(client)


async def test_tool_missing_from_the_prompt_is_not_called(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path,
        [{"user": "Weather?", "tool": {"name": "getWeather", "input": {"city": "Oslo"}}, "assistant": "Checked."}],
    )
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT, tools=[ev.tool_spec("getTime", "The current time.")])
    await speaker.say(tone(0.5) + silence(0.5))
    completion_id = await next_completion(client, 1)
    end = await play_out(speaker, completion_id)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    assert client.payloads("toolUse") == []
    assert [p for p in client.payloads("contentStart") if p["type"] == "TOOL"] == []
    assert client.texts("ASSISTANT", "FINAL") == ["Checked."]
    assert emulator.recordings[0].turns[0].tool_use_id is None


# --------------------------------------------------------------------------------------------------- barge-in

LONG_ANSWER = (
    "Once upon a time there lived a curious engineer in a lighthouse by the sea. "
    "Every evening she listened to the radio and wrote down what the ships were saying. "
    "One night a strange signal came through the static, and she decided to follow it."
)


async def test_barge_in_during_assistant_audio(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(
        tmp_path,
        [
            {"user": "Tell me a story.", "assistant": LONG_ANSWER},
            {"user": "Stop, what time is it?", "assistant": "It is noon."},
        ],
    )
    emulator = await make_emulator(scenario=scenario, options={"output_speed": 1.5})
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    await speaker.say(tone(0.5) + silence(0.5))
    first = await next_completion(client, 1)
    await client.wait_for(of_completion("audioOutput", first))

    await speaker.say(tone(0.5))
    interruption_end_s = speaker.clock_s
    await speaker.say(silence(0.5))
    end = await client.wait_for(of_completion("completionEnd", first))
    assert end["event"]["completionEnd"]["stopReason"] == "INTERRUPTED"

    turn = turn_of(client, first)
    audio_blocks = turn.of("AUDIO", "ASSISTANT")
    assert audio_blocks
    assert audio_blocks[-1].stop == "INTERRUPTED"
    assert all(b.stop == "PARTIAL_TURN" for b in audio_blocks[:-1])
    marker_blocks = [b for b in turn.blocks if BARGE_IN_MARKER in b.texts]
    assert len(marker_blocks) == 1
    marker = marker_blocks[0]
    assert (marker.type, marker.role, marker.stage, marker.stop) == ("TEXT", "ASSISTANT", "FINAL", "INTERRUPTED")
    assert marker.texts[-1] == BARGE_IN_MARKER == '{ "interrupted" : true }'
    assert marker.start > audio_blocks[-1].closed
    assert turn.names()[-1] == "completionEnd"
    # No audio after the cut, and less of it than the whole answer.
    last_audio = max(i for i, name in enumerate(turn.names()) if name == "audioOutput")
    assert last_audio < audio_blocks[-1].closed
    full = speech(LONG_ANSWER)
    assert 0 < len(turn.audio()) < len(full)
    assert full.startswith(turn.audio())
    assert all(b.stop != "END_TURN" for b in turn.blocks if b.role == "ASSISTANT")

    # The interrupting utterance is the next turn, answered normally.
    second = await next_completion(client, 2)
    end = await play_out(speaker, second)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    check_spoken_turn(turn_of(client, second), "Stop, what time is it?", ["It is noon."])
    check_ids(client)

    recording = emulator.recordings[0]
    assert [t.interrupted for t in recording.turns] == [True, False]
    assert bytes(recording.turns[0].assistant_audio) == turn.audio()
    assert recording.turns[0].played_s < len(full) / (2 * RATE)
    assert recording.turns[1].user_text == "Stop, what time is it?"
    assert recording.turns[1].speech_end_s == pytest.approx(interruption_end_s, abs=0.015)
    assert client.audio_out() == bytes(recording.assistant_audio)
    assert bytes(recording.user_audio) == bytes(speaker.sent)


async def test_barge_in_after_the_audio_was_sent_but_before_it_played_out(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    """The service sends faster than playback: speech while the sent audio still plays is a barge-in too."""
    answer = "This answer is sent quickly but takes a few seconds to play."
    scenario = write_scenario(tmp_path, [{"user": "Hi.", "assistant": answer}, {"user": "Wait.", "assistant": "Yes?"}])
    emulator = await make_emulator(scenario=scenario, options={"output_speed": 50.0})
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    await speaker.say(tone(0.5) + silence(0.5))
    first = await next_completion(client, 1)
    await client.wait_for(of_completion("contentEnd", first, type="AUDIO", stopReason="END_TURN"))
    assert len(turn_of(client, first).audio()) == len(speech(answer))

    await speaker.say(tone(0.4) + silence(0.5))
    end = await client.wait_for(of_completion("completionEnd", first))
    assert end["event"]["completionEnd"]["stopReason"] == "INTERRUPTED"
    turn = turn_of(client, first)
    markers = [b for b in turn.blocks if BARGE_IN_MARKER in b.texts]
    assert len(markers) == 1
    assert (markers[0].role, markers[0].stage, markers[0].stop) == ("ASSISTANT", "FINAL", "INTERRUPTED")
    second = await next_completion(client, 2)
    await play_out(speaker, second)
    await client.end(PROMPT)
    recording = emulator.recordings[0]
    assert [t.interrupted for t in recording.turns] == [True, False]
    assert recording.turns[0].played_s < len(speech(answer)) / (2 * RATE)


async def test_speech_after_the_playout_is_not_a_barge_in(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    answers = ["First answer here.", "Second answer here."]
    scenario = write_scenario(tmp_path, [{"user": "One.", "assistant": answers[0]}, {"assistant": answers[1]}])
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    for number in (1, 2):
        await speaker.say(tone(0.5) + silence(0.5))
        completion_id = await next_completion(client, number)
        end = await play_out(speaker, completion_id)
        assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    assert BARGE_IN_MARKER not in client.texts("ASSISTANT")
    assert "INTERRUPTED" not in [p.get("stopReason") for p in client.payloads("contentEnd")]
    assert client.texts("ASSISTANT", "FINAL") == answers
    recording = emulator.recordings[0]
    assert [t.interrupted for t in recording.turns] == [False, False]
    assert recording.turns[0].played_s == pytest.approx(len(speech(answers[0])) / (2 * RATE), abs=0.01)


# ---------------------------------------------------------------------------------------- cross-modal text


async def test_nova2_interactive_user_text_is_answered_like_speech(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    answers = ["It is half past three. Anything else?", "Goodbye."]
    scenario = write_scenario(tmp_path, [{"assistant": answers[0]}, {"user": "Bye.", "assistant": answers[1]}])
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator, model_id=ev.NOVA_2)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    await speaker.say(silence(0.3))
    await client.send_all(ev.text_block(PROMPT, "typed-1", "What time is it?", role="USER", interactive=True))
    first = await next_completion(client, 1)
    end = await play_out(speaker, first)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    turn = turn_of(client, first)
    check_spoken_answer(turn, ["It is half past three.", "Anything else?"])
    assert turn.audio() == speech(answers[0])
    assert turn.names()[0] == "completionStart"

    # Speech still works afterwards, as the next turn.
    await speaker.say(tone(0.5) + silence(0.5))
    second = await next_completion(client, 2)
    await play_out(speaker, second)
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    check_spoken_turn(turn_of(client, second), "Bye.", ["Goodbye."])
    check_ids(client)
    recording = emulator.recordings[0]
    assert [(t.source, t.user_text) for t in recording.turns] == [("text", "What time is it?"), ("speech", "Bye.")]
    assert bytes(recording.turns[0].assistant_audio) == turn.audio()


async def test_nova2_interactive_user_text_before_any_audio_starts_the_conversation(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    # The cross-modal guide's "model-start-first": text sent right after the session starts makes the model speak.
    # Text that is not interactive, before audio, stays the chat history (not answered).
    answer = "Welcome back. How can I help?"
    emulator = await make_emulator(scenario=write_scenario(tmp_path, [{"assistant": answer}]))
    client = await open_client(emulator, model_id=ev.NOVA_2)
    speaker = Speaker(client)
    await client.send(ev.session_start("HIGH"), ev.prompt_start(PROMPT, voice="matthew", tools=None))
    await client.send_all(ev.text_block(PROMPT, "system", "You are a helpful assistant."))
    await client.send_all(ev.text_block(PROMPT, "history-1", "Hi, I called earlier.", role="USER"))
    await client.send_all(ev.text_block(PROMPT, "greet", "Greet the caller.", role="USER", interactive=True))
    await client.send(ev.audio_start(PROMPT, "audio"))
    completion = await next_completion(client, 1)
    await speaker.say(silence(0.3))
    end = await play_out(speaker, completion)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    check_spoken_answer(turn_of(client, completion), ["Welcome back.", "How can I help?"])
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    recording = emulator.recordings[0]
    assert [(t.source, t.user_text) for t in recording.turns] == [("text", "Greet the caller.")]


async def test_nova1_rejects_interactive_user_text_during_audio(
    make_emulator: EmulatorFactory, open_client: OpenClient
) -> None:
    emulator = await make_emulator()
    client = await open_client(emulator, model_id=ev.NOVA_1)
    await client.start_conversation(PROMPT, sensitivity=None)
    await client.stream_audio(silence(0.3))
    await client.send_all(ev.text_block(PROMPT, "typed-1", "What time is it?", role="USER", interactive=True))
    error = await client.wait_closed()
    assert isinstance(error, ValidationException)
    assert error.message == "Invalid input request, please fix your input and try again."
    assert client.payloads("completionStart") == []
    recording = emulator.recordings[0]
    assert recording.model_id == ev.NOVA_1
    assert recording.outcome == "error"
    assert recording.error is not None
    assert recording.error[0] == "validationException"
    assert recording.turns == []
    # It was the USER text block that the service refused (the audio before it was fine).
    last = recording.input_events[-1]["event"]
    assert last["contentStart"]["type"] == "TEXT"
    assert last["contentStart"]["role"] == "USER"
    assert len(recording.user_audio) == len(silence(0.3))


# ------------------------------------------------------------------------------------------------------ voice


async def one_answer(
    emulator: Emulator, open_client: OpenClient, *, voice: str = VOICE, rate: int = RATE
) -> tuple[SonicTestClient, bytes]:
    """Open a stream, speak once, and return the whole answer's audio once it has all been sent."""
    client = await open_client(emulator)
    await client.send(ev.session_start("HIGH"), ev.prompt_start(PROMPT, voice=voice, rate=rate))
    await client.send_all(ev.text_block(PROMPT, "system", "You are a helpful assistant."))
    await client.send(ev.audio_start(PROMPT, "audio"))
    await client.stream_audio(tone(0.5) + silence(0.5))
    completion_id = await next_completion(client, 1)
    await client.wait_for(of_completion("contentEnd", completion_id, type="AUDIO", stopReason="END_TURN"))
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    return client, turn_of(client, completion_id).audio()


VOICE_ANSWER = "The quick brown fox jumps over the lazy dog. Then it naps."


async def test_synthetic_voice_is_deterministic_and_per_voice(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path, [{"user": "Say it.", "assistant": VOICE_ANSWER}])
    emulator = await make_emulator(scenario=scenario, options={"output_speed": 50.0})
    _, first = await one_answer(emulator, open_client)
    _, again = await one_answer(emulator, open_client)
    _, tiffany = await one_answer(emulator, open_client, voice="tiffany")
    assert len(emulator.recordings) == 3
    assert len(first) == len(speech(VOICE_ANSWER)) > 0
    assert first == again
    assert first == bytes(emulator.recordings[0].assistant_audio) == bytes(emulator.recordings[1].assistant_audio)
    assert tiffany != first
    assert tiffany == speech(VOICE_ANSWER, voice="tiffany")


async def test_output_sample_rate_follows_prompt_start(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path, [{"user": "Say it.", "assistant": VOICE_ANSWER}])
    emulator = await make_emulator(scenario=scenario, options={"output_speed": 50.0})
    client, audio = await one_answer(emulator, open_client, rate=16000)
    starts = [p for p in client.payloads("contentStart") if p["type"] == "AUDIO"]
    assert starts
    assert {p["audioOutputConfiguration"]["sampleRateHertz"] for p in starts} == {16000}
    assert len(audio) == len(speech(VOICE_ANSWER, rate=16000))
    assert audio == speech(VOICE_ANSWER, rate=16000)
    assert len(audio) / (2 * 16000) == pytest.approx(len(speech(VOICE_ANSWER)) / (2 * RATE), abs=0.01)


# ------------------------------------------------------------------------------------------------ endpointing


@pytest.mark.parametrize(("sensitivity", "pause_s"), [("HIGH", 1.5), ("MEDIUM", 1.75), ("LOW", 2.0)])
async def test_endpointing_sensitivity_sets_the_pause_that_ends_a_turn(
    make_emulator: EmulatorFactory, open_client: OpenClient, sensitivity: str, pause_s: float
) -> None:
    emulator = await make_emulator(options={"endpointing_s": None})
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT, sensitivity=sensitivity)
    recording = await recording_of(emulator)

    await speaker.say(tone(0.5) + silence(1.6))
    await received(recording, len(speaker.sent))
    ended_at_1_6 = len(recording.turns) == 1
    assert ended_at_1_6 == (pause_s <= 1.6), f"{sensitivity}: a 1.6 s pause ended the turn: {ended_at_1_6}"
    if not ended_at_1_6:
        assert recording.turns == []
        await speaker.say(silence(pause_s - 1.6 - 0.05))
        await received(recording, len(speaker.sent))
        assert recording.turns == [], "the turn ended before the pause reached the sensitivity's window"
        await speaker.say(silence(0.1))
        await received(recording, len(speaker.sent))
    assert len(recording.turns) == 1
    assert recording.turns[0].speech_end_s == pytest.approx(0.5, abs=0.015)
    completion_id = await next_completion(client, 1)
    await client.wait_for(of_completion("textOutput", completion_id, role="USER"))
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    assert client.texts("USER") == ["(speech, 0.5 seconds)"]


async def test_high_sensitivity_ends_a_turn_that_low_does_not_on_the_same_audio(
    make_emulator: EmulatorFactory, open_client: OpenClient
) -> None:
    """tone, a 1.6 s pause, tone, then a long pause: HIGH hears two utterances, LOW one."""
    emulator = await make_emulator(options={"endpointing_s": None})
    audio = tone(0.5) + silence(1.6) + tone(0.5) + silence(2.2)
    turns: dict[str, list[float | None]] = {}
    for index, sensitivity in enumerate(("HIGH", "LOW")):
        client = await open_client(emulator)
        await client.start_conversation(PROMPT, sensitivity=sensitivity)
        recording = await recording_of(emulator, index)
        await client.stream_audio(audio)
        await received(recording, len(audio))
        await client.end(PROMPT)
        assert await client.wait_closed() is None
        turns[sensitivity] = [t.speech_end_s for t in recording.turns]
    assert turns["HIGH"] == [pytest.approx(0.5, abs=0.015), pytest.approx(2.6, abs=0.015)]
    assert turns["LOW"] == [pytest.approx(2.6, abs=0.015)]


# ---------------------------------------------------------------------------------------------------- history


async def test_history_before_audio_is_accepted(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path, [{"user": "And Spain?", "assistant": "Madrid."}])
    emulator = await make_emulator(scenario=scenario)
    client = await open_client(emulator)
    speaker = Speaker(client)
    history = [("USER", "What is the capital of France?"), ("ASSISTANT", "Paris.")]
    await client.start_conversation(PROMPT, history=history)
    await speaker.say(tone(0.5) + silence(0.5))
    completion_id = await next_completion(client, 1)
    end = await play_out(speaker, completion_id)
    assert end["event"]["completionEnd"]["stopReason"] == "END_TURN"
    await client.end(PROMPT)
    assert await client.wait_closed() is None
    check_spoken_turn(turn_of(client, completion_id), "And Spain?", ["Madrid."])
    recording = emulator.recordings[0]
    assert recording.outcome == "completed"
    assert len(recording.turns) == 1
    # The history is not answered: one completion, for the spoken turn.
    assert len(client.payloads("completionStart")) == 1
    received = [
        e["event"]["textInput"]["content"] for e in recording.input_events if next(iter(e["event"])) == "textInput"
    ]
    assert received == ["You are a helpful assistant.", "What is the capital of France?", "Paris."]


async def test_history_must_start_with_a_user_message(make_emulator: EmulatorFactory, open_client: OpenClient) -> None:
    emulator = await make_emulator()
    client = await open_client(emulator)
    await client.start_conversation(PROMPT, history=[("ASSISTANT", "Hello!"), ("USER", "Hi.")])
    error = await client.wait_closed()
    assert isinstance(error, ValidationException)
    recording = emulator.recordings[0]
    assert recording.outcome == "error"
    refused = recording.input_events[-1]["event"]["contentStart"]
    assert (refused["contentName"], refused["role"]) == ("history-0", "ASSISTANT")


async def test_a_recording_directory_holds_each_stream_as_it_runs(
    make_emulator: EmulatorFactory, open_client: OpenClient, tmp_path: Path
) -> None:
    # Written through, so an emulator killed mid-stream leaves what it had received and sent; the summary comes last.
    emulator = await make_emulator(record_dir=tmp_path)
    client = await open_client(emulator)
    speaker = Speaker(client)
    await client.start_conversation(PROMPT)
    await speaker.say(tone(0.5) + silence(0.5))
    completion_id = await next_completion(client, 1)
    await play_out(speaker, completion_id)
    recording = await recording_of(emulator)
    await received(recording, len(speaker.sent))

    assert (tmp_path / "stream-1-user.pcm").read_bytes() == bytes(speaker.sent) == bytes(recording.user_audio)
    assert (tmp_path / "stream-1-assistant.pcm").read_bytes() == bytes(recording.assistant_audio) == client.audio_out()
    journal = [json.loads(line) for line in (tmp_path / "stream-1-turns.jsonl").read_text().splitlines()]
    decided_at = journal[0]["user_bytes"]
    assert journal == [
        {
            "turn": 0,
            "completion_id": completion_id,
            "source": "speech",
            "user_text": "(speech, 0.5 seconds)",
            "user_bytes": decided_at,
        },
        {"audio": completion_id, "assistant_offset": 0},
    ]
    # The answer was decided after the speech and its endpointing pause, before the silence streamed after it.
    assert len(tone(0.5)) < decided_at <= len(tone(0.5) + silence(0.5))
    assert not (tmp_path / "stream-1.json").exists()

    await client.end(PROMPT)
    assert await client.wait_closed() is None
    await until(lambda: (tmp_path / "stream-1.json").exists())
    assert json.loads((tmp_path / "stream-1.json").read_text())["user_audio_sha256"] == recording.user_audio_sha256
    assert (tmp_path / "stream-1-user.pcm").read_bytes() == bytes(recording.user_audio)


async def test_ids_never_repeat_across_emulators(make_emulator: EmulatorFactory, open_client: OpenClient) -> None:
    # An emulator restarted counted its ids from the start again: a client that remembered the turns it interrupted
    # took a new turn for an old one (found by the soak run). The service's ids are random.
    seen: list[str] = []
    for _ in range(2):
        client = await open_client(await make_emulator())
        await client.start_conversation(PROMPT)
        await client.send(*ev.text_block(PROMPT, "text-1", "Hello?", role="USER", interactive=True))
        await next_completion(client, 1)
        seen += [
            value
            for event in client.events
            for key, value in event["event"][name_of(event)].items()
            if key.endswith("Id")
        ]
    assert len(seen) > 4
    ids_per_emulator = len(seen) // 2
    assert not set(seen[:ids_per_emulator]) & set(seen[ids_per_emulator:])
