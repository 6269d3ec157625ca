"""`novabridge.measure`: the nearest-rank percentile and the /proc readers, against known samples and real
processes."""

import os
import subprocess
import sys
import threading
import time

import pytest
from novabridge import measure


def _busy(seconds: float) -> None:
    """Spend about ``seconds`` of CPU in this thread."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_nearest_rank_picks_the_ceil_q_n_th_smallest() -> None:
    samples = [5.0, 1.0, 4.0, 2.0, 3.0]  # unsorted on purpose
    assert measure.percentiles(samples, [0, 20, 21, 50, 80, 99, 100]) == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0]
    assert measure.percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert measure.percentile([7.5], 99) == 7.5


def test_decimal_percentiles_are_exact() -> None:
    # 99.9 % of 1000 is exactly 999: the binary float nearest to 99.9 is a hair above it and would give 1000.
    samples = list(range(1, 1001))
    assert measure.percentiles(samples, [99.9, 99, 50]) == [999, 990, 500]
    assert measure.rank_index(2000, 99.9) == 1997
    assert measure.rank_index(100, 99) == 98
    assert measure.rank_index(101, 99) == 99  # ceil(99.99) = 100th smallest


def test_percentile_keeps_the_samples_type() -> None:
    (p50,) = measure.percentiles([3, 1, 2], [50])
    assert p50 == 2
    assert isinstance(p50, int)


def test_no_samples_and_bad_percentiles() -> None:
    assert measure.percentile([], 50) is None
    with pytest.raises(ValueError, match="no samples"):
        measure.percentiles([], [50])
    for q in (-1, 100.5):
        with pytest.raises(ValueError, match="outside"):
            measure.percentile([1.0], q)
        with pytest.raises(ValueError, match="outside"):
            measure.percentile([], q)


def test_cpu_seconds_of_this_process_follow_its_work() -> None:
    before = measure.cpu_seconds()
    own_before = sum(os.times()[:2])
    _busy(0.3)
    spent = measure.cpu_seconds() - before
    assert spent >= 0.25
    # The kernel's own account, through times(2), of the same interval: the same ticks.
    assert abs(spent - (sum(os.times()[:2]) - own_before)) <= 3 / measure.CLOCK_TICKS
    assert measure.cpu_seconds(os.getpid()) >= measure.cpu_seconds() - 3 / measure.CLOCK_TICKS


def test_cpu_seconds_count_every_thread() -> None:
    before = measure.cpu_seconds()
    worker = threading.Thread(target=_busy, args=(0.3,))
    worker.start()
    worker.join()
    assert measure.cpu_seconds() - before >= 0.25


def test_machine_busy_time_covers_this_process() -> None:
    before, own = measure.system_cpu_seconds(), measure.cpu_seconds()
    _busy(0.5)
    # /proc/stat is sampled at the tick, the process's time is exact: allow a fifth of it.
    assert measure.system_cpu_seconds() - before >= 0.8 * (measure.cpu_seconds() - own)


def test_another_process_is_read_while_it_lives_and_as_zero_once_gone() -> None:
    spin = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass\nprint(flush=True)\n"
    child = subprocess.Popen(
        [sys.executable, "-c", spin + "import sys\nsys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline() == "\n"  # it has spent its 0.4 s and waits on stdin
        assert measure.cpu_seconds(child.pid) >= 0.35
        status = measure.process_status(child.pid)
        assert status is not None
        assert status.threads >= 1
        assert status.rss_bytes == measure.rss_bytes(child.pid) > 1 << 20
        assert 0 < measure.pss_bytes(child.pid) <= status.rss_bytes
    finally:
        child.stdin.close()
        assert child.wait(10) == 0
        child.stdout.close()
    assert measure.cpu_seconds(child.pid) == 0.0
    assert measure.process_status(child.pid) is None
    assert measure.rss_bytes(child.pid) == 0
    assert measure.pss_bytes(child.pid) == 0


def test_threads_and_memory_of_this_process() -> None:
    first = measure.process_status()
    assert first is not None
    release = threading.Event()
    extra = threading.Thread(target=release.wait)
    extra.start()
    try:
        second = measure.process_status()
        assert second is not None
        assert second.threads == first.threads + 1
    finally:
        release.set()
        extra.join()
    block = bytearray(b"\x01") * (64 << 20)  # every page written: resident
    try:
        assert measure.rss_bytes() >= first.rss_bytes + (48 << 20)
    finally:
        del block
