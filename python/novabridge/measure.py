# SPDX-License-Identifier: Apache-2.0
"""Measuring latencies and processes: one percentile and one set of ``/proc`` readers for everything.

The bridge's metrics, the benchmarks and the end-to-end reports share them, so that every figure they publish is
worked out the same way.

Percentiles are nearest-rank: the ``q``-th percentile of ``n`` samples is the ``ceil(q / 100 * n)``-th smallest,
always one of the samples (a latency that was measured, never an interpolation between two). ``q`` is taken as
written in decimal, so the p99.9 of 1,000 samples is the 999th smallest, not the 1,000th that the binary float
nearest to 99.9 would give.

CPU time is ``utime + stime`` of ``/proc/<pid>/stat``: every thread of the process, in clock ticks (usually
10 ms). Memory is ``VmRSS`` (shared pages counted in full in each process mapping them) or ``Pss`` (shared pages
split between the processes sharing them). Linux only; a process that is gone reads as zero (or None), because a
sample taken as a worker exits is not an error.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Final, TypeVar

__all__ = [
    "ProcessStatus",
    "cpu_seconds",
    "percentile",
    "percentiles",
    "process_status",
    "pss_bytes",
    "rank_index",
    "rss_bytes",
    "system_cpu_seconds",
]

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
"""Clock ticks per second, the unit of the CPU times in ``/proc``."""

Sample = TypeVar("Sample", int, float)


# ---------------------------------------------------------------------------------------------------------------
# Percentiles


def rank_index(count: int, q: float) -> int:
    """Where the nearest-rank ``q``-th percentile (0 <= q <= 100) lies among ``count`` sorted samples (0-based).

    Raises:
        ValueError: ``count`` is not positive or ``q`` is outside [0, 100].
    """
    if count < 1:
        raise ValueError("no samples")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside [0, 100]")
    rank = math.ceil(Fraction(str(q)) * count / 100)  # str: the decimal as written, so the ceiling is exact
    return min(count, max(1, rank)) - 1


def percentiles(samples: Iterable[Sample], qs: Sequence[float]) -> list[Sample]:
    """The nearest-rank ``q``-th percentile of ``samples`` for each ``q`` in ``qs``, sorting once.

    Raises:
        ValueError: ``samples`` is empty, or a ``q`` is outside [0, 100].
    """
    ordered = sorted(samples)
    return [ordered[rank_index(len(ordered), q)] for q in qs]


def percentile(samples: Iterable[Sample], q: float) -> Sample | None:
    """The nearest-rank ``q``-th percentile of ``samples`` (0 <= q <= 100), or None without samples.

    Raises:
        ValueError: ``q`` is outside [0, 100].
    """
    ordered = sorted(samples)
    if not ordered:
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q} is outside [0, 100]")
        return None
    return ordered[rank_index(len(ordered), q)]


# ---------------------------------------------------------------------------------------------------------------
# /proc


def _proc(pid: int | None) -> str:
    return f"/proc/{'self' if pid is None else pid}"


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of process ``pid`` (None: this one), in seconds; 0 if it is gone."""
    try:
        with open(f"{_proc(pid)}/stat", "rb") as stat:
            # The command name (field 2) is in parentheses and may hold spaces or ")": split after its last ")".
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15: utime, stime


def system_cpu_seconds() -> float:
    """Busy CPU time of the whole machine since boot, summed over its cores, in seconds.

    Busy is user, nice, system, irq, softirq and steal: everything but idle and I/O wait.
    """
    with open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in stat.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(frozen=True)
class ProcessStatus:
    """What ``/proc/<pid>/status`` says of a process."""

    threads: int
    rss_bytes: int
    """Resident set size (``VmRSS``; 0 for a process that has no memory any more, such as a zombie)."""
    rss_anon_bytes: int = 0
    """Of it, private memory (``RssAnon``: the heap, thread stacks)."""
    rss_file_bytes: int = 0
    """Of it, mapped files (``RssFile``: the code of the interpreter and the libraries)."""
    rss_shmem_bytes: int = 0
    """Of it, shared memory (``RssShmem``: the rings' memfds)."""


def process_status(pid: int | None = None) -> ProcessStatus | None:
    """Threads and resident memory of process ``pid`` (None: this one), or None if it is gone."""
    try:
        with open(f"{_proc(pid)}/status", encoding="utf-8", errors="replace") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None

    def kib(name: str) -> int:
        return 1024 * int(fields.get(name, "0 kB").split()[0])

    return ProcessStatus(
        threads=int(fields.get("Threads", "0")),
        rss_bytes=kib("VmRSS"),
        rss_anon_bytes=kib("RssAnon"),
        rss_file_bytes=kib("RssFile"),
        rss_shmem_bytes=kib("RssShmem"),
    )


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of process ``pid`` (None: this one), shared pages counted in full; 0 if it is gone."""
    status = process_status(pid)
    return 0 if status is None else status.rss_bytes


def pss_bytes(pid: int | None = None) -> int:
    """Proportional set size of process ``pid`` (None: this one); 0 if it is gone.

    Shared pages are split between the processes sharing them, so the figures of several processes add up.
    """
    try:
        with open(f"{_proc(pid)}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    return 1024 * int(line.split()[1])
    except OSError:
        pass
    return 0
