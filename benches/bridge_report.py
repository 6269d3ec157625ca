# SPDX-License-Identifier: Apache-2.0
"""Measures the bridge through the emulator and prints docs/performance.md's Markdown tables (method:
`conversation.py`, `playout.py`, `peers.py`, `ramp.py`).

Usage: `python benches/bridge_report.py [--seconds S] [--runs N] [--ramp-seconds S] [--ramp N,N,...]
[--ramp-speeds X,X] [--retries N]`, on Python >= 3.12 (the in-process baseline runs the SDK here). In order, through
one emulator subprocess: single-session runs (the bridge: latency each way and worker CPU; the in-process baseline;
the SDK floor process), interleaved and repeated; then a ramp of concurrent sessions, which stops at the first step
that fails twice; then the same ramp through a second emulator that sends its answers at 2x real time. The defaults
take about 8 to 10 minutes on two cores. Progress goes to stderr, the Markdown to stdout and, with `--write
docs/performance.md` (`make bench-bridge`), into that page between its `benches/bridge_report.py` markers
(`docs_section.py`).
"""

import argparse
import dataclasses
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

if __package__ in (None, ""):  # `python benches/bridge_report.py`: make the `benches` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches.conversation import FRAME, FRAME_S, RATE, TONE_S, Emulator, EmulatorSettings, Script
from benches.docs_section import add_write_option, checked_write_option, write_section
from benches.peers import (
    TARGET_LATENCY_P99_MS,
    TARGET_WORKER_CPU_PERCENT,
    FloorRun,
    LinkRun,
    Stats,
    run_bridge,
    run_floor,
    run_in_process,
)
from benches.ramp import TARGET_SESSIONS, RampStep, run_ramp_step

RAMP: tuple[int, ...] = (4, 8, 16, 24, 32, 40, 48)
SCRIPT = Path(__file__).name


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def _pct(value: float) -> str:
    return f"{value:.1f}"


def _mib(value: int) -> str:
    return f"{value / 2**20:,.0f}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _loadavg() -> str:
    with open("/proc/loadavg", encoding="ascii") as load:
        return " ".join(load.read().split()[:3])


def machine_info() -> str:
    return (
        f"{_cpu_model()}, {len(os.sched_getaffinity(0))} CPUs (nproc), Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()} (host, worker, emulator), novabridge "
        f"{_version('novabridge')}, aws-sdk-bedrock-runtime {_version('aws-sdk-bedrock-runtime')}, awscrt "
        f"{_version('awscrt')}"
    )


def latency_table(bridge: LinkRun, baseline: LinkRun) -> str:
    lines = [
        "| direction | peer | p50 (ms) | p99 (ms) | max (ms) | samples |",
        "|---|---|--:|--:|--:|--:|",
    ]
    labels = {"bridge": "novabridge bridge (worker process, rings)", "in-process": "in-process asyncio thread"}
    for way, label in (("uplink", "uplink: host write → SDK send"), ("downlink", "downlink: SDK → host read")):
        for run in (bridge, baseline):
            s: Stats = getattr(run, way)
            cells = [label, labels[run.peer], _ms(s.p50_ms), _ms(s.p99_ms), _ms(s.max_ms), str(s.count)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def latency_target_table(bridge: LinkRun, baseline: LinkRun) -> tuple[str, int]:
    lines = [
        "| direction | bridge p99 (ms) | in-process p99 (ms) | bridge minus in-process, p50 / p99 (ms) | target met |",
        "|---|--:|--:|--:|---|",
    ]
    met = 0
    for way in ("uplink", "downlink"):
        b: Stats = getattr(bridge, way)
        i: Stats = getattr(baseline, way)
        ok = b.p99_ms <= TARGET_LATENCY_P99_MS
        met += ok
        delta = f"{b.p50_ms - i.p50_ms:+.2f} / {b.p99_ms - i.p99_ms:+.2f}"
        verdict = "yes" if ok else f"no: p99 > {TARGET_LATENCY_P99_MS:g}"
        lines.append(f"| {way} | {_ms(b.p99_ms)} | {_ms(i.p99_ms)} | {delta} | {verdict} |")
    return "\n".join(lines), met


def cpu_table(bridge: LinkRun, floor: FloorRun) -> str:
    assert bridge.worker_cpu_s is not None
    assert bridge.worker_cpu_percent is not None
    lines = [
        "| process | what it runs | CPU (s) | window (s) | % of one core |",
        "|---|---|--:|--:|--:|",
        (
            f"| novabridge worker | ring reader and writer, `SonicSession`, the SDK | {bridge.worker_cpu_s:.2f} | "
            f"{bridge.window_s:.1f} | {_pct(bridge.worker_cpu_percent)} |"
        ),
        (
            f"| SDK floor | `SonicSession` and the SDK alone, audio generated in the process | {floor.cpu_s:.2f} | "
            f"{floor.window_s:.1f} | {_pct(floor.cpu_percent)} |"
        ),
        (
            f"| difference | what the bridge adds in the worker | {bridge.worker_cpu_s - floor.cpu_s:+.2f} | | "
            f"{bridge.worker_cpu_percent - floor.cpu_percent:+.1f} |"
        ),
        (
            f"| bridge host thread | `send_audio` and `poll` (thread CPU time) | {bridge.host_thread_cpu_s:.2f} | "
            f"{bridge.window_s:.1f} | {_pct(100 * bridge.host_thread_cpu_s / bridge.window_s)} |"
        ),
    ]
    return "\n".join(lines)


def _n(count: int, what: str) -> str:
    return f"{count} {what}" if count == 1 else f"{count} {what}s"


def _why(step: RampStep) -> str:
    reasons = []
    if step.underruns:
        reasons.append(_n(step.underruns, "underrun"))
    if step.errors:
        reasons.append(_n(len(step.errors), "error"))
    if step.ring_full:
        reasons.append(_n(step.ring_full, "full-ring send"))
    if step.interrupts:
        reasons.append(_n(step.interrupts, "barge-in") + " (late answers)")
    if step.short_sessions:
        reasons.append(_n(step.short_sessions, "session") + " missing answers")
    return ", ".join(reasons)


def ramp_table(steps: Sequence[RampStep]) -> str:
    lines = [
        (
            "| sessions | try | chunks | underruns at host / at SDK | worst lateness at host / at SDK (ms) "
            "| late sends | answers heard / due | errors | host CPU (%) | workers CPU (%) | per worker (%) "
            "| emulator CPU (%) | other load (%, approx.) | RSS workers / PSS all (MiB) | p99 up / down (ms) | result |"
        ),
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    tries: dict[int, int] = {}
    for s in steps:
        tries[s.sessions] = tries.get(s.sessions, 0) + 1
        upstream = "?" if s.upstream_underruns < 0 else str(s.upstream_underruns)
        cells = [
            str(s.sessions),
            str(tries[s.sessions]),
            str(s.chunks),
            f"{s.underruns} / {upstream}",
            f"{_ms(1e3 * s.worst_late_s)} / {_ms(1e3 * s.upstream_worst_late_s)}",
            str(s.late_sends),
            f"{s.answers_heard} / {s.answers_expected}",
            str(len(s.errors) + s.ring_full),
            _pct(s.percent(s.host_cpu_s)),
            _pct(s.percent(s.workers_cpu_s)),
            _pct(s.percent(s.workers_cpu_s) / s.sessions),
            _pct(s.percent(s.emulator_cpu_s)),
            _pct(s.percent(s.other_cpu_s)),
            f"{_mib(s.workers_rss)} / {_mib(s.total_pss)}",
            f"{_ms(s.uplink_p99_ms)} / {_ms(s.downlink_p99_ms)}",
            "pass" if s.passed else f"**fail**: {_why(s)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sustained(steps: Sequence[RampStep]) -> int:
    """The largest session count that passed (on its first try or its repeat)."""
    return max((s.sessions for s in steps if s.passed), default=0)


def ramp_reading(speed: float, steps: Sequence[RampStep], ramp: Sequence[int]) -> str:
    best = sustained(steps)
    verdict = "met" if best >= TARGET_SESSIONS else "not met"
    last = steps[-1] if steps else None
    if last is None:
        end = "the ramp did not run"
    elif not last.passed:
        end = f"it stopped at {last.sessions} ({_why(last)} on the last try)"
    elif last.sessions == max(ramp):
        end = f"every step passed up to the ramp's ceiling of {max(ramp)}"
    else:
        end = "the ramp did not run to its end"
    repeated = sorted({s.sessions for s in steps if not s.passed and s.sessions <= best})
    if repeated:
        end += "; " + " and ".join(map(str, repeated)) + " passed on the repeat only"
    text = f"**at {speed:g}x real time (target ≥ {TARGET_SESSIONS}): {verdict}**, {best} sessions sustained; {end}"
    failing = [s for s in steps if s.underruns and s.upstream_underruns >= 0]
    if failing:
        host = sum(s.underruns for s in failing)
        sdk = sum(s.upstream_underruns for s in failing)
        text += (
            f"; the failed tries' {host} underruns at the host are {sdk} for the same player fed at the SDK's "
            "hand-over in the worker, so the stalls arise before the bridge's hop (emulator, loopback, SDK), not in it"
        )
    if last is not None and not last.passed:
        busy = last.host_cpu_s + last.workers_cpu_s + last.emulator_cpu_s
        each = last.percent(last.workers_cpu_s) / last.sessions
        text += (
            f"; at {last.sessions} sessions the workers used {_pct(last.percent(last.workers_cpu_s))} % of a core "
            f"({_pct(each)} % each), the emulator {_pct(last.percent(last.emulator_cpu_s))} % and the host "
            f"{_pct(last.percent(last.host_cpu_s))} %, {_pct(last.percent(busy))} % of the machine's "
            f"{100 * len(os.sched_getaffinity(0))} %, and {TARGET_SESSIONS} workers at {_pct(each)} % would need "
            f"{_pct(TARGET_SESSIONS * each)} % before the emulator's share"
        )
    return text


def reading(
    bridge: LinkRun,
    baseline: LinkRun,
    floor: FloorRun,
    ramps: Sequence[tuple[float, Sequence[RampStep]]],
    ramp: Sequence[int],
) -> str:
    """One paragraph: each target, met or not, with the numbers."""
    up, down = bridge.uplink, bridge.downlink
    latency_ok = up.p99_ms <= TARGET_LATENCY_P99_MS and down.p99_ms <= TARGET_LATENCY_P99_MS
    gaps = (up.p99_ms - baseline.uplink.p99_ms, down.p99_ms - baseline.downlink.p99_ms)
    if max(map(abs, gaps)) < 0.5:
        compared = "within half a millisecond of a thread hop in the same process, each way"
    else:
        compared = f"the process boundary changes the p99 by {gaps[0]:+.2f} ms up and {gaps[1]:+.2f} ms down"
    latency = (
        f"**Latency (p99 ≤ {TARGET_LATENCY_P99_MS:g} ms each way): {'met' if latency_ok else 'not met'}**: the "
        f"bridge's p99 is {_ms(up.p99_ms)} ms up and {_ms(down.p99_ms)} ms down (medians {_ms(up.p50_ms)} and "
        f"{_ms(down.p50_ms)} ms), the in-process asyncio thread's {_ms(baseline.uplink.p99_ms)} and "
        f"{_ms(baseline.downlink.p99_ms)} ms (medians {_ms(baseline.uplink.p50_ms)} and "
        f"{_ms(baseline.downlink.p50_ms)} ms): {compared}."
    )
    assert bridge.worker_cpu_percent is not None
    cpu_ok = bridge.worker_cpu_percent <= TARGET_WORKER_CPU_PERCENT
    floor_side = "above" if floor.cpu_percent > TARGET_WORKER_CPU_PERCENT else "within"
    cpu = (
        f"**Worker CPU (≤ {TARGET_WORKER_CPU_PERCENT:g} % of one core): {'met' if cpu_ok else 'not met'}**: "
        f"{_pct(bridge.worker_cpu_percent)} % against {_pct(floor.cpu_percent)} % for the SDK alone, so the bridge "
        f"adds {bridge.worker_cpu_percent - floor.cpu_percent:+.1f} points and the SDK's own floor is {floor_side} "
        "the target."
    )
    sessions = "**Concurrent sessions without underrun**, " + "; ".join(
        ramp_reading(speed, steps, ramp) for speed, steps in ramps
    )
    return f"{latency} {cpu} {sessions}."


def run_ramp(
    emulator: Emulator, counts: Sequence[int], seconds: float, retries: int, progress: Callable[[str], None]
) -> list[RampStep]:
    """Steps in order until one fails ``retries + 1`` times in a row (a failed step is repeated: the machine is
    shared, and one stall elsewhere should not end the ramp unseen)."""
    steps: list[RampStep] = []
    for sessions in counts:
        for _ in range(retries + 1):
            step = run_ramp_step(emulator, sessions, seconds)
            steps.append(step)
            progress(
                f"ramp x{emulator.settings.speed:g} {sessions}: {step.underruns} underruns "
                f"({step.upstream_underruns} at the SDK), worst {1e3 * step.worst_late_s:.1f} ms, {step.late_sends} "
                f"late sends, {len(step.errors)} errors, answers {step.answers_heard}/{step.answers_expected}, "
                f"workers {step.percent(step.workers_cpu_s):.0f} %, emulator {step.percent(step.emulator_cpu_s):.0f} "
                f"%, other {step.percent(step.other_cpu_s):.0f} %, started in {step.start_s:.1f} s"
            )
            if step.passed:
                break
        if not steps[-1].passed:
            break
    return steps


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=21.0, help="audio per single-session run (default 21)")
    parser.add_argument(
        "--runs", type=int, default=2, help="single-session runs per peer, interleaved and pooled (default 2)"
    )
    parser.add_argument("--ramp-seconds", type=float, default=15.0, help="audio per ramp step (default 15)")
    parser.add_argument(
        "--ramp", default=",".join(map(str, RAMP)), help="session counts to try, in order (default 4,...,48)"
    )
    parser.add_argument(
        "--ramp-speeds",
        default="1,2",
        help="one ramp per emulator output speed (default 1,2: at the playout cadence, then 2x as the emulator's "
        "default); the single-session runs use the first",
    )
    parser.add_argument("--retries", type=int, default=1, help="repeats of a failed ramp step (default 1)")
    add_write_option(parser, SCRIPT)
    args = parser.parse_args(argv)
    page = checked_write_option(parser, args, SCRIPT)
    if sys.version_info < (3, 12):
        parser.error("run this with Python >= 3.12 (`make bench-bridge` uses .venv): the baseline runs the SDK")
    ramp = [int(n) for n in args.ramp.split(",") if n.strip()]
    speeds = [float(x) for x in args.ramp_speeds.split(",") if x.strip()]
    started = time.monotonic()

    def progress(what: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {what}", file=sys.stderr, flush=True)

    load_before = _loadavg()
    settings = EmulatorSettings(speed=speeds[0])
    script = Script(args.seconds, settings.gap_s)
    frames = len(script.frames())
    ramps: list[tuple[float, list[RampStep]]] = []
    with Emulator(settings) as emulator:
        progress(f"emulator at {emulator.endpoint_uri}, load average {load_before}")
        bridges: list[LinkRun] = []
        baselines: list[LinkRun] = []
        floors: list[FloorRun] = []
        for run in range(1, args.runs + 1):
            bridges.append(run_bridge(emulator.config(), script, settings))
            bridges[-1].check(frames)
            b = bridges[-1]
            progress(f"{run}: bridge: up {b.uplink}, down {b.downlink}, worker {b.worker_cpu_percent:.1f} %")
            baselines.append(run_in_process(emulator.config(), script, settings))
            baselines[-1].check(frames)
            progress(f"{run}: in-process: up {baselines[-1].uplink}, down {baselines[-1].downlink}")
            floors.append(run_floor(emulator, script))
            floors[-1].check(frames, script.expected_answers(settings))
            progress(f"{run}: SDK floor: {floors[-1].cpu_percent:.1f} %")
        bridge, baseline, floor = LinkRun.merge(bridges), LinkRun.merge(baselines), FloorRun.merge(floors)
        ramps.append((speeds[0], run_ramp(emulator, ramp, args.ramp_seconds, args.retries, progress)))
    for speed in speeds[1:]:
        with Emulator(dataclasses.replace(settings, speed=speed)) as emulator:
            ramps.append((speed, run_ramp(emulator, ramp, args.ramp_seconds, args.retries, progress)))
    load_after = _loadavg()
    elapsed = time.monotonic() - started

    script_path = Path(sys.argv[0]).resolve()
    shown = str(script_path.relative_to(Path.cwd())) if script_path.is_relative_to(Path.cwd()) else str(script_path)
    command = shlex.join(["python", shown, *(sys.argv[1:] if argv is None else argv)])
    turns = len(script.tone_ends())
    method = (
        f"one emulator subprocess (`{shlex.join(settings.args())}`; assistant audio in 80 ms chunks of 24 kHz, sent "
        f"at {speeds[0]:g}x real time) serves the single-session runs and the first ramp. The host sends {FRAME}-sample "
        f"({1e3 * FRAME_S:g} ms) frames of {RATE // 1000} kHz int16 in real time, frame k at start + k·32 ms, and "
        "between sends waits for events in the peer's own blocking call (`SonicBridge.poll(timeout=…)`, "
        f"`queue.Queue.get(timeout=…)`). The user's side: {script.lead_s:g} s of silence, then turns of a "
        f"{TONE_S:g} s tone and {settings.gap_s:.2f} s of silence (room for the answer to play out), "
        f"{args.seconds:g} s and {turns} turns per single-session run; {args.runs} runs per peer, interleaved "
        "(bridge, in-process, SDK floor, and again), samples pooled, CPU summed over the windows. "
        "**Bridge**: `SonicBridge` with a 3.12 worker; uplink = `Record.t_ns` of the host's ring write to the SDK's "
        "send of the frame carrying the record's last byte (timed in the worker), downlink = the SDK handing the "
        "audio to the session to the host decoding the record (`SonicBridge.metrics()`). **In-process**: the SDK on "
        "an asyncio loop in a thread of the host process; the host thread stamps `time.monotonic_ns()` and puts "
        "(stamp, frame) in a `queue.Queue`, a coroutine takes each with `await loop.run_in_executor(None, q.get)` "
        "(an executor thread parked in `get()`), calls `SonicSession.send_audio` and pairs the frame with "
        "`on_audio_sent` as the worker does; `SonicSession.timed_events()` go back through a second `queue.Queue`, "
        "downlink = the host's `get()` returning minus the SDK's receive stamp. Percentiles are nearest-rank. **CPU**: "
        "utime + stime from `/proc/<pid>/stat` over the streaming window; the SDK floor is a separate 3.12 process "
        "running only `SonicSession` with the same audio generated in process (paced by `asyncio.sleep`). "
        "**Ramp**: N bridges in one host process, one thread each (like a host's pump thread), all through one "
        "emulator, every worker warmed (8 booting at a time, then the pool's spare set to 0 so no replacement boots "
        f"during the window) and every session connected before a {args.ramp_seconds:g} s window; session i's "
        "turns are offset by i/N of a turn cycle and its sends by i/N of a frame. Each turn's answer plays in real "
        "time from its first chunk's arrival at the host; an **underrun** is a chunk arriving more than 20 ms after "
        "its play position (the player then resumes from it, so a stall counts once). *At SDK* is the same player "
        "fed each chunk when the SDK handed it to the worker's session (arrival minus the bridge's downlink "
        "latency): what the bridge's hop did not cause. A **late send** is a frame sent more than 32 ms after its "
        "slot; a step **passes** with no underrun, no error or full ring, no barge-in, and every answer due in the "
        f"window heard; a failed step is tried {args.retries + 1} times before the ramp stops. CPU columns are % of "
        "one core over the window (2 cores = 200 %); *other load* is the machine's busy time (`/proc/stat`) minus "
        "the host, the workers and the emulator: other jobs on the machine; `/proc/stat` is sampled at the tick "
        "while the processes' times are exact, so it is good to about ±25 % of a core, and a negative value means "
        "none measurable. Memory: RSS summed over the workers (shared pages counted in each), and PSS summed over "
        "the host, the workers and the emulator. "
        f"Load average {load_before} before the run, {load_after} after; the whole run took {elapsed / 60:.1f} min."
    )
    latency_targets, met = latency_target_table(bridge, baseline)
    parts = [
        f"- Machine: {machine_info()}\n- Command: `{command}`\n- Method: {method}",
        "**Latency each way, one session, host and worker on Python 3.12**",
        latency_table(bridge, baseline),
        f"**Against the target** (p99 ≤ {TARGET_LATENCY_P99_MS:g} ms each way): {met} of 2 directions met.",
        latency_targets,
        (
            f"**Worker CPU per active session** (target ≤ {TARGET_WORKER_CPU_PERCENT:g} % of one core; {bridge.frames} "
            f"user frames and {bridge.chunks} assistant chunks in the bridge's window, {floor.chunks} in the floor's)"
        ),
        cpu_table(bridge, floor),
    ]
    for speed, steps in ramps:
        cadence = "at the playout cadence: a 20 ms jitter allowance" if speed == 1 else "ahead of playout"
        parts += [
            (
                f"**Concurrent sessions through one emulator, answers sent at {speed:g}x real time ({cadence})** "
                f"(target ≥ {TARGET_SESSIONS} with no underrun)"
            ),
            ramp_table(steps),
        ]
    parts.append(reading(bridge, baseline, floor, ramps, ramp))
    markdown = "\n\n".join(parts)
    print(markdown)
    if page is not None:
        write_section(page, SCRIPT, markdown)
        progress(f"wrote the tables into {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
