# SPDX-License-Identifier: Apache-2.0
"""One session's conversation (`benches.conversation`) through each of three peers, for latency each way and CPU.

* **bridge** (`run_bridge`): `SonicBridge` with a 3.12 worker process (`WorkerPool` with no spare, so no
  replacement worker boots during the run). ``metrics().uplink`` is the host's ring write (`Record.t_ns`) to the
  SDK's send of the frame carrying the record's last byte, measured in the worker; ``.downlink`` is the SDK handing
  assistant audio to the session to the host decoding the record.
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

CPU is ``utime + stime`` from ``/proc/<pid>/stat`` (all threads, `novabridge.measure.cpu_seconds`), read at the
start and the end of the streaming window, over the wall time between; "% of one core" = 100 * CPU seconds /
window seconds. Latency percentiles are nearest-rank (`novabridge.measure.percentiles`).

Run as a script, this module is a 3.12 peer: ``python benches/peers.py in-process SPEC_JSON`` (the in-process
baseline for a 3.11 host, printing its `LinkRun` as JSON) or ``python benches/peers.py floor SPEC_JSON``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
from novabridge.events import AudioOut, Error, Reconnecting, SonicEvent
from novabridge.host.bridge import SonicBridge
from novabridge.host.pool import WorkerPool
from novabridge.measure import cpu_seconds, percentiles, system_cpu_seconds
from novabridge.sonic.config import SonicConfig

if __package__ in (None, ""):  # `python benches/peers.py`: make the `benches` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.conversation import (
    FRAME_S,
    LINGER_S,
    START_TIMEOUT_S,
    Conversation,
    Emulator,
    EmulatorSettings,
    Script,
    converse,
    host_python,
    python312,
)

SCRIPT: Final = Path(__file__).resolve()
TARGET_LATENCY_P99_MS: Final = 2.0
TARGET_WORKER_CPU_PERCENT: Final = 3.0


@dataclasses.dataclass(frozen=True)
class Stats:
    """Nearest-rank percentiles, in milliseconds."""

    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def stats(samples_s: Sequence[float]) -> Stats:
    """Raises `ValueError` without samples."""
    p50, p99, most = percentiles(samples_s, (50, 99, 100))
    return Stats(len(samples_s), 1e3 * p50, 1e3 * p99, 1e3 * most)


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
        from novabridge.worker.uplink_clock import UplinkClock  # the worker's own pairing; it imports the SDK (3.12)

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
# Script entry point (a 3.12 peer)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("in-process", "floor"):
        print("usage: peers.py in-process|floor SPEC_JSON", file=sys.stderr)
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
