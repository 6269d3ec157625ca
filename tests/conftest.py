"""Shared helpers of the tests: the two interpreters, ring peer processes, calls run in a thread, and the emulator
as a subprocess."""

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import novabridge as nb
import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from loguru import logger
from novabridge.emulator import process as emulator_process

# The Nova Sonic SDK and the emulator (its codec is the SDK's) exist for Python >= 3.12 only. Their tests run in
# the 3.12 pass of `make test`; the 3.11 pass covers the host side, and reaches the emulator as a subprocess.
collect_ignore = ["emulator"] if sys.version_info < (3, 12) else []

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
OAC_ROOT = Path(os.environ.get("NOVABRIDGE_OAC_ROOT") or ROOT.parent / "shared" / "third_party" / "openavatarchat")
"""An OpenAvatarChat checkout (upstream, unmodified): the OAC tests run the handler inside its real engine."""
PEER_SCRIPT = TESTS / "ring_peer.py"

BOUNDARY_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Property tests where bytes enter (the output parser, the builders, the emulator's decoder): the same examples on
every run, so CI is reproducible and quick; nothing written into the repository; no deadline on a loaded machine."""

Version = Literal["311", "312"]
T = TypeVar("T")


def python_for(version: Version) -> str:
    """The venv interpreter of Python 3.11 (the host) or 3.12 (the worker), as the Makefile exports them."""
    default = ROOT / (".venv-host" if version == "311" else ".venv") / "bin" / "python"
    return os.environ.get(f"NOVABRIDGE_PY{version}") or str(default)


def this_version() -> Version:
    return "311" if sys.version_info[:2] == (3, 11) else "312"


def other_version() -> Version:
    return "312" if this_version() == "311" else "311"


class Peer:
    """A child process running tests/ring_peer.py, with line-by-line access to its stdout."""

    def __init__(self, args: list[str], pass_fds: tuple[int, ...]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            cwd=str(TESTS),
        )
        self._buffer = b""
        self._eof = False
        self.lines: list[str] = []
        self.killed_at: float | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _fill(self, deadline: float) -> bool:
        """Reads what stdout has, waiting until `deadline`; False once nothing more can come."""
        assert self.proc.stdout is not None
        if self._eof:
            return False
        left = max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([self.proc.stdout.fileno()], [], [], left)
        if not ready:
            return True
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self.lines.append(line.decode())
        return True

    def _stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """Waits for (and consumes) the first stdout line starting with `prefix`; fails on an "error" line."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for i in range(seen, len(self.lines)):
                line = self.lines[i]
                if line.startswith("error"):
                    raise AssertionError(f"peer reported {line!r}")
                if line.startswith(prefix):
                    del self.lines[: i + 1]
                    return line
            seen = len(self.lines)
            if time.monotonic() >= deadline:
                raise AssertionError(f"peer did not print {prefix!r} within {timeout} s; got {self.lines}")
            if not self._fill(deadline):
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"peer exited ({self.proc.returncode}) without printing {prefix!r}; stdout {self.lines}, "
                    f"stderr:\n{self._stderr()}"
                )

    def kill(self) -> float:
        """SIGKILLs the peer and returns the monotonic time of the kill."""
        self.killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        return self.killed_at

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        """Closes the peer's stdin (releasing a holding role), waits for it, returns (exit code, stderr)."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        while self._fill(time.monotonic() + 1.0):
            pass
        return self.proc.returncode, self._stderr()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


SpawnPeer = Callable[..., Peer]


@pytest.fixture
def spawn_peer() -> Iterator[SpawnPeer]:
    """Starts `ring_peer.py ROLE FDS... ARGS...` on an interpreter; every peer is reaped at teardown.

    Call as `spawn_peer(role, ring, *args, version="311")`; `ring=None` for roles that make their own ring;
    `fds=` passes other descriptors than the ring's. Without `version`, the peer runs on this interpreter.
    """
    peers: list[Peer] = []

    def spawn(
        role: str,
        ring: nb.Ring | None,
        *args: object,
        version: Version | None = None,
        fds: tuple[int, ...] | None = None,
    ) -> Peer:
        python = python_for(version) if version is not None else sys.executable
        if fds is None:
            fds = ring.fds() if ring is not None else ()
        peer = Peer([python, str(PEER_SCRIPT), role, *map(str, fds), *map(str, args)], pass_fds=fds)
        peers.append(peer)
        return peer

    yield spawn
    for peer in peers:
        peer.cleanup()


class Background(Generic[T]):
    """Runs `fn` in a daemon thread, keeping its result or exception and the monotonic time it ended."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as err:  # noqa: BLE001 (handed to the test, which asserts on it)
            self.error = err
        finally:
            self.ended_at = time.monotonic()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the call did not end within {timeout} s"

    def assert_closed_within(self, since: float, seconds: float = 1.0) -> None:
        """The call ended with `RingClosed` less than `seconds` after `since` (a monotonic time)."""
        self.join(5.0)
        assert isinstance(self.error, nb.RingClosed), self.error
        assert self.ended_at is not None
        assert self.ended_at - since < seconds


@pytest.fixture
def ring() -> Iterator[nb.Ring]:
    """A 4 KiB ring, closed at teardown."""
    r = nb.Ring.create(4096, name="test")
    yield r
    r.close()


def framed_len(payload_len: int) -> int:
    """Bytes a record occupies in the ring: the 24-byte header and the payload, padded to 8."""
    return (nb.RECORD_HEADER_LEN + payload_len + 7) & ~7


def read_until_closed(ring: nb.Ring, timeout: float = 10.0) -> list[nb.Record]:
    """Reads records until `RingClosed`; fails if a read times out first."""
    records: list[nb.Record] = []
    while True:
        try:
            record = ring.read(timeout=timeout)
        except nb.RingClosed:
            return records
        assert record is not None, f"timed out after {len(records)} records"
        records.append(record)


def fill(ring: nb.Ring, size: int = 100, kind: int = 1) -> int:
    """Writes `size`-byte records until the ring is full; returns how many were written."""
    count = 0
    while True:
        try:
            ring.write(kind, bytes([count % 256]) * size)
        except nb.RingFull:
            return count
        count += 1


# ------------------------------------------------------------------------------- the emulator as a subprocess


class EmulatorProcess(emulator_process.EmulatorProcess):
    """`novabridge emulator` on the 3.12 interpreter, fast timing, recording each stream to ``record_dir``."""

    def __init__(self, record_dir: Path, *args: str) -> None:
        self.record_dir = record_dir
        timing = ["--endpointing", "0.3", "--think", "0.05", "--speed", "20"]
        super().__init__(python_for("312"), [*timing, "--record-dir", str(record_dir), *args])

    def recording(self, stream_id: int, timeout: float = 10.0) -> tuple[dict[str, object], bytes, bytes]:
        path = self.record_dir / f"stream-{stream_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"no recording of stream {stream_id}"
            time.sleep(0.05)
        time.sleep(0.1)
        user = (self.record_dir / f"stream-{stream_id}-user.pcm").read_bytes()
        assistant = (self.record_dir / f"stream-{stream_id}-assistant.pcm").read_bytes()
        return json.loads(path.read_text()), user, assistant


def user_audio_reached(streams: list[bytes], sent: bytes, replay_limit: int) -> int:
    """How far into ``sent`` the user audio of successive streams reached, each continuing where the last stopped.

    A stream may first repeat up to ``replay_limit`` bytes its predecessor had (a replay); anything else, a gap or
    a reordering, fails.
    """
    position = 0
    for number, audio in enumerate(streams, start=1):
        for overlap in range(min(len(audio), replay_limit, position), -1, -2):
            if (
                audio[:overlap] == sent[position - overlap : position]
                and audio[overlap:] == sent[position : position + len(audio) - overlap]
            ):
                break
        else:
            raise AssertionError(f"stream {number} is not a continuation at byte {position}")
        position += len(audio) - overlap
    return position


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(tmp_path / "recordings")
    yield process
    process.stop()


def tone(seconds: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * 16000)) / 16000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Answers long enough to interrupt, played out at 1.5x real time."""
    scenario = tmp_path / "long.json"
    scenario.write_text(json.dumps({"turns": [{"assistant": "This answer goes on for quite a while. " * 6}]}))
    process = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario), "--speed", "1.5")
    yield process
    process.stop()


# ------------------------------------------------------------------------------------------- OpenAvatarChat


def oac_src() -> Path:
    """OpenAvatarChat's ``src`` (where ``chat_engine`` lives), for ``sys.path``; a clear error if it is missing."""
    src = OAC_ROOT / "src"
    if not (src / "chat_engine" / "core" / "chat_session.py").is_file():
        raise FileNotFoundError(
            f"OpenAvatarChat's engine is not at {src}: the OAC tests run the handler inside it. Put an "
            "OpenAvatarChat checkout at ../shared/third_party/openavatarchat (from the project root) or point "
            "NOVABRIDGE_OAC_ROOT at one."
        )
    return src


@pytest.fixture
def oac_log() -> Iterator[list[tuple[str, str]]]:
    """What is logged through loguru, OAC's logger (and so the OAC handler's), as (level name, message)."""
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda message: lines.append((message.record["level"].name, message.record["message"])))
    yield lines
    logger.remove(sink)


# ------------------------------------------------------------------------------------------- AWS settings


def without_aws_settings(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """No credentials anywhere: no AWS_* variables, an empty home, empty shared files, no instance metadata."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    home.mkdir()
    (home / "config").write_text("")
    (home / "credentials").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


_PRINT_FILE = "import sys; sys.stdout.write(open(sys.argv[1]).read())"


class CredentialSource:
    """The account's side of temporary credentials: issues them to the emulator and to the client's process.

    The client's ``credential_process`` (`configure`) prints the last issued document; the emulator
    (``--credentials-file``) reads the list of all issued. Both files are replaced whole, so neither reader sees half a
    document.
    """

    def __init__(self, directory: Path) -> None:
        self.issued_file = directory / "issued.json"
        self.current_file = directory / "current.json"
        self.issued: list[dict[str, Any]] = []

    def configure(self, config_file: Path) -> None:
        """Make the default profile of ``config_file`` take its credentials from this source."""
        command = f"{sys.executable} -c {json.dumps(_PRINT_FILE)} {self.current_file}"
        config_file.write_text(f"[default]\ncredential_process = {command}\n")

    def issue(self, lifetime_s: float) -> dict[str, Any]:
        document = {
            "Version": 1,
            "AccessKeyId": f"ASIANOVABRIDGE{len(self.issued) + 1:04d}",
            "SecretAccessKey": secrets.token_hex(20),
            "SessionToken": secrets.token_urlsafe(48),
            "Expiration": (datetime.now(UTC) + timedelta(seconds=lifetime_s)).isoformat(),
        }
        self.issued.append(document)
        _replace(self.issued_file, json.dumps(self.issued))
        _replace(self.current_file, json.dumps(document))
        return document

    def expiry(self, access_key_id: str) -> float:
        document = next(d for d in self.issued if d["AccessKeyId"] == access_key_id)
        return datetime.fromisoformat(document["Expiration"]).timestamp()


def _replace(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    partial.replace(path)
