"""`SonicBridge`: a synchronous host's handle on a Nova Sonic session running in a worker process.

The host (any Python >= 3.11, e.g. OpenAvatarChat's pump thread) writes audio into a shared-memory ring and reads
typed events from another; the worker (Python >= 3.12 with ``novabridge[sonic]``) runs the `SonicSession`. Nothing
on the host waits for the network. If the worker dies, the bridge starts another and resumes the conversation from
the transcript it kept, reporting `Reconnecting` rather than raising.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Self

import numpy as np

from novabridge import pcm, protocol
from novabridge._novabridge import Resampler, Ring
from novabridge.exceptions import NovaBridgeError, RingClosed
from novabridge.protocol import AudioOut, Error, Reconnecting, SonicEvent, Transcript
from novabridge.ring import RecordKind
from novabridge.sonic.config import HistoryMessage, SonicConfig

SERVICE_INPUT_RATE = 16000
RING_BYTES = 1 << 21
"""Per direction: about 30 s of 24 kHz output, so a host that stalls for a while loses nothing."""
START_TIMEOUT_S = 60.0
CLOSE_TIMEOUT_S = 1.0
_SECRETS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")


class BridgeError(NovaBridgeError):
    """The worker could not be started, or the bridge was used wrongly."""


def _config_json(config: SonicConfig) -> bytes:
    """The config for the worker, secrets included (it travels over a pipe, never argv or the environment)."""
    data = config.model_dump(mode="json")
    for name in _SECRETS:
        secret = getattr(config, name)
        data[name] = secret.get_secret_value() if secret is not None else None
    return json.dumps(data).encode()


def default_worker_python() -> str:
    """This interpreter, when it can run the session (>= 3.12)."""
    if sys.version_info >= (3, 12):
        return sys.executable
    raise BridgeError(
        "the Nova Sonic SDK needs Python >= 3.12 and this is "
        f"{sys.version_info[0]}.{sys.version_info[1]}: pass worker_python=<path to a Python >= 3.12 "
        "with novabridge[sonic] installed>"
    )


class _Worker:
    """One worker process and its two rings."""

    def __init__(self, python: str, config: SonicConfig) -> None:
        self.uplink = Ring.create(RING_BYTES, name="novabridge-uplink")
        self.downlink = Ring.create(RING_BYTES, name="novabridge-downlink")
        fds = self.uplink.fds() + self.downlink.fds()
        # A file, not a pipe: nobody reads the worker's log while it runs, and a full pipe would stall it.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker; closed in close()
        try:
            self.process = subprocess.Popen(
                [python, "-m", "novabridge.worker", *map(str, fds)],
                stdin=subprocess.PIPE,
                stderr=self.log,
                pass_fds=fds,
            )
        except OSError as error:
            self.uplink.close()
            self.downlink.close()
            self.log.close()
            raise BridgeError(f"cannot start the worker with {python}: {error}") from None
        assert self.process.stdin is not None
        self.process.stdin.write(_config_json(config))
        self.process.stdin.close()

    def wait_ready(self, timeout_s: float) -> None:
        # Until the worker attaches, the ring cannot notice its death; so watch the process too.
        deadline = time.monotonic() + timeout_s
        record = None
        while record is None and time.monotonic() < deadline and self.process.poll() is None:
            try:
                record = self.downlink.read(timeout=0.1)
            except RingClosed:
                break
        if record is None or record.kind != RecordKind.CONTROL:
            self.kill()
            self.log.seek(0)
            detail = self.log.read().decode(errors="replace").strip().splitlines()[-5:]
            self.close(0.0)
            raise BridgeError("the worker did not start: " + (" | ".join(detail) or "no output"))

    def close(self, timeout_s: float) -> None:
        self.uplink.close()  # the worker ends its session and exits
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self.downlink.close()
        self.log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


class SonicBridge:
    """``with SonicBridge(config) as bridge:`` then `send_audio` from any thread and `poll` or iterate events."""

    def __init__(
        self,
        config: SonicConfig,
        *,
        worker_python: str | None = None,
        host_rate: int = 16000,
        out_rate: int = 24000,
    ) -> None:
        self.config = config
        self.worker_python = worker_python or default_worker_python()
        self.host_rate = host_rate
        self.out_rate = out_rate
        self._to_service: dict[str, Resampler] = {}
        self._from_service: Resampler | None = (
            Resampler(config.output_rate, out_rate) if out_rate != config.output_rate else None
        )
        if host_rate != config.input_rate:
            Resampler(host_rate, config.input_rate)  # validates the rate pair now, not at the first frame
        self._worker: _Worker | None = None
        self._turns: dict[int, str] = {}
        self._history: list[HistoryMessage] = list(config.history)
        self._restarts = 0
        self._ended = False
        self._closed = False

    # ----------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the worker and wait until its session is connected."""
        if self._worker is not None:
            raise BridgeError("the bridge is already started")
        worker = _Worker(self.worker_python, self.config)
        worker.wait_ready(START_TIMEOUT_S)
        self._worker = worker

    def close(self) -> None:
        """End the session and the worker; bounded, idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.close(CLOSE_TIMEOUT_S)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _require_worker(self) -> _Worker:
        if self._closed:
            raise BridgeError("the bridge is closed")
        if self._worker is None:
            raise BridgeError("the bridge is not started; call start() or use it as a context manager")
        return self._worker

    # ------------------------------------------------------------------------------------------------- sending

    def send_audio(self, audio: np.ndarray[Any, Any]) -> None:
        """Queue user audio at ``host_rate``: int16 or float32, shape (N,) or (1, N). Never blocks.

        Raises:
            TypeError, ValueError: wrong dtype, shape or non-finite samples (nothing is queued).
            RingFull: the worker has fallen behind by the whole ring; this frame was not queued.
        """
        worker = self._require_worker()
        if not isinstance(audio, np.ndarray):
            raise TypeError(f"audio must be a numpy array, not {type(audio).__name__}")
        if audio.dtype not in (np.int16, np.float32):
            raise TypeError(f"audio must be int16 or float32, got {audio.dtype}")
        if audio.ndim == 2 and audio.shape[0] == 1:
            audio = audio[0]
        if audio.ndim != 1:
            raise ValueError(f"audio must be mono, shape (N,) or (1, N); got {audio.shape}")
        if audio.size == 0:
            return
        samples = pcm.to_int16(audio) if audio.dtype == np.float32 else audio
        if self.host_rate != self.config.input_rate:
            resampler = self._to_service.setdefault(
                samples.dtype.name, Resampler(self.host_rate, self.config.input_rate)
            )
            samples = resampler.process(samples)
        worker.uplink.write(RecordKind.AUDIO, np.ascontiguousarray(samples, dtype="<i2"), timeout=0.0)

    def send_text(self, text: str) -> None:
        """Typed user text (Nova 2 cross-modal input)."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        self._command({"op": "text", "text": text})

    def send_tool_result(self, tool_use_id: str, result: Any) -> None:
        """Answer a `ToolCall` event."""
        self._command({"op": "tool_result", "tool_use_id": tool_use_id, "result": result})

    def _command(self, command: dict[str, Any]) -> None:
        self._require_worker().uplink.write(RecordKind.EVENT, json.dumps(command).encode(), timeout=0.0)

    def interrupt(self) -> int:
        """Drop the assistant audio queued for the host at once; returns how many records were dropped."""
        return self._require_worker().downlink.skip(RecordKind.AUDIO)

    # ------------------------------------------------------------------------------------------------ receiving

    def poll(self, timeout: float = 0.0) -> list[SonicEvent]:
        """Events available now, waiting up to ``timeout`` seconds for the first one."""
        worker = self._require_worker()
        events: list[SonicEvent] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = (
                    worker.downlink.read_nowait()
                    if events
                    else worker.downlink.read(timeout=max(0.0, deadline - time.monotonic()))
                )
            except RingClosed:
                if self._closed:
                    return events
                if self._ended:
                    # The session ended with a fatal error (reported already): a new worker would repeat it.
                    self.close()
                    return events
                events.append(self._restart())
                return events
            if record is None:
                return events
            event = self._decode(record)
            if event is not None:
                events.append(event)

    def events(self) -> Iterator[SonicEvent]:
        """Block for events until the bridge closes (or its session ends with a fatal error)."""
        while not self._closed:
            yield from self.poll(timeout=0.1)

    def _decode(self, record: Any) -> SonicEvent | None:
        if record.kind == RecordKind.AUDIO:
            samples = np.frombuffer(record.payload, dtype="<i2")
            if self._from_service is not None:
                samples = self._from_service.process(samples)
            return AudioOut(samples.tobytes(), self.out_rate, self._turns.get(record.flags, ""))
        if record.kind != RecordKind.EVENT:
            return None
        data = json.loads(record.payload)
        if data.get("type") == "AudioTurn":
            self._turns[int(data["ordinal"])] = str(data["turn_id"])
            return None
        event = protocol.event_from_json(record.payload)
        if isinstance(event, Error) and event.fatal:
            self._ended = True
        if (
            isinstance(event, Transcript)
            and event.stage is protocol.Stage.FINAL
            and event.role in ("USER", "ASSISTANT")
        ):
            self._remember(event.role, event.text)
        return event

    def _remember(self, role: str, text: str) -> None:
        if self._history and self._history[-1].role == role:
            self._history[-1] = HistoryMessage(role=role, text=f"{self._history[-1].text} {text}")
        else:
            self._history.append(HistoryMessage(role=role, text=text))

    # ---------------------------------------------------------------------------------------------- supervision

    def _restart(self) -> SonicEvent:
        """The worker died: start another that resumes from the transcript the host kept."""
        old = self._worker
        assert old is not None
        code = old.process.poll()
        old.close(0.1)
        self._restarts += 1
        replay = protocol.trim_history([(m.role, m.text) for m in self._history])
        config = self.config.model_copy(update={"history": tuple(HistoryMessage(role=r, text=t) for r, t in replay)})
        self._worker = _Worker(self.worker_python, config)
        self._worker.wait_ready(START_TIMEOUT_S)
        return Reconnecting(f"worker exited with status {code}", self._restarts)

    def metrics(self) -> dict[str, Any]:
        """Ring fill and traffic, and worker restarts."""
        worker = self._require_worker()
        up, down = worker.uplink.stats(), worker.downlink.stats()
        return {
            "restarts": self._restarts,
            "uplink_fill": up.fill_ratio,
            "downlink_fill": down.fill_ratio,
            "uplink_bytes": up.bytes_written,
            "downlink_bytes": down.bytes_written,
            "worker_pid": worker.process.pid,
        }
