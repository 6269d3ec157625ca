"""The soak run's figures: ``results.json``, ``report.md`` and ``soak.png``."""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from novabridge.measure import percentile

from e2e.soak import resources
from e2e.soak.ledger import SessionVerdict
from e2e.soak.schedule import KINDS, ChaosEvent

if TYPE_CHECKING:
    from e2e.soak.host import SoakSession
    from e2e.soak.run import Run

MIB = 1024 * 1024


def _percentile(samples: list[float], q: float, scale: float = 1e3) -> float | None:
    """The nearest-rank percentile, times ``scale`` (milliseconds by default), to 0.01; None without samples."""
    value = percentile(samples, q)
    return None if value is None else round(scale * value, 2)


def rss_slopes(samples: list[resources.Sample], warm_s: float) -> dict[str, float]:
    """MiB per 10 minutes after warm-up, by least squares: the host, a session's worker, the emulator.

    Workers and emulators are fitted process by process with one slope (`resources.pooled_slope_per_10_min`): a
    worker replaced after a SIGKILL, or the emulator restarted, starts over from its own level. Each process's samples
    count from ``warm_s`` after it was first seen (the calm phase for the processes the run began with), so a
    replacement's own warm-up is left out as the first processes' is.
    """
    host = [s for s in samples if s.t_s >= warm_s]
    workers: dict[object, tuple[list[float], list[float]]] = {}
    emulators: dict[object, tuple[list[float], list[float]]] = {}
    first_seen: dict[object, float] = {}
    for s in samples:
        points = [(("worker", pid), rss, workers) for pid, rss in s.session_workers.items()]
        if s.emulator_pid:
            points.append((("emulator", str(s.emulator_pid)), s.rss_emulator, emulators))
        for key, rss, into in points:
            since = first_seen.setdefault(key, 0.0 if s is samples[0] else s.t_s)
            if s.t_s - since >= warm_s:
                times, values = into.setdefault(key, ([], []))
                times.append(s.t_s)
                values.append(rss / MIB)
    return {
        "host": resources.slope_per_10_min([s.t_s for s in host], [s.rss_host / MIB for s in host]),
        "worker": resources.pooled_slope_per_10_min(workers),
        "emulator": resources.pooled_slope_per_10_min(emulators),
    }


def _host_slopes(
    samples: list[resources.Sample],
    warm_s: float,
    split: Callable[[resources.Sample], dict[str, int]],
    parts: tuple[str, ...],
) -> dict[str, float]:
    """The slope after warm-up of each of ``parts`` of one of the host's figures split by ``split`` (0 if missing)."""
    host = [s for s in samples if s.t_s >= warm_s]
    return {
        part: resources.slope_per_10_min([s.t_s for s in host], [split(s).get(part, 0) / MIB for s in host])
        for part in parts
    }


def host_rss_slopes_by_kind(samples: list[resources.Sample], warm_s: float) -> dict[str, float]:
    """The host's slope (`rss_slopes`) split into its heap (``anon``), mapped code (``file``) and rings (``shmem``)."""
    return _host_slopes(samples, warm_s, lambda s: s.host_rss_by_kind, ("anon", "file", "shmem"))


def host_heap_slopes(samples: list[resources.Sample], warm_s: float) -> dict[str, float]:
    """The slope of the host's C heap after warm-up (`resources.heap_bytes`): held by the program, kept free."""
    return _host_slopes(samples, warm_s, lambda s: s.host_heap, ("in_use", "free"))


def host_python_heap_slopes(samples: list[resources.Sample], warm_s: float) -> dict[str, float]:
    """The slope of the host's Python object allocator after warm-up (`resources.python_heap_bytes`).

    With it, the slope of the part of its objects that are the conversations' histories, which grow to their limit.
    """
    return _host_slopes(
        samples,
        warm_s,
        lambda s: {**s.host_python_heap, "of_it_histories": s.host_histories},
        ("arenas", "in_use", "of_it_histories"),
    )


def host_rss_slopes_by_half(samples: list[resources.Sample], warm_s: float) -> tuple[float, float]:
    """The host's slope over the first and the second half of the run after warm-up.

    Memory a leak holds grows as fast in both; the high-water mark of a heap that bursts (faults) raised in steps
    grows less and less often, and the second half's slope falls below the first's.
    """
    host = [s for s in samples if s.t_s >= warm_s]
    if not host:
        return 0.0, 0.0
    middle = (host[0].t_s + host[-1].t_s) / 2
    halves = [s for s in host if s.t_s < middle], [s for s in host if s.t_s >= middle]
    first, second = (resources.slope_per_10_min([s.t_s for s in h], [s.rss_host / MIB for s in h]) for h in halves)
    return first, second


def results(  # noqa: D103 - the figures report.md and soak.png are made of
    run: Run,
    sessions: list[SoakSession],
    verdicts: list[SessionVerdict],
    schedule: list[ChaosEvent],
    baseline: resources.Sample,
    after: resources.Sample,
) -> dict[str, Any]:
    logs = [s.log for s in sessions]
    records = [log.read() for log in logs]
    samples = run.samples
    recoveries = [r for record in records for r in record.recoveries_s]
    totals = collections.Counter[str]()
    for verdict in verdicts:
        totals.update({k: v for k, v in asdict(verdict).items() if isinstance(v, int) and k != "session"})
    return {
        "config": {
            "sessions": run.args.sessions,
            "minutes": run.args.minutes,
            "seed": run.args.seed,
            "calm_s": run.args.calm_s,
            "scheduled_faults": len(schedule),
            "duration_s": round(run.now(), 1),
            "host_malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"),
        },
        "faults": {kind: sum(1 for i in run.injected if i.kind == kind) for kind in KINDS},
        "injected": [asdict(i) for i in run.injected],
        "recoveries": {
            "reconnecting_events": sum(log.reconnects for log in logs),
            "worker_restarts": sum(s.bridge.metrics().restarts for s in sessions),
            "p50_s": _percentile(recoveries, 50, scale=1.0),
            "p99_s": _percentile(recoveries, 99, scale=1.0),
        },
        "audio": dict(totals),
        "turns": {
            "user_turns": sum(log.turns_taken for log in logs),
            "typed": sum(1 for record in records for u in record.utterances if u.kind == "text"),
            "barge_ins": sum(1 for record in records for u in record.utterances if u.barge_in),
            "host_interrupts": sum(len(record.host_interrupts) for record in records),
            "service_interrupts": sum(len(record.interrupted) for record in records),
            "tool_calls": sum(log.tool_calls for log in logs),
            "tool_results_dropped": sum(log.tool_results_dropped for log in logs),
        },
        "leaks": {"before": asdict(baseline), "after": asdict(after)},
        "rss_mib_per_10_min": rss_slopes(samples, run.args.calm_s),
        "host_rss_mib_per_10_min_by_kind": host_rss_slopes_by_kind(samples, run.args.calm_s),
        "host_rss_mib_per_10_min_by_half": host_rss_slopes_by_half(samples, run.args.calm_s),
        "host_heap_mib_per_10_min": host_heap_slopes(samples, run.args.calm_s),
        "host_python_heap_mib_per_10_min": host_python_heap_slopes(samples, run.args.calm_s),
        "latency_ms": {
            phase: {
                d: {"p50": _percentile(s, 50), "p99": _percentile(s, 99), "n": len(s)} for d, s in directions.items()
            }
            for phase, directions in run.latency.items()
        },
        "samples": [asdict(s) for s in samples],
        "hops": run.hops,
        "emulator_restarts_s": run.emulator_restarts,
        "violations": run.violations,
    }


def markdown(r: dict[str, Any]) -> str:
    """report.md."""
    c, audio, turns, rec = r["config"], r["audio"], r["turns"], r["recoveries"]
    lines = [
        f"# Soak run: {c['sessions']} sessions, {c['minutes']:g} minutes, seed {c['seed']}",
        "",
        (
            f"**{'FAILED' if r['violations'] else 'passed'}**: {len(r['violations'])} violations; calm phase "
            f"{c['calm_s']:g} s, then {sum(r['faults'].values())} faults; {c['duration_s']} s in all."
        ),
        "",
        "| Faults injected | count |",
        "|---|---:|",
        *(f"| {kind} | {count} |" for kind, count in r["faults"].items()),
        "",
        "| Recovery | |",
        "|---|---:|",
        f"| `Reconnecting` events | {rec['reconnecting_events']} |",
        f"| worker replacements | {rec['worker_restarts']} |",
        f"| `Reconnecting` to the next service event, p50 / p99 | {rec['p50_s']} s / {rec['p99_s']} s |",
        "",
        "| Audio | bytes |",
        "|---|---:|",
        f"| user audio sent by the hosts | {audio.get('user_sent', 0)} |",
        f"| of it received by the emulator | {audio.get('user_delivered', 0)} |",
        f"| reported dropped (`AudioDropped`, `RingFull`) | {audio.get('user_dropped_reported', 0)} |",
        f"| assistant audio sent by the emulator | {audio.get('assistant_sent', 0)} |",
        f"| of it received by the hosts | {audio.get('assistant_received', 0)} |",
        f"| not played: barge-ins and `interrupt()` (reported) | {audio.get('assistant_dropped_reported', 0)} |",
        f"| cut by a failed stream (`Reconnecting`) | {audio.get('assistant_cut', 0)} |",
        f"| dropped with a renewed stream, its turn asked again (`Renewed`) | {audio.get('assistant_retired', 0)} |",
        "",
        (
            f"Turns: {turns['user_turns']} taken ({turns['typed']} typed, {turns['barge_ins']} barge-ins), "
            f"{audio.get('answered', 0)} answered; {turns['tool_calls']} tool calls ({turns['tool_results_dropped']} "
            f"late results dropped); {turns['host_interrupts']} host interrupts."
        ),
        "",
        "| Hop latency (ms) | calm p50 | calm p99 | chaos p50 | chaos p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    lat = r["latency_ms"]
    for direction in ("uplink", "downlink"):
        calm = lat.get("calm", {}).get(direction, {})
        chaos = lat.get("chaos", {}).get(direction, {})
        lines.append(
            f"| {direction} | {calm.get('p50')} | {calm.get('p99')} | {chaos.get('p50')} | {chaos.get('p99')} |"
        )
    before, after = r["leaks"]["before"], r["leaks"]["after"]
    slopes = r["rss_mib_per_10_min"]
    lines += [
        "",
        "| Leaks | before | after |",
        "|---|---:|---:|",
        *(
            f"| {name} | {before[name]} | {after[name]} |"
            for name in ("processes", "host_threads", "host_fds", "memfds")
        ),
        "",
        "RSS slope after warm-up (least squares, MiB per 10 minutes; workers and emulators process by process): "
        + ", ".join(f"{name} {value:+.2f}" for name, value in slopes.items())
        + "; the host's by kind: "
        + ", ".join(f"{kind} {value:+.2f}" for kind, value in r["host_rss_mib_per_10_min_by_kind"].items())
        + "; the host's in the first and second half after warm-up: "
        + ", ".join(f"{value:+.2f}" for value in r["host_rss_mib_per_10_min_by_half"])
        + f"; the host's C heap ({_arenas(r['config'].get('host_malloc_arena_max'))}): "
        + ", ".join(f"{part.replace('_', ' ')} {value:+.2f}" for part, value in r["host_heap_mib_per_10_min"].items())
        + "; its Python objects' allocator: "
        + ", ".join(
            f"{part.replace('_', ' ')} {value:+.2f}" for part, value in r["host_python_heap_mib_per_10_min"].items()
        ),
        "",
    ]
    if r["violations"]:
        lines += ["## Violations", ""]
        lines += [f"- {v['t_s']} s (seed {v['seed']}): {v['what']}" for v in r["violations"]]
    return "\n".join(lines) + "\n"


def _arenas(arena_max: str | None) -> str:
    return "glibc's default arenas" if arena_max is None else f"MALLOC_ARENA_MAX={arena_max}"


def plot(r: dict[str, Any], path: Path) -> None:
    """soak.png: RSS, hop latency and the faults on one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = r["samples"]
    fig, (rss, hop, faults) = plt.subplots(3, 1, figsize=(11, 8), sharex=True, height_ratios=[3, 3, 1.4])
    t = [s["t_s"] for s in samples]
    rss.plot(t, [s["rss_host"] / MIB for s in samples], label="host")
    rss.plot(t, [s["rss_workers"] / max(1, s["workers"]) / MIB for s in samples], label="one worker (mean)")
    rss.plot(t, [s["rss_emulator"] / MIB for s in samples], label="emulator")
    rss.set_ylabel("RSS (MiB)")
    rss.legend(loc="upper left", fontsize=8)
    for direction in ("uplink", "downlink"):
        points = [h for h in r["hops"] if h["direction"] == direction]
        hop.plot([h["t_s"] for h in points], [h["p99_ms"] for h in points], ".", markersize=3, label=f"{direction} p99")
    hop.set_ylabel("hop p99 per 2 s (ms)")
    hop.set_yscale("log")
    hop.legend(loc="upper left", fontsize=8)
    kinds = sorted({i["kind"] for i in r["injected"]})
    for injected in r["injected"]:
        faults.plot(injected["t_s"], kinds.index(injected["kind"]), "|", markersize=8, color="tab:red")
    faults.set_yticks(range(len(kinds)), kinds, fontsize=6)
    faults.set_xlabel("seconds since the sessions connected")
    for axis in (rss, hop, faults):
        axis.axvline(r["config"]["calm_s"], color="grey", linestyle=":", linewidth=1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, r: dict[str, Any]) -> None:
    """results.json, report.md and soak.png in ``out``."""
    (out / "results.json").write_text(json.dumps(r, indent=1))
    (out / "report.md").write_text(markdown(r))
    plot(r, out / "soak.png")
