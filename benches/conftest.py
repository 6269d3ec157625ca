# SPDX-License-Identifier: Apache-2.0
"""Settings of the ring benchmarks, and the Markdown tables after a full run.

With benchmarking disabled (the repository's addopts pass `--benchmark-disable`) each benchmark runs once with a
few frames (`_latency.SMOKE`), as a quick end-to-end test; with `--benchmark-enable` (`make bench`) it sends the
full counts (`_latency.FULL`). The environment overrides either: NOVABRIDGE_BENCH_FRAMES (frames at 50 frames/s),
NOVABRIDGE_BENCH_FRAMES_FLAT (frames flat out), NOVABRIDGE_BENCH_RECORDS (64 KiB records), NOVABRIDGE_BENCH_WARMUP.
A full run ends with the same Markdown tables as `report.py`.
"""

import shlex

import pytest

from ._latency import FULL, SMOKE, Benchmark, Collected, Counts, counts_from_env, render_report

_COLLECTED = pytest.StashKey[Collected]()


@pytest.fixture
def counts(benchmark: Benchmark) -> Counts:
    return counts_from_env(SMOKE if benchmark.disabled else FULL)


@pytest.fixture
def collected(pytestconfig: pytest.Config, benchmark: Benchmark, counts: Counts) -> Collected | None:
    """Where a full run leaves its result for the terminal summary (None in a smoke run)."""
    if benchmark.disabled:
        return None
    return pytestconfig.stash.setdefault(_COLLECTED, Collected(counts))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    found = config.stash.get(_COLLECTED, None)
    if found is None:
        return
    terminalreporter.write_sep("=", "novabridge ring benchmarks (Markdown)")
    command = shlex.join(["pytest", *config.invocation_params.args])
    report = render_report(found.latency, found.throughput, found.counts, command)
    terminalreporter.write_line(report)
