# SPDX-License-Identifier: Apache-2.0
"""The bridge through the emulator (method: `peers.py` and
`ramp.py`): hop latency each way against an in-process
asyncio-thread bridge, worker CPU against the SDK's own floor, and concurrent sessions without underrun.

Each benchmark is one run inside `benchmark.pedantic(rounds=1)`; its figures go to `benchmark.extra_info`. With
benchmarking disabled (the repository's addopts; `make test` runs this file on 3.11 and 3.12) each run is short
(3.5 s of audio, one turn, 2 sessions) and the emulator sends its answers at 4x real time; with
`--benchmark-enable` (`make bench`) a session streams 20 s at real time and 8 sessions stream 15 s. The
environment overrides either: NOVABRIDGE_BENCH_BRIDGE_SECONDS, NOVABRIDGE_BENCH_BRIDGE_SESSIONS. The tables of
docs/performance.md, with the full ramp, come from `bridge_report.py`.

Every run asserts what it could get wrong: every frame sent, every answer heard, no error, no full ring, a timing
for each frame and chunk, CPU counted. Latency, CPU and underruns are reported, never asserted against targets.
On 3.11 the host side runs here (the bridge, the ramp); the in-process baseline runs the SDK, so there it runs in
a 3.12 subprocess that is its own host, and the SDK floor is a 3.12 subprocess on both.
"""

import os
from collections.abc import Iterator

import pytest

from ._latency import Benchmark
from .conversation import Emulator, EmulatorSettings, Script
from .peers import run_bridge, run_floor, run_in_process_anywhere
from .ramp import run_ramp_step


@pytest.fixture(scope="module")
def full(pytestconfig: pytest.Config) -> bool:
    """Benchmarking enabled (`make bench`): real durations; else a quick end-to-end run."""
    return bool(pytestconfig.getoption("benchmark_enable") or not pytestconfig.getoption("benchmark_disable"))


@pytest.fixture(scope="module")
def emulator(full: bool) -> Iterator[Emulator]:
    with Emulator(EmulatorSettings(speed=1.0 if full else 4.0)) as process:
        yield process


@pytest.fixture(scope="module")
def script(full: bool, emulator: Emulator) -> Script:
    seconds = float(os.environ.get("NOVABRIDGE_BENCH_BRIDGE_SECONDS") or (20.0 if full else 3.5))
    return Script(seconds, emulator.settings.gap_s)


@pytest.mark.benchmark(group="bridge, one session")
def test_bridge_latency_each_way_and_worker_cpu(benchmark: Benchmark, emulator: Emulator, script: Script) -> None:
    run = benchmark.pedantic(run_bridge, args=(emulator.config(), script, emulator.settings), rounds=1, iterations=1)
    benchmark.extra_info.update(run.extra_info())
    run.check(len(script.frames()))
    assert run.worker_cpu_percent is not None
    assert 0 < run.worker_cpu_percent < 100


@pytest.mark.benchmark(group="bridge, one session")
def test_in_process_baseline_latency_each_way(benchmark: Benchmark, emulator: Emulator, script: Script) -> None:
    run = benchmark.pedantic(run_in_process_anywhere, args=(emulator, script), rounds=1, iterations=1)
    benchmark.extra_info.update(run.extra_info())
    run.check(len(script.frames()))
    major, minor = map(int, run.host_python.split("."))
    assert (major, minor) >= (3, 12)  # the SDK's floor: on a 3.11 host the baseline ran in a 3.12 subprocess


@pytest.mark.benchmark(group="bridge, one session")
def test_sdk_floor_cpu(benchmark: Benchmark, emulator: Emulator, script: Script) -> None:
    run = benchmark.pedantic(run_floor, args=(emulator, script), rounds=1, iterations=1)
    benchmark.extra_info.update({"cpu_percent": run.cpu_percent, "window_s": run.window_s, "python": run.python})
    run.check(len(script.frames()), script.expected_answers(emulator.settings))
    assert 0 < run.cpu_percent < 100


@pytest.mark.benchmark(group="bridge, concurrent sessions")
def test_concurrent_sessions_through_one_emulator(benchmark: Benchmark, emulator: Emulator, full: bool) -> None:
    sessions = int(os.environ.get("NOVABRIDGE_BENCH_BRIDGE_SESSIONS") or (8 if full else 2))
    seconds = 15.0 if full else 5.5  # long enough that every session has an answer
    step = benchmark.pedantic(run_ramp_step, args=(emulator, sessions, seconds), rounds=1, iterations=1)
    benchmark.extra_info.update(step.extra_info())
    step.check()
    assert step.sessions == sessions
    assert step.answers_expected >= sessions
