"""What a first run or production meets when a `SonicBridge` cannot start, from this interpreter as the host (3.11
in one pass, 3.12 in the other): the session's failures as the same typed `SessionError` (or, not waiting, a fatal
`Error` event with its kind and message) within 5 s, and a worker Python that cannot run the session as a
`WorkerError` that says why. Real worker processes, the real SDK, and the emulator as a subprocess."""

import re
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from novabridge.events import Error, SonicEvent, event_from_json
from novabridge.exceptions import BridgeError, CredentialsError, EndpointError, SessionError, WorkerError
from novabridge.host.bridge import SonicBridge
from novabridge.host.pool import WorkerPool, WorkerProcess
from novabridge.ring import RecordKind
from novabridge.sonic import SonicConfig
from novabridge.sonic.models import NOVA_SONIC_V1
from support.aws import without_aws_settings
from support.emulator_process import EmulatorProcess
from support.interpreters import python_for
from support.ring_peers import read_until_closed

SECRET = "first-run-secret-never-shown"
KEY = ("AKIDFIRSTRUN", SECRET)
LIMIT_S = 5.0
"""The issue's bound: a bridge that cannot start says so, and why, within this."""


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Checks SigV4 against KEY in us-east-1, and has not granted this account Nova Sonic v1."""
    process = EmulatorProcess(
        tmp_path / "recordings",
        *("--credentials", f"{KEY[0]}:{SECRET}", "--region", "us-east-1", "--deny-model", NOVA_SONIC_V1),
    )
    yield process
    process.stop()


PoolFactory = Callable[[], WorkerPool]


@pytest.fixture
def pool() -> Iterator[PoolFactory]:
    """Pools of their own, warm, so their workers are started with the test's environment."""
    pools: list[WorkerPool] = []

    def make() -> WorkerPool:
        made = WorkerPool(python_for("312"), spare=1)
        assert made.wait_warm(60) == 1, made.error
        pools.append(made)
        return made

    yield make
    for made in pools:
        made.close()


def config_for(emulator: EmulatorProcess, **overrides: object) -> SonicConfig:
    settings: dict[str, object] = {
        "endpoint_uri": emulator.endpoint_uri,
        "ca_file": Path(emulator.ca_file),
        "aws_access_key_id": KEY[0],
        "aws_secret_access_key": SECRET,
        "region": "us-east-1",
        **overrides,
    }
    return SonicConfig.model_validate({name: value for name, value in settings.items() if value is not None})


def start_fails(config: SonicConfig, pool: WorkerPool) -> SessionError:
    """`start` raises the session's typed error within `LIMIT_S`, with no secret in it, and leaves the bridge closed."""
    bridge = SonicBridge(config, worker_python=pool.python, pool=pool)
    started = time.monotonic()
    with pytest.raises(SessionError) as caught:
        bridge.start()
    elapsed = time.monotonic() - started
    assert elapsed < LIMIT_S, f"{caught.value.kind} took {elapsed:.1f} s"
    assert SECRET not in str(caught.value)
    assert bridge.closed
    return caught.value


def fatal_event(config: SonicConfig, pool: WorkerPool) -> Error:
    """Without waiting: `start` returns at once, and the failure arrives as one fatal `Error` within `LIMIT_S`."""
    assert pool.wait_warm(60) == pool.spare  # the spare the last start took is replaced
    bridge = SonicBridge(config, worker_python=pool.python, pool=pool)
    started = time.monotonic()
    bridge.start(wait=False)
    assert time.monotonic() - started < 1.0
    events: list[SonicEvent] = []
    while not bridge.closed:
        assert time.monotonic() - started < LIMIT_S, events
        events += bridge.poll(timeout=0.1)
    errors = [event for event in events if isinstance(event, Error)]
    assert len(errors) == 1, events
    assert errors[0].fatal
    assert SECRET not in errors[0].message
    return errors[0]


# ------------------------------------------------------------------------------------------------ the session


def test_no_credentials_anywhere(
    emulator: EmulatorProcess, pool: PoolFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without_aws_settings(monkeypatch, tmp_path / "home")
    workers = pool()  # started without the settings: the worker inherits the host's environment
    config = config_for(emulator, aws_access_key_id=None, aws_secret_access_key=None)
    error = start_fails(config, workers)
    assert isinstance(error, CredentialsError)
    assert error.kind == "NoCredentials"
    assert "AWS_ACCESS_KEY_ID" in error.message
    event = fatal_event(config, workers)
    assert (event.kind, event.message) == (error.kind, error.message)


def test_keys_the_service_refuses(emulator: EmulatorProcess, pool: PoolFactory) -> None:
    config = config_for(emulator, aws_secret_access_key="not-the-secret")
    error = start_fails(config, pool())
    assert isinstance(error, CredentialsError)
    assert error.kind == "InvalidSignatureException"
    assert "The request signature we calculated does not match" in error.message
    assert "not-the-secret" not in error.message


def test_model_access_not_granted(emulator: EmulatorProcess, pool: PoolFactory) -> None:
    config = config_for(emulator, model_id=NOVA_SONIC_V1)
    workers = pool()
    error = start_fails(config, workers)
    assert type(error) is SessionError
    assert error.kind == "AccessDeniedException"
    assert "Model access" in error.message
    event = fatal_event(config, workers)
    assert event.kind == "AccessDeniedException"
    assert "You don't have access to the model" in event.message


def test_an_endpoint_nothing_listens_on(emulator: EmulatorProcess, pool: PoolFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    error = start_fails(config_for(emulator, endpoint_uri=f"https://127.0.0.1:{port}"), pool())
    assert isinstance(error, EndpointError)
    assert error.kind == "EndpointUnreachable"
    assert f"127.0.0.1:{port}" in error.message


@pytest.mark.parametrize("case", ["no-credentials", "refused-key", "closed-port", "untrusted-certificate"])
def test_the_worker_reports_the_failure_and_exits_with_nothing_on_stderr(
    emulator: EmulatorProcess, case: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Whatever the SDK and awscrt leave running when a start fails, the worker retrieves: asyncio logs nothing.
    settings: dict[str, object] = {}
    if case == "no-credentials":
        without_aws_settings(monkeypatch, tmp_path / "home")
        settings = {"aws_access_key_id": None, "aws_secret_access_key": None}
    elif case == "refused-key":
        settings = {"aws_access_key_id": "AKIDSOMEONEELSE"}
    elif case == "closed-port":
        settings = {"endpoint_uri": "https://127.0.0.1:9"}
    other = EmulatorProcess(tmp_path / "other") if case == "untrusted-certificate" else None
    if other is not None:
        settings = {"ca_file": Path(other.ca_file)}
    worker = WorkerProcess(python_for("312"))
    try:
        worker.wait_warm(60)
        started = time.monotonic()
        worker.hand_over(config_for(emulator, **settings))
        records = read_until_closed(worker.downlink, timeout=LIMIT_S)
        assert worker.process.wait(timeout=5) == 1
        assert time.monotonic() - started < LIMIT_S
        events = [event_from_json(record.payload) for record in records if record.kind == RecordKind.EVENT]
        assert len(events) == 1, events
        assert isinstance(events[0], Error)
        assert events[0].fatal
        assert worker.output() == ""
    finally:
        worker.close(0.0)
        if other is not None:
            other.stop()


# ------------------------------------------------------------------------------------------------- the worker


def _worker_pythons(root: Path) -> dict[str, Path]:
    """Worker Pythons that cannot run the session, each for its own reason."""
    python312 = python_for("312")
    base = subprocess.run(
        [python312, "-c", "import sys; print(sys._base_executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()
    pythons = {"missing": root / "no-such-python", "too-old": Path(python_for("311"))}

    bare = root / "bare"  # Python 3.12 without novabridge
    subprocess.run([base, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    pythons["no-novabridge"] = bare / "bin" / "python"

    # Python 3.12 with novabridge and what it needs, but not its `sonic` extra: the installed distributions, linked.
    base_only = root / "base-only"
    subprocess.run([base, "-m", "venv", "--without-pip", str(base_only)], check=True, timeout=60)
    site = base_only / "lib" / "python3.12" / "site-packages"
    listing = subprocess.run(
        [python312, "-c", LINKS_SCRIPT], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    for path in map(Path, listing):
        (site / path.name).symlink_to(path)
    pythons["no-sonic"] = base_only / "bin" / "python"

    # A worker whose imports crash: a module the SDK needs, shadowed by one that raises, or one that dies of SIGSEGV.
    for name, body in (("raises", 'raise RuntimeError("awscrt failed to load")'), ("segfault", SEGFAULT)):
        shadow = root / name / "awscrt"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text(body + "\n")
        wrapper = root / name / "python"
        wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{root / name}" exec "{python312}" "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        pythons[f"crash-{name}"] = wrapper
    return pythons


SEGFAULT = "import ctypes\nctypes.string_at(0)"
LINKS_SCRIPT = """
import importlib.metadata as md, re
from pathlib import Path
seen, todo = set(), ["novabridge"]
while todo:
    name = todo.pop()
    key = re.sub(r"[-_.]+", "-", name).lower()
    if key in seen:
        continue
    seen.add(key)
    dist = md.distribution(name)
    tops = {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}
    for top in sorted(tops - {"__pycache__"}):
        if not top.endswith(".dist-info"):
            print(dist.locate_file(top))
    for requirement in dist.requires or ():
        if "extra ==" not in requirement:
            todo.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
"""


@pytest.fixture(scope="module")
def worker_pythons(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _worker_pythons(tmp_path_factory.mktemp("worker-pythons"))


@pytest.mark.parametrize(
    ("case", "cause"),
    [
        ("missing", r"the worker Python \S+no-such-python does not exist"),
        ("too-old", r"is Python 3\.11; the Nova Sonic SDK needs >= 3\.12"),
        ("no-novabridge", r"novabridge is not installed for it"),
        ("no-sonic", r"lacks novabridge\[sonic\] \(no module named (aws_sdk_bedrock_runtime|awscrt|smithy_\w+)\)"),
        ("crash-raises", r"exited with status 1 while starting: .*RuntimeError: awscrt failed to load"),
        ("crash-segfault", r"was killed by SIGSEGV while starting"),
    ],
)
def test_a_worker_python_that_cannot_run_the_session(
    worker_pythons: dict[str, Path], case: str, cause: str, tmp_path: Path
) -> None:
    python = str(worker_pythons[case])
    config = SonicConfig(endpoint_uri="https://127.0.0.1:1", aws_access_key_id=KEY[0], aws_secret_access_key=SECRET)
    for wait in (True, False):  # a worker that cannot run is known before `start` returns: raised either way
        pool = WorkerPool(python, spare=0)
        bridge = SonicBridge(config, worker_python=python, pool=pool)
        started = time.monotonic()
        with pytest.raises(WorkerError) as caught:
            bridge.start(wait=wait)
        assert time.monotonic() - started < LIMIT_S
        message = str(caught.value)
        assert isinstance(caught.value, BridgeError)
        assert re.search(cause, message), message
        assert SECRET not in message
        if case in ("missing", "too-old", "no-novabridge", "no-sonic"):
            assert "novabridge setup-worker" in message
        bridge.close()
        pool.close()
