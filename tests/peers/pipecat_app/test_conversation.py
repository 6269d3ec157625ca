"""Pipecat 1.14's `AWSNovaSonicLLMService`, installed from PyPI, holding conversations with the emulator."""

import copy
import os
from importlib.metadata import version

import pytest
from novabridge.pytest_plugin import NovaSonicEmulator
from pipecat.adapters.llm.schemas.function_schema import FunctionSchema
from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMMessagesAppendFrame,
    TTSAudioRawFrame,
    TTSTextFrame,
)
from pipecat.services.llm_service import FunctionCallParams

from peers.pipecat_app.bot import run, running_bot


def delivered_audio(frames: list[TTSAudioRawFrame]) -> bytes:
    return b"".join(frame.audio for frame in frames)


@pytest.mark.nova_sonic_scenario({"turns": [{"user": "What is the weather like?", "assistant": "It is sunny."}]})
def test_a_spoken_turn(nova_sonic_emulator: NovaSonicEmulator) -> None:
    async def conversation() -> None:
        async with running_bot(nova_sonic_emulator) as bot:
            await bot.microphone.say(1.2)
            await bot.log.wait_for(LLMFullResponseEndFrame)
            await bot.log.wait_for(TTSTextFrame)
        assert [message["content"] for message in bot.messages("user")] == ["What is the weather like?"]
        assert [message["content"] for message in bot.messages("assistant")] == ["It is sunny."]
        [recording] = nova_sonic_emulator.recordings(count=1)
        assert delivered_audio(bot.log.of(TTSAudioRawFrame)) == recording.assistant_audio
        # SDK 0.9 deep-copies its config for every call, transport included, and AWSCRTHTTPClient's copy is a new
        # client with the CRT's default TLS context: the stream above went through such a copy, trusting the
        # emulator by SSL_CERT_FILE alone.
        assert version("aws_sdk_bedrock_runtime").startswith("0.9.")
        [config] = bot.llm.configs
        copied = copy.deepcopy(config).transport
        assert type(copied) is type(config.transport)
        assert copied is not config.transport
        assert os.environ["SSL_CERT_FILE"] == str(nova_sonic_emulator.ca_bundle)

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    [turn] = recording.turns
    assert (turn["source"], turn["user_text"], turn["answer"], turn["interrupted"]) == (
        "speech",
        "What is the weather like?",
        "It is sunny.",
        False,
    )
    # The utterance ended where the microphone stopped speaking: after the second of room tone, 1.2 s of speech.
    assert turn["speech_end_s"] == pytest.approx(2.2, abs=0.3)
    assert recording.summary["model_id"] == "amazon.nova-2-5-sonic"  # Pipecat's default model
    assert recording.summary["outcome"] == "completed"


@pytest.mark.nova_sonic_scenario(
    {
        "turns": [
            {
                "user": "What time is it in Tokyo?",
                "tool": {"name": "get_time", "input": {"city": "Tokyo"}},
                "assistant": "It is {result[time]} in Tokyo.",
            }
        ]
    }
)
def test_a_tool_call(nova_sonic_emulator: NovaSonicEmulator) -> None:
    calls: list[dict[str, object]] = []

    async def get_time(params: FunctionCallParams) -> None:
        calls.append(dict(params.arguments))
        await params.result_callback({"time": "nine in the evening"})

    get_time_tool = FunctionSchema(
        name="get_time",
        description="The local time in a city.",
        properties={"city": {"type": "string"}},
        required=["city"],
        handler=get_time,
    )

    async def conversation() -> None:
        async with running_bot(nova_sonic_emulator, tools=[get_time_tool]) as bot:
            await bot.microphone.say(1.0)
            await bot.log.wait_for(LLMFullResponseEndFrame)
            await bot.log.wait_for(TTSTextFrame)
        assert calls == [{"city": "Tokyo"}]
        assert [message["content"] for message in bot.messages("assistant") if message.get("content")] == [
            "It is nine in the evening in Tokyo."
        ]

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    [turn] = recording.turns
    assert turn["answer"] == "It is nine in the evening in Tokyo."
    assert "nine in the evening" in (turn["tool_result"] or "")
    [prompt_start] = [
        event["event"]["promptStart"] for event in recording.summary["input_events"] if "promptStart" in event["event"]
    ]
    assert [tool["toolSpec"]["name"] for tool in prompt_start["toolConfiguration"]["tools"]] == ["get_time"]


@pytest.mark.nova_sonic_scenario({"turns": [{"assistant": "Here is a short poem about the sea."}]})
def test_a_text_turn(nova_sonic_emulator: NovaSonicEmulator) -> None:
    async def conversation() -> None:
        async with running_bot(nova_sonic_emulator) as bot:
            # Queued on the service itself: at the pipeline's head the user context aggregator takes the frame and
            # only adds it to the context, which this service does not send on (Pipecat 1.14).
            await bot.llm.queue_frame(
                LLMMessagesAppendFrame([{"role": "user", "content": "Write me a poem about the sea."}], run_llm=True)
            )
            await bot.log.wait_for(LLMFullResponseEndFrame)
            await bot.log.wait_for(TTSTextFrame)
            assert bot.log.of(TTSAudioRawFrame)
        assert [message["content"] for message in bot.messages("assistant")] == ["Here is a short poem about the sea."]

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
        async with running_bot(nova_sonic_emulator) as bot:
            await bot.microphone.say(1.0)
            await bot.log.wait_for(TTSAudioRawFrame)
            await bot.microphone.say(0.8)  # while the answer plays
            await bot.log.wait_for(InterruptionFrame)
            await bot.log.wait_for(LLMFullResponseEndFrame, count=2)
        assert [message["content"] for message in bot.messages("user")] == ["Tell me a story.", "Stop."]
        # Not == "Sure.": Pipecat 1.14 sends the interrupted answer's text (a queued TTSTextFrame) ahead of the
        # InterruptionFrame, which overtakes it (system frames jump the queue), so that text lands in the next answer.
        assert bot.messages("assistant")[-1]["content"].endswith("Sure.")

    run(conversation())
    [recording] = nova_sonic_emulator.recordings(count=1)
    first, second = recording.turns
    assert first["interrupted"]
    assert not second["interrupted"]
    assert 0 < first["played_s"] < first["assistant_audio_bytes"] / 2 / 24000
    assert (second["user_text"], second["answer"]) == ("Stop.", "Sure.")
