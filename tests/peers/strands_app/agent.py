"""A Strands `BidiAgent` on `BedrockNovaSonicModel` as an application runs one: started, fed the microphone's audio
as `AudioDelta`s, its output read from `receive()` until it stops.

Strands 1.62 cannot be given an endpoint: `BedrockNovaSonicModel.start()` resolves its SDK config with
``endpoint_uri=f"https://bedrock-runtime.{region}.amazonaws.com"`` passed explicitly, which wins over the
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` that SDK 0.11 reads otherwise, and it refuses a region with URL characters in
it. Without editing Strands, the test replaces the config class its module looks up with one that leaves that one
argument out, so the SDK takes the endpoint from the environment (`NovaSonicEmulator.environ`), as a deployment
would set it. Credentials come from the environment through boto3, as Strands reads them; trust from
``SSL_CERT_FILE``, which the CRT transport Strands builds reads.
"""

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import pytest
import strands.bidi.models.bedrock
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from novabridge.pytest_plugin import NovaSonicEmulator
from strands.bidi import BidiAgent
from strands.bidi.models.bedrock import BedrockNovaSonicModel
from strands.bidi.types import AudioDelta, BidiAudioDeltaEvent

from peers.microphone import Microphone


class ConfigFromEnvironment(AsyncBedrockRuntimeConfig):
    """The SDK config, with the endpoint left to the SDK's own resolution (its environment variable)."""

    @classmethod
    async def resolve(cls, **overrides: Any) -> Any:
        overrides.pop("endpoint_uri", None)
        return await super().resolve(**overrides)


def point_strands_at(emulator: NovaSonicEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in emulator.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(strands.bidi.models.bedrock, "AsyncBedrockRuntimeConfig", ConfigFromEnvironment)


class Conversation:
    """A started agent, everything `receive()` gave so far, and a live microphone."""

    def __init__(self, agent: BidiAgent) -> None:
        self.agent = agent
        self.events: list[Any] = []
        self._arrived = asyncio.Condition()
        self.microphone = Microphone(self.send_audio)

    async def send_audio(self, pcm: bytes) -> None:
        await self.agent.send(AudioDelta(format="pcm", source={"bytes": pcm}))

    async def read(self) -> None:
        async for event in self.agent.receive():
            async with self._arrived:
                self.events.append(event)
                self._arrived.notify_all()

    def of(self, kind: type) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    async def wait_for(self, kind: type, count: int = 1, timeout: float = 20.0) -> list[Any]:
        """The first ``count`` events of ``kind``, once that many have arrived."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.of(kind)) >= count)
        return self.of(kind)[:count]

    def audio(self) -> bytes:
        return b"".join(base64.b64decode(event.audio) for event in self.of(BidiAudioDeltaEvent))

    def said(self, role: str) -> list[str]:
        """The text of the agent's conversation history, per message of ``role``."""
        return [
            "".join(block["text"] for block in message["content"] if "text" in block)
            for message in self.agent.messages
            if message["role"] == role and any("text" in block for block in message["content"])
        ]


@contextlib.asynccontextmanager
async def conversation_with(emulator: NovaSonicEmulator, tools: list[Any] | None = None) -> AsyncIterator[Conversation]:
    """The agent on Nova 2.5 Sonic (Strands' default model), started, its microphone streaming; stopped on leaving."""
    model = BedrockNovaSonicModel(model_id="amazon.nova-2-5-sonic", region=emulator.region)
    agent = BidiAgent(model=model, tools=tools or [], system_prompt="You are a helpful assistant.")
    await agent.start()
    conversation = Conversation(agent)
    reading = asyncio.create_task(conversation.read())
    try:
        async with conversation.microphone.live():
            yield conversation
    finally:
        await agent.stop()
        # receive() does not end when the agent stops: it waits for events that no longer come.
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


def run(conversation: Coroutine[Any, Any, None]) -> None:
    """A conversation to its end, within a minute."""
    asyncio.run(asyncio.wait_for(conversation, 60))
