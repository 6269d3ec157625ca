"""One InvokeModelWithBidirectionalStream call: open, the init sequence, serialised sends, receives, a clean close.

A session holds one stream at a time, two during a renewal. Sends are serialised by a lock so that no
``audioInput`` ever lands inside a text block ("Chat history should be sent completely before streaming audio.").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
from aws_sdk_bedrock_runtime.models import (
    BidirectionalInputPayloadPart,
    InvokeModelWithBidirectionalStreamInputChunk,
    InvokeModelWithBidirectionalStreamOperationInput,
)
from smithy_core.exceptions import CallError, SmithyIdentityError

from novabridge.sonic import wire
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.connect import Attempt, RequestWatch, probe_endpoint
from novabridge.sonic.errors import ConnectTimedOut
from novabridge.sonic.keys import reveal_keys
from novabridge.sonic.signing import FreshCredentials, expires_at, signing_with
from novabridge.sonic.transport import SonicTransport

logger = logging.getLogger("novabridge.sonic")

AUDIO_CONTENT = "audio"
CLOSE_TIMEOUT_S = 1.0
"""How long closing a stream may wait on the connection; a dead one is abandoned after this."""
SETTLED_AFTER_S = 2.0
"""A stream open this long without a complaint has had its setup accepted: the service checks the opening events
as they arrive, so a configuration it refuses is refused at once."""


async def make_client(config: SonicConfig, transport: SonicTransport) -> AsyncBedrockRuntimeClient:
    """The SDK client for ``config``: explicit keys if given, else the SDK's standard sources (env, profile).

    Without keys, each stream is signed with credentials resolved for it (`SonicStream`'s ``credentials``).
    """
    overrides: dict[str, Any] = {"region": config.region, "transport": transport, "interceptors": [RequestWatch()]}
    if config.endpoint_uri is not None:
        overrides["endpoint_uri"] = config.endpoint_uri
    keys = reveal_keys(config)
    if keys["aws_access_key_id"] is not None and keys["aws_secret_access_key"] is not None:
        overrides.update({name: value for name, value in keys.items() if value is not None})
    sdk_config = await AsyncBedrockRuntimeConfig.resolve(profile=config.profile, **overrides)
    return AsyncBedrockRuntimeClient(config=sdk_config)


class SonicStream:
    """A stream with its prompt, ready for audio once `open` returns."""

    def __init__(
        self,
        client: AsyncBedrockRuntimeClient,
        config: SonicConfig,
        generation: int,
        credentials: FreshCredentials | None = None,
    ) -> None:
        """A stream not yet open; with ``credentials``, it signs with what they give at its opening."""
        self.client = client
        self.config = config
        self.generation = generation
        self.credentials = credentials
        self.prompt = f"prompt-{uuid.uuid4()}"
        self._stream: Any = None
        self._receiver: Any = None
        self._lock = asyncio.Lock()
        self._blocks = 0
        self._audio_open = False
        self.closing = False
        self.requested_at = 0.0
        """When `open` sent the request (``time.monotonic()``): the service's connection lifetime runs from then."""
        self.opened_at: float | None = None
        """When `open` returned (``time.monotonic()``)."""
        self.credentials_expire_at: float | None = None
        """When the credentials the stream was opened with expire (``time.time()``); None: never, or unknown."""
        self.received = 0
        """Output events received so far."""
        self.retired = False
        """The session replaced this stream (it failed, or a renewal took over): what it still sends is not delivered,
        since its successor was given what it was about."""

    async def open(
        self, history: list[tuple[str, str]], *, tools: list[dict[str, Any]], timeout_s: float | None = None
    ) -> None:
        """Open the stream and send sessionStart, promptStart, the system prompt, the history and the audio start.

        The init events go out back to back: the service needs no pauses between them (the samples' sleeps are
        superstition), and the audio contentStart waits for the response headers, as LiveKit does.

        Raises, within ``timeout_s`` (default ``config.connect_timeout_s``) of the last opening event the stream took
        and a second to probe the endpoint, what kept the stream from opening (`novabridge.sonic.errors.classify`
        names it): the SDK's errors, the service's refusal (`ServiceRefusal`), or `ConnectTimedOut` with the step of
        reaching the endpoint that fails.
        """
        config = self.config
        timeout_s = config.connect_timeout_s if timeout_s is None else timeout_s
        self.requested_at = time.monotonic()
        attempt = Attempt()
        deadline = asyncio.timeout(timeout_s)

        def progressed() -> None:
            # Each event taken moves the deadline: a long history (hundreds of messages, three events each) can take
            # seconds to go out from a loaded machine or into a loaded service, and a retry would send it all again.
            # A connection that takes nothing still fails within ``timeout_s``.
            deadline.reschedule(max(deadline.when() or 0.0, asyncio.get_running_loop().time() + timeout_s))

        try:
            async with deadline:
                await self._open(attempt, history, tools, progressed)
        except Exception as error:
            attempt.abandon()
            if isinstance(error, TimeoutError) and deadline.expired() and attempt.resolving_credentials:
                # A source that asks the network (a container or instance role) and gets no answer.
                raise SmithyIdentityError(
                    f"the credential source gave no credentials within {timeout_s:.1f} s"
                ) from None
            if isinstance(error, TimeoutError) and deadline.expired():
                kind, finding = await probe_endpoint(config.endpoint, config.ca_file)
                raise ConnectTimedOut(kind, f"no stream within {timeout_s:.1f} s: {finding}") from None
            if attempt.responded and self._stream is not None:
                # Refused (throttled, unauthorised, ...): end our side too, so the server can let the stream go.
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(CLOSE_TIMEOUT_S):
                        await self._stream.input_stream.close()
            if attempt.refusal is not None and type(error) is CallError:
                raise attempt.refusal from error  # an error the SDK does not model: it dropped the service's message
            raise
        await self.send(wire.audio_start(self.prompt, AUDIO_CONTENT, input_rate=config.input_rate))
        self._audio_open = True
        self.opened_at = time.monotonic()

    async def _open(
        self,
        attempt: Attempt,
        history: list[tuple[str, str]],
        tools: list[dict[str, Any]],
        progressed: Callable[[], None],
    ) -> None:
        """The request, the opening events and the service's response headers."""
        config = self.config
        plugins = None
        if self.credentials is not None:
            attempt.resolving_credentials = True
            identity = await self.credentials.for_stream()
            attempt.resolving_credentials = False
            self.credentials_expire_at = expires_at(identity)
            plugins = [signing_with(identity)]
        self._stream = await attempt.invoke(
            self.client, InvokeModelWithBidirectionalStreamOperationInput(model_id=config.model_id), plugins
        )
        inference = config.inference
        events = [
            wire.session_start(
                max_tokens=inference.max_tokens,
                top_p=inference.top_p,
                temperature=inference.temperature,
                endpointing=config.endpointing,
            ),
            wire.prompt_start(self.prompt, voice=config.voice, output_rate=config.output_rate, tools=tools),
            *wire.text_block(self.prompt, self._content_name(), config.system_prompt, role="SYSTEM"),
        ]
        if config.speech_prompt is not None:  # "must be sent after the system prompt" (Nova 2 user guide)
            events += wire.text_block(self.prompt, self._content_name(), config.speech_prompt, role="SYSTEM_SPEECH")
        await self.send(*events, progressed=progressed)
        # Each message's events are built as it is sent. Built all at once, 600 short messages' events were 1.4 MB of
        # dicts at every renewal: a peak that grew with the conversation, and that the worker's heap kept.
        for role, text in history:
            await self.send(*wire.text_block(self.prompt, self._content_name(), text, role=role), progressed=progressed)
        _, self._receiver = await attempt.output(self._stream)

    @property
    def settled(self) -> bool:
        """The service has accepted this stream's setup: it has sent output, or `SETTLED_AFTER_S` went by."""
        return self.received > 0 or (
            self.opened_at is not None and time.monotonic() - self.opened_at >= SETTLED_AFTER_S
        )

    def _content_name(self) -> str:
        self._blocks += 1
        return f"{self.prompt}-block-{self._blocks}"

    async def send(self, *events: dict[str, Any], progressed: Callable[[], None] | None = None) -> None:
        """Send events in order, none interleaved with another caller's; call ``progressed`` after each."""
        async with self._lock:
            for event in events:
                payload = BidirectionalInputPayloadPart(bytes_=json.dumps(event).encode())
                await self._stream.input_stream.send(InvokeModelWithBidirectionalStreamInputChunk(value=payload))
                if progressed is not None:
                    progressed()

    async def send_audio(self, pcm: bytes) -> None:
        """One audioInput."""
        await self.send(wire.audio_input(self.prompt, AUDIO_CONTENT, pcm))

    async def send_text(self, text: str) -> None:
        """Nova 2 cross-modal input: an interactive USER text block, atomically between audio frames."""
        await self.send(*wire.text_block(self.prompt, self._content_name(), text, role="USER", interactive=True))

    async def send_tool_result(self, tool_use_id: str, result: str) -> None:
        """Answer a toolUse."""
        await self.send(*wire.tool_result(self.prompt, self._content_name(), tool_use_id, result))

    async def receive(self) -> bytes | None:
        """The next output event's JSON, or None when the service ended the stream."""
        result = await self._receiver.receive()
        if result is None:
            return None
        self.received += 1
        data: bytes = result.value.bytes_
        return data

    async def close(self) -> None:
        """End the conversation politely (contentEnd, promptEnd, sessionEnd) and close our side of the stream.

        The service frees its resources on these events (AWS speech-errors guidance). Failures here are moot: the
        stream is being abandoned either way.
        """
        if self._stream is None or self.closing:
            return
        self.closing = True
        ending = [wire.content_end(self.prompt, AUDIO_CONTENT)] if self._audio_open else []
        # On a dead connection neither would return (the SDK waits for its send buffer to drain): bounded.
        await _abandoned_after(self.send(*ending, wire.prompt_end(self.prompt), wire.session_end()), CLOSE_TIMEOUT_S)
        await _abandoned_after(self._stream.input_stream.close(), CLOSE_TIMEOUT_S)

    async def drain(self, timeout_s: float) -> None:
        """Read and discard output until the service ends the stream (for a stream no receive task reads)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(timeout_s):
                while await self.receive() is not None:
                    pass


async def _abandoned_after(step: Coroutine[Any, Any, Any], timeout_s: float) -> None:
    """Run ``step`` for at most ``timeout_s``; past that it is cancelled and left to end when it will.

    Not awaited once cancelled: the SDK's input stream, closed on a connection that takes nothing more, waits on its
    buffer in a way a cancellation did not always end (seen in the test suite: a session's close waited for ever).
    """
    task = asyncio.ensure_future(step)
    task.add_done_callback(_quietly)
    await asyncio.wait({task}, timeout=timeout_s)
    task.cancel()


def _quietly(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a close step: failures there are moot (the stream is being abandoned)."""
    if not task.cancelled():
        task.exception()
