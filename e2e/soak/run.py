"""`make soak`: many conversations for a long time through the emulator while faults land at random.

Sessions (a `SonicBridge` each, in this host process) talk to one ``novabridge emulator`` process that records every
stream as it runs. A calm phase comes first (the reference for hop latency), then the seeded chaos schedule
(`e2e.soak.schedule`): every emulator fault, worker SIGKILL and SIGSTOP/SIGCONT, a host that stops reading, a host
that bursts, the emulator killed and restarted on its port and certificate; streams renew every 60-90 s. The
invariants are checked as the run goes (`e2e.soak.ledger`: recordings against what the hosts sent, no session silent
or dead, no runaway processes) and again in full at the end, with the leak checks. A violation stops the run and
fails it with the session, the seed and the last events. Writes ``report.md``, ``results.json`` and ``soak.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from novabridge import SonicBridge
from novabridge.emulator.process import EmulatorProcess
from novabridge.host.bridge import Latency
from novabridge.host.pool import WorkerPool
from novabridge.sonic.config import HistoryMessage, ToolSpec
from novabridge.sonic.wire import HISTORY_LIMIT_BYTES

from e2e.soak import ledger, report, resources
from e2e.soak.host import WORDS, SessionLog, SoakSession
from e2e.soak.schedule import ChaosEvent, chaos_schedule

SESSION_LIMIT_S = 90.0
"""The emulator's stream lifetime: sessions renew after 60-80 s, before it; a renewal held back by a turn meets it."""
SILENT_S = 30.0
"""A session that hears nothing from the service for this long while its user talks is silent: a violation."""
SAMPLE_EVERY_S = 2.0
AUDIT_EVERY_S = 5.0
IDLE_WAIT_S = 30.0
DELIVERY_LAG_S = 1.0
"""At the end, each session's audio is to reach the emulator up to this close to what its host has sent: a stream
stalled by a late fault holds audio back until the session replaces it."""
RSS_WINDOW_S = 600.0
RSS_SLOPE_LIMIT = 1.0
"""MiB per 10 minutes, by least squares over the samples after the calm phase (the warm-up)."""


@dataclass
class Injected:
    """A fault as it was applied."""

    t_s: float
    kind: str
    session: int | None
    detail: str = ""


@dataclass
class Run:
    """Everything the run observed, for the ledger and the report."""

    args: argparse.Namespace
    out: Path
    started: float = field(default_factory=time.monotonic)
    violations: list[dict[str, object]] = field(default_factory=list)
    injected: list[Injected] = field(default_factory=list)
    emulator_restarts: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    # What the run measures as it goes is appended to files in ``out/measured``, not kept in lists: the host process
    # is the one whose RSS the run measures, and the lists grew it by about 1 MiB per 10 minutes per 4 sessions.

    def _measured(self, name: str) -> Path:
        return self.out / "measured" / name

    def add_sample(self, sample: resources.Sample) -> None:
        """Keep one look at the processes."""
        with self._measured("samples.jsonl").open("a") as file:
            file.write(json.dumps(asdict(sample)) + "\n")

    @property
    def samples(self) -> list[resources.Sample]:
        """Every look at the processes, in order."""
        return [resources.Sample(**json.loads(line)) for line in _lines(self._measured("samples.jsonl"))]

    def add_hop(self, hop: dict[str, float | str]) -> None:
        """Keep one interval's hop latency of one session and direction: time, phase, p50 and p99 in ms."""
        with self._measured("hops.jsonl").open("a") as file:
            file.write(json.dumps(hop) + "\n")

    @property
    def hops(self) -> list[dict[str, float | str]]:
        """Every interval's hop latency, in order."""
        return [json.loads(line) for line in _lines(self._measured("hops.jsonl"))]

    def add_latency(self, phase: str, direction: str, samples_s: Sequence[float]) -> None:
        """Keep hop latency samples (s) of ``phase`` and ``direction``, as float64."""
        with self._measured(f"latency-{phase}-{direction}.f64").open("ab") as file:
            np.asarray(samples_s, dtype="<f8").tofile(file)

    @property
    def latency(self) -> dict[str, dict[str, list[float]]]:
        """The samples (s) by phase, then direction."""
        found: dict[str, dict[str, list[float]]] = {}
        for path in sorted(self._measured("").glob("latency-*-*.f64")):
            _, phase, direction = path.stem.split("-")
            found.setdefault(phase, {})[direction] = np.fromfile(path, dtype="<f8").tolist()
        return found

    def now(self) -> float:
        """Seconds since the sessions connected."""
        return time.monotonic() - self.started

    def violation(self, what: str, session: SessionLog | None = None) -> None:
        """Record a broken invariant (with the session's last events) and stop the run."""
        entry: dict[str, object] = {"t_s": round(self.now(), 2), "seed": self.args.seed, "what": what}
        if session is not None:
            entry["session"] = session.index
            entry["recent"] = list(session.recent)
        self.violations.append(entry)
        print(f"VIOLATION at {entry['t_s']} s: {what}", file=sys.stderr, flush=True)
        self.stop.set()


class Emulator:
    """The emulator process, restartable on the same port and certificate, each run recording to its own folder."""

    def __init__(self, worker_python: str, out: Path, scenario: Path) -> None:
        self.worker_python = worker_python
        self.out = out
        self.scenario = scenario
        self.certs = out / "certs"
        self.port = 0
        self.runs: list[Path] = []
        self.process = self._start()

    def _start(self) -> EmulatorProcess:
        record_dir = self.out / "records" / f"run-{len(self.runs) + 1}"
        self.runs.append(record_dir)
        args = [
            "--port", str(self.port), "--certs-dir", str(self.certs), "--record-dir", str(record_dir),
            "--scenario", str(self.scenario), "--session-limit", str(SESSION_LIMIT_S),
            "--think", "0.3", "--speed", "2", "--endpointing", "0.6",
        ]  # fmt: skip
        process = EmulatorProcess(self.worker_python, args)
        self.port = urllib.parse.urlsplit(process.endpoint_uri).port or 0
        return process

    def restart(self) -> None:
        """SIGKILL, as a crash, then a new process on the same port and certificate."""
        self.process.process.send_signal(signal.SIGKILL)
        self.process.stop()
        self.process = self._start()


def _scenario(path: Path) -> Path:
    # Every third turn of a stream calls a tool the host answers, sometimes late.
    turns = [
        {"assistant": "The lookup says {result[value]}. Anything else?", "tool": {"name": "lookup", "input": {}}}
        if n % 3 == 1
        else {"assistant": "This is answer {n}. I heard {seconds:.1f} seconds of speech."}
        for n in range(60)
    ]
    path.write_text(yaml.safe_dump({"turns": turns}))
    return path


def earlier_conversation(seed: int) -> tuple[HistoryMessage, ...]:
    """A conversation's history as full as a new stream takes (40 KB of text), in turns like the run's own.

    Each session resumes one: the run is of long conversations from the start, every renewal replaying all a stream
    takes, and the memory histories hold is at its limit before the RSS slope is measured (a fresh history of these
    short turns fills in about an hour, which a 30-minute run would take for growth).
    """
    rng = np.random.default_rng(seed)
    messages: list[HistoryMessage] = []
    total = 0
    while True:
        asked = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
        answered = f"This is answer {len(messages) // 2}. I heard {rng.uniform(0.5, 2.5):.1f} seconds of speech."
        total += len(asked) + len(answered)
        if total > HISTORY_LIMIT_BYTES:
            return tuple(messages)
        messages += [HistoryMessage(role="USER", text=asked), HistoryMessage(role="ASSISTANT", text=answered)]


def _apply(run: Run, event: ChaosEvent, emulator: Emulator, sessions: list[SoakSession]) -> str:
    if event.spec is not None:
        emulator.process.inject(event.spec)
        return event.spec
    if event.kind == "emulator-restart":
        emulator.restart()
        run.emulator_restarts.append(run.now())
        return f"port {emulator.port}"
    assert event.session is not None
    session = sessions[event.session]
    if event.kind == "host-deaf":
        session.go_deaf()
        return ""
    if event.kind == "host-burst":
        session.burst()
        return ""
    pid = session.bridge.metrics().worker_pid
    if pid is None:
        return "no worker"
    if event.kind == "worker-kill":
        os.kill(pid, signal.SIGKILL)
        return f"pid {pid}"
    os.kill(pid, signal.SIGSTOP)
    threading.Timer(event.stop_s, lambda: _continue(pid)).start()
    return f"pid {pid} for {event.stop_s:.1f} s"


def _continue(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # killed meanwhile
        os.kill(pid, signal.SIGCONT)


def _chaos(run: Run, schedule: list[ChaosEvent], emulator: Emulator, sessions: list[SoakSession]) -> None:
    for event in schedule:
        if run.stop.wait(max(0.0, event.at_s - run.now())):
            return
        try:
            detail = _apply(run, event, emulator, sessions)
        except Exception as error:  # noqa: BLE001 - the harness failing is a failed run
            run.violation(f"chaos {event.kind} could not be applied: {error!r}")
            return
        run.injected.append(Injected(round(run.now(), 2), event.kind, event.session, detail))
        print(f"{run.now():7.1f} s  {event.kind} {'' if event.session is None else event.session} {detail}", flush=True)


class Audits:
    """The emulator's recordings, followed as they grow."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self.by_key: dict[str, ledger.StreamAudit] = {}
        self.reported = 0

    def advance(self, run: Run, logs: list[SessionLog], *, final: bool = False) -> None:
        """Follow new streams and what the others gained; report new violations."""
        for number, directory in enumerate(self.emulator.runs, start=1):
            for path in sorted(directory.glob("stream-*-user.pcm")):
                stream_id = int(path.name.split("-")[1])
                key = f"run-{number}/stream-{stream_id}"
                if key not in self.by_key:
                    self.by_key[key] = ledger.StreamAudit(key, directory, stream_id)
        live = self.emulator.runs[-1]
        for audit in self.by_key.values():
            if audit.finished:
                continue
            # An ended stream's recording grows no more (a killed emulator's streams ended with it): taken in once
            # whole, it is not read again at every round.
            ended = audit.directory != live or audit.summary().exists()
            audit.advance(logs, final=final or ended)
            audit.finished = ended
        found = [v for audit in self.by_key.values() for v in audit.violations]
        for what in found[self.reported :]:
            run.violation(what)
        self.reported = len(found)

    def delivered(self, index: int) -> int:
        """How far into session ``index``'s sent audio its streams have reached, in samples."""
        return max((a.pieces[-1].sent_end for a in self.of_session(index) if a.pieces), default=0)

    def of_session(self, index: int) -> list[ledger.StreamAudit]:
        """The session's streams in the order they opened."""

        def order(audit: ledger.StreamAudit) -> tuple[int, int]:
            return int(audit.key.split("/")[0].split("-")[1]), audit.stream_id

        return sorted((a for a in self.by_key.values() if a.session == index), key=order)


def _watch(run: Run, sessions: list[SoakSession], audits: Audits, emulator: Emulator, spare: int) -> Callable[[], None]:
    """One round of the continuous checks; returns the function the main loop calls every second."""
    last_sample = last_audit = 0.0
    latency_seen: dict[int, tuple[int, int]] = {}  # per session: uplink and downlink samples taken by the last round

    def follow_latency(session: SoakSession, phase: str, now: float) -> int | None:
        """Keep the session's hop latencies since the last round; its worker's pid."""
        # Of the last round only the counts are kept: a copy of every session's windows (20,000 floats each way)
        # kept from one round to the next grew the host as they filled.
        metrics = session.bridge.metrics()
        before = latency_seen.get(session.log.index)
        latency_seen[session.log.index] = (metrics.uplink.taken, metrics.downlink.taken)
        for direction, latency, then_taken in (
            ("uplink", metrics.uplink, before[0] if before else None),
            ("downlink", metrics.downlink, before[1] if before else None),
        ):
            new = latency.since(Latency((), then_taken)).samples_s if then_taken is not None else ()
            if new:
                run.add_latency(phase, direction, new)
                interval = Latency(new)
                run.add_hop(
                    {
                        "t_s": round(now, 2),
                        "phase": phase,
                        "direction": direction,
                        "p50_ms": 1e3 * (interval.p50_s or 0.0),
                        "p99_ms": 1e3 * (interval.p99_s or 0.0),
                    }
                )
        return metrics.worker_pid

    def check() -> None:
        nonlocal last_sample, last_audit
        now = run.now()
        phase = "calm" if now < run.args.calm_s else "chaos"
        for session in sessions:
            log = session.log
            if session.crashed is not None:
                run.violation(f"session {log.index}'s host thread died: {session.crashed!r}", log)
            if log.fatal_errors:
                fatal = log.fatal_errors[-1]
                run.violation(f"session {log.index} ended: {fatal.kind}: {fatal.message}", log)
            if log.turns_taken and time.monotonic() - log.last_service_event_at > SILENT_S:
                run.violation(f"session {log.index} heard nothing from the service for {SILENT_S:.0f} s", log)
        if now - last_sample >= SAMPLE_EVERY_S:
            last_sample = now
            pids = (follow_latency(session, phase, now) for session in sessions)
            in_use = {pid for pid in pids if pid is not None}
            histories = sum(resources.history_bytes(session.bridge.history) for session in sessions)
            taken = resources.sample(now, emulator.process.pid, in_use, histories)
            run.add_sample(taken)
            limit = 1 + len(sessions) + spare + 2  # host, workers, spares, the emulator and a replacement booting
            if taken.processes > limit:
                run.violation(f"{taken.processes} processes under the host (at most {limit} expected)")
        if now - last_audit >= AUDIT_EVERY_S:
            last_audit = now
            audits.advance(run, [s.log for s in sessions])

    return check


def main(argv: list[str] | None = None) -> int:
    """Run; the exit status is 1 if any invariant broke."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--calm-s", type=float, help="the calm phase first (default: 10 %% of the run, 10-120 s)")
    parser.add_argument("--mean-fault-gap-s", type=float, default=15.0, help="chaos: seconds between faults on average")
    parser.add_argument("--worker-python", required=True, help="a Python >= 3.12 with novabridge[sonic,emulator]")
    parser.add_argument("--out", type=Path, default=Path("out/soak"))
    args = parser.parse_args(argv)
    duration_s = args.minutes * 60
    if args.calm_s is None:
        args.calm_s = min(120.0, max(10.0, duration_s / 10))
    out: Path = args.out
    for earlier in ("records", "host", "measured"):  # these files append: an earlier run's would mix in
        shutil.rmtree(out / earlier, ignore_errors=True)
    (out / "measured").mkdir(parents=True)
    run = Run(args, out)
    schedule = chaos_schedule(
        args.seed,
        sessions=args.sessions,
        start_s=args.calm_s,
        end_s=duration_s,
        mean_gap_s=min(args.mean_fault_gap_s, (duration_s - args.calm_s) / 14),
    )
    print(f"soak: {args.sessions} sessions, {args.minutes:g} min, seed {args.seed}, {len(schedule)} faults", flush=True)

    baseline = resources.sample(0.0, None)
    emulator = Emulator(args.worker_python, out, _scenario(out / "scenario.yaml"))
    pool = WorkerPool(args.worker_python, spare=1)
    pool.warm_up()
    sessions: list[SoakSession] = []
    audits = Audits(emulator)
    verdicts: list[ledger.SessionVerdict] = []
    try:
        for index in range(args.sessions):
            config = emulator.process.config(
                system_prompt=f"You are soak session {index}.",
                tools=[ToolSpec(name="lookup", description="Look something up.")],
                renewal_after_s=60 + (args.seed * 7 + index * 13) % 20,
                history=earlier_conversation(args.seed * 1000 + index),
            )
            bridge = SonicBridge(config, worker_python=args.worker_python, pool=pool)
            session = SoakSession(SessionLog(index, out / "host"), bridge, seed=args.seed * 1000 + index)
            session.start()
            sessions.append(session)
        run.started = time.monotonic()  # the schedule counts from here
        print(f"soak: {len(sessions)} sessions connected", flush=True)
        chaos = threading.Thread(target=_chaos, args=(run, schedule, emulator, sessions), name="soak-chaos")
        chaos.start()
        check = _watch(run, sessions, audits, emulator, spare=1)
        while run.now() < duration_s and not run.stop.is_set():
            check()
            time.sleep(1.0)
        run.stop.set()
        chaos.join()
        _wind_down(run, sessions, audits)
        dropped = {s.log.index: s.bridge.metrics().dropped_output_bytes for s in sessions}
        for session in sessions:
            session.finish()
        time.sleep(1.0)  # the streams' summaries
        audits.advance(run, [s.log for s in sessions], final=True)
        verdicts = [ledger.settle(s.log, audits.of_session(s.log.index), dropped[s.log.index]) for s in sessions]
        for verdict in verdicts:
            for what in verdict.violations:
                run.violation(what, sessions[verdict.session].log)
    finally:
        for session in sessions:
            session.finish()
        pool.close()
        for session in sessions:
            session.log.close()
        time.sleep(0.5)
        after = resources.sample(run.now(), emulator.process.pid)
        emulator.process.stop()
    _check_leaks(run, baseline, after)
    results = report.results(run, sessions, verdicts, schedule, baseline, after)
    if duration_s - args.calm_s >= RSS_WINDOW_S:  # a shorter run's slope is the noise of restarts and turns
        for name, slope in results["rss_mib_per_10_min"].items():
            if slope > RSS_SLOPE_LIMIT:
                run.violation(f"RSS of the {name} grows {slope:.2f} MiB per 10 minutes after warm-up")
    report.write(out, results)
    print((out / "report.md").read_text())
    return 1 if run.violations else 0


def _wind_down(run: Run, sessions: list[SoakSession], audits: Audits) -> None:
    """No new turns; wait for the answers in progress and for the audio to reach the emulator, then a little more.

    The audio of a stream stalled by a late fault arrives once the session has replaced the stream.
    """
    for session in sessions:
        session.quiesce()
    deadline = time.monotonic() + IDLE_WAIT_S
    logs = [s.log for s in sessions]

    def behind() -> list[SoakSession]:
        audits.advance(run, logs)
        lag = int(DELIVERY_LAG_S * ledger.RATE)
        return [s for s in sessions if audits.delivered(s.log.index) < s.log.sent.size // 2 - lag]

    time.sleep(2 * DELIVERY_LAG_S)  # a stall armed last shows as a lag by then
    while time.monotonic() < deadline and (behind() or not all(s.idle() for s in sessions)):
        time.sleep(0.5)
    for session in sessions:
        if not session.idle():
            run.violation(f"session {session.log.index} still waits for an answer at the end", session.log)
    for session in behind():
        run.violation(f"session {session.log.index}'s audio still does not reach the service at the end", session.log)
    time.sleep(1.5)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _check_leaks(run: Run, baseline: resources.Sample, after: resources.Sample) -> None:
    # After the sessions and the pool closed, only the emulator (still up) is left below the host.
    expected = {
        "processes": baseline.processes + 1,
        "memfds": baseline.memfds,
        "host_threads": baseline.host_threads,
        "host_fds": baseline.host_fds + 3,  # the emulator's stdin, stdout and log
    }
    for name, value in expected.items():
        if getattr(after, name) > value:
            run.violation(f"leak: {getattr(after, name)} {name} after the run, {value} expected")


if __name__ == "__main__":
    sys.exit(main())
