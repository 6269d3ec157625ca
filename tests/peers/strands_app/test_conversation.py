"""Strands Agents 1.62's `BidiAgent` with `BedrockNovaSonicModel`, installed from PyPI, holding conversations with the
emulator."""

import pytest
from novabridge.pytest_plugin import NovaSonicEmulator
from strands import tool
from strands.bidi.types import (
    BidiAudioDeltaEvent,
    BidiBargeInEvent,
    BidiResponseStopEvent,
    BidiTranscriptBlockEvent,
)

from peers.strands_app.agent import conversation_with, point_strands_at, run


@pytest.fixture(autouse=True)
def strands_at_the_emulator(nova_sonic_emulator: NovaSonicEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    point_strands_at(nova_sonic_emulator, monkeypatch)


def transcripts(events: list[BidiTranscriptBlockEvent], role: str) -> list[str]:
    return [event.transcript for event in events if event.role == role]


@pytest.mark.nova_sonic_scenario({"turns": [{"user": "What is the weather like?", "assistant": "It is sunny."}]})
def test_a_spoken_turn(nova_sonic_emulator: NovaSonicEmulator) -> None:
    async def conversation() -> None:
        async with conversation_with(nova_sonic_emulator) as talk:
            await talk.microphone.say(1.2)
            await talk.wait_for(BidiResponseStopEvent)
        blocks = talk.of(BidiTranscriptBlockEvent)
        assert transcripts(blocks, "user") == ["What is the weather like?"]
        assert transcripts(blocks, "assistant") == ["It is sunny."]
        [recording] = nova_sonic_emulator.recordings(count=1)
        assert talk.audio() == recording.assistant_audio
        assert {event.sample_rate for event in talk.of(BidiAudioDeltaEvent)} == {16000}  # Strands' default output

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    [turn] = recording.turns
    assert (turn["source"], turn["user_text"], turn["answer"], turn["interrupted"]) == (
        "speech",
        "What is the weather like?",
        "It is sunny.",
        False,
    )
    assert turn["speech_end_s"] == pytest.approx(1.2, abs=0.3)
    assert recording.summary["model_id"] == "amazon.nova-2-5-sonic"


@tool
def get_time(city: str) -> str:
    """The local time in a city.

    Args:
        city: The city's name.
    """
    get_time_calls.append(city)
    return "nine in the evening"


get_time_calls: list[str] = []


@pytest.mark.nova_sonic_scenario(
    {
        "turns": [
            {
                "user": "What time is it in Tokyo?",
                "tool": {"name": "get_time", "input": {"city": "Tokyo"}},
                "assistant": "It is {result[text]} in Tokyo.",
            }
        ]
    }
)
def test_a_tool_call(nova_sonic_emulator: NovaSonicEmulator) -> None:
    get_time_calls.clear()

    async def conversation() -> None:
        async with conversation_with(nova_sonic_emulator, tools=[get_time]) as talk:
            await talk.microphone.say(1.0)
            await talk.wait_for(BidiTranscriptBlockEvent, count=2)
            await talk.wait_for(BidiAudioDeltaEvent)
            await talk.wait_for(BidiResponseStopEvent)
        assert get_time_calls == ["Tokyo"]
        assert "It is nine in the evening in Tokyo." in transcripts(talk.of(BidiTranscriptBlockEvent), "assistant")
        # Strands runs the tool asynchronously: a dispatch notice answers the call at once, the result follows.
        results = [
            block["toolResult"]
            for message in talk.agent.messages
            for block in message["content"]
            if "toolResult" in block
        ]
        assert results[-1]["content"] == [{"text": "nine in the evening"}]

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    [turn] = recording.turns
    assert turn["answer"] == "It is nine in the evening in Tokyo."
    assert "nine in the evening" in (turn["tool_result"] or "")


@pytest.mark.nova_sonic_scenario({"turns": [{"assistant": "Here is a short poem about the sea."}]})
def test_a_text_turn(nova_sonic_emulator: NovaSonicEmulator) -> None:
    async def conversation() -> None:
        async with conversation_with(nova_sonic_emulator) as talk:
            # Typed once the microphone is live, as a user types.
            await talk.agent.send("Write me a poem about the sea.")
            await talk.wait_for(BidiResponseStopEvent)
        assert transcripts(talk.of(BidiTranscriptBlockEvent), "assistant") == ["Here is a short poem about the sea."]
        assert talk.audio()
        assert talk.said("user") == ["Write me a poem about the sea."]

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    [turn] = recording.turns
    assert (turn["source"], turn["user_text"], turn["answer"]) == (
        "text",
        "Write me a poem about the sea.",
        "Here is a short poem about the sea.",
    )


LONG_ANSWER = "Let me tell you everything about the history of the lighthouse on the northern cape. " * 3


@pytest.mark.nova_sonic_scenario(
    {"turns": [{"user": "Tell me a story.", "assistant": LONG_ANSWER}, {"user": "Stop.", "assistant": "Sure."}]}
)
def test_a_barge_in(nova_sonic_emulator: NovaSonicEmulator) -> None:
    async def conversation() -> None:
        async with conversation_with(nova_sonic_emulator) as talk:
            await talk.microphone.say(1.0)
            await talk.wait_for(BidiAudioDeltaEvent)
            await talk.microphone.say(0.8)  # while the answer plays
            await talk.wait_for(BidiBargeInEvent)
            await talk.wait_for(BidiResponseStopEvent, count=2)
        blocks = talk.of(BidiTranscriptBlockEvent)
        assert transcripts(blocks, "user") == ["Tell me a story.", "Stop."]
        assert transcripts(blocks, "assistant")[-1] == "Sure."

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    first, second = recording.turns
    assert first["interrupted"]
    assert not second["interrupted"]
    assert 0 < first["played_s"] < first["assistant_audio_bytes"] / 2 / 16000
    assert (second["user_text"], second["answer"]) == ("Stop.", "Sure.")
