"""`SonicSession`: one conversation with Nova Sonic that outlives streams.

Audio goes out in frames of ``frame_ms`` through one pump task, so sends never interleave and silence fills idle
time (the service times out without input). Each stream has its own receive task that turns output events into
typed events. Transient failures reconnect with exponential backoff and resume from the history; before the
connection lifetime runs out the session renews onto a pre-warmed stream. A new stream is asked again the user's
turns not yet answered in full (typed, or recognised speech as text on Nova 2) and given the user's audio since
(at most 3 s), so nothing said at the handover is lost or left unanswered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

import numpy as np

from novabridge.events import (
    ANSWER_EVENTS,
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
)
from novabridge.exceptions import ProtocolError, SessionError
from novabridge.replay import ReplayWindow, Unanswered
from novabridge.sonic import wire
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.errors import Failure, classify, gave_up
from novabridge.sonic.history import History
from novabridge.sonic.models import model_for
from novabridge.sonic.signing import FreshCredentials, expires_at
from novabridge.sonic.stream import CLOSE_TIMEOUT_S, SonicStream, make_client
from novabridge.sonic.tools import Tool, run_tool
from novabridge.sonic.transport import SonicTransport
from novabridge.turns import FirstAudioClock, timings, withdraw_audio
from novabridge.voice_activity import last_voice_end

logger = logging.getLogger("novabridge.sonic")

IDLE_FILL_S = 0.5
"""After this long without audio from the caller, the pump sends silence in real time to keep the stream alive."""
BACKLOG_LIMIT_S = 30.0
"""Audio queued while no stream can take it; beyond this the oldest is dropped, and reported."""
MIN_ATTEMPT_S = 0.5
"""A connection attempt at `start` gets at least this long; with less of ``connect_timeout_s`` left, none is made."""
RENEWAL_GRACE_S = 60.0
"""How long a due renewal waits for the assistant to finish its turn before it goes ahead anyway."""
STALL_S = 5.0
"""A frame the SDK has not sent after this long: the service stopped taking audio, and the stream is failed (the
connection with it, since it is the connection that is stuck: HTTP/2 flow control)."""
STREAM_STALLED = "StreamStalled"
SETTLED_TOOL_CALLS = 256
"""Tool uses no longer pending whose fate is remembered, to say why a late result for one is dropped."""


class SessionClosed(RuntimeError):
    """The session is closed (by the caller or by a fatal error)."""


@dataclass
class SessionMetrics:
    """Counters and timings of a session."""

    frames_sent: int = 0
    silence_frames: int = 0
    reconnects: int = 0
    renewals: int = 0
    credential_renewals: int = 0
    """Of the renewals, those made ahead of the credentials' expiry rather than the stream's lifetime."""
    dropped_audio_bytes: int = 0
    interrupted_audio_bytes: int = 0
    retired_events: int = 0
    """Output of a stream after the session replaced it (a failure, a stall, a renewal), not delivered: the new
    stream was given what it was about."""
    first_audio_latency_s: collections.deque[float] = field(default_factory=timings)
    """Per turn: from the user's FINAL transcript to the first AudioOut of the answer (the newest `TIMING_SAMPLES`)."""
    send_overhead_s: collections.deque[float] = field(default_factory=timings)
    """Per frame: time spent in the SDK's send (our own added time per send; the newest `TIMING_SAMPLES`)."""
    receive_overhead_s: collections.deque[float] = field(default_factory=timings)
    """Per output event: from the SDK handing it over to the typed event being queued (the newest
    `TIMING_SAMPLES`)."""


class _EventQueue:
    """Typed events for the caller, each with the time the SDK handed it over (``time.monotonic_ns()``).

    Audio of an interrupted turn can be pulled back out before it is read.
    """

    def __init__(self) -> None:
        self._items: collections.deque[tuple[SonicEvent, int] | None] = collections.deque()
        self._ready = asyncio.Event()

    def put(self, item: SonicEvent | None, received_ns: int | None = None) -> None:
        self._items.append(None if item is None else (item, received_ns or time.monotonic_ns()))
        self._ready.set()

    def drop_audio(self, turn_id: str) -> int:
        kept, dropped = withdraw_audio(self._items, turn_id, lambda item: item[0] if item is not None else None)
        self._items = collections.deque(kept)
        return dropped

    async def get(self) -> tuple[SonicEvent, int] | None:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()


class SonicSession:
    """``async with SonicSession(config) as session:`` then send audio and text, and iterate `events`."""

    def __init__(
        self,
        config: SonicConfig,
        *,
        tools: Iterable[Tool] = (),
        tool_timeout_s: float = 30.0,
        on_audio_sent: Callable[[int, int], None] | None = None,
    ) -> None:
        """A session; nothing connects before `start`.

        ``on_audio_sent(through, sent_ns)`` is called after each frame of the caller's audio leaves through the SDK:
        the caller's audio up to byte ``through`` (counted over the session) is sent, at ``sent_ns``
        (``time.monotonic_ns()``). Silence fill and replays to a new stream are not the caller's audio.
        """
        self.config = config
        self._on_audio_sent = on_audio_sent
        self._audio_accepted = 0
        """Bytes of the caller's audio accepted by `send_audio`, over the session."""
        self._audio_settled = 0
        """Of those, the bytes sent (or dropped from the backlog): the backlog holds the rest."""
        self._tools = {tool.spec.name: tool for tool in tools}
        specs = {spec.name: spec for spec in config.tools}
        for name, tool in self._tools.items():
            if name in specs and specs[name] != tool.spec:
                raise ValueError(f"tool {name} is declared twice with different specs")
            specs[name] = tool.spec
        self._tool_specs = [
            {"name": s.name, "description": s.description, "schema": s.input_schema} for s in specs.values()
        ]
        self._tool_timeout_s = tool_timeout_s
        self.history = History(config.history)
        self.metrics = SessionMetrics()
        self._frame_bytes = 2 * config.input_rate * config.frame_ms // 1000
        self._backlog = bytearray()
        self._typed: collections.deque[tuple[int, str]] = collections.deque()
        """Text typed and not yet sent, oldest first, each with the bytes of audio accepted before it: the pump sends it
        after that audio, so the service hears the user's turns in the order they came."""
        self._backlog_changed = asyncio.Event()
        self._not_sending = asyncio.Event()
        """Clear while the pump is inside the SDK's send: a close waits for it rather than cut a frame off."""
        self._not_sending.set()
        self._unanswered = Unanswered(config)
        """What a new stream is asked again and given of the user's audio (sent since the last completed turn)."""
        self._taken = ReplayWindow(self._unanswered.audio.limit)
        """The newest audio the SDK took, answered or not: after a failure, what the connection may have held unread
        is in it (an answer that ends meanwhile proves nothing of the audio taken after its question)."""
        self._read_mark = 0
        """`_taken`'s position up to which the service proved it read the audio: where the user's voice stopped
        before the last turn began (the service heard the end of it). What came after may have been in flight."""
        self._events = _EventQueue()
        self._transport: SonicTransport | None = None
        self._credentials: FreshCredentials | None = None
        """Without keys in the config: what resolves each stream's credentials anew (`novabridge.sonic.signing`)."""
        self._client: Any = None
        self._stream: SonicStream | None = None
        self._stream_ready = asyncio.Event()
        self._handover = asyncio.Lock()
        """Held around each frame's send and around a handover, so no frame falls between two streams."""
        self._stream_opened_at = 0.0
        self._setup_accepted = False
        """A stream of this session had its setup accepted (`SonicStream.settled`)."""
        self._early_refusals = 0
        """Streams in a row whose input was refused before they settled."""
        self._generation = 0
        self._workers: set[asyncio.Task[Any]] = set()
        """The pump, the renewal timer and running tools: cancelled at close."""
        self._receivers: set[asyncio.Task[Any]] = set()
        """One per stream: they end when the service ends the stream."""
        self._turn_active = False
        self._turn_idle = asyncio.Event()
        self._turn_idle.set()
        self._retiring: SonicStream | None = None
        """The stream a renewal is replacing while it replays to the new one: its output is held meanwhile."""
        self._retiring_output: list[tuple[SonicEvent, int]] = []
        self._first_audio = FirstAudioClock(self.metrics.first_audio_latency_s)
        self._closed = False
        self._fatal: Error | None = None
        self._last_audio_in = time.monotonic()
        self._tool_calls: dict[str, tuple[int, str]] = {}
        """The tool uses the service waits for: id -> (generation of the stream that asked, turn id)."""
        self._tools_outlive_turns = model_for(config.model_id).asynchronous_tools
        """Nova 2 waits for a tool's result through barge-ins and new turns; v1 stops at its turn's interruption."""
        self._settled_tool_calls: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Tool uses no longer pending, newest last: id -> why a result for it is not sent."""

    # ----------------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and send the init sequence.

        Transient failures (throttling, a network error) are tried again with the retry policy's backoff while
        ``config.connect_timeout_s`` lasts: by then the session is up, or closed with the cause named.

        Raises:
            SessionError: what keeps the session from starting, with the fix: a `CredentialsError`, an
                `EndpointError`, or the service's refusal (kind ``AccessDeniedException``, ``ValidationException``,
                ``ThrottlingException``, ...). The session is closed.
        """
        try:
            stream = await self._first_stream()
        except SessionError:
            await self.close()
            raise
        self._last_audio_in = time.monotonic()  # idle time is counted from when the caller can first send
        self._install(stream)
        self._spawn(self._pump(), self._workers)
        self._spawn(self._renewals(), self._workers)

    async def close(self) -> None:
        """End the conversation: the stream gets contentEnd, promptEnd and sessionEnd; tasks stop; idempotent."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        # A frame the SDK is sending goes out whole (or fails); one the pump holds unsent goes back to the backlog.
        try:
            await asyncio.wait_for(self._not_sending.wait(), CLOSE_TIMEOUT_S)
            stuck = False
        except TimeoutError:  # the stream takes nothing (a stall): the backlog would not go either
            stuck = True
        workers = [task for task in self._workers if task is not current]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        stream, self._stream = self._stream, None
        if stream is not None:
            # Audio and text the caller already handed over go out before the end of the conversation.
            if (self._backlog or self._typed) and self._stream_ready.is_set() and not stuck:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STALL_S):  # a stalled stream would take nothing: as the pump
                        await self._send_queued(stream)
            await stream.close()
        if self._backlog:  # no stream took it: a reconnection under way, or a stalled stream
            self.metrics.dropped_audio_bytes += len(self._backlog)
            self._audio_settled += len(self._backlog)
            message = f"{len(self._backlog)} bytes of user audio not sent: the session closed with no stream taking it"
            logger.warning("%s", message)
            self._events.put(Error("AudioDropped", message, False))
            self._backlog.clear()
        if self._typed:
            texts = f"{len(self._typed)} typed text" + ("s" if len(self._typed) > 1 else "")
            message = f"{texts} not sent: the session closed with no stream taking it"
            logger.warning("%s", message)
            self._events.put(Error("InputNotDelivered", message, False))
            self._typed.clear()
        self._stream_ready.set()  # whoever waits for a stream learns that there is none
        # Receive tasks end when the service ends the response; give them a moment, then stop waiting.
        receivers = {task for task in self._receivers if task is not current}
        if receivers:
            _, pending = await asyncio.wait(receivers, timeout=2.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._transport is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._transport.close()
        self._events.put(None)

    async def _send_queued(self, stream: SonicStream) -> None:
        """At close: the backlog and the text typed among it, in order, on ``stream``."""
        while self._backlog or self._typed:
            due = self._audio_before_text()
            if not due:
                text = self._take_typed()
                await stream.send_text(text)
                continue
            await stream.send_audio(bytes(self._backlog[:due]))
            del self._backlog[:due]
            self._caller_audio_sent(due)

    def _caller_audio_sent(self, size: int) -> None:
        """``size`` more bytes of the caller's audio left through the SDK."""
        self._audio_settled += size
        if self._on_audio_sent is not None:
            self._on_audio_sent(self._audio_settled, time.monotonic_ns())

    def _spawn(self, coroutine: Any, group: set[asyncio.Task[Any]]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine)
        group.add(task)
        task.add_done_callback(group.discard)
        return task

    # ------------------------------------------------------------------------------------------------- sending

    async def send_audio(self, pcm: bytes | bytearray | memoryview | np.ndarray) -> None:
        """Queue user audio: s16le mono at ``config.input_rate`` as bytes, or an int16 array (N,) or (1, N).

        Any frame size; the pump re-frames it. Raises TypeError/ValueError for anything else, queuing nothing.
        """
        if self._closed:
            raise SessionClosed("the session is closed")
        if isinstance(pcm, np.ndarray):
            array: np.ndarray = pcm
            if array.dtype != np.int16:
                raise TypeError(f"audio must be int16 PCM, got {array.dtype}")
            if array.ndim == 2 and array.shape[0] == 1:
                array = array[0]
            if array.ndim != 1:
                raise ValueError(f"audio must be mono, shape (N,) or (1, N); got {array.shape}")
            data = array.astype("<i2", copy=False).tobytes()
        elif isinstance(pcm, (bytes, bytearray, memoryview)):
            data = bytes(pcm)
            if len(data) % 2:
                raise ValueError(f"s16le audio has an even number of bytes; got {len(data)}")
        else:
            raise TypeError(f"audio must be bytes or an int16 numpy array, not {type(pcm).__name__}")
        if not data:
            return
        self._last_audio_in = time.monotonic()
        self._backlog += data
        self._audio_accepted += len(data)
        limit = int(BACKLOG_LIMIT_S * self.config.input_rate) * 2
        if len(self._backlog) > limit:
            excess = len(self._backlog) - limit
            del self._backlog[:excess]
            self._audio_settled += excess
            self.metrics.dropped_audio_bytes += excess
            self._events.put(
                Error(
                    "AudioDropped",
                    f"{excess} bytes of the oldest user audio dropped: no stream for {BACKLOG_LIMIT_S} s",
                    False,
                )
            )
        self._backlog_changed.set()

    async def send_text(self, text: str) -> None:
        """Nova 2 cross-modal input: the user's typed text, answered like speech.

        Queued behind the audio sent before it, which the service hears first (after an outage that audio may wait in
        the backlog). Until its answer completes, a new stream (renewal, reconnection) is asked it again.

        Raises:
            InvalidInput: text the service would reject (`wire.check_text`); nothing was sent.
            SessionClosed: the session is closed.
        """
        if self._closed:
            raise SessionClosed("the session is closed")
        text = wire.check_text(text, self.config.model_id)
        self._typed.append((self._audio_accepted, text))
        self._backlog_changed.set()

    def _audio_before_text(self) -> int:
        """The bytes of the backlog accepted before the oldest text waiting (all of it when none waits)."""
        if not self._typed:
            return len(self._backlog)
        backlog_from = self._audio_accepted - len(self._backlog)
        return max(0, min(len(self._backlog), self._typed[0][0] - backlog_from))

    def _take_typed(self) -> str:
        """The oldest text waiting, kept as asked (before it is sent: if the stream fails, its successor asks it)."""
        _, text = self._typed.popleft()
        self.history.add("USER", text)
        self._unanswered.typed(text)
        return text

    async def _send_typed(self) -> None:
        """Send the oldest text waiting on the current stream, waiting out reconnections and handovers."""
        await self._stream_ready.wait()
        # Under the handover lock, as each frame is: a renewal asks its new stream what is unanswered, and text sent to
        # the old stream after that would go with the old stream's answers, which are discarded.
        async with self._handover:
            stream = self._stream
            if stream is None:
                return  # the session is closing: close() sends what is queued
            text = self._take_typed()
            if not self._stream_ready.is_set():  # failing (a pump's send failed, a receive task saw the end)
                logger.info("typed text goes to the next stream: this one is failing")
                return
            self._not_sending.clear()
            try:
                await self._send_bounded(stream, stream.send_text(text))
            except Exception as error:  # noqa: BLE001 - the stream is failing; its receive task recovers
                logger.info("typed text goes to the next stream: this one failed (%r)", error)
            finally:
                self._not_sending.set()

    async def _send_bounded(self, stream: SonicStream, send: Awaitable[None]) -> None:
        """``send`` on ``stream``, given up (TimeoutError) after `STALL_S` as a stalled stream, which is replaced.

        A stream that stopped taking input holds a send on HTTP/2 flow control for ever, even once the pump has
        replaced it: the caller (the worker's uplink task, which reads the host's audio) would wait with it.
        """
        stall = asyncio.timeout(STALL_S)
        try:
            async with stall:
                await send
        except TimeoutError:
            if stall.expired():
                self._stream_stalled(stream)
            raise

    async def send_tool_result(self, tool_use_id: str, result: Any) -> None:
        """Answer a `ToolCall` that no registered tool handled.

        ``result`` is anything JSON carries, or JSON text (`wire.tool_result_content`). A result for a tool use
        the service no longer waits for (on v1 its turn was interrupted; it was asked on a stream since replaced, it
        was answered already, or it was never asked) is not sent, since the service would end the stream for it: it is
        reported as a non-fatal `Error` ("ToolResultDropped") naming the id.

        Raises:
            InvalidInput: a result the service would reject; nothing was sent.
            SessionClosed: the session is closed.
        """
        if self._closed:
            raise SessionClosed("the session is closed")
        await self._send_tool_result(wire.check_tool_use_id(tool_use_id), wire.tool_result_content(result))

    async def _current_stream(self) -> SonicStream:
        await self._stream_ready.wait()
        if self._stream is None:
            raise SessionClosed("the session is closed")
        return self._stream

    async def _send_tool_result(self, tool_use_id: str, content: str) -> None:
        stream = await self._current_stream()
        asked_on, _ = self._tool_calls.get(tool_use_id, (None, ""))
        if asked_on != stream.generation:
            reason = self._settled_tool_calls.get(tool_use_id, "the service never asked for it")
            if asked_on is not None:
                reason = "it was asked on a stream the session has since replaced"
            message = f"the result for tool use {tool_use_id!r} was not sent: {reason}"
            self._events.put(Error("ToolResultDropped", message, False))
            return
        self._settle_tool_call(tool_use_id, "it was answered already")
        try:
            await self._send_bounded(stream, stream.send_tool_result(tool_use_id, content))
        except Exception as error:  # noqa: BLE001 - the stream is failing; its receive task recovers
            message = f"the result for tool use {tool_use_id!r} was not delivered: the stream failed ({error!r})"
            self._events.put(Error("InputNotDelivered", message, False))

    def _settle_tool_call(self, tool_use_id: str, reason: str) -> None:
        """The service no longer waits for this tool use."""
        self._tool_calls.pop(tool_use_id, None)
        self._settled_tool_calls[tool_use_id] = reason
        self._settled_tool_calls.move_to_end(tool_use_id)
        while len(self._settled_tool_calls) > SETTLED_TOOL_CALLS:
            self._settled_tool_calls.popitem(last=False)

    async def _next_frame(self) -> tuple[bytes, bool] | None:
        """The next frame to send, and whether it is the caller's audio (not silence fill); None: text is due."""
        frame_s = self.config.frame_ms / 1000
        while True:
            due = self._audio_before_text()
            if due >= self._frame_bytes:
                frame = bytes(self._backlog[: self._frame_bytes])
                del self._backlog[: self._frame_bytes]
                return frame, True
            if self._typed and not due:
                return None
            idle = time.monotonic() - self._last_audio_in
            if idle >= IDLE_FILL_S or self._typed:
                if due:  # the tail of what the caller sent before a text or any filler
                    frame = bytes(self._backlog[:due])
                    del self._backlog[:due]
                    return frame, True
                await asyncio.sleep(frame_s)
                return bytes(self._frame_bytes), False
            self._backlog_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._backlog_changed.wait(), IDLE_FILL_S - idle)

    async def _pump(self) -> None:
        while not self._closed:
            next_frame = await self._next_frame()
            if next_frame is None:
                await self._send_typed()
                continue
            frame, from_caller = next_frame
            sent = False
            try:
                sent = await self._send_frame(frame, from_caller)
            finally:
                if from_caller and not sent:  # the session is closing: close() sends the backlog
                    self._backlog[:0] = frame

    async def _send_frame(self, frame: bytes, from_caller: bool) -> bool:
        """Send one frame on the current stream, waiting out reconnections and handovers; False if the session closed."""
        while not self._closed:
            await self._stream_ready.wait()
            async with self._handover:
                stream = self._stream
                if stream is None:
                    return False
                started = time.perf_counter()
                self._not_sending.clear()
                stall = asyncio.timeout(STALL_S)
                try:
                    async with stall:
                        await stream.send_audio(frame)
                except Exception as error:  # noqa: BLE001 - the stream's receive task reports and recovers
                    logger.debug("audio send failed on stream %d: %r", stream.generation, error)
                    self._stream_ready.clear()
                    if stall.expired():  # no receive task would see it: the service is silent, not failing
                        self._stream_stalled(stream)
                    continue  # the frame goes to the next stream: the pump still holds it
                finally:
                    self._not_sending.set()
                self.metrics.send_overhead_s.append(time.perf_counter() - started)
                self.metrics.frames_sent += 1
                if from_caller:
                    self._caller_audio_sent(len(frame))
                else:  # counted once sent: a close may cancel the pump while it waits to send the filler
                    self.metrics.silence_frames += 1
                self._unanswered.audio.add(frame)
                self._taken.add(frame)
                return True
        return False

    # ------------------------------------------------------------------------------------------------ receiving

    async def events(self) -> AsyncIterator[SonicEvent]:
        """Typed events until the session closes (a fatal error arrives as the last event)."""
        async for event, _ in self.timed_events():
            yield event

    async def timed_events(self) -> AsyncIterator[tuple[SonicEvent, int]]:
        """`events`, each with the ``time.monotonic_ns()`` at which the SDK handed it over."""
        while True:
            item = await self._events.get()
            if item is None:
                self._events.put(None)  # let other iterators end too
                return
            yield item

    @property
    def audio_bytes_accepted(self) -> int:
        """Bytes of the caller's audio `send_audio` accepted over the session (`on_audio_sent` counts in these)."""
        return self._audio_accepted

    @property
    def audio_bytes_settled(self) -> int:
        """Of `audio_bytes_accepted`, the bytes sent through the SDK or reported dropped; the rest is held."""
        return self._audio_settled

    async def _receive(self, stream: SonicStream) -> None:
        parser = wire.OutputParser()
        while True:
            try:
                raw = await stream.receive()
            except Exception as error:  # noqa: BLE001 - classified below; the session outlives the stream
                await self._stream_failed(stream, classify(error, self.config))
                return
            if raw is None:
                if stream is self._stream and not self._closed:
                    await self._stream_failed(stream, Failure("StreamEnded", "the service ended the stream", True))
                return
            received = time.perf_counter()
            received_ns = time.monotonic_ns()
            try:
                events = parser.parse(raw)
            except ProtocolError as error:
                self._events.put(Error("ProtocolError", str(error), False))
                continue
            for event in events:
                self._on_event(stream, event, received_ns)
            self.metrics.receive_overhead_s.append(time.perf_counter() - received)

    def _on_event(self, stream: SonicStream, event: SonicEvent, received_ns: int) -> None:
        if stream.retired:
            # A replaced stream (failed, stalled, renewed) may still answer: the speech and the turns it could answer
            # were given to its successor (the replay), whose answers are the ones delivered, so the user is heard
            # and answered once.
            self.metrics.retired_events += 1
            return
        if stream is self._retiring:  # being replaced: held until the replay is known to have reached the new stream
            self._retiring_output.append((event, received_ns))
            return
        if isinstance(event, ANSWER_EVENTS):
            self._unanswered.answer_seen(event.turn_id)
        if isinstance(event, Transcript):
            if event.role == "USER" and event.stage is Stage.FINAL:
                self._first_audio.user_final()
                self.history.add("USER", event.text)
                self._unanswered.user_final(event.text, event.turn_id)
                self._turn_started()
            elif event.role == "ASSISTANT" and event.stage is Stage.FINAL:
                self.history.add("ASSISTANT", event.text)
        elif isinstance(event, AudioOut):
            self._turn_started()
            self._first_audio.audio()
        elif isinstance(event, Interrupted):
            dropped = self._events.drop_audio(event.turn_id)
            self.metrics.interrupted_audio_bytes += dropped
            event = Interrupted(event.turn_id, dropped)
            if not self._tools_outlive_turns:  # v1 stops waiting for the tools of an interrupted turn
                for tool_use_id in [i for i, (_, turn) in self._tool_calls.items() if turn == event.turn_id]:
                    self._settle_tool_call(tool_use_id, "the user interrupted the turn that asked for it")
        elif isinstance(event, ToolCall):
            self._tool_calls[event.tool_use_id] = (stream.generation, event.turn_id)
            tool = self._tools.get(event.name)
            if tool is not None:
                self._spawn(self._run_tool(tool, event), self._workers)
        elif isinstance(event, TurnEnd):
            self._turn_active = False
            self._turn_idle.set()
            self._unanswered.turn_end(event.stop_reason, event.turn_id)
        self._events.put(event, received_ns)

    def _turn_started(self) -> None:
        if not self._turn_active:
            self._read_mark = max(self._read_mark, self._voice_end())
        self._turn_active = True
        self._turn_idle.clear()

    def _voice_end(self) -> int:
        """`_taken`'s position where the user's voice stopped before the turn that begins now.

        The turn proves the service heard the voice to its end and the endpointing pause after it, not that it read
        the audio the SDK took since: that was in flight (up to HTTP/2's flow-control window, over a second of it).
        So a failure replays from the voice's end: the pause and what came after, never the speech, which would be
        answered twice. Where the audio kept shows no pause after a voice, it cannot tell, and nothing is replayed of
        what came before the turn.
        """
        kept = bytes(self._taken)
        end = last_voice_end(np.frombuffer(kept, np.int16), self.config.input_rate)
        return self._taken.total if end is None else self._taken.total - len(kept) + 2 * end

    async def _run_tool(self, tool: Tool, call: ToolCall) -> None:
        result = await run_tool(tool, call.input, timeout_s=self._tool_timeout_s)
        with contextlib.suppress(SessionClosed):
            await self._send_tool_result(call.tool_use_id, result)

    # --------------------------------------------------------------------------------------- streams and recovery

    async def _first_stream(self) -> SonicStream:
        """The session's first stream, within ``connect_timeout_s``; raises the typed failure of the last attempt."""
        config = self.config
        loop = asyncio.get_running_loop()
        deadline = loop.time() + config.connect_timeout_s
        try:
            self._transport = SonicTransport(ca_file=config.ca_file)
            if config.aws_access_key_id is None:
                self._credentials = FreshCredentials(
                    profile=config.profile, region=config.region, http_client=self._transport
                )
            self._client = await make_client(config, self._transport)
        except Exception as error:  # classified: a profile that does not exist, a transport that cannot be made
            raise classify(error, config).exception() from error
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._connect(timeout_s=max(MIN_ATTEMPT_S, deadline - loop.time()))
            except Exception as error:  # noqa: BLE001 - classified: transient ones are tried again
                failure, cause = classify(error, config), error
            backoff = config.retry.backoff_s(attempt)
            if not failure.transient:
                raise failure.exception() from cause
            if attempt > config.retry.max_attempts or loop.time() + backoff + MIN_ATTEMPT_S > deadline:
                spent = config.connect_timeout_s - (deadline - loop.time())
                raise gave_up(failure, attempt, spent, config).exception() from cause
            logger.info("connect attempt %d failed: %s: %s", attempt, failure.kind, failure.message)
            await asyncio.sleep(backoff)

    async def _connect(self, timeout_s: float | None = None) -> SonicStream:
        self._generation += 1
        stream = SonicStream(self._client, self.config, self._generation, self._credentials)
        try:
            await stream.open(self.history.for_replay(), tools=self._tool_specs, timeout_s=timeout_s)
        except BaseException:
            if self._transport is not None:
                self._transport.drop_connections()
            raise
        return stream

    def _install(self, stream: SonicStream) -> None:
        if self._stream is not None and self._stream.settled:
            self._setup_accepted, self._early_refusals = True, 0
        self._stream = stream
        # A pre-warmed stream's lifetime began at its request, before the handover.
        self._stream_opened_at = stream.requested_at
        # A new stream waits for no tool: the uses the old one asked for are gone with it.
        for tool_use_id in [i for i, (generation, _) in self._tool_calls.items() if generation != stream.generation]:
            self._settle_tool_call(tool_use_id, "it was asked on a stream the session has since replaced")
        # Its predecessor's turn, if one was under way, ends with it: what it left unanswered is asked again.
        self._turn_active = False
        self._turn_idle.set()
        self._spawn(self._receive(stream), self._receivers)
        self._stream_ready.set()

    async def _replay_to(self, stream: SonicStream, *, failed: bool = False) -> None:
        """Give a new stream the user's turns not answered in full, and the audio since the last one, in their order.

        So a question whose answer the failure cut is answered, and a sentence in flight is heard whole. After a
        failure the audio is all the old stream took since its last turn began (at most the window), answered since or
        not: an answer proves the service read the question, not the audio after it, which a failed stream may have
        held unread (the SDK's buffers, HTTP/2 flow control's window: over a second of audio). A renewal's old stream
        goes on and reads it, unless it failed while the renewal waited to hand over: that is a failure's replay too.
        """
        replay = bytes(self._unanswered.audio)
        if failed:  # both end with the newest audio taken: the longer holds the other
            replay = max(replay, self._taken.since(self._read_mark), key=len)
        frames = (replay[offset : offset + self._frame_bytes] for offset in range(0, len(replay), self._frame_bytes))
        for item in self._unanswered.in_order(frames, len(replay)):
            await (stream.send_text(item) if isinstance(item, str) else stream.send_audio(item))

    def _stream_stalled(self, stream: SonicStream) -> None:
        """The service stopped taking audio on ``stream``: recover as from any transient failure, on a new connection.

        Called by the pump, which holds the handover lock that the recovery takes: the recovery runs as a task.
        """
        if stream.retired or stream is not self._stream:
            return
        if self._transport is not None:
            self._transport.drop_connections()  # the stuck part: a new stream on it would stall too
        failure = Failure(STREAM_STALLED, f"the service took no audio for {STALL_S:g} s", transient=True)
        self._spawn(self._stream_failed(stream, failure), self._receivers)

    async def _stream_failed(self, stream: SonicStream, failure: Failure) -> None:
        if stream is not self._stream or self._closed or stream.retired:
            return  # a retired stream's end, our own close, or a failure already being recovered from
        stream.retired = True
        self._stream_ready.clear()
        logger.info("stream %d failed: %s: %s", stream.generation, failure.kind, failure.message)
        if failure.input_rejected and not stream.settled:
            self._early_refusals += 1  # until a settled stream is replaced (`_install`)
        if failure.input_rejected and (
            stream.settled or (self._setup_accepted and self._early_refusals <= self.config.retry.max_attempts)
        ):
            # An input refused on a stream whose setup the service had accepted: the conversation is sound, so it
            # resumes on a new stream from its history. Refused before that, it is the setup itself: fatal, unless an
            # earlier stream's setup was accepted (a refusal just after a renewal or a reconnection) and this has not
            # happened more often in a row than the retry policy allows (the history the setup replays, refused).
            message = f"the service rejected an input mid-stream: {failure.message}; resuming on a new stream"
            self._events.put(Error(failure.kind, message, False))
            failure = dataclasses.replace(failure, transient=True)
        if not failure.transient:
            await self._fail(Error(failure.kind, failure.message, True))
            return
        retry = self.config.retry
        last = failure
        for attempt in range(1, retry.max_attempts + 1):
            self._events.put(Reconnecting(f"{last.kind}: {last.message}", attempt))
            await asyncio.sleep(retry.backoff_s(attempt))
            if self._closed:
                return
            try:
                new = await self._connect()
                async with self._handover:
                    if stream is not self._stream:  # a renewal replaced the failed stream meanwhile
                        await new.close()
                        return
                    await self._replay_to(new, failed=True)
                    self._install(new)
            except Exception as error:  # noqa: BLE001 - classified: transient errors try again
                last = classify(error, self.config)
                # Expired credentials too: each attempt resolves them anew, so a rotation meanwhile lets one in.
                if not (last.transient or last.credentials_expired):
                    await self._fail(Error(last.kind, last.message, True))
                    return
                continue
            self.metrics.reconnects += 1
            with contextlib.suppress(Exception):
                await stream.close()
            return
        await self._fail(Error(last.kind, f"gave up after {retry.max_attempts} attempts: {last.message}", True))

    async def _fail(self, error: Error) -> None:
        self._fatal = error
        self._events.put(error)
        await self.close()

    def _renewal_due(self) -> tuple[float, bool]:
        """When the stream is to be renewed (``time.monotonic()``), and whether that is for its credentials.

        Before its lifetime runs out (``renewal_after_s``), and before its credentials expire (``credentials_refresh_s``
        ahead) when they had more than that left at its opening: credentials with less are the freshest the source
        gives, and renewing onto them would gain nothing. Past their expiry the lifetime is all that is left to wait
        for (the open stream goes on; only a new one would be refused).
        """
        lifetime = self._stream_opened_at + self.config.renewal_after_s
        stream = self._stream
        expiry = stream.credentials_expire_at if stream is not None else None
        if expiry is None:
            return lifetime, False
        monotonic_expiry = expiry - time.time() + time.monotonic()
        refresh = monotonic_expiry - self.config.credentials_refresh_s
        if refresh <= self._stream_opened_at or refresh >= lifetime or time.monotonic() >= monotonic_expiry:
            return lifetime, False
        return refresh, True

    async def _credentials_refreshed(self, stream: SonicStream) -> bool:
        """Whether the credential source now gives credentials that outlast the stream's (the next stream's, if so)."""
        assert self._credentials is not None  # a stream's credentials expire only when they come from the source
        try:
            identity = await self._credentials.resolve()
        except Exception as error:  # noqa: BLE001 - the stream's credentials still hold: asked again after a pause
            logger.info("renewal: the credential source failed: %s", classify(error, self.config).message)
            return False
        fresh = expires_at(identity)
        return fresh is None or stream.credentials_expire_at is None or fresh > stream.credentials_expire_at

    async def _take_handover_between_turns(self, grace_s: float) -> None:
        """Hold the handover lock with no turn under way, or once ``grace_s`` has passed.

        A turn can begin while the pump holds the lock: its speech would then be heard by both streams.
        """
        deadline = time.monotonic() + grace_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._turn_idle.wait(), max(0.0, deadline - time.monotonic()))
            await self._handover.acquire()
            if self._turn_idle.is_set() or time.monotonic() >= deadline:
                return
            self._handover.release()

    async def _renewals(self) -> None:
        """Move the conversation to a new stream before the current one's lifetime or credentials run out.

        The next stream is opened while the current one carries on, and takes over between turns. A failure to open
        it is tried again with the retry policy's backoff: a transient one while the current stream lives (its end
        brings the reconnection and its own policy), expired credentials up to the policy's attempts (each attempt
        resolves them anew, so a rotation meanwhile lets it in); then, or at once for any other failure, the session
        ends with the fatal error.
        """
        retry = self.config.retry
        failures = 0
        unchanged, checked = 0, 0  # credential checks in a row that found nothing fresher, for stream ``checked``
        while not self._closed:
            due, for_credentials = self._renewal_due()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if self._closed:
                return
            if time.monotonic() < self._renewal_due()[0]:
                continue  # a reconnection replaced the stream meanwhile
            await self._stream_ready.wait()
            old = self._stream
            if old is None or self._closed:
                return
            replacing = old
            if for_credentials:
                unchanged = 0 if checked != old.generation else unchanged
                checked = old.generation
                if not await self._credentials_refreshed(old):
                    unchanged += 1
                    logger.info(
                        "renewal: the credential source gives nothing fresher than stream %d's (they expire in %.0f s)",
                        old.generation,
                        (old.credentials_expire_at or 0.0) - time.time(),
                    )
                    await asyncio.sleep(retry.backoff_s(unchanged))
                    continue
            try:
                new = await self._connect()
            except Exception as error:  # noqa: BLE001 - classified: which failures are worth another attempt
                failure = classify(error, self.config)
                failures += 1
                logger.info("renewal attempt %d failed: %s: %s", failures, failure.kind, failure.message)
                if not (failure.transient or failure.credentials_expired):
                    await self._fail(Error(failure.kind, failure.message, True))
                    return
                if failure.credentials_expired and failures >= retry.max_attempts:
                    message = f"gave up after {failures} attempts to open a new stream: {failure.message}"
                    await self._fail(Error(failure.kind, message, True))
                    return
                await asyncio.sleep(retry.backoff_s(failures))
                continue
            failures = 0
            installed = False
            try:
                # Between turns if the turn ends in time: within the grace, and before the old credentials expire
                # (should the service end a stream whose credentials expired, the handover would come too late).
                grace = RENEWAL_GRACE_S
                if for_credentials and old.credentials_expire_at is not None:
                    grace = min(grace, max(0.0, old.credentials_expire_at - time.time()))
                await self._take_handover_between_turns(grace)
                try:
                    old = self._stream
                    if old is None or self._closed:
                        return
                    if old is not replacing:
                        # A recovery replaced the stream while this one waited: the new stream is young, and the
                        # replay given to it would be heard again on this one. This one goes unused.
                        logger.info(
                            "renewal: stream %d was replaced meanwhile; stream %d closes",
                            replacing.generation,
                            new.generation,
                        )
                        continue
                    self._retiring = old
                    try:
                        # The old stream may have failed while this one waited (a send on it failed, its recovery is
                        # under way): it reads nothing more, so what the SDK took and it never read goes to the new
                        # stream, as after any failure (found by the soak run: the audio taken before a TurnEnd, lost).
                        await self._replay_to(new, failed=old.retired or not self._stream_ready.is_set())
                    except Exception as error:  # noqa: BLE001 - keep the old stream; retry the renewal
                        logger.info("renewal: replay failed: %r", error)
                        self._retiring = None
                        held, self._retiring_output = self._retiring_output, []
                        for event, received_ns in held:
                            self._on_event(old, event, received_ns)
                        continue
                    old.retired = True
                    self._retiring = None
                    self.metrics.retired_events += len(self._retiring_output)
                    self._retiring_output.clear()
                    self._install(new)
                    installed = True
                finally:
                    self._handover.release()
            finally:
                if not installed:
                    await new.close()
                    await new.drain(2.0)
            self.metrics.renewals += 1
            if for_credentials:
                self.metrics.credential_renewals += 1
                left = (old.credentials_expire_at or 0.0) - time.time()
                logger.info("renewed onto fresh credentials %.0f s before stream %d's expire", left, old.generation)
            self._events.put(Renewed(new.generation))
            # The old stream's receive task discards what it still sends, and ends when the service closes it.
            await old.close()
