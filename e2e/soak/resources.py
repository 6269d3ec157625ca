"""What the run's processes hold, from /proc: processes, threads, descriptors, memfds and RSS by component."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
from novabridge import measure
from novabridge.sonic.config import HistoryMessage


@dataclass(frozen=True)
class Sample:
    """One look at the host process and everything below it."""

    t_s: float
    processes: int
    threads: int
    fds: int
    memfds: int
    rss_host: int
    rss_workers: int
    """Summed over the workers (shared pages counted in each)."""
    rss_emulator: int
    workers: int
    host_threads: int
    host_fds: int
    emulator_pid: int = 0
    session_workers: dict[str, int] = field(default_factory=dict)
    """RSS of each worker running a session, by pid (spares and workers still booting are left out)."""
    host_rss_by_kind: dict[str, int] = field(default_factory=dict)
    """The host's RSS split: ``anon`` (its heap), ``file`` (mapped code), ``shmem`` (the rings)."""
    host_heap: dict[str, int] = field(default_factory=dict)
    """The host's C heap (`heap_bytes`): ``in_use`` by the program, ``free`` kept by the allocator."""
    host_python_heap: dict[str, int] = field(default_factory=dict)
    """The host's Python object allocator (`python_heap_bytes`): its ``arenas`` and the objects ``in_use`` in them."""
    host_histories: int = 0
    """What the sessions' conversation histories hold in the host (`history_bytes`); they stop at 40 KB of text."""


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (2.33 and later), in bytes."""

    _fields_ = [
        ("arena", ctypes.c_size_t),
        ("ordblks", ctypes.c_size_t),
        ("smblks", ctypes.c_size_t),
        ("hblks", ctypes.c_size_t),
        ("hblkhd", ctypes.c_size_t),
        ("usmblks", ctypes.c_size_t),
        ("fsmblks", ctypes.c_size_t),
        ("uordblks", ctypes.c_size_t),
        ("fordblks", ctypes.c_size_t),
        ("keepcost", ctypes.c_size_t),
    ]


def _libc() -> ctypes.CDLL:
    # The interpreter's own symbols include its C library's (as in novabridge.memory).
    libc = ctypes.CDLL(None)
    with contextlib.suppress(AttributeError):  # not glibc
        libc.open_memstream.restype = ctypes.c_void_p
        libc.open_memstream.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        libc.fclose.argtypes = [ctypes.c_void_p]
        libc.free.argtypes = [ctypes.c_void_p]
    return libc


_LIBC = _libc()


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    with contextlib.suppress(AttributeError):  # not glibc, or older than 2.33
        function = _LIBC.mallinfo2
        function.restype = _MallInfo2
        return cast("Callable[[], _MallInfo2]", function)
    return None


_MALLINFO2 = _mallinfo2()


def heap_bytes() -> dict[str, int]:
    """This process's C heap, every arena: what the program holds and what the allocator keeps free (glibc only).

    RSS alone cannot tell a leak from an allocator that keeps freed memory for reuse: glibc gives each thread that
    allocates an arena of its own (up to 8 per core) and returns little of a freed arena to the system. Memory held
    grows with a leak; memory kept free grows with the peaks the faults cause, spread over the arenas.
    """
    if _MALLINFO2 is None:
        return {}
    info = _MALLINFO2()
    return {"in_use": info.uordblks + info.hblkhd, "free": info.fordblks}


def _debug_malloc_stats() -> Callable[[int], int] | None:
    with contextlib.suppress(AttributeError):  # an interpreter that does not export it
        function = ctypes.pythonapi._PyObject_DebugMallocStats  # a PyDLL function: called with the GIL held
        function.argtypes = [ctypes.c_void_p]
        function.restype = ctypes.c_int
        return cast("Callable[[int], int]", function)
    return None


_DEBUG_MALLOC_STATS = _debug_malloc_stats()


def python_heap_bytes() -> dict[str, int]:
    """This process's Python object allocator (pymalloc): the arenas it has mapped and the objects in use in them.

    Objects of up to 512 bytes live in 1 MiB arenas mapped apart from the C heap, so `heap_bytes` does not see them.
    An arena goes back to the system only once every object in it is freed: arenas that grow while the objects in
    them do not are memory held by a few long-lived objects among freed ones. Empty without pymalloc
    (``PYTHONMALLOC=malloc``) or outside glibc.
    """
    if _DEBUG_MALLOC_STATS is None or not hasattr(_LIBC, "open_memstream"):
        return {}
    text, size = ctypes.c_void_p(), ctypes.c_size_t()
    stream = _LIBC.open_memstream(ctypes.byref(text), ctypes.byref(size))
    if not stream:
        return {}
    try:
        written = _DEBUG_MALLOC_STATS(stream)
    finally:
        _LIBC.fclose(stream)  # sets text and size
    try:
        report = ctypes.string_at(text.value, size.value).decode() if written and text.value else ""
    finally:
        _LIBC.free(text)
    arenas = re.search(r"arenas \* \d+ bytes/arena\s*=\s*([\d,]+)", report)
    in_use = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", report)
    if arenas is None or in_use is None:
        return {}
    return {"arenas": int(arenas[1].replace(",", "")), "in_use": int(in_use[1].replace(",", ""))}


def history_bytes(messages: Sequence[HistoryMessage]) -> int:
    """The memory a bridge's history of these messages holds: each text, and the tuple and list slot that keep it."""
    return sum(sys.getsizeof(m.text) + sys.getsizeof((m.role, m.text)) + 8 for m in messages)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as file:
                found += [int(child) for child in file.read().split()]
    except OSError:
        pass
    return found


def _descendants(pid: int) -> list[int]:
    pending, seen = [pid], []
    while pending:
        current = pending.pop()
        seen.append(current)
        pending += _children(current)
    return seen


def _fds(pid: int) -> tuple[int, int]:
    """(descriptors, of them memfds)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0, 0
    memfds = 0
    for name in names:
        with contextlib.suppress(OSError):  # closed meanwhile
            memfds += os.readlink(f"/proc/{pid}/fd/{name}").startswith("/memfd:")
    return len(names), memfds


def sample(t_s: float, emulator_pid: int | None, session_workers: Collection[int] = (), histories: int = 0) -> Sample:
    """The host (this process), its workers and the emulator, with every process below them.

    ``session_workers``: the workers running a session now, whose RSS is also kept one by one. ``histories``: what
    the sessions' histories hold (`history_bytes`).
    """
    host = os.getpid()
    pids = _descendants(host)
    threads = fds = memfds = workers = host_threads = host_fds = 0
    rss = {"host": 0, "workers": 0, "emulator": 0}
    by_worker: dict[str, int] = {}
    host_by_kind: dict[str, int] = {}
    emulator_tree = set(_descendants(emulator_pid)) if emulator_pid else set()
    for pid in pids:
        status = measure.process_status(pid)
        if status is None:
            continue
        threads += status.threads
        count, memfd = _fds(pid)
        fds += count
        memfds += memfd
        part = "host" if pid == host else "emulator" if pid in emulator_tree else "workers"
        rss[part] += status.rss_bytes
        workers += part == "workers"
        if pid in session_workers:
            by_worker[str(pid)] = status.rss_bytes
        if pid == host:
            host_threads, host_fds = status.threads, count
            host_by_kind = {
                "anon": status.rss_anon_bytes,
                "file": status.rss_file_bytes,
                "shmem": status.rss_shmem_bytes,
            }
    return Sample(
        t_s,
        len(pids),
        threads,
        fds,
        memfds,
        rss["host"],
        rss["workers"],
        rss["emulator"],
        workers,
        host_threads,
        host_fds,
        emulator_pid or 0,
        by_worker,
        host_by_kind,
        heap_bytes(),
        python_heap_bytes(),
        histories,
    )


def slope_per_10_min(times_s: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` over ``times_s``, per 10 minutes (0 with fewer than 2 points)."""
    if len(times_s) < 2 or max(times_s) == min(times_s):
        return 0.0
    slope, _ = np.polyfit(np.asarray(times_s, float), np.asarray(values, float), 1)
    return float(slope) * 600.0


def pooled_slope_per_10_min(series: Mapping[object, tuple[Sequence[float], Sequence[float]]]) -> float:
    """The least-squares slope, per 10 minutes, of several processes' ``(times_s, values)`` with an intercept each.

    A process that replaces another (a worker after a SIGKILL, the emulator after its restart) starts from its own
    level: one line through all of them would count the step between two processes as growth, or hide the growth of
    each. Each series counts by its spread in time; 0 when no series has two distinct times.
    """
    num = den = 0.0
    for times_s, values in series.values():
        t, v = np.asarray(times_s, float), np.asarray(values, float)
        if len(t) < 2:
            continue
        centred = t - t.mean()
        num += float(np.dot(centred, v - v.mean()))
        den += float(np.dot(centred, centred))
    return 600.0 * num / den if den > 0 else 0.0
