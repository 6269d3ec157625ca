"""The README a newcomer reads first: short, with working links into docs/.

`make docs` checks the links inside docs/ (mkdocs' strict build); the README lives outside the site, so its links are
checked here: each relative target exists, and each anchor names a heading of the page it points into.
"""

import re
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_LIMIT_BYTES = 10 * 1024
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def slug(heading: str) -> str:
    """The anchor mkdocs (Python-Markdown's toc) gives a heading: its text, lower case, words joined by hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays, its target goes
    text = text.replace("`", "").replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)  # no headings in code
    found: set[str] = set()
    for heading in HEADING.findall(text):
        base = anchor = slug(heading)
        count = 0
        while anchor in found:  # repeated headings get _1, _2 ... as the toc extension numbers them
            count += 1
            anchor = f"{base}_{count}"
        found.add(anchor)
    return found


def relative_links(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [target for target in LINK.findall(text) if not re.match(r"[a-z]+:", target)]


def test_slug_matches_the_toc_extension() -> None:
    assert slug("The bridge: `SonicBridge`") == "the-bridge-sonicbridge"
    assert slug("Soak and chaos run") == "soak-and-chaos-run"
    assert slug("In OpenAvatarChat's own server and page: `make oac-e2e`") == (
        "in-openavatarchats-own-server-and-page-make-oac-e2e"
    )


def test_readme_is_short() -> None:
    assert README.stat().st_size <= README_LIMIT_BYTES


def test_readme_quick_start_names_the_two_commands() -> None:
    quick_start = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick_start
    assert "make test" in quick_start


def test_readme_links_reach_files_and_headings() -> None:
    links = relative_links(README)
    assert any(link.startswith("docs/") for link in links)
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = (README.parent / path) if path else README
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and anchor not in anchors(target):
            broken.append(f"{link}: {target.name} has no heading with that anchor")
    assert not broken, broken


def test_every_docs_page_is_in_the_site() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(page.name for page in (ROOT / "docs").glob("*.md"))
    assert pages
    assert [page for page in pages if f": {page}" not in nav] == []
