"""A test client on the real SDK and transport: plain event JSON in, decoded event JSON out."""

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from novabridge.emulator import Emulator
from novabridge.sonic.transport import SonicTransport

from support import docs_events as ev
from support.emulator_in_process import TEST_KEY

Event = dict[str, Any]


def tone(seconds: float, *, rate: int = 16000, hz: float = 220.0, level: float = 0.25) -> bytes:
    """Voiced 'speech' for the emulator's energy VAD: s16le mono."""
    t = np.arange(round(seconds * rate)) / rate
    return (np.sin(2 * np.pi * hz * t) * level * 32767).astype("<i2").tobytes()


def silence(seconds: float, *, rate: int = 16000) -> bytes:
    return bytes(2 * round(seconds * rate))


def name_of(event: Event) -> str:
    name: str = next(iter(event["event"]))
    return name


class SonicTestClient:
    """One InvokeModelWithBidirectionalStream call against an emulator."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        model_id: str = ev.NOVA_2,
        credentials: tuple[str, str] = TEST_KEY,
        ca_file: str | None = None,
    ) -> None:
        self.emulator = emulator
        self.model_id = model_id
        self.credentials = credentials
        self.ca_file = ca_file or emulator.ca_file
        self.events: list[Event] = []
        self.error: BaseException | None = None
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._stream: Any = None
        self._receiver: asyncio.Task[None] | None = None
        self._transport: SonicTransport | None = None

    async def open(self) -> "SonicTestClient":
        self._transport = SonicTransport(ca_file=self.ca_file)
        config = await AsyncBedrockRuntimeConfig.resolve(
            endpoint_uri=self.emulator.endpoint_uri,
            region="us-east-1",
            aws_access_key_id=self.credentials[0],
            aws_secret_access_key=self.credentials[1],
            transport=self._transport,
        )
        client = AsyncBedrockRuntimeClient(config=config)
        self._stream = await client.invoke_model_with_bidirectional_stream(
            InvokeModelWithBidirectionalStreamOperationInput(model_id=self.model_id)
        )
        self._receiver = asyncio.create_task(self._receive())
        return self

    async def _receive(self) -> None:
        try:
            _, receiver = await self._stream.await_output()
            while True:
                result = await receiver.receive()
                if result is None:
                    break
                self.events.append(json.loads(result.value.bytes_))
                self._changed.set()
        except Exception as error:  # noqa: BLE001 - whatever ends the stream is what the test asserts on
            self.error = error
        finally:
            self.closed.set()
            self._changed.set()

    async def send(self, *events: Event) -> None:
        for event in events:
            chunk = BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
            await self._stream.input_stream.send(InvokeModelWithBidirectionalStreamInputChunk(value=chunk))

    async def send_all(self, events: Iterable[Event]) -> None:
        await self.send(*events)

    async def start_conversation(
        self,
        prompt: str = "p",
        *,
        system: str = "You are a helpful assistant.",
        tools: list[Event] | None = None,
        history: Iterable[tuple[str, str]] = (),
        sensitivity: str | None = "HIGH",
        voice: str = "matthew",
    ) -> None:
        """sessionStart, promptStart, the SYSTEM block, history blocks, and the AUDIO contentStart ("audio")."""
        await self.send(ev.session_start(sensitivity), ev.prompt_start(prompt, voice=voice, tools=tools))
        await self.send_all(ev.text_block(prompt, "system", system))
        for number, (role, text) in enumerate(history):
            await self.send_all(ev.text_block(prompt, f"history-{number}", text, role=role))
        await self.send(ev.audio_start(prompt, "audio"))

    async def stream_audio(
        self, pcm: bytes, *, prompt: str = "p", content: str = "audio", frame_bytes: int = 1024, speed: float = 8.0
    ) -> None:
        """Send ``pcm`` in frames, paced at ``speed`` times real time (16 kHz s16le)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for offset in range(0, len(pcm), frame_bytes):
            await self.send(ev.audio_input(prompt, content, pcm[offset : offset + frame_bytes]))
            due = start + (offset + frame_bytes) / 32000 / speed
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 15.0) -> Event:
        """The first received event (so far or later) that satisfies ``predicate``."""
        async with asyncio.timeout(timeout):
            seen = 0
            while True:
                for event in self.events[seen:]:
                    if predicate(event):
                        return event
                seen = len(self.events)
                if self.closed.is_set():
                    raise AssertionError(f"stream closed ({self.error!r}) before the event; got {self.names()}")
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_name(self, name: str, count: int = 1, timeout: float = 15.0) -> Event:
        seen = 0

        def nth(event: Event) -> bool:
            nonlocal seen
            if name_of(event) == name:
                seen += 1
            return seen >= count

        return await self.wait_for(nth, timeout)

    async def wait_closed(self, timeout: float = 15.0) -> BaseException | None:
        async with asyncio.timeout(timeout):
            await self.closed.wait()
        return self.error

    async def end(self, prompt: str = "p", *, audio: bool = True) -> None:
        """contentEnd (audio), promptEnd, sessionEnd, then close the input side; waits for the response to end."""
        if audio:
            await self.send(ev.content_end(prompt, "audio"))
        await self.send(ev.prompt_end(prompt), ev.session_end())
        await self.close()

    async def close(self) -> None:
        if self._stream is not None and not self._stream.input_stream.closed:
            with contextlib.suppress(Exception):
                await self._stream.input_stream.close()
        if self._receiver is not None:
            done, _ = await asyncio.wait({self._receiver}, timeout=10)
            if not done:
                self._receiver.cancel()
        if self._transport is not None:
            await self._transport.close()

    async def send_raw(self, payload: bytes) -> None:
        """Send ``payload`` as the bytes of one chunk, whatever they hold (for malformed-input tests)."""
        chunk = BidirectionalInputPayloadPart(bytes_=payload)
        await self._stream.input_stream.send(InvokeModelWithBidirectionalStreamInputChunk(value=chunk))

    def connection_open(self) -> bool:
        """Whether the transport still holds an open HTTP/2 connection (False once the server severed it)."""
        assert self._transport is not None
        return any(connection.is_open() for connection in self._transport._connections.values())

    async def abandon(self) -> None:
        """Drop a stream without closing its input (it never connected, or stalled): `close` would wait forever."""
        if self._receiver is not None:
            self._receiver.cancel()
            await asyncio.gather(self._receiver, return_exceptions=True)
        if self._transport is not None:
            await self._transport.close()
        self._stream = self._receiver = self._transport = None

    async def close_within(self, timeout: float) -> None:
        """`close`, or drop the stream if that does not finish in ``timeout`` seconds.

        Once the response has ended (or the connection stalled) the SDK stops draining its input buffer, while
        closing the input flushes that buffer first, and does so again when cancelled: after events sent into an
        ended stream, `close` would wait forever. Here the buffer is discarded instead.
        """
        closing = asyncio.ensure_future(self.close())
        done, _ = await asyncio.wait({closing}, timeout=timeout)
        if done:
            return await closing
        if self._stream is not None:
            await self._stream.input_stream._writer.close(flush=False)
        await self.abandon()
        done, _ = await asyncio.wait({closing}, timeout=1.0)
        if not done:
            closing.cancel()
            await asyncio.gather(closing, return_exceptions=True)

    def names(self) -> list[str]:
        return [name_of(e) for e in self.events]

    def payloads(self, name: str) -> list[Event]:
        return [e["event"][name] for e in self.events if name_of(e) == name]

    def audio_out(self) -> bytes:
        import base64

        return b"".join(base64.b64decode(p["content"]) for p in self.payloads("audioOutput"))

    def texts(self, role: str, stage: str | None = None) -> list[str]:
        """textOutput contents of ``role``, optionally only those in blocks of generationStage ``stage``."""
        stages: dict[str, str] = {}
        for event in self.events:
            if name_of(event) == "contentStart" and event["event"]["contentStart"].get("type") == "TEXT":
                start = event["event"]["contentStart"]
                fields = json.loads(start.get("additionalModelFields", "{}"))
                stages[start["contentId"]] = fields.get("generationStage", "")
        return [
            p["content"]
            for p in self.payloads("textOutput")
            if p["role"] == role and (stage is None or stages.get(p["contentId"]) == stage)
        ]
