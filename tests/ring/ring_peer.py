"""The other process of the ring tests: attaches to a ring from inherited descriptors and plays one role.

Usage: `python ring_peer.py ROLE SEGMENT_FD DATA_FD SPACE_FD [ARGS...]`, or `python ring_peer.py ROLE` for the
roles that make their own ring (`block-read`, `block-write`). Progress goes to stdout one line at a time
("ready", "done", ...), flushed, so the test can wait for a step. Roles that hold the ring open wait until
their stdin reaches EOF (or until they are killed).

This module also holds the deterministic payload plan that both sides of the stress test regenerate, so it
is imported by the tests as well; it depends only on the standard library and novabridge.
"""

import hashlib
import signal
import sys
import time
from collections.abc import Iterator

import novabridge as nb

BLOCK_LEN = 192 * 1024
MAX_RECORD = 64 * 1024
MASK64 = (1 << 64) - 1


def payload_block(seed: int) -> bytes:
    """A block of pseudo-random bytes that records are sliced from, the same on every Python version."""
    parts = [hashlib.sha256(f"{seed}:{i}".encode()).digest() for i in range(BLOCK_LEN // 32)]
    return b"".join(parts)


def splitmix64(state: int) -> tuple[int, int]:
    """One step of splitmix64: (new state, output)."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return state, z ^ (z >> 31)


def plan(seed: int, count: int) -> Iterator[tuple[int, int, int, int]]:
    """Yields (kind, flags, offset, size) of record 0, 1, ... of the stress test: sizes from 1 B to 64 KiB."""
    state = seed
    for seq in range(count):
        state, x = splitmix64(state)
        size = 1 + (x & 0xFFFF)
        offset = (x >> 16) % (BLOCK_LEN - MAX_RECORD)
        yield 1 + seq % 7, (x >> 48) & 0xFFFF, offset, size


def _say(line: str) -> None:
    print(line, flush=True)


def _hold() -> None:
    """Keeps the process (and its attachment) alive until stdin reaches EOF."""
    sys.stdin.read()


def produce(ring: nb.Ring, seed: int, count: int) -> None:
    block = memoryview(payload_block(seed))
    _say("ready")
    for seq, (kind, flags, offset, size) in enumerate(plan(seed, count)):
        got = ring.write(kind, block[offset : offset + size], flags=flags, timeout=None)
        if got != seq:
            _say(f"error: write returned seq {got}, expected {seq}")
            sys.exit(1)
    ring.close()
    _say("done")


def consume(ring: nb.Ring, seed: int, count: int) -> None:
    block = payload_block(seed)
    _say("ready")
    last_t = 0
    for seq, (kind, flags, offset, size) in enumerate(plan(seed, count)):
        record = ring.read(timeout=30.0)
        if record is None:
            _say(f"error: timed out waiting for record {seq}")
            sys.exit(1)
        if (record.seq, record.kind, record.flags, len(record)) != (seq, kind, flags, size):
            _say(f"error: record {seq}: got seq={record.seq} kind={record.kind} flags={record.flags} len={len(record)}")
            sys.exit(1)
        if record.payload != block[offset : offset + size]:
            _say(f"error: record {seq}: payload differs")
            sys.exit(1)
        if record.t_ns < last_t:
            _say(f"error: record {seq}: t_ns went backwards")
            sys.exit(1)
        last_t = record.t_ns
    try:
        extra = ring.read(timeout=30.0)
    except nb.RingClosed:
        _say(f"ok {count}")
    else:
        _say(f"error: expected RingClosed after the last record, got {extra!r}")
        sys.exit(1)


def main(argv: list[str]) -> None:
    role = argv[1]
    if role.startswith("block-"):
        # Python leaves SIGINT alone when it starts with SIGINT ignored (as in a background job of a
        # non-interactive shell); these roles test Ctrl-C, so install the usual KeyboardInterrupt handler.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if role == "block-read":
        ring = nb.Ring.create(4096)
        _say("ready")
        ring.read()
        _say("error: read returned")
        return
    if role == "block-write":
        ring = nb.Ring.create(4096)
        while True:
            try:
                ring.write(1, b"x" * 1000)
            except nb.RingFull:
                break
        _say("ready")
        ring.write(1, b"x" * 1000, timeout=None)
        _say("error: write returned")
        return

    fds = [int(arg) for arg in argv[2:5]]
    args = argv[5:]
    if role == "attach":
        try:
            ring = nb.Ring.attach(*fds)
        except nb.NovaBridgeError as err:
            _say(type(err).__name__)
        else:
            _say(f"attached peer_pid={ring.peer_pid}")
        return

    ring = nb.Ring.attach(*fds)
    if role == "sleep":
        _say("ready")
        _hold()
    elif role == "produce":
        produce(ring, int(args[0]), int(args[1]))
    elif role == "consume":
        consume(ring, int(args[0]), int(args[1]))
    elif role == "write-close":
        # Writes COUNT records b"rec<i>" (kind 5), closes, and exits at once.
        count = int(args[0])
        _say("ready")
        for i in range(count):
            ring.write(5, f"rec{i}".encode(), timeout=10.0)
        ring.close()
        _say("done")
    elif role == "write-hold":
        # Writes COUNT records b"rec<i>" (kind 5) without closing, then holds the ring open.
        count = int(args[0])
        for i in range(count):
            ring.write(5, f"rec{i}".encode(), timeout=10.0)
        _say("written")
        _hold()
    elif role == "write-after":
        # Sleeps DELAY seconds, writes b"late" (kind 9), then closes if asked, else holds the ring open.
        delay, then = float(args[0]), args[1]
        _say("ready")
        time.sleep(delay)
        ring.write(9, b"late", timeout=5.0)
        _say("written")
        if then == "close":
            ring.close()
        else:
            _hold()
    elif role == "read-until-closed":
        _say("ready")
        payloads = []
        try:
            while True:
                record = ring.read(timeout=20.0)
                if record is None:
                    _say("error: timed out")
                    sys.exit(1)
                payloads.append(record.payload.decode())
        except nb.RingClosed:
            _say(f"read {','.join(payloads)}")
            _say("RingClosed")
    else:
        _say(f"error: unknown role {role}")
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)
