# SPDX-License-Identifier: Apache-2.0
"""Per-call cost of resampling one 20 ms frame, Python call included, novabridge against soxr, libsamplerate
and scipy in one run (`make bench`; docs/performance.md's table comes from
`python benches/resampler_report.py`)."""

import pytest

from ._latency import Benchmark
from ._resamplers import CONVERSIONS, PEERS, frame_of, make, profile


@pytest.mark.parametrize("peer", PEERS)
@pytest.mark.parametrize(("in_rate", "out_rate"), CONVERSIONS)
def test_resample_20ms_frame(benchmark: Benchmark, peer: str, in_rate: int, out_rate: int) -> None:
    benchmark.group = f"resample 20 ms, {in_rate} -> {out_rate}"
    process, dtype = make(peer, in_rate, out_rate)
    frame = frame_of(dtype, in_rate)
    for _ in range(5):
        process(frame)  # past soxr's start-up, which returns nothing at first
    out = benchmark(process, frame)
    assert abs(len(out) - len(frame) * out_rate / in_rate) <= len(frame) * out_rate / in_rate


@pytest.mark.parametrize(("in_rate", "out_rate"), CONVERSIONS)
def test_novabridge_is_steady_low_delay_and_rejects_aliases(in_rate: int, out_rate: int) -> None:
    result = profile("novabridge voice", in_rate, out_rate, calls=20)
    assert result.lag_ms <= 2.0 + 1000 / out_rate
    assert result.burst_max <= out_rate // 50 + 1
    if result.rejection_db is not None:
        assert result.rejection_db <= -100
