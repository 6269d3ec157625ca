"""Ring peers in other processes (tests/ring/ring_peer.py), calls run in a thread, and record accounting."""

import os
import platform
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import novabridge as nb

from support.interpreters import TESTS

PEER_SCRIPT = TESTS / "ring" / "ring_peer.py"
T = TypeVar("T")

POLL_SYSCALLS = {"x86_64": {7, 271}, "aarch64": {73}}[platform.machine()]
"""poll(2) and ppoll(2), where a blocked ring call sleeps (the ring waits on its eventfds and the peer's pidfd)."""


def in_poll(task: Path) -> bool:
    """The thread (a /proc task directory) is asleep in poll(2): a ring call in it is waiting, not about to."""
    try:
        fields = task.joinpath("syscall").read_text().split()
    except FileNotFoundError:  # the thread ended
        return False
    return bool(fields) and fields[0].isdigit() and int(fields[0]) in POLL_SYSCALLS


def wait_until_in_poll(task: Path, timeout: float = 5.0) -> None:
    """Returns once the thread sleeps in poll(2); fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not in_poll(task):
        assert time.monotonic() < deadline, f"{task} not waiting in poll(2): {task.joinpath('syscall').read_text()!r}"
        time.sleep(0.002)


def process_task(pid: int) -> Path:
    """The main thread of a process, as a /proc task directory."""
    return Path(f"/proc/{pid}/task/{pid}")


class Peer:
    """A child process running tests/ring/ring_peer.py, with line-by-line access to its stdout."""

    def __init__(self, args: list[str], pass_fds: tuple[int, ...]) -> None:
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=pass_fds,
            cwd=str(PEER_SCRIPT.parent),
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


class Background(Generic[T]):
    """Runs `fn` in a daemon thread, keeping its result or exception and the monotonic time it ended."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.ended_at: float | None = None
        self.started_at = time.monotonic()
        self._native_id: int | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(5.0)

    def _run(self) -> None:
        self._native_id = threading.get_native_id()
        self._started.set()
        try:
            self.result = self._fn()
        except BaseException as err:  # noqa: BLE001 (handed to the test, which asserts on it)
            self.error = err
        finally:
            self.ended_at = time.monotonic()

    def done(self) -> bool:
        return not self._thread.is_alive()

    def wait_blocked(self, timeout: float = 5.0) -> None:
        """Returns once the call is known to wait: its thread sleeps in poll(2), the call not finished."""
        assert self._native_id is not None
        task = Path(f"/proc/self/task/{self._native_id}")
        deadline = time.monotonic() + timeout
        while not in_poll(task):
            assert not self.done(), f"the call ended instead of waiting: {self.result!r} {self.error!r}"
            assert time.monotonic() < deadline, f"the call did not wait in poll(2) within {timeout} s"
            time.sleep(0.002)
        assert not self.done()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the call did not end within {timeout} s"

    def assert_closed_within(self, since: float, seconds: float = 1.0) -> None:
        """The call ended with `RingClosed` less than `seconds` after `since` (a monotonic time)."""
        self.join(5.0)
        assert isinstance(self.error, nb.RingClosed), self.error
        assert self.ended_at is not None
        assert self.ended_at - since < seconds


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
