"""`EmulatorProcess`: ``novabridge emulator`` as a subprocess, for hosts that cannot import the emulator itself.

The emulator needs Python >= 3.12 (it uses the SDK's codec); a host on any Python starts it on a worker interpreter
and reads the endpoint and CA it prints. Used by ``novabridge demo``, the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from novabridge.sonic.config import SonicConfig

START_TIMEOUT_S = 60.0


class EmulatorProcess:
    """``python -m novabridge emulator ARGS...`` on ``python``, serving until `stop` (its stderr goes to a file).

    It publishes its endpoint only in ``state_dir`` if one is given: its owner reads the ready line, and an emulator
    the user runs for OpenAvatarChat (published in ``~/.novabridge/emulator``) must not be replaced by this one.
    """

    def __init__(self, python: str, args: Sequence[str] = (), *, state_dir: Path | None = None) -> None:
        self._log: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        publishing = ["--state-dir", str(state_dir)] if state_dir is not None else ["--no-state"]
        self.process = subprocess.Popen(
            [python, "-m", "novabridge", "emulator", *publishing, *args],
            stdin=subprocess.PIPE,  # faults armed while it runs (`inject`)
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"the emulator did not start with {python}: {self.output() or 'no output'}")
        info = json.loads(line)
        self.endpoint_uri: str = info["endpoint_uri"]
        self.ca_file: str = info["ca_file"]

    @property
    def pid(self) -> int:
        """The emulator's process id."""
        return self.process.pid

    def config(self, **settings: object) -> SonicConfig:
        """A session config for this endpoint, with the dummy credentials it accepts, and ``settings``."""
        return SonicConfig.model_validate(
            {
                "endpoint_uri": self.endpoint_uri,
                "ca_file": Path(self.ca_file),
                "aws_access_key_id": "AKIDTEST",
                "aws_secret_access_key": "secret",
                **settings,
            }
        )

    def inject(self, spec: str, timeout_s: float = 5.0) -> None:
        """Arm a fault in the running emulator: ``KIND[:name=value,...]``, as ``--fault`` takes it.

        Raises:
            ValueError: the emulator refused the spec (with its reason).
            RuntimeError: the emulator did not answer within ``timeout_s``.
        """
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(spec.encode() + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout_s)
        line = self.process.stdout.readline() if ready else b""
        if not line:
            raise RuntimeError(f"the emulator did not take the fault {spec!r}: {self.output() or 'no output'}")
        answer = json.loads(line)
        if "error" in answer:
            raise ValueError(answer["error"])

    def output(self) -> str:
        """The end of what the emulator wrote to stderr."""
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:].strip()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a killed emulator's stdin: a broken pipe to flush
                    pipe.close()
        self._log.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
