# SPDX-License-Identifier: Apache-2.0
"""One-way latency and throughput of `novabridge.Ring` against `multiprocessing.Queue`, `multiprocessing.Pipe`
and `faster_fifo.Queue`, with a bare eventfd wake-up as the floor in the paced runs (method: `_latency.py`).

Each benchmark is one measurement run inside `benchmark.pedantic(rounds=1)`: pytest-benchmark times the whole
run, and the per-frame percentiles go to `benchmark.extra_info` (p50_us, p99_us, p999_us, max_us; for the ring
also call_*_us, measured from before `write()` like the other transports). Every run also checks that all
frames arrived, in order and intact, so the smoke run (`--benchmark-disable`) is a real end-to-end test.
"""

import pytest

from ._latency import (
    FRAME_SIZES,
    PACED_RATE_HZ,
    PACED_TRANSPORTS,
    TRANSPORTS,
    Benchmark,
    Collected,
    Counts,
    Transport,
    measure_latency,
    measure_throughput,
)


def _latency(
    benchmark: Benchmark,
    counts: Counts,
    collected: Collected | None,
    transport: Transport,
    frame_bytes: int,
    rate_hz: float | None,
) -> None:
    frames = counts.paced_frames if rate_hz is not None else counts.flat_frames
    result = benchmark.pedantic(
        measure_latency, args=(transport, frame_bytes, frames, rate_hz, counts.warmup), rounds=1, iterations=1
    )
    benchmark.extra_info.update(result.extra_info())
    result.check()
    if collected is not None:
        collected.latency.append(result)


@pytest.mark.benchmark(group="latency, 50 frames/s")
@pytest.mark.parametrize("transport", PACED_TRANSPORTS)
@pytest.mark.parametrize("frame_bytes", FRAME_SIZES)
def test_latency_paced(
    benchmark: Benchmark, counts: Counts, collected: Collected | None, transport: Transport, frame_bytes: int
) -> None:
    _latency(benchmark, counts, collected, transport, frame_bytes, PACED_RATE_HZ)


@pytest.mark.benchmark(group="latency, flat out")
@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("frame_bytes", FRAME_SIZES)
def test_latency_flat_out(
    benchmark: Benchmark, counts: Counts, collected: Collected | None, transport: Transport, frame_bytes: int
) -> None:
    _latency(benchmark, counts, collected, transport, frame_bytes, None)


@pytest.mark.benchmark(group="throughput, 64 KiB records")
@pytest.mark.parametrize("transport", TRANSPORTS)
def test_throughput(benchmark: Benchmark, counts: Counts, collected: Collected | None, transport: Transport) -> None:
    result = benchmark.pedantic(measure_throughput, args=(transport, counts.records, counts.warmup), rounds=1)
    benchmark.extra_info.update(result.extra_info())
    result.check()
    if collected is not None:
        collected.throughput.append(result)
