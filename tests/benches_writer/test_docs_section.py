"""The report scripts' `--write PAGE`: their Markdown replaces exactly their section of a docs page."""

import subprocess
import sys
from pathlib import Path

import pytest

from benches import docs_section
from benches.docs_section import SectionMarkersError, replace_section, write_section

ROOT = Path(__file__).resolve().parents[2]

PAGE = """# Performance

Prose before, kept.

<!-- BEGIN benches/report.py -->
| old | table |
|---|---|
| 1 | 2 |
<!-- END benches/report.py -->

Prose between, kept.

<!-- BEGIN benches/bridge_report.py -->
old bridge tables
<!-- END benches/bridge_report.py -->
"""


def test_the_section_between_the_scripts_markers_is_replaced_and_nothing_else() -> None:
    page = replace_section(PAGE, "report.py", "\n| new | table |\n|---|---|\n| 3 | 4 |\n")
    assert page == PAGE.replace(
        "| old | table |\n|---|---|\n| 1 | 2 |\n", "\n| new | table |\n|---|---|\n| 3 | 4 |\n\n"
    )
    assert "old bridge tables" in page
    # Writing again gives the same page: the blank lines around the body do not pile up.
    assert replace_section(page, "report.py", "| new | table |\n|---|---|\n| 3 | 4 |") == page


def test_each_script_has_its_own_section() -> None:
    page = replace_section(PAGE, "bridge_report.py", "new bridge tables")
    assert "new bridge tables" in page
    assert "old bridge tables" not in page
    assert "| old | table |" in page


@pytest.mark.parametrize(
    ("page", "found"),
    [
        ("# Performance\n", "found 0 BEGIN and 0 END lines"),
        ("<!-- BEGIN benches/report.py -->\ntext\n", "found 1 BEGIN and 0 END lines"),
        ("<!-- END benches/report.py -->\n<!-- BEGIN benches/report.py -->\n", "END first"),
        (PAGE + "<!-- BEGIN benches/report.py -->\n<!-- END benches/report.py -->\n", "found 2 BEGIN and 2 END"),
    ],
)
def test_missing_repeated_or_reversed_markers_are_an_error(page: str, found: str) -> None:
    with pytest.raises(SectionMarkersError, match=found) as raised:
        replace_section(page, "report.py", "tables", where="docs/performance.md")
    assert "docs/performance.md needs exactly one line '<!-- BEGIN benches/report.py -->'" in str(raised.value)


def test_write_section_rewrites_the_file_and_leaves_it_alone_on_error(tmp_path: Path) -> None:
    path = tmp_path / "performance.md"
    path.write_text(PAGE)
    write_section(path, "bridge_report.py", "fresh")
    assert path.read_text() == PAGE.replace("old bridge tables\n", "\nfresh\n\n")
    before = path.read_text()
    with pytest.raises(SectionMarkersError, match=str(path)):
        write_section(path, "resampler_report.py", "never written")
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["performance.md"]  # no temporary file left behind


@pytest.mark.parametrize("script", ["report.py", "bridge_report.py", "resampler_report.py"])
def test_a_report_script_refuses_a_page_without_its_markers_before_measuring(tmp_path: Path, script: str) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Performance\n\nNo markers here.\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benches" / script), "--write", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    begin, _ = docs_section.markers(script)
    assert f"{page} needs exactly one line {begin!r}" in done.stderr
    assert done.stdout == ""  # nothing was measured
    assert page.read_text() == "# Performance\n\nNo markers here.\n"
