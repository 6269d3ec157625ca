# SPDX-License-Identifier: Apache-2.0
"""A benchmark script's Markdown written into its own section of a docs page, so the published tables are the
script's output and nothing else.

The section is the text between two marker lines that name the script, ``<!-- BEGIN benches/report.py -->`` and
``<!-- END benches/report.py -->`` (HTML comments: Markdown shows neither). Everything outside them, the prose
that explains the tables included, stays as it is. A page without exactly one pair, in that order, is an error
that says which lines to add; the report scripts check it before they spend minutes measuring.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path


class SectionMarkersError(ValueError):
    """The page lacks the script's pair of marker lines, has more than one, or has them out of order."""


def markers(script: str) -> tuple[str, str]:
    """The BEGIN and END marker lines of ``script`` (its file name in ``benches/``, such as ``report.py``)."""
    return f"<!-- BEGIN benches/{script} -->", f"<!-- END benches/{script} -->"


def _bounds(page: str, script: str, where: str) -> tuple[int, int]:
    """Where the section's body starts (after the BEGIN line) and ends (at the END line)."""
    begin, end = markers(script)
    lines = page.splitlines(keepends=True)
    begins = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
        raise SectionMarkersError(
            f"{where} needs exactly one line {begin!r} followed later by one line {end!r} for the tables of "
            f"benches/{script} (found {len(begins)} BEGIN and {len(ends)} END lines"
            + (", END first" if len(begins) == len(ends) == 1 else "")
            + ")"
        )
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    return offsets[begins[0] + 1], offsets[ends[0]]


def replace_section(page: str, script: str, body: str, *, where: str = "the page") -> str:
    """``page`` with the text between ``script``'s markers replaced by ``body``, a blank line on either side.

    Raises:
        SectionMarkersError: the markers are missing, repeated or out of order (``where`` names the page).
    """
    start, stop = _bounds(page, script, where)  # the END line follows, so the BEGIN line ends with a newline
    return page[:start] + "\n" + body.strip("\n") + "\n\n" + page[stop:]


def check_section(path: Path, script: str) -> None:
    """Fails now, not after the measurements, if ``path`` cannot take ``script``'s tables.

    Raises:
        SectionMarkersError: the markers are missing, repeated or out of order.
        OSError: the page cannot be read.
    """
    _bounds(path.read_text(encoding="utf-8"), script, str(path))


def write_section(path: Path, script: str, body: str) -> None:
    """Replace ``script``'s section of the page at ``path`` with ``body``; the page is replaced whole or not at all.

    Raises:
        SectionMarkersError: the markers are missing, repeated or out of order.
        OSError: the page cannot be read or written.
    """
    page = replace_section(path.read_text(encoding="utf-8"), script, body, where=str(path))
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(page)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def add_write_option(parser: argparse.ArgumentParser, script: str) -> None:
    """The report scripts' ``--write PAGE`` option (the Markdown goes to stdout either way)."""
    begin, end = markers(script)
    parser.add_argument(
        "--write",
        type=Path,
        metavar="PAGE",
        help=f"also put the Markdown between the lines {begin!r} and {end!r} of PAGE (such as docs/performance.md)",
    )


def checked_write_option(parser: argparse.ArgumentParser, args: argparse.Namespace, script: str) -> Path | None:
    """The page given with ``--write``, checked before any measuring (a bad page is a usage error), or None."""
    page: Path | None = args.write
    if page is not None:
        try:
            check_section(page, script)
        except (SectionMarkersError, OSError) as error:
            parser.error(str(error))
    return page
