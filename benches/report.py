# SPDX-License-Identifier: Apache-2.0
"""Runs the ring benchmarks and prints docs/performance.md's Markdown tables (method: `_latency.py`).

Usage: `python benches/report.py [--frames-paced N] [--frames-flat N] [--records N] [--warmup N] [--write PAGE]`.
The defaults (`_latency.FULL`) take about six minutes on two cores, most of it the paced runs at 50 frames/s (the
eventfd floor runs paced only, once per frame size). Progress goes to stderr, the Markdown to stdout and, with
`--write docs/performance.md` (`make bench-report`), into that page between its `benches/report.py` markers
(`docs_section.py`).
"""

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # `python benches/report.py`: make the `benches` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches._latency import (
    FRAME_SIZES,
    FULL,
    PACED_RATE_HZ,
    PACED_TRANSPORTS,
    TRANSPORTS,
    Counts,
    LatencyResult,
    ThroughputResult,
    measure_latency,
    measure_throughput,
    render_report,
)
from benches.docs_section import add_write_option, checked_write_option, write_section

SCRIPT = Path(__file__).name


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--frames-paced", type=int, default=FULL.paced_frames, help="frames per run at 50 frames/s")
    parser.add_argument("--frames-flat", type=int, default=FULL.flat_frames, help="frames per flat-out run")
    parser.add_argument("--records", type=int, default=FULL.records, help="64 KiB records per throughput run")
    parser.add_argument("--warmup", type=int, default=FULL.warmup, help="unmeasured frames before each run")
    add_write_option(parser, SCRIPT)
    args = parser.parse_args(argv)
    page = checked_write_option(parser, args, SCRIPT)
    counts = Counts(
        paced_frames=args.frames_paced, flat_frames=args.frames_flat, records=args.records, warmup=args.warmup
    )
    started = time.monotonic()

    def progress(what: str) -> None:
        print(f"[{time.monotonic() - started:6.1f} s] {what}", file=sys.stderr, flush=True)

    latency: list[LatencyResult] = []
    runs = ((PACED_RATE_HZ, counts.paced_frames, PACED_TRANSPORTS), (None, counts.flat_frames, TRANSPORTS))
    for rate_hz, frames, transports in runs:
        for frame_bytes in FRAME_SIZES:
            for transport in transports:
                result = measure_latency(transport, frame_bytes, frames, rate_hz, counts.warmup)
                result.check()
                latency.append(result)
                s = result.stats()
                progress(f"{result.mode}, {frame_bytes} B, {transport}: p50 {s.p50:.1f} us, p99 {s.p99:.1f} us")
    throughput: list[ThroughputResult] = []
    for transport in TRANSPORTS:
        outcome = measure_throughput(transport, counts.records, counts.warmup)
        outcome.check()
        throughput.append(outcome)
        progress(f"throughput, {transport}: {outcome.mb_per_s:,.0f} MB/s")

    script = Path(sys.argv[0]).resolve()
    shown = str(script.relative_to(Path.cwd())) if script.is_relative_to(Path.cwd()) else str(script)
    command = shlex.join(["python", shown, *(sys.argv[1:] if argv is None else argv)])
    markdown = render_report(latency, throughput, counts, command)
    print(markdown)
    if page is not None:
        write_section(page, SCRIPT, markdown)
        progress(f"wrote the tables into {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
