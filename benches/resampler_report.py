# SPDX-License-Identifier: Apache-2.0
"""Prints the resampler table: `python benches/resampler_report.py [--calls N] [--write PAGE]`.

The Markdown goes to stdout and, with `--write docs/performance.md`, into that page between its
`benches/resampler_report.py` markers (`docs_section.py`).
"""

import argparse
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benches._resamplers import CONVERSIONS, PEERS, markdown, profile
from benches.docs_section import add_write_option, checked_write_option, write_section

SCRIPT = Path(__file__).name


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per resampler and conversion")
    add_write_option(parser, SCRIPT)
    args = parser.parse_args()
    page = checked_write_option(parser, args, SCRIPT)
    profiles = [profile(peer, i, o, args.calls) for i, o in CONVERSIONS for peer in PEERS]
    table = f"CPython {platform.python_version()}, {args.calls} calls per cell, median.\n\n{markdown(profiles)}"
    print(table)
    if page is not None:
        write_section(page, SCRIPT, table)


if __name__ == "__main__":
    main()
