# SPDX-License-Identifier: Apache-2.0
"""Many bridge sessions at once through one emulator: a step of the concurrent-session ramp (`run_ramp_step`).

N bridges in this process, one thread each (a host's pump thread), all streaming their own script
(`benches.conversation`) through one emulator; workers are warmed 8 at a time, then the pool's ``spare`` is set
to 0 (else every claim would boot a replacement during the window), and every session is connected before the
window opens. Each session's assistant audio goes through the playout model (`benches.playout`), at the host and
at the SDK's hand-over in the worker. CPU (host, workers, emulator, the whole machine) is read at the window's ends
and memory at its end, from ``/proc`` (`novabridge.measure`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from novabridge.events import Error
from novabridge.exceptions import BridgeError
from novabridge.host.bridge import SonicBridge
from novabridge.host.pool import WorkerPool
from novabridge.measure import cpu_seconds, percentile, pss_bytes, rss_bytes, system_cpu_seconds
from novabridge.sonic.config import SonicConfig

from benches.conversation import (
    FRAME,
    FRAME_S,
    LINGER_S,
    RATE,
    START_TIMEOUT_S,
    TONE_S,
    Conversation,
    Emulator,
    Script,
    converse,
    python312,
)
from benches.playout import TOLERANCE_S, upstream_playout

TARGET_SESSIONS: Final = 32


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


def _p99_ms(samples_s: Sequence[float]) -> float:
    """The nearest-rank p99 in milliseconds; NaN without samples."""
    p99 = percentile(samples_s, 99)
    return math.nan if p99 is None else 1e3 * p99


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
        upstream_playout(c.chunk_log, m.downlink.samples_s, tolerance_s)
        for c, m in zip(conversations, metrics, strict=True)
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
        uplink_p99_ms=_p99_ms(uplink),
        downlink_p99_ms=_p99_ms(downlink),
    )
