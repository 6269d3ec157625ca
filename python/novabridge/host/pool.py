"""Worker processes for `SonicBridge`, started ahead of need so a session never waits for an interpreter to boot.

A worker is a process running `novabridge.worker` (through `BOOTSTRAP`) with its two rings. It imports the SDK, attaches the rings and
says it is warm, then waits for a session's config on stdin. `WorkerPool` keeps ``spare`` such workers per
interpreter; `claim` hands one over at once and starts its replacement on a thread of its own, so neither OAC's
server loop (`start_context`) nor a supervisor replacing a dead worker waits for a process to start.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import subprocess
import tempfile
import threading
import time
from typing import ClassVar

from novabridge import link
from novabridge._novabridge import Ring
from novabridge.exceptions import BridgeError, LinkError, RingClosed, WorkerError
from novabridge.sonic.config import SonicConfig

RING_BYTES = 1 << 21
"""Per direction: about 65 s of 16 kHz input or 43 s of 24 kHz output, so a host that stalls loses nothing."""
WARM_TIMEOUT_S = 60.0
CLOSE_STARTERS_S = 5.0
EXIT_TOO_OLD = 3
"""The worker's exit status when its Python is older than the SDK's 3.12."""
EXIT_MISSING_MODULE = 4
"""The worker's exit status when a module it needs is not installed (novabridge, or its ``sonic`` extra)."""
BOOTSTRAP = f"""
import sys
if sys.version_info < (3, 12):
    sys.stderr.write("novabridge worker: Python %d.%d\\n" % sys.version_info[:2])
    sys.exit({EXIT_TOO_OLD})
try:
    from novabridge.worker.main import main
except ModuleNotFoundError as error:
    sys.stderr.write("novabridge worker: no module named %s\\n" % error.name)
    sys.exit({EXIT_MISSING_MODULE})
main()
"""
"""What a worker runs (``python -c``): a Python too old for the SDK, and a missing module, end with a status of
their own, so the host can say which, and the fix. Written for any Python: the version is checked first."""
_FIX = "pass worker_python= a Python >= 3.12 with novabridge[sonic] (`novabridge setup-worker` makes one)"


config_json = link.encode_config


def _is_warm(record: link.RingRecord) -> bool:
    try:
        return isinstance(link.decode_downlink(record), link.Warm)
    except LinkError:
        return False


class WorkerProcess:
    """One worker process and its two rings, from spawn to reaping."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.uplink = Ring.create(RING_BYTES, name="novabridge-uplink")
        self.downlink = Ring.create(RING_BYTES, name="novabridge-downlink")
        fds = self.uplink.fds() + self.downlink.fds()
        # A file, not a pipe: nobody reads the worker's log while it runs, and a full pipe would stall it.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; closed in close()
        try:
            self.process = subprocess.Popen(
                [python, "-c", BOOTSTRAP, *map(str, fds)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                pass_fds=fds,
            )
        except OSError as error:
            self._release_files()
            reason = "does not exist" if isinstance(error, FileNotFoundError) else f"cannot run ({error.strerror})"
            raise WorkerError(f"the worker Python {python} {reason}. Fix: {_FIX}") from None

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def alive(self) -> bool:
        """The process has not exited."""
        return self.process.poll() is None

    def wait_warm(self, timeout_s: float) -> None:
        """Wait for the worker's "warm" record (the SDK is imported and the rings attached)."""
        # Until the worker attaches, the ring cannot notice its death; so watch the process too.
        deadline = time.monotonic() + timeout_s
        record = None
        while record is None and time.monotonic() < deadline and self.alive():
            try:
                record = self.downlink.read(timeout=0.1)
            except RingClosed:
                break
        if record is None or not _is_warm(record):
            error = self._start_failure(timeout_s)
            self.close(0.0)
            raise error

    def _start_failure(self, timeout_s: float) -> WorkerError:
        """Why the worker did not come up, and what to do about it."""
        code = self.process.poll()
        detail = self.output() or "no output"
        python = self.python
        if code == EXIT_TOO_OLD:
            found = detail.rsplit(":", 1)[-1].strip()
            return WorkerError(f"the worker Python {python} is {found}; the Nova Sonic SDK needs >= 3.12. Fix: {_FIX}")
        if code == EXIT_MISSING_MODULE:
            module = detail.rsplit(" ", 1)[-1]
            top = module.split(".")[0]
            if top == "novabridge":
                what = "novabridge is not installed for it"
            elif top in ("aws_sdk_bedrock_runtime", "awscrt") or top.startswith("smithy_"):
                what = f"it lacks novabridge[sonic] (no module named {module})"
            else:
                what = f"a module novabridge needs is missing (no module named {module})"
            return WorkerError(
                f"the worker Python {python} cannot run the session: {what}. Fix: `{python} -m pip install "
                f"'novabridge[sonic]'`, or {_FIX}"
            )
        if code is None:
            return WorkerError(f"the worker ({python}) was not ready within {timeout_s:g} s: {detail}")
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with status {code}"
        return WorkerError(f"the worker ({python}) {how} while starting: {detail}")

    def hand_over(self, config: SonicConfig) -> None:
        """Give the worker its session (it connects at once); the worker is then the caller's."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(config_json(config))
            self.process.stdin.close()
        except OSError as error:  # it died between warming and now: the caller's supervisor sees the closed ring
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            raise BridgeError(f"the worker exited before it got its session: {error}") from None

    def output(self, lines: int = 5) -> str:
        """The last lines the worker wrote to stderr."""
        if self.log.closed:
            return ""
        self.log.seek(0)
        return " | ".join(self.log.read().decode(errors="replace").strip().splitlines()[-lines:])

    def close(self, timeout_s: float) -> None:
        """End the worker: it finishes its session when the uplink closes; killed after ``timeout_s``."""
        self.uplink.close()
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # an unclaimed worker exits on EOF
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._release_files()

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        self.process.kill()
        self.process.wait()

    def _release_files(self) -> None:
        self.uplink.close()
        self.downlink.close()
        self.log.close()


class WorkerPool:
    """Warm workers of one interpreter. ``WorkerPool.for_python(path)`` is the process-wide pool of ``path``."""

    _pools: ClassVar[dict[str, WorkerPool]] = {}
    _pools_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, python: str, *, spare: int = 1) -> None:
        if spare < 0:
            raise ValueError("spare must be >= 0")
        self.python = python
        self.spare = spare
        self._ready: list[WorkerProcess] = []
        self._starting = 0
        self._starters: set[threading.Thread] = set()
        self._booting: set[WorkerProcess] = set()
        """Spares started and not yet warm: `close` kills them rather than wait for them."""
        self._lock = threading.Condition()
        self._closed = False
        self.error: BridgeError | None = None
        """Why the last replacement could not be started (e.g. this interpreter lacks novabridge[sonic])."""

    @classmethod
    def for_python(cls, python: str) -> WorkerPool:
        """The process-wide pool of ``python`` (one spare), made on first use."""
        with cls._pools_lock:
            pool = cls._pools.get(python)
            if pool is None or pool._closed:
                pool = cls._pools[python] = WorkerPool(python)
            return pool

    @classmethod
    def shutdown_all(cls) -> None:
        """Close every process-wide pool (at interpreter exit, too)."""
        with cls._pools_lock:
            pools, cls._pools = list(cls._pools.values()), {}
        for pool in pools:
            pool.close()

    def warm_up(self) -> None:
        """Start spares in the background until ``spare`` are warm or starting; returns at once."""
        with self._lock:
            if self._closed:
                return
            missing = self.spare - len(self._ready) - self._starting
            self._starting += max(0, missing)
        for _ in range(missing):
            starter = threading.Thread(target=self._start_one, name="novabridge-pool", daemon=True)
            with self._lock:
                self._starters.add(starter)
            starter.start()

    def claim(self, config: SonicConfig, *, timeout_s: float = WARM_TIMEOUT_S) -> WorkerProcess:
        """A worker running ``config``'s session: a warm one at once if there is one, else one started now."""
        with self._lock:
            if self._closed:
                raise BridgeError("the worker pool is closed")
            worker = None
            while self._ready and worker is None:
                candidate = self._ready.pop(0)
                if candidate.alive():
                    worker = candidate
                else:
                    candidate.close(0.0)
        if worker is None:
            worker = WorkerProcess(self.python)
            worker.wait_warm(timeout_s)
        self.warm_up()
        worker.hand_over(config)
        return worker

    def _start_one(self) -> None:
        try:
            self._boot()
        finally:
            with self._lock:
                self._starters.discard(threading.current_thread())

    def _boot(self) -> None:
        worker = None
        try:
            worker = WorkerProcess(self.python)
            with self._lock:
                self._booting.add(worker)
                if self._closed:
                    worker.process.kill()
            worker.wait_warm(WARM_TIMEOUT_S)
        except BridgeError as error:
            with self._lock:
                self._starting -= 1
                if worker is not None:
                    self._booting.discard(worker)
                if not self._closed:
                    self.error = error
            return
        with self._lock:
            self._starting -= 1
            self._booting.discard(worker)
            if not self._closed:
                self._ready.append(worker)
                self._lock.notify_all()
                return
        worker.close(0.0)

    def wait_warm(self, timeout_s: float) -> int:
        """Block until ``spare`` workers are warm (or a start failed, or the timeout passed); how many are warm."""
        self.warm_up()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while len(self._ready) < self.spare and self.error is None:
                left = deadline - time.monotonic()
                if left <= 0 or (self._starting == 0 and len(self._ready) < self.spare):
                    break
                self._lock.wait(min(left, 0.1))
            return len(self._ready)

    def spare_pids(self) -> set[int]:
        """The process ids of the warm spares."""
        with self._lock:
            return {worker.pid for worker in self._ready}

    def close(self) -> None:
        """Stop the spares, those still starting included; claimed workers belong to their bridges.

        Returns once no thread of the pool is left: a thread waiting for a spare in the ring's native code while
        the interpreter exits can crash it (a short-lived program, such as `novabridge doctor`, did).
        """
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
            starters = set(self._starters)
            for worker in self._booting:
                worker.process.kill()  # its starter then sees it die, reaps it and ends
        for worker in ready:
            worker.close(1.0)
        for starter in starters:
            starter.join(CLOSE_STARTERS_S)


atexit.register(WorkerPool.shutdown_all)
