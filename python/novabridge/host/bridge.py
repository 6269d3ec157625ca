"""`SonicBridge`: a synchronous host's handle on a Nova Sonic session running in a worker process.

The host (any Python >= 3.11, e.g. OpenAvatarChat's pump thread) writes audio into a shared-memory ring and reads
typed events from another; the worker (Python >= 3.12 with ``novabridge[sonic]``) runs the `SonicSession`. Nothing
on the host waits for the network. Workers come warm from a `WorkerPool`. If the worker dies, the bridge takes
another and resumes the conversation from the transcript it kept, asking again the user's turns not answered in
full and replaying the audio since, and reports `Reconnecting` rather than raising.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np

from novabridge import link, measure
from novabridge._novabridge import Record, Resampler
from novabridge.events import ANSWER_EVENTS, AudioOut, Error, Reconnecting, SonicEvent, Stage, Transcript, TurnEnd
from novabridge.exceptions import WORKER_FAILED, BridgeError, LinkError, RingClosed, WorkerError, session_error
from novabridge.frames import FrameConverter, ServiceFrame
from novabridge.host.pool import WorkerPool, WorkerProcess
from novabridge.replay import ReplayWindow, Unanswered, limit_bytes
from novabridge.ring import aread
from novabridge.sonic import wire
from novabridge.sonic.config import HistoryMessage, SonicConfig
from novabridge.sonic.history import History
from novabridge.turns import FirstAudioClock, StaleOutput, forget_oldest

__all__ = ["BridgeError", "BridgeMetrics", "Latency", "SonicBridge", "default_worker_python"]

START_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 1.0
HELD_LIMIT_S = 30.0
"""User audio a worker has not settled (sent, or reported dropped), kept for a replacement should it die (the
session's own backlog limit); and audio held while a dead worker waits to be replaced. Beyond it, the oldest goes."""
IN_FLIGHT_S = 1.0
"""Audio a worker reported sent that the service may not have had: what the SDK and the socket still held dies with
the worker (the soak run lost 0.5 s sent in a burst just before a kill). A replacement is given it again."""
MAX_RESTARTS_UNREADY = 3
"""Workers that die before their session is up, in a row, before the bridge gives up (a crash loop)."""
LATENCY_SAMPLES = 20_000


def default_worker_python() -> str:
    """This interpreter, when it can run the session (>= 3.12)."""
    if sys.version_info >= (3, 12):
        return sys.executable
    raise BridgeError(
        "the Nova Sonic SDK needs Python >= 3.12 and this is "
        f"{sys.version_info[0]}.{sys.version_info[1]}: pass worker_python=<path to a Python >= 3.12 "
        "with novabridge[sonic] installed> (`novabridge setup-worker` makes one)"
    )


@dataclasses.dataclass(frozen=True)
class Latency:
    """Recent samples of one latency, in seconds, with nearest-rank percentiles."""

    samples_s: tuple[float, ...]
    taken: int = 0
    """Samples taken since the bridge started, the ones no longer kept included: the samples of an interval are
    the last ``later.taken - earlier.taken`` (while that is at most ``len(samples_s)``)."""

    def since(self, earlier: Latency) -> Latency:
        """The samples taken after ``earlier`` (as many as are still kept)."""
        new = min(self.taken - earlier.taken, len(self.samples_s))
        return Latency(self.samples_s[len(self.samples_s) - new :], new)

    def percentile(self, q: float) -> float | None:
        """The nearest-rank ``q``-th percentile (0 < q <= 100), or None without samples."""
        return measure.percentile(self.samples_s, q)

    @property
    def p50_s(self) -> float | None:
        """The median."""
        return self.percentile(50)

    @property
    def p99_s(self) -> float | None:
        """The 99th percentile."""
        return self.percentile(99)


class _LatencyLog:
    """The newest `LATENCY_SAMPLES` samples of one latency, and how many were ever taken.

    The window is a float64 ring allocated and written through when the log is made, so the bridge's memory does not
    grow while it fills: as a deque of float objects it took 32 bytes a sample (1.3 MB a bridge for both ways) and
    filled for the first ten minutes of a conversation (about 31 samples a second), which a soak run measured as the
    host's RSS growing. Written by the thread that reads events, read by any thread that asks for `metrics`.
    """

    def __init__(self, size: int = LATENCY_SAMPLES) -> None:
        self._window = np.empty(size)
        self._window.fill(0.0)  # every page touched now, not as the window fills
        self._taken = 0
        self._lock = threading.Lock()

    def add(self, samples_s: Sequence[float]) -> None:
        size = len(self._window)
        newest = np.asarray(samples_s, dtype=float)[-size:]
        with self._lock:
            at = (self._taken + len(samples_s) - len(newest)) % size
            first = min(len(newest), size - at)
            self._window[at : at + first] = newest[:first]
            self._window[: len(newest) - first] = newest[first:]
            self._taken += len(samples_s)

    def latency(self) -> Latency:
        size = len(self._window)
        with self._lock:
            taken = self._taken
            if taken <= size:
                kept = self._window[:taken].tolist()
            else:
                at = taken % size
                kept = self._window[at:].tolist() + self._window[:at].tolist()
        return Latency(tuple(kept), taken)


@dataclasses.dataclass(frozen=True)
class BridgeMetrics:
    """What `SonicBridge.metrics` reports."""

    uplink: Latency
    """User audio: host `send_audio` writing the ring to the SDK's send of the frame carrying its last byte."""
    downlink: Latency
    """Assistant audio: the SDK handing it to the worker's session to the host reading it from the ring."""
    first_audio_s: tuple[float, ...]
    """Per turn, as the host saw it: the user's FINAL transcript to the answer's first audio (the newest
    `novabridge.turns.TIMING_SAMPLES` turns)."""
    uplink_fill: float
    downlink_fill: float
    worker_pid: int | None
    worker_cpu_s: float
    """CPU time (user + system) of the current worker since it took the session."""
    worker_cpu_percent: float
    """``worker_cpu_s`` over the wall time since then, in percent of one core."""
    restarts: int
    dropped_output_bytes: int
    """Assistant audio (at ``out_rate``) dropped by barge-ins and `interrupt`, queued but never handed out."""


class SonicBridge:
    """A Nova Sonic session in a worker process, for a synchronous host.

    ``with SonicBridge(config) as bridge:`` then `send_audio` from any thread, and `poll`, `events` or ``async for``
    the events, from one thread or task at a time.
    """

    def __init__(
        self,
        config: SonicConfig,
        *,
        worker_python: str | None = None,
        host_rate: int = 16000,
        out_rate: int = 24000,
        pool: WorkerPool | None = None,
    ) -> None:
        if not isinstance(config, SonicConfig):
            raise TypeError(f"config must be a SonicConfig, not {type(config).__name__}")
        self.config = config
        self.worker_python = worker_python or default_worker_python()
        self.pool = pool or WorkerPool.for_python(self.worker_python)
        self.host_rate = host_rate
        self.out_rate = out_rate
        # Resamplers are built now, so a bad rate fails here and not at the first frame.
        self._frames = FrameConverter(config.input_rate, host_rate=host_rate)
        self._from_service = Resampler(config.output_rate, out_rate) if out_rate != config.output_rate else None
        self._worker: WorkerProcess | None = None
        self._send_lock = threading.Lock()
        self._history = History(config.history)
        self._turns: dict[int, str] = {}
        """The recent turns' ids by the ordinal the worker's audio records name them with (`RECENT_TURNS`)."""
        self._stale = StaleOutput(self._out_bytes)
        self._unanswered = Unanswered(config)
        """What a replacement worker is asked again, as the session does a new stream, and the turn's audio.
        ``holding``: the worker was seen dead by `send_audio` before the consumer replaced it, and the audio since
        is held for the replacement."""
        self._answer_playing = ""
        """The turn id of the answer whose audio came last, already seen by `_unanswered`."""
        self._held_limit = limit_bytes(HELD_LIMIT_S, config.input_rate)
        self._in_flight = limit_bytes(IN_FLIGHT_S, config.input_rate)
        self._unsettled = ReplayWindow(self._held_limit)
        """The user audio a replacement worker is given: all the current worker has not settled and the last
        `IN_FLIGHT_S` it settled, or the turn's audio (`Unanswered.audio`, which it always holds) if longer. A worker
        reconnecting its stream holds the audio since."""
        self._settled_at = 0
        """How far (a `ReplayWindow.total`) the current worker settled the user audio it was given."""
        self._worker_base = 0
        """The position of the first byte the current worker was given."""
        self._pending: list[SonicEvent] = []
        self._ready = False
        self._ended = False
        self._closed = False
        self._restarts = 0
        self._restarts_unready = 0
        self._uplink = _LatencyLog()
        self._downlink = _LatencyLog()
        self._first_audio = FirstAudioClock()
        self._worker_since = (0.0, 0.0)  # (wall, cpu) when the current worker took the session

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT_S) -> None:
        """Take a warm worker and give it the session.

        With ``wait`` (the default), return once the session is connected. Without, return at once: audio sent
        meanwhile waits in the ring, and a failure to connect arrives as a fatal `Error` event (the ``kind`` and
        message `SessionError` would carry). OpenAvatarChat's ``start_context`` runs on the server's event loop, so
        it does not wait.

        Raises:
            SessionError: (waiting) the session could not connect, within the config's ``connect_timeout_s``:
                ``kind`` names the cause and the message the fix (`CredentialsError`, `EndpointError`, ...).
            WorkerError: no worker could run the session (its Python is missing, too old or lacks
                ``novabridge[sonic]``, or it died starting); known before `start` returns, so raised with or
                without ``wait``.
            BridgeError: the bridge is closed or already started, or the session gave no answer within
                ``timeout``.
        """
        if self._closed:
            raise BridgeError("the bridge is closed")
        if self._worker is not None:
            raise BridgeError("the bridge is already started")
        self._take_worker(self.config)
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while not self._ready:
            left = deadline - time.monotonic()
            if self._ended or self._closed or left <= 0:
                fatal = [e for e in self._pending if isinstance(e, Error) and e.fatal]
                detail = self._worker_output() or f"no answer within {timeout:g} s"
                self.close()
                if fatal and fatal[-1].kind == WORKER_FAILED:
                    raise WorkerError(fatal[-1].message)
                if fatal:
                    raise session_error(fatal[-1].kind, fatal[-1].message)
                raise BridgeError(f"the session did not start: {detail}")
            self._pending += self._read(min(left, 0.1))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """End the session and the worker, which is killed if it has not exited after ``timeout`` seconds.

        Idempotent; leaves no process, ring or thread behind.
        """
        if self._closed:
            return
        self._closed = True
        with self._send_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.close(timeout)

    def __enter__(self) -> Self:
        if self._worker is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """`close` was called, or the session ended with a fatal error (reported as the last event)."""
        return self._closed

    @property
    def history(self) -> tuple[HistoryMessage, ...]:
        """The conversation so far (the config's history, then the transcripts), as much as a new session takes."""
        return self._history.for_config()

    @property
    def ready(self) -> bool:
        """The worker's session is connected (False again while a replacement worker connects)."""
        return self._ready

    def _take_worker(self, config: SonicConfig) -> None:
        worker = self.pool.claim(config)
        self._worker_since = (time.monotonic(), measure.cpu_seconds(worker.pid))
        self._worker = worker

    def _require_worker(self) -> WorkerProcess:
        if self._closed:
            raise BridgeError("the bridge is closed")
        if self._worker is None:
            raise BridgeError("the bridge is not started; call start() or use it as a context manager")
        return self._worker

    def _worker_output(self) -> str:
        return self._worker.output() if self._worker is not None else ""

    # ------------------------------------------------------------------------------------------------- sending

    def send_audio(self, audio: np.ndarray[Any, Any] | ServiceFrame) -> None:
        """Queue user audio at ``host_rate``: int16 or float32 in [-1, 1], shape (N,) or (1, N). Never blocks.

        A `ServiceFrame` (a host that converted its frame itself with a `FrameConverter`) goes as it is.

        Raises:
            TypeError, ValueError: wrong type, dtype or shape, or non-finite samples (nothing is queued).
            RingFull: the worker has fallen behind by the whole ring (about a minute); this frame was not queued.
        """
        self._require_worker()
        with self._send_lock:
            worker = self._require_worker()
            payload = self._frames.convert(audio).pcm()
            if not payload:
                return  # the resampler holds these few samples for the next frame
            # A dead worker's ring would still take the frame; held back instead, it goes to the replacement.
            unanswered = self._unanswered
            if not unanswered.holding and worker.process.poll() is not None:
                unanswered.holding = True
            if not unanswered.holding:
                link.write(worker.uplink, link.UserAudio(payload))
            unanswered.audio.add(payload, limit=self._held_limit if unanswered.holding else None)
            self._unsettled.add(payload)

    def send_text(self, text: str) -> None:
        """Typed user text (Nova 2 cross-modal input), answered like speech.

        Raises:
            InvalidInput: text the service would reject: empty, not valid UTF-8, over the 1 KB one text input
                takes, or a model other than Nova 2 (nothing is sent).
        """
        text = wire.check_text(text, self.config.model_id)
        with self._send_lock:
            link.write(self._require_worker().uplink, link.TextCommand(text))
            self._unanswered.typed(text)
        self._history.add("USER", text)  # the service gives no transcript of typed text; the session's history has it

    def send_tool_result(self, tool_use_id: str, result: Any) -> None:
        """Answer a `ToolCall` event: ``result`` is anything JSON carries, or JSON text.

        A result for a tool use the service no longer waits for (its turn was interrupted, or it was never asked)
        is not sent: the session reports it as a non-fatal `Error` ("ToolResultDropped") naming the id.

        Raises:
            InvalidInput: an id that is not a string, a result that is not strict JSON (NaN, infinity, a type JSON
                cannot carry, a lone surrogate), or one too large for the service's input event (nothing is sent).
        """
        command = link.ToolResultCommand(wire.check_tool_use_id(tool_use_id), wire.tool_result_content(result))
        with self._send_lock:
            link.write(self._require_worker().uplink, command)

    def interrupt(self, turn_id: str | None = None) -> int:
        """Drop the assistant audio queued for the host at once, and the rest of the answers it belongs to.

        For a host-side barge-in (a stop button, the host's own VAD); the service's barge-ins are handled
        automatically. ``turn_id`` (an `AudioOut.turn_id`) cuts that answer alone: a host that stops one answer
        keeps the next one, whose audio may be queued behind it already. Returns the bytes (at ``out_rate``) dropped
        now; later audio of the answers cut is dropped as it arrives, and all of it is counted in
        `BridgeMetrics.dropped_output_bytes`.

        Raises:
            TypeError: ``turn_id`` is not a string.
        """
        if turn_id is not None and not isinstance(turn_id, str):
            raise TypeError(f"turn_id must be a string (an AudioOut's), not {type(turn_id).__name__}")
        self._require_worker()
        self._pending, dropped = self._stale.interrupt(self._pending + self._read(0.0), turn_id)
        return dropped

    def _out_bytes(self, service_bytes: int) -> int:
        return service_bytes * self.out_rate // self.config.output_rate

    # ------------------------------------------------------------------------------------------------ receiving

    def poll(self, timeout: float = 0.0) -> list[SonicEvent]:
        """Events available now, waiting up to ``timeout`` seconds for the first one."""
        self._require_worker()
        events, self._pending = self._pending, []
        return events + self._read(0.0 if events else timeout)

    def events(self) -> Iterator[SonicEvent]:
        """Block for events until the bridge closes (or its session ends with a fatal error)."""
        while not self._closed:
            yield from self.poll(timeout=0.1)

    async def aevents(self) -> AsyncIterator[SonicEvent]:
        """`events` for asyncio: the loop watches the ring's eventfd, no thread and no polling."""
        while not self._closed:
            worker = self._require_worker()
            if self._pending:
                for event in self.poll():
                    yield event
                continue
            try:
                first = await aread(worker.downlink)
            except RingClosed:
                first = None  # `_read` meets the closed ring and supervises
            for event in self._read(0.0, first):
                yield event

    def __aiter__(self) -> AsyncIterator[SonicEvent]:
        return self.aevents()

    def _read(self, timeout: float, first: Record | None = None) -> list[SonicEvent]:
        """Decode what the downlink holds (waiting up to ``timeout`` for the first record); supervise the worker."""
        worker = self._worker
        if worker is None or self._closed:
            return []
        records = [first] if first is not None else []
        try:
            if not records:
                record = worker.downlink.read(timeout=timeout)
                if record is not None:
                    records.append(record)
            while (record := worker.downlink.read_nowait()) is not None:
                records.append(record)
        except RingClosed:
            return self._stale.filter(self._decode_all(records)) + self._worker_gone()
        events = self._stale.filter(self._decode_all(records))
        # Only a sleeping read watches the worker's pidfd; so check it when the ring has been drained.
        if worker.process.poll() is not None:
            events += self._worker_gone()
        return events

    def _decode_all(self, records: list[Record]) -> list[SonicEvent]:
        events: list[SonicEvent] = []
        for record in records:
            try:
                event = self._decode(link.decode_downlink(record))
            except LinkError as error:  # a record the worker should never have written
                event = Error("BadRecord", f"a downlink record of kind {record.kind} was dropped: {error}", False)
            if event is not None:
                events.append(event)
        return events

    def _decode(self, record: link.DownlinkRecord) -> SonicEvent | None:
        if isinstance(record, link.AssistantAudio):
            self._downlink.add([(time.monotonic_ns() - record.received_ns) / 1e9])
            samples = np.frombuffer(record.pcm, dtype="<i2")
            if self._from_service is not None:
                samples = self._from_service.process(samples)
            turn_id = self._turns.get(record.turn, "")
            self._first_audio.audio()
            if turn_id != self._answer_playing:  # the send lock once per answer, not per chunk of its audio
                self._answer_playing = turn_id
                with self._send_lock:
                    self._unanswered.answer_seen(turn_id)
            return AudioOut(samples.tobytes(), self.out_rate, turn_id)
        if not isinstance(record, link.SessionEvent):
            self._control(record)
            return None
        event = record.event
        if isinstance(event, ANSWER_EVENTS):
            with self._send_lock:
                self._unanswered.answer_seen(event.turn_id)
        if isinstance(event, Error) and event.fatal:
            self._ended = True
        elif isinstance(event, Transcript) and event.stage is Stage.FINAL and event.role in ("USER", "ASSISTANT"):
            self._history.add(event.role, event.text)
            if event.role == "USER":
                self._first_audio.user_final()
                with self._send_lock:
                    self._unanswered.user_final(event.text, event.turn_id)
        elif isinstance(event, TurnEnd):
            self._first_audio.cancel()
            with self._send_lock:
                self._unanswered.turn_end(event.stop_reason, event.turn_id)
        return event

    def _control(self, record: link.Control) -> None:
        if isinstance(record, link.Ready):
            self._ready = True
            self._restarts_unready = 0
        elif isinstance(record, link.TurnStart):
            self._turns.pop(record.ordinal, None)  # an ordinal used again (they wrap) counts as the newest
            self._turns[record.ordinal] = record.turn_id
            forget_oldest(self._turns)
        elif isinstance(record, link.UplinkTimings):
            self._uplink.add(record.samples_s)
            with self._send_lock:
                self._settled_at = self._worker_base + record.settled_bytes
                self._trim_unsettled()

    def _trim_unsettled(self) -> None:
        """Keep only what a replacement needs.

        The audio the worker has not settled and the newest it settled, which may not have left it (`IN_FLIGHT_S`),
        or the turn's if longer.
        """
        unsettled = self._unsettled
        unsettled.trim(max(unsettled.total - self._settled_at + self._in_flight, len(self._unanswered.audio)))

    # ---------------------------------------------------------------------------------------------- supervision

    def _worker_gone(self) -> list[SonicEvent]:
        """The downlink closed: our own close, the session's fatal end, or the worker's death."""
        if self._closed:
            return []
        if self._ended:
            self.close()  # the session ended with a fatal error (reported already): a new worker would repeat it
            return []
        return self._restart()

    def _restart(self) -> list[SonicEvent]:
        """The worker died: take another, which resumes from the transcript the host kept."""
        with self._send_lock:
            old = self._worker
            assert old is not None
            code = old.process.poll()
            if code is None:  # closed its side without a fatal error: a hung or broken worker
                old.kill()
                code = old.process.poll()
            output = old.output()
            old.close(0.0)
            self._restarts += 1
            self._restarts_unready += 0 if self._ready else 1
            self._ready = False
            if self._restarts_unready > MAX_RESTARTS_UNREADY:
                self._ended = True
                self._worker = None
                self._closed = True
                return [Error(WORKER_FAILED, f"workers keep exiting before the session is up: {output}", True)]
            try:
                self._take_worker(self.config.model_copy(update={"history": self.history}))
            except BridgeError as error:
                self._ended = True
                self._closed = True
                self._worker = None
                return [Error(WORKER_FAILED, str(error), True)]
            assert self._worker is not None
            # The replacement is given the turns not answered in full and the audio the old worker had not settled
            # (unread in the ring, or held by its session while it reconnected), or the turn's if longer, in the
            # order the user gave them. Trimmed again now: the audio sent since the last settlement the worker
            # reported is in the turn's, and a replay from that report would give the replacement more of it.
            unanswered = self._unanswered
            self._trim_unsettled()
            unsettled = self._unsettled
            for item in unanswered.in_order(unsettled, len(unsettled)):
                record = link.TextCommand(item) if isinstance(item, str) else link.UserAudio(item)
                link.write(self._worker.uplink, record)
            replayed = len(unsettled)
            lost = max(0, unsettled.total - self._settled_at - replayed)
            self._worker_base = self._settled_at = unsettled.total - replayed
            unanswered.holding = False
            unanswered.audio.trim(unanswered.audio.limit)
        events: list[SonicEvent] = [Reconnecting(f"worker exited with status {code}", self._restarts)]
        if lost:
            events.append(
                Error(
                    "AudioDropped",
                    f"{lost} bytes of user audio sent before the worker died never reached the service (the "
                    f"replacement was given the {replayed} bytes after them)",
                    False,
                )
            )
        return events

    def metrics(self) -> BridgeMetrics:
        """Latencies each way, first-audio latency per turn, ring fill, worker CPU and restarts."""
        worker = self._worker
        cpu = wall = 0.0
        up_fill = down_fill = 0.0
        if worker is not None:
            cpu = measure.cpu_seconds(worker.pid) - self._worker_since[1]
            wall = time.monotonic() - self._worker_since[0]
            up_fill = worker.uplink.stats().fill_ratio
            down_fill = worker.downlink.stats().fill_ratio
        return BridgeMetrics(
            uplink=self._uplink.latency(),
            downlink=self._downlink.latency(),
            first_audio_s=tuple(self._first_audio.samples),
            uplink_fill=up_fill,
            downlink_fill=down_fill,
            worker_pid=worker.pid if worker is not None else None,
            worker_cpu_s=cpu,
            worker_cpu_percent=100.0 * cpu / wall if wall > 0 else 0.0,
            restarts=self._restarts,
            dropped_output_bytes=self._stale.dropped_bytes,
        )
