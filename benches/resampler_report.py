# SPDX-License-Identifier: Apache-2.0
"""Prints the README's resampler table: `python benches/resampler_report.py [--calls N]`."""

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches._resamplers import CONVERSIONS, PEERS, markdown, profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per resampler and conversion")
    args = parser.parse_args()
    profiles = [profile(peer, i, o, args.calls) for i, o in CONVERSIONS for peer in PEERS]
    print(f"CPython {platform.python_version()}, {args.calls} calls per cell, median.\n")
    print(markdown(profiles))


if __name__ == "__main__":
    main()
