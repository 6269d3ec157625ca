"""What all the tests share: the marker of tests that run once, the check that the 3.12 pass skips nothing, and the
emulator as a subprocess (the bridge's and the OpenAvatarChat handler's tests reach it through a worker).

Shared helpers live in tests/support/, importable as `support.*` from every test module (tests/ is on `sys.path`:
each component directory is a package below it); each component's own fixtures are in its directory's conftest.py.

`make test-python` runs the tests on both interpreters. A module that needs what only the worker's Python 3.12
environment has (the Nova Sonic SDK, the emulator in-process) skips itself with `pytest.importorskip`, so the 3.11
pass reports it skipped; the 3.12 pass has every capability and runs with `--no-skips`. A module that runs its
subjects on fixed interpreters (subprocesses of both, a fresh venv) gains nothing from a second run and is marked
`interpreter_independent`; the 3.11 pass deselects the marker.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.emulator_process import EmulatorProcess

pytest_plugins = ["pytester"]  # the pytest plugin novabridge ships is tested as another project runs it

# Other projects' tests, each run in its own environment by `make test-peers` (their clients are not installed here).
collect_ignore = ["peers"]

INTERPRETER_INDEPENDENT = (
    "interpreter_independent: runs its subjects on fixed interpreters (subprocesses, a fresh venv), so whichever "
    "interpreter runs pytest, it checks the same thing; `make test-python` runs it once, in the 3.12 pass"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--no-skips",
        action="store_true",
        help="fail the run if any test or module was skipped (the 3.12 pass, which has every capability)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", INTERPRETER_INDEPENDENT)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("--no-skips"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        where = sorted({report.nodeid or str(report.fspath) for report in skipped})
        if reporter is not None:
            reporter.write_line(f"--no-skips: {len(skipped)} skipped, in {', '.join(where)}", red=True)
        if exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path / "recordings")
    yield process
    process.stop()


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Answers long enough to interrupt, played out at 1.5x real time."""
    scenario = tmp_path / "long.json"
    scenario.write_text(json.dumps({"turns": [{"assistant": "This answer goes on for quite a while. " * 6}]}))
    process = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario), "--speed", "1.5")
    yield process
    process.stop()
