# SPDX-License-Identifier: Apache-2.0
"""One-way latency and throughput of `novabridge.Ring` against `multiprocessing.Queue`, `multiprocessing.Pipe` and
`faster_fifo.Queue`, with a bare eventfd wake-up as the floor, shared by `test_bench_ring.py` (pytest-benchmark) and
`report.py` (the tables of docs/performance.md).

Method, the same for every transport:

* The producer is the calling process; the consumer is a fresh interpreter (`sys.executable`) that loops on a
  blocking read: `Ring.read()` in a `subprocess.Popen` child that attaches with `Ring.attach` (descriptors passed
  with `pass_fds`), `Queue.get()` / `Connection.recv_bytes()` / `faster_fifo.Queue.get(timeout=600)` in a
  `multiprocessing` child started with the "spawn" context. Neither process is pinned to a CPU.
* Every message is one `bytes` object of exactly `frame_bytes` bytes: `u64 seq`, `u64 t_sent` (little-endian),
  then a fixed filler. `t_sent` is `time.monotonic_ns()` read right before the message is built and handed to
  `write`/`put`/`send_bytes`. `mp.Queue` is unbounded; `mp.Pipe` is bounded by the kernel pipe buffer;
  `faster_fifo.Queue` gets `max_size_bytes` equal to the ring's capacity.
* The consumer reads `time.monotonic_ns()` as soon as the read returns. Latency is that minus `t_sent`; for the
  ring the headline figure uses `Record.t_ns` (stamped inside `write` once room is found, before the copy) and
  the figure from `t_sent` is kept too, as `call_latencies_ns`. `CLOCK_MONOTONIC` is one clock for all processes.
* Each run first sends `warmup` frames the same way (not measured) and waits for the consumer to acknowledge
  them. The garbage collector is paused in both processes while measuring. The consumer checks every message
  (order, length, content) and returns its per-frame latencies over a control pipe as JSON at the end.
* Percentiles are nearest-rank over all measured frames.

The floor ("eventfd-floor", paced runs only) is a bare cross-process wake-up with Python on both ends, which no
blocking transport can beat: no payload, the producer only calls `os.eventfd_write(efd, t_ns)` with `t_ns =
time.monotonic_ns()` read right before the call, and the consumer, a `subprocess.Popen` child like the ring's (the
eventfds passed with `pass_fds`), blocks in `os.eventfd_read(efd)`, reads `time.monotonic_ns()` and keeps that
minus the value read; the frame's sequence number is its position. An eventfd adds up values written before the
consumer reads them, so the consumer then acknowledges each frame on a second eventfd and the producer waits for
that (with a timeout) before it paces the next one; the acknowledgement comes after the measured interval. Flat out
that wait would turn the run into a ping-pong, and the floor carries nothing to measure throughput with, so it runs
at 50 frames/s only, once alongside each frame size, and counts in no verdict.

Throughput sends `records` pre-built 64 KiB records back to back (the same 64 rotating `bytes` objects for every
transport); MB/s = payload bytes / (consumer's clock after the last record - producer's clock before the first),
with MB = 10**6 bytes.

Run as a script, this module is the ring's consumer, `python _latency.py ring-consumer SPEC_JSON FD FD FD FD`, or
the floor's, `python _latency.py floor-consumer SPEC_JSON WAKE_FD ACK_FD CONTROL_FD`.
"""

import contextlib
import functools
import gc
import json
import multiprocessing
import os
import platform
import select
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from multiprocessing.connection import Connection
from typing import Any, Final, Literal, Protocol, TypeVar

import faster_fifo
import novabridge as nb
from novabridge import measure

_T = TypeVar("_T")

Transport = Literal["ring", "mp.Queue", "mp.Pipe", "faster-fifo", "eventfd-floor"]
Mode = Literal["latency", "throughput"]

FLOOR: Final[Transport] = "eventfd-floor"
"""The reference floor: a bare eventfd wake-up, no payload, paced runs only."""
TRANSPORTS: Final[tuple[Transport, ...]] = ("ring", "mp.Queue", "mp.Pipe", "faster-fifo")
"""The transports that carry the frames: every mode, the throughput runs, the target verdict."""
PACED_TRANSPORTS: Final[tuple[Transport, ...]] = (*TRANSPORTS, FLOOR)
"""The transports of the paced latency runs: those that carry the frames, then the floor."""
TRANSPORT_LABELS: Final[dict[Transport, str]] = {
    "ring": "novabridge.Ring",
    "mp.Queue": "multiprocessing.Queue",
    "mp.Pipe": "multiprocessing.Pipe",
    "faster-fifo": "faster_fifo.Queue",
    FLOOR: "eventfd wake-up only (floor)",
}
FRAME_SIZES: Final = (640, 960, 1920)
"""20 ms of 16 kHz, 24 kHz and 48 kHz mono s16le PCM."""
PACED_RATE_HZ: Final = 50.0
LATENCY_CAPACITY: Final = 1 << 20
THROUGHPUT_CAPACITY: Final = 4 << 20
THROUGHPUT_RECORD_BYTES: Final = 64 << 10
THROUGHPUT_POOL: Final = 64
"""Distinct pre-built records cycled through by the throughput producer."""

TARGET_P50_US: Final = 15.0
TARGET_P99_US: Final = 50.0
TARGET_P99_RATIO: Final = 5.0

HEADER: Final = struct.Struct("<QQ")
KIND: Final = int(nb.RecordKind.AUDIO)
FIFO_TIMEOUT: Final = 600.0
CONTROL_TIMEOUT: Final = 60.0
"""Seconds to wait for a consumer's handshake or, once everything is sent, for its result."""
MAX_ERRORS: Final = 10

_SPAWN: Final = multiprocessing.get_context("spawn")


class BenchError(RuntimeError):
    """The consumer failed, stalled, or the control protocol broke."""


@dataclass(frozen=True)
class Spec:
    """What a consumer expects: `warmup` unmeasured messages, then `count` measured ones, of `size` bytes."""

    mode: Mode
    size: int
    warmup: int
    count: int


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles in microseconds."""

    p50: float
    p99: float
    p999: float
    max: float


def percentiles(samples_ns: Sequence[int]) -> Percentiles:
    """Nearest-rank p50, p99, p99.9 and max of `samples_ns`, in microseconds; `ValueError` without samples."""
    p50, p99, p999, most = measure.percentiles(samples_ns, (50, 99, 99.9, 100))
    return Percentiles(p50=p50 / 1000, p99=p99 / 1000, p999=p999 / 1000, max=most / 1000)


@dataclass(frozen=True)
class LatencyResult:
    """Per-frame one-way latencies of one run."""

    transport: Transport
    frame_bytes: int
    rate_hz: float | None
    frames: int
    received: int
    errors: list[str]
    latencies_ns: list[int]
    """From the producer's timestamp to `read`/`get`/`recv_bytes`/`eventfd_read` returning (ring: from
    `Record.t_ns`)."""
    call_latencies_ns: list[int] | None
    """Ring only: from `time.monotonic_ns()` right before `write()` was called, as for the other transports."""

    @property
    def mode(self) -> str:
        return "flat out" if self.rate_hz is None else f"{self.rate_hz:g} frames/s"

    def stats(self) -> Percentiles:
        return percentiles(self.latencies_ns)

    def call_stats(self) -> Percentiles | None:
        return None if self.call_latencies_ns is None else percentiles(self.call_latencies_ns)

    def check(self) -> None:
        """Raises `AssertionError` unless every frame arrived, in order, intact, after it was sent."""
        assert not self.errors, f"{self.transport}: {self.errors}"
        assert self.received == self.frames, f"{self.transport}: received {self.received} of {self.frames} frames"
        assert len(self.latencies_ns) == self.frames
        assert min(self.latencies_ns) > 0, f"{self.transport}: a frame arrived before it was sent"
        if self.call_latencies_ns is not None:
            assert len(self.call_latencies_ns) == self.frames
            assert min(self.call_latencies_ns) > 0

    def extra_info(self) -> dict[str, object]:
        """The figures pytest-benchmark stores with the run (`benchmark.extra_info`)."""
        s = self.stats()
        info: dict[str, object] = {
            "transport": self.transport,
            "mode": self.mode,
            "frame_bytes": self.frame_bytes,
            "frames": self.frames,
            "p50_us": s.p50,
            "p99_us": s.p99,
            "p999_us": s.p999,
            "max_us": s.max,
        }
        call = self.call_stats()
        if call is not None:
            info |= {
                "call_p50_us": call.p50,
                "call_p99_us": call.p99,
                "call_p999_us": call.p999,
                "call_max_us": call.max,
            }
        return info


@dataclass(frozen=True)
class ThroughputResult:
    """One back-to-back run of large records."""

    transport: Transport
    record_bytes: int
    records: int
    received: int
    bytes_received: int
    elapsed_ns: int
    errors: list[str]

    @property
    def mb_per_s(self) -> float:
        return self.bytes_received * 1e3 / self.elapsed_ns

    def check(self) -> None:
        """Raises `AssertionError` unless every record arrived, in order, with the right length."""
        assert not self.errors, f"{self.transport}: {self.errors}"
        assert self.received == self.records, f"{self.transport}: received {self.received} of {self.records}"
        assert self.bytes_received == self.records * self.record_bytes
        assert self.elapsed_ns > 0

    def extra_info(self) -> dict[str, object]:
        return {
            "transport": self.transport,
            "record_bytes": self.record_bytes,
            "records": self.records,
            "mb_per_s": self.mb_per_s,
        }


# ---------------------------------------------------------------------------------------------------------------
# Messages


def _filler(size: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(size))


def _pool(size: int) -> list[bytes]:
    filler = _filler(size - HEADER.size)
    return [HEADER.pack(i, 0) + filler for i in range(THROUGHPUT_POOL)]


class _Checker:
    """Consumer-side sanity checks: sequence numbers, lengths, contents; keeps the first few failures."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.tail = _filler(spec.size - HEADER.size) if spec.mode == "latency" else b""
        self.errors: list[str] = []
        self.ring_seq0: int | None = None

    def fail(self, message: str) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(message)

    def check(self, index: int, payload: bytes, ring_seq: int | None = None) -> int:
        """Checks message `index` (counting warm-up ones) and returns the `t_sent` it carries."""
        if len(payload) != self.spec.size:
            self.fail(f"message {index}: {len(payload)} bytes, expected {self.spec.size}")
            return 0
        seq, t_sent = HEADER.unpack_from(payload)
        expected = index if self.spec.mode == "latency" else index % THROUGHPUT_POOL
        if seq != expected:
            self.fail(f"message {index}: carries sequence number {seq}, expected {expected}")
        if self.tail and not payload.endswith(self.tail):
            self.fail(f"message {index}: payload corrupted")
        if ring_seq is not None:
            if self.ring_seq0 is None:
                self.ring_seq0 = ring_seq - index
            elif ring_seq != self.ring_seq0 + index:
                self.fail(f"message {index}: Record.seq {ring_seq}, expected {self.ring_seq0 + index}")
        return int(t_sent)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# ---------------------------------------------------------------------------------------------------------------
# Consumers (run in the child process)


def _consume_ring(ring: nb.Ring, spec: Spec, control: Connection) -> dict[str, Any]:
    checker = _Checker(spec)
    read = ring.read
    clock = time.monotonic_ns
    for index in range(spec.warmup):
        record = read()
        assert record is not None
        checker.check(index, record.payload, record.seq)
    control.send_bytes(b"warm")
    latencies = [0] * spec.count
    call_latencies = [0] * spec.count
    received = size = t_end = 0
    with _gc_paused():
        if spec.mode == "latency":
            for i in range(spec.count):
                record = read()
                now = clock()
                assert record is not None
                latencies[i] = now - record.t_ns
                call_latencies[i] = now - checker.check(spec.warmup + i, record.payload, record.seq)
                received += 1
        else:
            for i in range(spec.count):
                record = read()
                assert record is not None
                payload = record.payload
                checker.check(spec.warmup + i, payload, record.seq)
                size += len(payload)
                received += 1
            t_end = clock()
    return {
        "received": received,
        "errors": checker.errors,
        "latencies_ns": latencies if spec.mode == "latency" else [],
        "call_latencies_ns": call_latencies if spec.mode == "latency" else None,
        "bytes": size,
        "t_end_ns": t_end,
    }


def _consume_peer(receive: Callable[[], bytes], spec: Spec, control: Connection) -> dict[str, Any]:
    checker = _Checker(spec)
    clock = time.monotonic_ns
    for index in range(spec.warmup):
        checker.check(index, receive())
    control.send_bytes(b"warm")
    latencies = [0] * spec.count
    received = size = t_end = 0
    with _gc_paused():
        if spec.mode == "latency":
            for i in range(spec.count):
                message = receive()
                now = clock()
                latencies[i] = now - checker.check(spec.warmup + i, message)
                received += 1
        else:
            for i in range(spec.count):
                message = receive()
                checker.check(spec.warmup + i, message)
                size += len(message)
                received += 1
            t_end = clock()
    return {
        "received": received,
        "errors": checker.errors,
        "latencies_ns": latencies if spec.mode == "latency" else [],
        "call_latencies_ns": None,
        "bytes": size,
        "t_end_ns": t_end,
    }


def _consume_floor(wake: int, ack: int, spec: Spec, control: Connection) -> dict[str, Any]:
    """The floor: one blocking `eventfd_read` per frame, latency = clock - value read, then an acknowledgement."""
    read = os.eventfd_read
    write = os.eventfd_write
    clock = time.monotonic_ns
    total = spec.warmup + spec.count
    values = [0] * total
    for index in range(spec.warmup):
        values[index] = read(wake)
        write(ack, 1)
    control.send_bytes(b"warm")
    latencies = [0] * spec.count
    received = 0
    with _gc_paused():
        for i in range(spec.count):
            value = read(wake)
            now = clock()
            latencies[i] = now - value
            values[spec.warmup + i] = value
            received += 1
            write(ack, 1)
    errors: list[str] = []
    for index in range(1, total):
        if values[index] <= values[index - 1] and len(errors) < MAX_ERRORS:
            errors.append(f"message {index}: timestamp {values[index]} not after {values[index - 1]}")
    added_up = sum(latency <= 0 for latency in latencies)  # a sum of several timestamps lies in the future
    if added_up:
        errors.append(f"{added_up} values read lie in the future: wake-ups added up in the eventfd")
    return {
        "received": received,
        "errors": errors,
        "latencies_ns": latencies,
        "call_latencies_ns": None,
        "bytes": 0,
        "t_end_ns": 0,
    }


def _floor_consumer_main(argv: Sequence[str]) -> None:
    spec = Spec(**json.loads(argv[0]))
    wake, ack, control_fd = (int(fd) for fd in argv[1:4])
    control = Connection(control_fd, readable=False)
    control.send_bytes(b"ready")
    result = _consume_floor(wake, ack, spec, control)
    control.send_bytes(json.dumps(result).encode())
    control.close()
    os.close(wake)
    os.close(ack)


def _ring_consumer_main(argv: Sequence[str]) -> None:
    spec = Spec(**json.loads(argv[0]))
    segment, data_ready, space_ready, control_fd = (int(fd) for fd in argv[1:5])
    control = Connection(control_fd, readable=False)
    ring = nb.Ring.attach(segment, data_ready, space_ready)
    control.send_bytes(b"ready")
    result = _consume_ring(ring, spec, control)
    control.send_bytes(json.dumps(result).encode())
    control.close()
    ring.close()


def _peer_consumer_main(transport: Transport, channel: Any, control: Connection, spec: Spec) -> None:
    """The `multiprocessing` child: `channel` is the queue or the receiving end of the pipe."""
    receive: Callable[[], bytes]
    if transport == "mp.Queue":
        receive = channel.get
    elif transport == "mp.Pipe":
        receive = channel.recv_bytes
    else:
        receive = functools.partial(channel.get, timeout=FIFO_TIMEOUT)
    control.send_bytes(b"ready")
    result = _consume_peer(receive, spec, control)
    control.send_bytes(json.dumps(result).encode())
    control.close()


# ---------------------------------------------------------------------------------------------------------------
# Producer side


def _expect(control: Connection, what: bytes, timeout: float = CONTROL_TIMEOUT) -> None:
    got = _receive(control, timeout)
    if got != what:
        raise BenchError(f"consumer sent {got[:80]!r}, expected {what!r}")


def _receive(control: Connection, timeout: float = CONTROL_TIMEOUT) -> bytes:
    try:
        if not control.poll(timeout):
            raise BenchError(f"no word from the consumer in {timeout} s")
        return control.recv_bytes()
    except EOFError:
        raise BenchError("the consumer exited early (see its traceback above)") from None


@contextlib.contextmanager
def _consumer(
    transport: Transport, spec: Spec, capacity: int
) -> Iterator[tuple[Callable[[bytes], object], Connection]]:
    """Starts the consumer of `transport`, waits until it is ready; yields the send function and control pipe."""
    if transport == "ring":
        with _ring_consumer(spec, capacity) as started:
            yield started
    else:
        with _peer_consumer(transport, spec, capacity) as started:
            yield started


@contextlib.contextmanager
def _ring_consumer(spec: Spec, capacity: int) -> Iterator[tuple[Callable[[bytes], object], Connection]]:
    ring = nb.Ring.create(capacity, name=f"bench-{spec.mode}")
    control_r, control_w = os.pipe()
    control = Connection(control_r, writable=False)
    fds = (*ring.fds(), control_w)
    try:
        args = [sys.executable, os.path.abspath(__file__), "ring-consumer", json.dumps(asdict(spec)), *map(str, fds)]
        process = subprocess.Popen(args, pass_fds=fds)
    except BaseException:
        os.close(control_w)
        control.close()
        ring.close()
        raise
    os.close(control_w)
    try:
        _expect(control, b"ready")
        yield functools.partial(ring.write, KIND, timeout=None), control
    finally:
        ring.close()
        control.close()
        try:
            process.wait(timeout=CONTROL_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.returncode != 0:
        raise BenchError(f"the ring consumer exited with status {process.returncode}")


@contextlib.contextmanager
def _floor_consumer(spec: Spec) -> Iterator[tuple[Callable[[], None], Connection]]:
    """Starts the floor's consumer, waits until it is ready; yields the function that signals one frame (and waits
    for its acknowledgement) and the control pipe."""
    wake = os.eventfd(0)  # blocking: the consumer sleeps in eventfd_read
    ack = os.eventfd(0)
    control_r, control_w = os.pipe()
    control = Connection(control_r, writable=False)
    fds = (wake, ack, control_w)
    try:
        args = [sys.executable, os.path.abspath(__file__), "floor-consumer", json.dumps(asdict(spec)), *map(str, fds)]
        process = subprocess.Popen(args, pass_fds=fds)
    except BaseException:
        for fd in fds:
            os.close(fd)
        control.close()
        raise
    os.close(control_w)
    poller = select.poll()
    poller.register(ack, select.POLLIN)
    poller.register(control_r, select.POLLIN)  # readable or hung up before the acknowledgement: the consumer failed
    write = os.eventfd_write
    clock = time.monotonic_ns
    timeout_ms = round(CONTROL_TIMEOUT * 1000)

    def signal() -> None:
        write(wake, clock())
        ready = poller.poll(timeout_ms)
        if not any(fd == ack for fd, _ in ready):
            raise BenchError("the floor's consumer exited early (see its traceback above) or did not acknowledge")
        os.eventfd_read(ack)

    ok = False
    try:
        _expect(control, b"ready")
        yield signal, control
        ok = True
    finally:
        control.close()
        if not ok:
            process.kill()  # it may be blocked in eventfd_read for good
        try:
            process.wait(timeout=CONTROL_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        os.close(wake)
        os.close(ack)
    if process.returncode != 0:
        raise BenchError(f"the floor's consumer exited with status {process.returncode}")


@contextlib.contextmanager
def _peer_consumer(
    transport: Transport, spec: Spec, capacity: int
) -> Iterator[tuple[Callable[[bytes], object], Connection]]:
    control, control_w = _SPAWN.Pipe(duplex=False)
    send: Callable[[bytes], object]
    child_end: Connection | None = None
    queue: Any = None
    sender: Connection | None = None
    if transport == "mp.Queue":
        queue = _SPAWN.Queue()
        channel: Any = queue
        send = queue.put
    elif transport == "mp.Pipe":
        child_end, sender = _SPAWN.Pipe(duplex=False)
        channel = child_end
        send = sender.send_bytes
    else:
        channel = faster_fifo.Queue(max_size_bytes=capacity)
        send = functools.partial(channel.put, timeout=FIFO_TIMEOUT)
    process = _SPAWN.Process(target=_peer_consumer_main, args=(transport, channel, control_w, spec), daemon=True)
    ok = False
    try:
        process.start()
        control_w.close()
        if child_end is not None:
            child_end.close()
        _expect(control, b"ready")
        yield send, control
        ok = True
    finally:
        control.close()
        process.join(CONTROL_TIMEOUT if ok else 1.0)
        if process.exitcode is None:
            process.kill()
            process.join()
        if queue is not None:
            queue.close()
            if ok:
                queue.join_thread()
            else:
                queue.cancel_join_thread()
        if sender is not None:
            sender.close()
        process.close()


def _send_paced(send: Callable[[bytes], object], first: int, count: int, tail: bytes, rate_hz: float | None) -> None:
    pack = HEADER.pack
    clock = time.monotonic_ns
    if rate_hz is None:
        for seq in range(first, first + count):
            send(pack(seq, clock()) + tail)
        return
    period_ns = round(1e9 / rate_hz)
    due = clock()
    for seq in range(first, first + count):
        due += period_ns
        delay = due - clock()
        if delay > 0:
            time.sleep(delay / 1e9)
        send(pack(seq, clock()) + tail)


def _signal_paced(signal: Callable[[], None], count: int, rate_hz: float) -> None:
    period_ns = round(1e9 / rate_hz)
    clock = time.monotonic_ns
    due = clock()
    for _ in range(count):
        due += period_ns
        delay = due - clock()
        if delay > 0:
            time.sleep(delay / 1e9)
        signal()


def measure_latency(
    transport: Transport, frame_bytes: int, frames: int, rate_hz: float | None, warmup: int = 50
) -> LatencyResult:
    """One-way latency of `frames` frames of `frame_bytes` bytes, at `rate_hz` frames per second (None: flat out).

    The floor (`FLOOR`) sends no payload (`frame_bytes` only labels the run) and runs paced only."""
    if frame_bytes < HEADER.size or frames < 1 or warmup < 0:
        raise ValueError("frame_bytes must be >= 16, frames >= 1, warmup >= 0")
    spec = Spec(mode="latency", size=frame_bytes, warmup=warmup, count=frames)
    if transport == FLOOR:
        if rate_hz is None:
            raise ValueError("the eventfd floor runs paced only")
        with _floor_consumer(spec) as (signal, control):
            _signal_paced(signal, warmup, rate_hz)
            _expect(control, b"warm")
            with _gc_paused():
                _signal_paced(signal, frames, rate_hz)
            result = json.loads(_receive(control))
    else:
        tail = _filler(frame_bytes - HEADER.size)
        with _consumer(transport, spec, LATENCY_CAPACITY) as (send, control):
            _send_paced(send, 0, warmup, tail, rate_hz)
            _expect(control, b"warm")
            with _gc_paused():
                _send_paced(send, warmup, frames, tail, rate_hz)
            result = json.loads(_receive(control))
    return LatencyResult(
        transport=transport,
        frame_bytes=frame_bytes,
        rate_hz=rate_hz,
        frames=frames,
        received=result["received"],
        errors=result["errors"],
        latencies_ns=result["latencies_ns"],
        call_latencies_ns=result["call_latencies_ns"],
    )


def measure_throughput(
    transport: Transport, records: int, warmup: int = 50, record_bytes: int = THROUGHPUT_RECORD_BYTES
) -> ThroughputResult:
    """MB/s for `records` records of `record_bytes` bytes written back to back."""
    if transport == FLOOR:
        raise ValueError("the eventfd floor carries no payload: it has no throughput")
    if record_bytes < HEADER.size or records < 1 or warmup < 0:
        raise ValueError("record_bytes must be >= 16, records >= 1, warmup >= 0")
    spec = Spec(mode="throughput", size=record_bytes, warmup=warmup, count=records)
    pool = _pool(record_bytes)
    with _consumer(transport, spec, THROUGHPUT_CAPACITY) as (send, control):
        for i in range(warmup):
            send(pool[i % THROUGHPUT_POOL])
        _expect(control, b"warm")
        with _gc_paused():
            t_start = time.monotonic_ns()
            for i in range(warmup, warmup + records):
                send(pool[i % THROUGHPUT_POOL])
        result = json.loads(_receive(control))
    return ThroughputResult(
        transport=transport,
        record_bytes=record_bytes,
        records=records,
        received=result["received"],
        bytes_received=result["bytes"],
        elapsed_ns=result["t_end_ns"] - t_start,
        errors=result["errors"],
    )


# ---------------------------------------------------------------------------------------------------------------
# How much to send


@dataclass(frozen=True)
class Counts:
    """How many frames and records each run sends."""

    paced_frames: int
    flat_frames: int
    records: int
    warmup: int


FULL: Final = Counts(paced_frames=1000, flat_frames=20_000, records=2000, warmup=50)
"""`report.py` and `make bench`: 12 paced runs of 1000 frames at 50 frames/s take about 4.5 minutes."""
SMOKE: Final = Counts(paced_frames=20, flat_frames=200, records=50, warmup=5)
"""`pytest benches` with benchmarking disabled: each benchmark once, as a quick end-to-end test."""
ENV_VARS: Final = {
    "paced_frames": "NOVABRIDGE_BENCH_FRAMES",
    "flat_frames": "NOVABRIDGE_BENCH_FRAMES_FLAT",
    "records": "NOVABRIDGE_BENCH_RECORDS",
    "warmup": "NOVABRIDGE_BENCH_WARMUP",
}


def counts_from_env(default: Counts) -> Counts:
    """`default`, with each count the environment sets (`ENV_VARS`) taking its place."""
    values = asdict(default)
    for field_name, var in ENV_VARS.items():
        if raw := os.environ.get(var):
            values[field_name] = int(raw)
    return Counts(**values)


# ---------------------------------------------------------------------------------------------------------------
# pytest-benchmark


class Benchmark(Protocol):
    """The part of pytest-benchmark's `benchmark` fixture the benchmarks use (the fixture itself is untyped)."""

    disabled: bool
    extra_info: dict[str, object]

    group: str | None

    def __call__(self, target: Callable[..., _T], *args: Any) -> _T: ...

    def pedantic(
        self, target: Callable[..., _T], args: tuple[Any, ...] = (), *, rounds: int = 1, iterations: int = 1
    ) -> _T: ...


@dataclass
class Collected:
    """The results of a pytest session's full runs, for the Markdown tables in its terminal summary."""

    counts: Counts
    latency: list[LatencyResult] = field(default_factory=list)
    throughput: list[ThroughputResult] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------------------
# Reporting


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _signed_us(value: float) -> str:
    return ("-" if value < 0 else "+") + _us(abs(value))


def latency_table(results: Sequence[LatencyResult]) -> str:
    """Markdown: one row per transport, frame size and mode (the ring twice: from `Record.t_ns` and from before
    `write()`; the floor, which carries no payload, under the frame size it ran alongside)."""
    lines = [
        "| mode | frame (bytes) | transport | p50 (µs) | p99 (µs) | p99.9 (µs) | max (µs) | frames |",
        "|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        label = TRANSPORT_LABELS[r.transport]
        call = r.call_stats()
        rows = [(label, r.stats())]
        if call is not None:
            rows = [(f"{label} (from `Record.t_ns`)", r.stats()), (f"{label} (from before `write()`)", call)]
        for label, s in rows:
            cells = [r.mode, str(r.frame_bytes), label, _us(s.p50), _us(s.p99), _us(s.p999), _us(s.max), str(r.frames)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def throughput_table(results: Sequence[ThroughputResult]) -> str:
    """Markdown: MB/s per transport."""
    lines = ["| transport | record (bytes) | records | MB/s |", "|---|--:|--:|--:|"]
    for r in results:
        cells = [TRANSPORT_LABELS[r.transport], str(r.record_bytes), str(r.records), f"{r.mb_per_s:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def target_table(results: Sequence[LatencyResult]) -> tuple[str, int, int]:
    """Markdown: the issue's target per mode, frame size and ring clock, with how far the ring's p50 lies above the
    eventfd floor's run alongside it (paced only); also how many rows meet the target, of how many."""
    queues = {(r.mode, r.frame_bytes): r.stats() for r in results if r.transport == "mp.Queue"}
    floors = {(r.mode, r.frame_bytes): r.stats() for r in results if r.transport == FLOOR}
    lines = [
        (
            "| mode | frame (bytes) | ring latency from | ring p50 (µs) | ring p50 - floor p50 (µs) | ring p99 (µs) "
            "| mp.Queue p99 (µs) | mp.Queue p99 / ring p99 | target met |"
        ),
        "|---|--:|---|--:|--:|--:|--:|--:|---|",
    ]
    met = total = 0
    for r in results:
        queue = queues.get((r.mode, r.frame_bytes))
        floor = floors.get((r.mode, r.frame_bytes))
        call = r.call_stats()
        if r.transport != "ring" or queue is None or call is None:
            continue
        for clock, s in (("`Record.t_ns`", r.stats()), ("before `write()`", call)):
            ratio = queue.p99 / s.p99
            misses = [
                name
                for name, ok in (
                    (f"p50 > {TARGET_P50_US:g}", s.p50 <= TARGET_P50_US),
                    (f"p99 > {TARGET_P99_US:g}", s.p99 <= TARGET_P99_US),
                    (f"ratio < {TARGET_P99_RATIO:g}", ratio >= TARGET_P99_RATIO),
                )
                if not ok
            ]
            total += 1
            met += not misses
            verdict = "yes" if not misses else "no: " + ", ".join(misses)
            above = "n/a" if floor is None else _signed_us(s.p50 - floor.p50)
            cells = [r.mode, str(r.frame_bytes), clock, _us(s.p50), above, _us(s.p99), _us(queue.p99), f"{ratio:.1f}x"]
            lines.append("| " + " | ".join([*cells, verdict]) + " |")
    return "\n".join(lines), met, total


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_info() -> str:
    """One line: CPU model, CPU count, kernel, Python and package versions."""
    cpus = len(os.sched_getaffinity(0))
    return (
        f"{_cpu_model()}, {cpus} CPUs (nproc), Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}, novabridge {nb.__version__}, "
        f"faster-fifo {_version('faster-fifo')}"
    )


def render_report(
    latency: Sequence[LatencyResult], throughput: Sequence[ThroughputResult], counts: Counts, command: str
) -> str:
    """The Markdown section of docs/performance.md: machine, method, the three tables, the verdict on the target."""
    method = (
        "producer = the calling process, consumer = a fresh interpreter blocked in `read()`/`get()`/`recv_bytes()`, "
        "neither pinned to a CPU, `multiprocessing` with the spawn context. Latency runs from `time.monotonic_ns()` "
        "read right before the send call to the consumer's read returning; for the ring also from `Record.t_ns` "
        "(stamped inside `write()`). "
        f"Each run sends {counts.warmup} warm-up frames, then {counts.paced_frames} frames at {PACED_RATE_HZ:g} "
        f"frames/s or {counts.flat_frames} flat out; percentiles are nearest-rank. Buffers: ring "
        f"{LATENCY_CAPACITY >> 20} MiB, faster-fifo `max_size_bytes` the same, `multiprocessing.Queue` unbounded, "
        "`multiprocessing.Pipe` the kernel's pipe buffer. "
        f'Floor ("{TRANSPORT_LABELS[FLOOR]}", a bare cross-process wake-up with Python on both ends, which no '
        "blocking transport can beat): no payload, the producer only calls `os.eventfd_write(efd, t)` with "
        "`t = time.monotonic_ns()` read right before, the consumer (a fresh interpreter, like the ring's) blocks in "
        "`os.eventfd_read(efd)` and keeps `time.monotonic_ns()` minus the value read, then acknowledges on a second "
        "eventfd, which the producer waits for before pacing the next frame (an eventfd adds up values not yet "
        f"read). It runs at {PACED_RATE_HZ:g} frames/s only, once alongside each frame size (it sends no frames of "
        "that size), and is left out of the throughput runs and the target."
    )
    parts = [f"- Machine: {machine_info()}\n- Command: `{command}`\n- Method: {method}"]
    if latency:
        parts += ["#### One-way latency", latency_table(latency)]
    if throughput:
        first = throughput[0]
        parts += [
            "#### Throughput",
            (
                f"{first.records} records of {first.record_bytes // 1024} KiB back to back (ring "
                f"{THROUGHPUT_CAPACITY >> 20} MiB, faster-fifo the same). MB/s = payload bytes / time from the "
                "first send to the last read returning, MB = 10^6 bytes."
            ),
            throughput_table(throughput),
        ]
    table, met, total = target_table(latency)
    if total:
        verdict = "met" if met == total else "not met" if met == 0 else "partly met"
        parts += [
            "#### Target",
            (
                "Ring p50 - floor p50: how much the ring's p50 lies above the eventfd floor measured alongside it "
                "(paced runs only; the floor has no flat-out run)."
            ),
            table,
            (
                f"**Target (p50 ≤ {TARGET_P50_US:g} µs, p99 ≤ {TARGET_P99_US:g} µs, p99 at least "
                f"{TARGET_P99_RATIO:g}x lower than `multiprocessing.Queue`): {verdict} ({met} of {total} cases).**"
            ),
        ]
    return "\n\n".join(parts)


if __name__ == "__main__":
    if sys.argv[1:2] == ["ring-consumer"]:
        _ring_consumer_main(sys.argv[2:])
    elif sys.argv[1:2] == ["floor-consumer"]:
        _floor_consumer_main(sys.argv[2:])
    else:
        sys.exit(
            "usage: _latency.py ring-consumer SPEC_JSON SEGMENT_FD DATA_FD SPACE_FD CONTROL_FD\n"
            "       _latency.py floor-consumer SPEC_JSON WAKE_FD ACK_FD CONTROL_FD"
        )
