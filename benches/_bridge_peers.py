# SPDX-License-Identifier: Apache-2.0
"""The bridge through the emulator, against its peers in the same run, shared by `test_bench_bridge.py`
(pytest-benchmark) and `bridge_report.py` (the README tables).

Every measurement streams the same kind of user audio in real time: 32 ms frames of 16 kHz int16 (512 samples, so
one frame is one record is one SDK frame at `SonicConfig.frame_ms` = 32), a lead-in of silence, then turns of a
0.6 s tone followed by silence long enough for the emulator's answer to play out (`Script`). The host sends frame
``k`` at ``start + k * 32 ms`` and, between sends, waits for events with the peer's own blocking wait, so it
reads as soon as something arrives (`converse`).

Peers:

* **bridge**: `SonicBridge` with a 3.12 worker process (`WorkerPool` with no spare, so no replacement worker boots
  during the run). ``metrics().uplink`` is the host's ring write (`Record.t_ns`) to the SDK's send of the frame
  carrying the record's last byte, measured in the worker; ``.downlink`` is the SDK handing assistant audio to the
  session to the host decoding the record.
* **in-process** (`InProcessBridge`, Python >= 3.12): the SDK on an asyncio loop in a thread of the host process.
  The host thread stamps ``time.monotonic_ns()`` and puts ``(stamp, frame)`` in a `queue.Queue`; a coroutine on
  the loop takes each with ``await loop.run_in_executor(None, q.get)`` (one executor thread parked in the blocking
  ``get``, handing the frame to the loop with ``call_soon_threadsafe``: the plain way to feed asyncio from a
  `queue.Queue`), hands it to `SonicSession.send_audio`, and pairs it with `on_audio_sent` exactly as the worker
  does (`UplinkClock`: the record whose last byte completed the frame dates it). Events from
  `SonicSession.timed_events` go back through a second `queue.Queue`; downlink latency is the host's ``get``
  returning minus the SDK's receive stamp.
* **SDK floor** (`run_floor`: this file run as a separate 3.12 process): `SonicSession` alone, the same audio
  generated in process and paced with ``asyncio.sleep``, events drained and dropped; no rings, no host. It says
  "ready" and "done" on stdout and waits for the parent's go-ahead each time, so the parent reads its CPU exactly
  at the window's ends.
* **ramp** (`run_ramp_step`): N bridges in this process, one thread each (a host's pump thread), through one
  emulator; workers are warmed 8 at a time, then the pool's ``spare`` is set to 0 (else every claim would boot a
  replacement during the window), and every session is connected before the window opens.

CPU is ``utime + stime`` from ``/proc/<pid>/stat`` (all threads), read at the start and the end of the streaming
window, over the wall time between; "% of one core" = 100 * CPU seconds / window seconds.

Playout and underruns (`Playout`): each turn's assistant audio plays in real time from its first chunk's arrival
at the host. A chunk that arrives more than `TOLERANCE_S` (20 ms) after its play position is an underrun; the
player stalls there and resumes with that chunk, so one stall counts once. With the emulator at ``--speed 1``
chunks leave it at exactly the 80 ms playout cadence, so this is a 20 ms jitter allowance end to end. The same
player fed each chunk at the SDK's hand-over in the worker (`upstream_playout`: arrival minus the bridge's downlink
latency for that chunk) tells stalls that arose before the bridge's hop from those the hop added. A late send is a
user frame sent more than one frame (32 ms) after its slot.

Run as a script, this module is a 3.12 peer: ``python _bridge_peers.py in-process SPEC_JSON`` (the in-process
baseline for a 3.11 host, printing its `LinkRun` as JSON) or ``python _bridge_peers.py floor SPEC_JSON``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
from novabridge.bridge import SonicBridge
from novabridge.emulator.process import EmulatorProcess
from novabridge.exceptions import BridgeError, RingFull
from novabridge.pool import WorkerPool
from novabridge.protocol import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, TurnEnd
from novabridge.sonic.config import SonicConfig

ROOT: Final = Path(__file__).resolve().parent.parent
SCRIPT: Final = Path(__file__).resolve()
RATE: Final = 16000
OUT_RATE: Final = 24000
FRAME: Final = 512
"""Samples per user frame: 32 ms at 16 kHz, the session's `frame_ms`, so one ring record is one SDK frame."""
FRAME_S: Final = FRAME / RATE
TONE_S: Final = 0.6
TOLERANCE_S: Final = 0.020
"""How late a chunk may arrive after its play position before it counts as an underrun."""
ANSWER_S: Final = 3.35
"""The emulator's default answer ("This is answer N. I heard 0.6 seconds of speech.") spoken by its voice."""
TARGET_LATENCY_P99_MS: Final = 2.0
TARGET_WORKER_CPU_PERCENT: Final = 3.0
TARGET_SESSIONS: Final = 32
START_TIMEOUT_S: Final = 120.0
LINGER_S: Final = 0.7
"""Reading on after a window: the worker sends its uplink timings twice a second."""
_TICKS: Final = os.sysconf("SC_CLK_TCK")


def python312() -> str:
    """The worker's interpreter: NOVABRIDGE_PY312 (the Makefile exports it), else this one if it is >= 3.12."""
    if env := os.environ.get("NOVABRIDGE_PY312"):
        return env
    if sys.version_info >= (3, 12):
        return sys.executable
    return str(ROOT / ".venv" / "bin" / "python")


def host_python() -> str:
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


# ---------------------------------------------------------------------------------------------------------------
# /proc


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process (all its threads), in seconds; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def system_cpu_seconds() -> float:
    """Busy CPU time of the whole machine since boot (all cores: user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _TICKS


def _proc_kib(path: str, key: str) -> int:
    try:
        with open(path, encoding="ascii") as lines:
            for line in lines:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size (shared pages counted in full)."""
    return 1024 * _proc_kib(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid: int | str = "self") -> int:
    """Proportional set size (shared pages split between the processes sharing them)."""
    return 1024 * _proc_kib(f"/proc/{pid}/smaps_rollup", "Pss:")


# ---------------------------------------------------------------------------------------------------------------
# The emulator and the user's audio


@dataclasses.dataclass(frozen=True)
class EmulatorSettings:
    """The emulator's command line: timing of the conversation model."""

    speed: float = 1.0
    """Assistant audio leaves at this multiple of real time (1: at the playout cadence, the strict case)."""
    think_s: float = 0.3
    endpointing_s: float = 0.5
    max_streams: int = 256

    def args(self) -> list[str]:
        return [
            *["--speed", f"{self.speed:g}", "--think", f"{self.think_s:g}"],
            *["--endpointing", f"{self.endpointing_s:g}", "--max-streams", str(self.max_streams)],
        ]

    @property
    def gap_s(self) -> float:
        """Silence after each tone: the pause that ends the turn, the think time, the answer, and 0.6 s to spare.

        The emulator holds a turn open until its answer has played out in real time, whatever ``speed`` is, and
        speech before then is a barge-in.
        """
        return self.endpointing_s + self.think_s + ANSWER_S + 0.6

    @property
    def answer_within_s(self) -> float:
        """After a tone ends, its answer's first audio is expected within this (1 s beyond the model's delays)."""
        return self.endpointing_s + self.think_s + 1.0


class Emulator(EmulatorProcess):
    """``python -m novabridge emulator`` with the benchmark's settings, as a subprocess on a free port."""

    def __init__(self, settings: EmulatorSettings, python: str | None = None) -> None:
        self.settings = settings
        super().__init__(python or python312(), settings.args())


@dataclasses.dataclass(frozen=True)
class Script:
    """The user's side: ``lead_s`` of silence, then turns of a 0.6 s tone and ``gap_s`` of silence; ``seconds``."""

    seconds: float
    gap_s: float
    lead_s: float = 0.2

    def tone_ends(self) -> list[float]:
        ends = []
        at = self.lead_s
        while at + TONE_S <= self.seconds:
            ends.append(at + TONE_S)
            at += TONE_S + self.gap_s
        return ends

    def audio(self) -> np.ndarray[Any, np.dtype[np.int16]]:
        frames = math.ceil(self.seconds * RATE / FRAME)
        audio = np.zeros(frames * FRAME, np.int16)
        t = np.arange(round(TONE_S * RATE)) / RATE
        for turn, end in enumerate(self.tone_ends()):
            hz = (220.0, 300.0, 260.0)[turn % 3]
            first = round((end - TONE_S) * RATE)
            audio[first : first + len(t)] = (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)
        return audio

    def frames(self) -> list[np.ndarray[Any, np.dtype[np.int16]]]:
        """The audio in 32 ms frames (views)."""
        audio = self.audio()
        return [audio[i : i + FRAME] for i in range(0, len(audio), FRAME)]

    def expected_answers(self, settings: EmulatorSettings) -> int:
        """Turns whose answer should have started before the script ends."""
        return sum(end + settings.answer_within_s <= self.seconds for end in self.tone_ends())


# ---------------------------------------------------------------------------------------------------------------
# Statistics, playout, pacing


@dataclasses.dataclass(frozen=True)
class Stats:
    """Nearest-rank percentiles, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ceil(q/100 * n)-th smallest of ``ordered`` (sorted, not empty)."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


def stats(samples_s: Sequence[float]) -> Stats:
    if not samples_s:
        raise ValueError("no samples")
    ordered = sorted(samples_s)
    return Stats(len(ordered), 1e3 * nearest_rank(ordered, 50), 1e3 * nearest_rank(ordered, 99), 1e3 * ordered[-1])


class Playout:
    """Plays each turn's assistant audio in real time from its first chunk's arrival, and counts the stalls."""

    def __init__(self, tolerance_s: float = TOLERANCE_S) -> None:
        self.tolerance_s = tolerance_s
        self._turns: dict[str, tuple[float, float]] = {}
        """turn id -> (when its audio started playing, seconds of it handed to the player so far)."""
        self.chunks = 0
        self.underruns = 0
        self.worst_late_s = 0.0
        """The latest any chunk arrived relative to its play position (0 if none was late)."""

    def chunk(self, turn_id: str, arrival: float, seconds: float) -> None:
        self.chunks += 1
        anchor, played = self._turns.get(turn_id, (arrival, 0.0))
        late = arrival - (anchor + played)
        self.worst_late_s = max(self.worst_late_s, late)
        if late > self.tolerance_s:
            self.underruns += 1
            anchor = arrival - played  # the player ran dry, and resumes with this chunk
        self._turns[turn_id] = (anchor, played + seconds)

    @property
    def turns(self) -> int:
        return len(self._turns)


@dataclasses.dataclass
class Conversation:
    """What one host session saw while it streamed a script."""

    playout: Playout
    frames: int = 0
    late_sends: int = 0
    worst_slip_s: float = 0.0
    ring_full: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    interrupts: int = 0
    turn_ends: int = 0
    audio_bytes: int = 0
    started: float = 0.0
    ended: float = 0.0
    host_thread_cpu_s: float = 0.0
    chunk_log: list[tuple[str, float, float]] = dataclasses.field(default_factory=list)
    """(turn id, arrival, seconds) of each assistant chunk, in order."""

    def take(self, events: Sequence[SonicEvent], now: float) -> None:
        for event in events:
            if isinstance(event, AudioOut):
                self.audio_bytes += len(event.pcm)
                seconds = len(event.pcm) / (2 * event.rate)
                self.playout.chunk(event.turn_id, now, seconds)
                self.chunk_log.append((event.turn_id, now, seconds))
            elif isinstance(event, (Error, Reconnecting)):
                self.errors.append(repr(event)[:200])
            elif isinstance(event, Interrupted):
                self.interrupts += 1
            elif isinstance(event, TurnEnd):
                self.turn_ends += 1


def upstream_playout(conversation: Conversation, downlink_s: Sequence[float], tolerance_s: float) -> Playout | None:
    """The same playout, with each chunk at the time the SDK handed it to the worker's session (its arrival at the
    host minus the bridge's downlink latency for it): what a player could do before the bridge's hop. None when the
    samples do not line up with the chunks (the bridge keeps one per audio record, in order)."""
    if len(downlink_s) < len(conversation.chunk_log):
        return None
    playout = Playout(tolerance_s)
    for (turn_id, arrival, seconds), latency in zip(conversation.chunk_log, downlink_s, strict=False):
        playout.chunk(turn_id, arrival - latency, seconds)
    return playout


def converse(
    frames: Sequence[np.ndarray[Any, np.dtype[np.int16]]],
    start: float,
    send: Callable[[np.ndarray[Any, np.dtype[np.int16]]], None],
    receive: Callable[[float], list[SonicEvent]],
    *,
    tolerance_s: float = TOLERANCE_S,
    on_start: Callable[[], None] | None = None,
    linger_s: float = 0.0,
) -> Conversation:
    """Send frame k at ``start + k * FRAME_S``; between sends, wait in ``receive(timeout)`` for events.

    After the window, keep reading (and dropping) events for ``linger_s``, so what arrives then is read promptly
    too (the bridge times its reads) and the worker's last batch of uplink timings comes in.
    """
    conversation = Conversation(Playout(tolerance_s))

    def until(deadline: float, take: bool = True) -> None:
        while (left := deadline - time.monotonic()) > 0:
            events = receive(left)
            if take:
                conversation.take(events, time.monotonic())

    until(start)
    if on_start is not None:
        on_start()
    thread_cpu = time.thread_time()
    conversation.started = time.monotonic()
    for k, frame in enumerate(frames):
        due = start + k * FRAME_S
        until(due)
        slip = time.monotonic() - due
        conversation.worst_slip_s = max(conversation.worst_slip_s, slip)
        if slip > FRAME_S:
            conversation.late_sends += 1
        try:
            send(frame)
        except RingFull:
            conversation.ring_full += 1
        conversation.frames += 1
    until(start + len(frames) * FRAME_S)
    conversation.ended = time.monotonic()
    conversation.host_thread_cpu_s = time.thread_time() - thread_cpu
    until(conversation.ended + linger_s, take=False)
    return conversation


# ---------------------------------------------------------------------------------------------------------------
# One session: the bridge, the in-process baseline, the SDK floor


@dataclasses.dataclass(frozen=True)
class LinkRun:
    """One session's conversation through one peer: latencies each way, playout, pacing, CPU."""

    peer: str
    host_python: str
    uplink_s: list[float]
    downlink_s: list[float]
    frames: int
    late_sends: int
    ring_full: int
    errors: list[str]
    interrupts: int
    turns_heard: int
    expected_answers: int
    chunks: int
    underruns: int
    worst_late_s: float
    window_s: float
    host_thread_cpu_s: float
    worker_cpu_s: float | None = None
    """The worker process over the window (the bridge only)."""
    system_cpu_s: float | None = None
    """The whole machine over the window, every process (the other engineer's tests included)."""

    @classmethod
    def of(
        cls, peer: str, conversation: Conversation, uplink_s: Sequence[float], downlink_s: Sequence[float], **kw: Any
    ) -> LinkRun:
        c = conversation
        return cls(
            peer=peer,
            host_python=host_python(),
            uplink_s=list(uplink_s),
            downlink_s=list(downlink_s),
            frames=c.frames,
            late_sends=c.late_sends,
            ring_full=c.ring_full,
            errors=c.errors,
            interrupts=c.interrupts,
            turns_heard=c.playout.turns,
            chunks=c.playout.chunks,
            underruns=c.playout.underruns,
            worst_late_s=c.playout.worst_late_s,
            window_s=c.ended - c.started,
            host_thread_cpu_s=c.host_thread_cpu_s,
            **kw,
        )

    @classmethod
    def merge(cls, runs: Sequence[LinkRun]) -> LinkRun:
        """Several runs of one peer as one: samples pooled, counts, windows and CPU added up."""
        first = runs[0]
        assert all(run.peer == first.peer for run in runs)

        def total(name: str) -> Any:
            values = [getattr(run, name) for run in runs]
            return None if None in values else sum(values)

        return cls(
            peer=first.peer,
            host_python=first.host_python,
            uplink_s=[s for run in runs for s in run.uplink_s],
            downlink_s=[s for run in runs for s in run.downlink_s],
            errors=[e for run in runs for e in run.errors],
            worst_late_s=max(run.worst_late_s for run in runs),
            **{
                name: total(name)
                for name in (
                    "frames",
                    "late_sends",
                    "ring_full",
                    "interrupts",
                    "turns_heard",
                    "expected_answers",
                    "chunks",
                    "underruns",
                    "window_s",
                    "host_thread_cpu_s",
                    "worker_cpu_s",
                    "system_cpu_s",
                )
            },
        )

    @property
    def uplink(self) -> Stats:
        return stats(self.uplink_s)

    @property
    def downlink(self) -> Stats:
        return stats(self.downlink_s)

    @property
    def worker_cpu_percent(self) -> float | None:
        return None if self.worker_cpu_s is None else 100 * self.worker_cpu_s / self.window_s

    def check(self, frames: int) -> None:
        """Raises `AssertionError` unless every frame went out, every answer came, and each way was timed."""
        assert not self.errors, f"{self.peer}: {self.errors}"
        assert self.ring_full == 0, f"{self.peer}: {self.ring_full} frames met a full ring"
        assert self.frames == frames, f"{self.peer}: sent {self.frames} of {frames} frames"
        assert self.turns_heard >= self.expected_answers >= 1, (
            f"{self.peer}: {self.turns_heard} answers heard, {self.expected_answers} expected"
        )
        assert self.interrupts == 0, f"{self.peer}: {self.interrupts} barge-ins: the script left too little room"
        # One timing per user frame (all of the host's frames are its own audio, silence included): allow the
        # last stats batch to be missed, and the first frames to share an SDK frame.
        assert len(self.uplink_s) >= frames - 20, f"{self.peer}: {len(self.uplink_s)} uplink timings"
        assert len(self.downlink_s) >= self.chunks > 0, f"{self.peer}: {len(self.downlink_s)} downlink timings"
        for samples in (self.uplink_s, self.downlink_s):
            assert 0 < min(samples) <= max(samples) < 5.0
        assert self.window_s >= 0.99 * frames * FRAME_S
        if self.worker_cpu_s is not None:
            assert self.worker_cpu_s > 0

    def extra_info(self) -> dict[str, object]:
        info: dict[str, object] = {"peer": self.peer, "host_python": self.host_python, "frames": self.frames}
        for way, s in (("uplink", self.uplink), ("downlink", self.downlink)):
            info |= {f"{way}_p50_ms": s.p50_ms, f"{way}_p99_ms": s.p99_ms, f"{way}_max_ms": s.max_ms}
            info[f"{way}_count"] = s.count
        info |= {"underruns": self.underruns, "late_sends": self.late_sends, "window_s": self.window_s}
        if self.worker_cpu_percent is not None:
            info["worker_cpu_percent"] = self.worker_cpu_percent
        return info


def run_bridge(config: SonicConfig, script: Script, settings: EmulatorSettings, python: str | None = None) -> LinkRun:
    """One `SonicBridge` session streams ``script``; the worker's CPU is read at the window's ends."""
    pool = WorkerPool(python or python312(), spare=0)  # claim starts the worker; no spare boots meanwhile
    try:
        with SonicBridge(config, worker_python=pool.python, pool=pool) as bridge:
            pid = bridge.metrics().worker_pid
            assert pid is not None
            marks: list[tuple[float, float]] = []
            frames = script.frames()
            conversation = converse(
                frames,
                time.monotonic() + 0.2,
                bridge.send_audio,
                lambda timeout: bridge.poll(timeout=timeout),
                on_start=lambda: marks.append((cpu_seconds(pid), system_cpu_seconds())),
            )
            worker_cpu = cpu_seconds(pid) - marks[0][0]
            system_cpu = system_cpu_seconds() - marks[0][1]
            # The worker reports its uplink timings twice a second: collect the last batch.
            deadline = time.monotonic() + LINGER_S
            while (left := deadline - time.monotonic()) > 0:
                bridge.poll(timeout=left)
            metrics = bridge.metrics()
    finally:
        pool.close()
    return LinkRun.of(
        "bridge",
        conversation,
        metrics.uplink.samples_s,
        metrics.downlink.samples_s,
        expected_answers=script.expected_answers(settings),
        worker_cpu_s=worker_cpu,
        system_cpu_s=system_cpu,
    )


class InProcessBridge:
    """The baseline: `SonicSession` on an asyncio loop in a thread of this process, joined by two `queue.Queue`s."""

    def __init__(self, config: SonicConfig) -> None:
        if sys.version_info < (3, 12):
            raise RuntimeError("the in-process baseline runs the SDK, which needs Python >= 3.12")
        self.config = config
        self.uplink: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self.downlink: queue.Queue[tuple[SonicEvent, int] | None] = queue.Queue()
        from novabridge.worker import UplinkClock  # the worker's own pairing; it imports the SDK (3.12)

        self.clock = UplinkClock()
        self.downlink_s: list[float] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="in-process-sdk", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            self.close()
            raise RuntimeError(f"the in-process session did not start: {self._error!r}")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.uplink.put(None)
        self._thread.join(10)
        assert not self._thread.is_alive(), "the in-process session did not stop"

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # noqa: BLE001 - handed to the host thread
            self._error = error
        finally:
            self._ready.set()

    async def _main(self) -> None:
        from novabridge.sonic.session import SonicSession  # the SDK: Python >= 3.12

        session = SonicSession(self.config, on_audio_sent=self.clock.sent)
        await session.start()
        self._ready.set()
        down = asyncio.create_task(self._to_host(session))
        try:
            await self._from_host(session)
        finally:
            await session.close()
            await down

    async def _from_host(self, session: Any) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await loop.run_in_executor(None, self.uplink.get)
            if item is None:
                return
            stamp_ns, payload = item
            await session.send_audio(payload)
            self.clock.received(session.audio_bytes_accepted, stamp_ns)

    async def _to_host(self, session: Any) -> None:
        async for item in session.timed_events():
            self.downlink.put(item)
        self.downlink.put(None)

    def send_audio(self, frame: np.ndarray[Any, np.dtype[np.int16]]) -> None:
        payload = frame.tobytes()
        self.uplink.put((time.monotonic_ns(), payload))

    def poll(self, timeout: float) -> list[SonicEvent]:
        events: list[SonicEvent] = []
        try:
            item = self.downlink.get(timeout=timeout)
            while True:
                if item is None:  # the session closed
                    return events
                event, received_ns = item
                if isinstance(event, AudioOut):
                    self.downlink_s.append((time.monotonic_ns() - received_ns) / 1e9)
                events.append(event)
                item = self.downlink.get_nowait()
        except queue.Empty:
            return events


def run_in_process(config: SonicConfig, script: Script, settings: EmulatorSettings) -> LinkRun:
    """The in-process baseline streams ``script`` (needs Python >= 3.12; see `run_in_process_anywhere`)."""
    with InProcessBridge(config) as peer:
        marks: list[float] = []
        conversation = converse(
            script.frames(),
            time.monotonic() + 0.2,
            peer.send_audio,
            peer.poll,
            on_start=lambda: marks.append(system_cpu_seconds()),
        )
        system_cpu = system_cpu_seconds() - marks[0]
        deadline = time.monotonic() + 0.2
        while (left := deadline - time.monotonic()) > 0:
            peer.poll(left)
    return LinkRun.of(
        "in-process",
        conversation,
        peer.clock.samples,
        peer.downlink_s,
        expected_answers=script.expected_answers(settings),
        system_cpu_s=system_cpu,
    )


def _spec(emulator: Emulator, script: Script) -> str:
    return json.dumps(
        {
            "endpoint_uri": emulator.endpoint_uri,
            "ca_file": emulator.ca_file,
            "script": dataclasses.asdict(script),
            "settings": dataclasses.asdict(emulator.settings),
        }
    )


def _from_spec(text: str) -> tuple[SonicConfig, Script, EmulatorSettings]:
    spec = json.loads(text)
    config = SonicConfig(
        endpoint_uri=spec["endpoint_uri"],
        ca_file=Path(spec["ca_file"]),
        aws_access_key_id="AKIDTEST",
        aws_secret_access_key="secret",
    )
    return config, Script(**spec["script"]), EmulatorSettings(**spec["settings"])


def run_in_process_anywhere(emulator: Emulator, script: Script) -> LinkRun:
    """The in-process baseline here on Python >= 3.12; from a 3.11 host, in a 3.12 subprocess that plays the host."""
    if sys.version_info >= (3, 12):
        return run_in_process(emulator.config(), script, emulator.settings)
    done = subprocess.run(
        [python312(), str(SCRIPT), "in-process", _spec(emulator, script)],
        capture_output=True,
        text=True,
        timeout=script.seconds + 60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the in-process baseline failed ({done.returncode}): {done.stderr[-2000:]}")
    return LinkRun(**json.loads(done.stdout.strip().splitlines()[-1]))


@dataclasses.dataclass(frozen=True)
class FloorRun:
    """The SDK alone in its own process: its CPU over the same kind of streaming window."""

    cpu_s: float
    window_s: float
    frames: int
    chunks: int
    turns: int
    errors: list[str]
    python: str
    system_cpu_s: float

    @classmethod
    def merge(cls, runs: Sequence[FloorRun]) -> FloorRun:
        """Several runs as one: counts, windows and CPU added up."""
        return cls(
            cpu_s=sum(run.cpu_s for run in runs),
            window_s=sum(run.window_s for run in runs),
            frames=sum(run.frames for run in runs),
            chunks=sum(run.chunks for run in runs),
            turns=sum(run.turns for run in runs),
            errors=[e for run in runs for e in run.errors],
            python=runs[0].python,
            system_cpu_s=sum(run.system_cpu_s for run in runs),
        )

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu_s / self.window_s

    def check(self, frames: int, expected_answers: int) -> None:
        assert not self.errors, self.errors
        assert self.frames == frames, f"the floor sent {self.frames} of {frames} frames"
        assert self.turns >= expected_answers >= 1, f"the floor heard {self.turns} of {expected_answers} answers"
        assert self.chunks > 0
        assert self.cpu_s > 0
        assert self.window_s >= 0.99 * frames * FRAME_S


def run_floor(emulator: Emulator, script: Script) -> FloorRun:
    """Start the floor process, and read its CPU when it says it streams and when it says it is done."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [python312(), str(SCRIPT), "floor", _spec(emulator, script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        lines: dict[str, dict[str, Any]] = {}
        marks: list[tuple[float, float, float]] = []
        try:
            for expected in ("ready", "done"):
                ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT_S + script.seconds)
                line = process.stdout.readline() if ready else ""
                if not line:
                    break
                marks.append((time.monotonic(), cpu_seconds(process.pid), system_cpu_seconds()))
                message = json.loads(line)
                assert message["state"] == expected, message
                lines[expected] = message
                process.stdin.write("go\n")
                process.stdin.flush()
            process.stdin.close()
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdout.close()
            if not process.stdin.closed:
                process.stdin.close()
        if len(marks) != 2 or process.returncode != 0:
            log.seek(0)
            detail = log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the SDK floor process failed ({process.returncode}): {detail}")
    done = lines["done"]
    return FloorRun(
        cpu_s=marks[1][1] - marks[0][1],
        window_s=marks[1][0] - marks[0][0],
        frames=done["frames"],
        chunks=done["chunks"],
        turns=done["turns"],
        errors=done["errors"],
        python=done["python"],
        system_cpu_s=marks[1][2] - marks[0][2],
    )


async def _floor(config: SonicConfig, script: Script) -> None:
    from novabridge.sonic.session import SonicSession  # the SDK: Python >= 3.12

    loop = asyncio.get_running_loop()
    frames = [frame.tobytes() for frame in script.frames()]
    turns: set[str] = set()
    chunks = 0
    errors: list[str] = []

    async def drain(session: SonicSession) -> None:
        nonlocal chunks
        async for event in session.events():
            if isinstance(event, AudioOut):
                chunks += 1
                turns.add(event.turn_id)
            elif isinstance(event, (Error, Reconnecting)):
                errors.append(repr(event)[:200])

    def say(message: dict[str, object]) -> None:
        print(json.dumps(message), flush=True)
        sys.stdin.readline()  # the parent read our CPU

    async with SonicSession(config) as session:
        drainer = asyncio.create_task(drain(session))
        ready: dict[str, object] = {"state": "ready"}
        await loop.run_in_executor(None, say, ready)
        start = loop.time()
        for k, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, start + k * FRAME_S - loop.time()))
            await session.send_audio(frame)
        await asyncio.sleep(max(0.0, start + len(frames) * FRAME_S - loop.time()))
        done = {"frames": len(frames), "chunks": chunks, "turns": len(turns), "errors": errors}
        await loop.run_in_executor(None, say, {"state": "done", **done, "python": host_python()})
    await drainer


# ---------------------------------------------------------------------------------------------------------------
# Many sessions through one emulator


@dataclasses.dataclass(frozen=True)
class RampStep:
    """N bridge sessions at once through one emulator: playout, pacing, errors, CPU and memory."""

    sessions: int
    seconds: float
    start_s: float
    """Wall time to warm the N workers and connect their sessions (not measured)."""
    chunks: int
    underruns: int
    worst_late_s: float
    upstream_underruns: int
    """Underruns of the same playout at the SDK's hand-over in the worker, before the bridge's hop (-1: unknown)."""
    upstream_worst_late_s: float
    late_sends: int
    worst_slip_s: float
    ring_full: int
    errors: list[str]
    interrupts: int
    answers_heard: int
    answers_expected: int
    short_sessions: int
    """Sessions that heard fewer answers than their script should have had."""
    frames: int
    window_s: float
    host_cpu_s: float
    workers_cpu_s: float
    emulator_cpu_s: float
    system_cpu_s: float
    """The whole machine over the window: these processes and everything else running (other tests, the kernel)."""
    workers_rss: int
    workers_pss: int
    total_pss: int
    """Host, workers and emulator."""
    uplink_p99_ms: float
    downlink_p99_ms: float

    @property
    def passed(self) -> bool:
        return (
            self.underruns == 0
            and not self.errors
            and self.ring_full == 0
            and self.interrupts == 0
            and self.short_sessions == 0
        )

    @property
    def other_cpu_s(self) -> float:
        """Busy time of the machine not spent in the host, the workers or the emulator."""
        return self.system_cpu_s - self.host_cpu_s - self.workers_cpu_s - self.emulator_cpu_s

    def percent(self, cpu_s: float) -> float:
        return 100 * cpu_s / self.window_s

    def check(self) -> None:
        """Raises `AssertionError` unless everything was sent, every answer came, and the counters are sane."""
        assert not self.errors, self.errors
        assert self.ring_full == 0
        assert self.short_sessions == 0, f"{self.answers_heard} answers heard, {self.answers_expected} expected"
        assert self.chunks > 0
        assert self.frames == self.sessions * math.ceil(self.seconds * RATE / FRAME)
        assert 0 <= self.underruns <= self.chunks
        assert self.workers_cpu_s > 0
        assert self.emulator_cpu_s > 0
        assert self.workers_rss > 0

    def extra_info(self) -> dict[str, object]:
        return {
            "sessions": self.sessions,
            "underruns": self.underruns,
            "worst_late_ms": 1e3 * self.worst_late_s,
            "upstream_underruns": self.upstream_underruns,
            "late_sends": self.late_sends,
            "host_cpu_percent": self.percent(self.host_cpu_s),
            "workers_cpu_percent": self.percent(self.workers_cpu_s),
            "emulator_cpu_percent": self.percent(self.emulator_cpu_s),
            "other_cpu_percent": self.percent(self.other_cpu_s),
            "workers_rss_mib": self.workers_rss / 2**20,
            "passed": self.passed,
        }


def _warm(pool: WorkerPool, sessions: int, batch: int = 8) -> None:
    """Warm ``sessions`` workers, ``batch`` booting at a time (each imports the SDK; 2 cores)."""
    while len(pool.spare_pids()) < sessions:
        pool.spare = min(sessions, len(pool.spare_pids()) + batch)
        warm = pool.wait_warm(START_TIMEOUT_S)
        if pool.error is not None or warm < pool.spare:
            raise BridgeError(f"warmed {warm} of {sessions} workers: {pool.error}")
    pool.spare = 0  # else every claim would boot a replacement during the measurement


def _in_threads(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the calls in parallel threads; their results, or raise the first exception."""
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            results[index] = calls[index]()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def _bridges(config: SonicConfig, pool: WorkerPool, sessions: int) -> Iterator[list[SonicBridge]]:
    bridges = [SonicBridge(config, worker_python=pool.python, pool=pool) for _ in range(sessions)]
    try:
        for bridge in bridges:
            bridge.start(wait=False)
        deadline = time.monotonic() + START_TIMEOUT_S
        for bridge in bridges:
            while not bridge.ready:
                if time.monotonic() > deadline:
                    raise BridgeError("sessions did not connect in time")
                for event in bridge.poll(timeout=0.05):
                    if isinstance(event, Error) and event.fatal:
                        raise BridgeError(f"a session did not start: {event.message}")
        yield bridges
    finally:
        _in_threads([bridge.close for bridge in bridges])


def run_ramp_step(
    emulator: Emulator,
    sessions: int,
    seconds: float,
    *,
    python: str | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> RampStep:
    """``sessions`` bridges in this process, each on its own thread like a host's pump, all through ``emulator``.

    Session i's turns are offset by i/N of a turn's cycle and its frames by i/N of a frame, so the sessions do not
    all speak, or send, in the same instant. Every worker is warm and every session connected before the window.
    """
    settings = emulator.settings
    cycle = TONE_S + settings.gap_s
    scripts = [Script(seconds, settings.gap_s, lead_s=0.2 + cycle * i / sessions) for i in range(sessions)]
    began = time.monotonic()
    pool = WorkerPool(python or python312(), spare=0)
    try:
        _warm(pool, sessions)
        with _bridges(emulator.config(), pool, sessions) as bridges:
            start_s = time.monotonic() - began
            pids = [bridge.metrics().worker_pid for bridge in bridges]
            workers = [pid for pid in pids if pid is not None]
            start = time.monotonic() + 0.5

            def session(i: int) -> Callable[[], Conversation]:
                bridge = bridges[i]
                return lambda: converse(
                    scripts[i].frames(),
                    start + FRAME_S * i / sessions,
                    bridge.send_audio,
                    lambda timeout: bridge.poll(timeout=timeout),
                    tolerance_s=tolerance_s,
                    linger_s=LINGER_S,
                )

            marks: list[tuple[float, float, float, float, float]] = []

            def watch() -> None:
                for at in (start, start + seconds):
                    time.sleep(max(0.0, at - time.monotonic()))
                    marks.append(
                        (
                            time.monotonic(),
                            cpu_seconds(),
                            sum(cpu_seconds(pid) for pid in workers),
                            cpu_seconds(emulator.pid),
                            system_cpu_seconds(),
                        )
                    )

            conversations: list[Conversation] = _in_threads([*map(session, range(sessions)), watch])[:sessions]
            workers_rss = sum(rss_bytes(pid) for pid in workers)
            workers_pss = sum(pss_bytes(pid) for pid in workers)
            total_pss = workers_pss + pss_bytes() + pss_bytes(emulator.pid)
            metrics = [bridge.metrics() for bridge in bridges]
    finally:
        pool.close()
    (t0, host0, work0, emu0, sys0), (t1, host1, work1, emu1, sys1) = marks
    upstream = [
        upstream_playout(c, m.downlink.samples_s, tolerance_s) for c, m in zip(conversations, metrics, strict=True)
    ]
    known = [p for p in upstream if p is not None]
    expected = [script.expected_answers(settings) for script in scripts]
    uplink = [s for m in metrics for s in m.uplink.samples_s]
    downlink = [s for m in metrics for s in m.downlink.samples_s]
    return RampStep(
        sessions=sessions,
        seconds=seconds,
        start_s=start_s,
        chunks=sum(c.playout.chunks for c in conversations),
        underruns=sum(c.playout.underruns for c in conversations),
        worst_late_s=max(c.playout.worst_late_s for c in conversations),
        upstream_underruns=sum(p.underruns for p in known) if len(known) == sessions else -1,
        upstream_worst_late_s=max((p.worst_late_s for p in known), default=math.nan),
        late_sends=sum(c.late_sends for c in conversations),
        worst_slip_s=max(c.worst_slip_s for c in conversations),
        ring_full=sum(c.ring_full for c in conversations),
        errors=[e for c in conversations for e in c.errors],
        interrupts=sum(c.interrupts for c in conversations),
        answers_heard=sum(c.playout.turns for c in conversations),
        answers_expected=sum(expected),
        short_sessions=sum(c.playout.turns < e for c, e in zip(conversations, expected, strict=True)),
        frames=sum(c.frames for c in conversations),
        window_s=t1 - t0,
        host_cpu_s=host1 - host0,
        workers_cpu_s=work1 - work0,
        emulator_cpu_s=emu1 - emu0,
        system_cpu_s=sys1 - sys0,
        workers_rss=workers_rss,
        workers_pss=workers_pss,
        total_pss=total_pss,
        uplink_p99_ms=stats(uplink).p99_ms if uplink else math.nan,
        downlink_p99_ms=stats(downlink).p99_ms if downlink else math.nan,
    )


# ---------------------------------------------------------------------------------------------------------------
# Script entry point (a 3.12 peer)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("in-process", "floor"):
        print("usage: _bridge_peers.py in-process|floor SPEC_JSON", file=sys.stderr)
        return 2
    config, script, settings = _from_spec(argv[1])
    if argv[0] == "in-process":
        run = run_in_process(config, script, settings)
        print(json.dumps(dataclasses.asdict(run)), flush=True)
    else:
        asyncio.run(_floor(config, script))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
