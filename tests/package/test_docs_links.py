"""The README a newcomer reads first: short, with working links into docs/.

`make docs` checks the links inside docs/ (mkdocs' strict build); the README lives outside the site, so its links are
checked here: each relative target exists, and each anchor names a heading of the page it points into.
"""

import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
from support.oac import oac_src

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
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


def code_spans() -> set[str]:
    return {span for page in PAGES for span in re.findall(r"`([^`\n]+)`", page.read_text())}


MODULE_PREFIXES = ("link", "protocol", "pcm")
"""Modules the pages name by their last component (`link.decode_uplink`); other lowercase prefixes are variables."""
FILE_SUFFIXES = {"py", "pyi", "rs", "md", "png", "wav", "yaml", "toml", "txt", "json"}

RESOLVE = """
import importlib, inspect, json, pkgutil, sys
import novabridge
modules = {}
for info in pkgutil.walk_packages(novabridge.__path__, "novabridge."):
    if not info.name.endswith("__main__"):
        modules[info.name] = importlib.import_module(info.name)
classes = {}
for module in modules.values():
    for name, value in vars(module).items():
        if inspect.isclass(value) and value.__module__.startswith("novabridge"):
            classes.setdefault(name, value)
short = {name.rsplit(".", 1)[1]: module for name, module in modules.items()}
missing, checked = [], []
for name in json.load(sys.stdin):
    parts = name.split(".")
    if parts[0] == "novabridge":
        found = next(i for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in modules or i == 1)
        value = modules.get(".".join(parts[:found]), novabridge)
    elif parts[0] in classes or parts[0] in short:
        found, value = 1, classes.get(parts[0]) or short[parts[0]]
    else:
        continue  # a class of another library (the SDK's, OAC's): not the package's to have
    checked.append(name)
    for attr in parts[found:]:
        if attr in getattr(value, "model_fields", {}):  # a pydantic field: not a class attribute
            break
        if not hasattr(value, attr):
            missing.append(name)
            break
        value = getattr(value, attr)
print(json.dumps({"missing": missing, "checked": checked}))
"""


def documented_names() -> list[str]:
    """`novabridge.x.y`, `Class.member` and `link.name` as the pages write them in code spans."""
    names: set[str] = set()
    class_like = re.compile(r"([A-Z]\w*|" + "|".join(MODULE_PREFIXES) + r")\.(_?[A-Za-z]\w*)(?:\(\))?")
    for span in code_spans():
        names.update(re.findall(r"\bnovabridge(?:\.[A-Za-z_]\w*)+", span))
        member = class_like.fullmatch(span)
        if member and member.group(2) not in FILE_SUFFIXES:
            names.add(f"{member.group(1)}.{member.group(2)}")
    return sorted(names)


@pytest.mark.interpreter_independent  # imports every module, the SDK's and OAC's included: the 3.12 pass has them
def test_the_names_the_pages_give_exist() -> None:
    names = documented_names()
    # Resolved in a child: importing every module (the emulator's hypercorn shim among them) stays out of this process.
    result = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(oac_src())!r})\n{RESOLVE}"],
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {"novabridge.link", "SonicBridge.send_audio", "SonicSession._pump"} <= set(report["checked"])
    assert report["missing"] == [], "names in README.md or docs/ that the package does not have"


def fenced(page: Path, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", page.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_the_emulator_pages_scenario_loads(tmp_path: Path) -> None:
    from novabridge.emulator.scenario import Scenario

    (example,) = fenced(ROOT / "docs" / "emulator.md", "yaml")
    path = tmp_path / "turns.yaml"
    path.write_text(example)
    scenario = Scenario.load(path)
    assert [turn.user for turn in scenario.turns] == ["What time is it?", "Thank you."]
    assert scenario.turns[0].tool is not None


def test_the_readme_handler_settings_are_the_installed_configs() -> None:
    template = ROOT / "python" / "novabridge" / "openavatarchat" / "templates" / "chat_with_nova_sonic.yaml"
    installed = set(
        re.findall(
            r"^ {8}([a-z_]+):",
            template.read_text().split("NovaSonic:", 1)[1].split("PortraitAvatar:", 1)[0],
            re.MULTILINE,
        )
    )
    (excerpt,) = fenced(README, "yaml")
    shown = set(re.findall(r"^ {8}([a-z_]+):", excerpt, re.MULTILINE))
    assert "worker_python" in shown
    assert shown <= installed
