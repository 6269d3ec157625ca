"""Hostile-header scenarios of the ring, run in a child process so that a crash cannot take pytest down.

Usage: `python ring_fuzz.py SCENARIO [ARGS...]`. A scenario exits 0 when the ring behaved (an AssertionError
or any unexpected exception exits non-zero with a traceback on stderr, and a crash by a signal). The helpers
here poke the shared header through a second mapping of the ring's memfd, as a hostile peer would.
"""

import contextlib
import ctypes
import functools
import mmap
import os
import random
import struct
import sys
from collections.abc import Callable

import novabridge as nb

DATA = 384
IDENTITY_LEN = 96
CHECKSUM = 96
STATE = 104
ATTACHER = 108
TAIL = 128
HEAD = 256
U64_MAX = (1 << 64) - 1


def fnv1a(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & U64_MAX
    return h


def mapping(ring: nb.Ring) -> mmap.mmap:
    """A second shared mapping of the ring's whole segment (header and data)."""
    fd = os.dup(ring.fds()[0])
    try:
        return mmap.mmap(fd, DATA + ring.capacity)
    finally:
        os.close(fd)


def put_u32(m: mmap.mmap, offset: int, value: int) -> None:
    struct.pack_into("<I", m, offset, value)


def put_u64(m: mmap.mmap, offset: int, value: int) -> None:
    struct.pack_into("<Q", m, offset, value)


def get_u64(m: mmap.mmap, offset: int) -> int:
    value: int = struct.unpack_from("<Q", m, offset)[0]
    return value


def reseal(m: mmap.mmap) -> None:
    """Recomputes the identity checksum, so that only the field changed is wrong."""
    put_u64(m, CHECKSUM, fnv1a(bytes(m[:IDENTITY_LEN])))


def attach_or_error(ring: nb.Ring) -> nb.Ring | None:
    """Attaches in this process; None when the ring refused with one of the errors a bad header may give."""
    try:
        return nb.Ring.attach(*ring.fds())
    except (nb.RingCorrupt, nb.RingClosed, nb.RingAlreadyAttached):
        return None


def exercise(handle: nb.Ring, *, write: bool) -> None:
    """Calls every operation; each may succeed or raise a ring error, nothing else."""
    ops: list[Callable[[], object]] = [handle.read_nowait, lambda: handle.read(timeout=0.001), handle.skip]
    ops.append(lambda: handle.skip(1))
    if write:
        ops += [lambda: handle.write(1, b"x" * 40), lambda: handle.write(2, b"y" * 2000), lambda: handle.write(3, b"")]
    for _ in range(3):
        for op in ops:
            with contextlib.suppress(nb.RingError):
                op()
    stats = handle.stats()
    assert 0 <= stats.fill_bytes <= handle.capacity


def corrupt_message(op: Callable[[], object], what: str) -> str:
    """Runs `op`, which must raise RingCorrupt; returns the message."""
    try:
        result = op()
    except nb.RingCorrupt as err:
        return str(err)
    raise AssertionError(f"{what} was accepted (got {result!r})")


# ---------------------------------------------------------------------------------------------------------
# Scenarios


def tail_beyond_capacity() -> None:
    with nb.Ring.create(4096) as ring:
        ring.write(1, b"hello")
        m = mapping(ring)
        put_u64(m, TAIL, 4096 + 8 + 32)  # head is 0: more than a whole ring published
        for op in (ring.read_nowait, lambda: ring.read(timeout=0.05), lambda: ring.read(timeout=None), ring.skip):
            message = corrupt_message(op, "a tail beyond head + capacity")
            assert "producer index" in message, message
        assert ring.stats().fill_bytes <= 4096
        # An unaligned tail within range is refused too.
        put_u64(m, TAIL, 37)
        corrupt_message(ring.read_nowait, "an unaligned tail")
        m.close()


def tail_behind_head() -> None:
    with nb.Ring.create(4096) as ring:
        ring.write(1, b"a")
        assert ring.read_nowait() is not None
        m = mapping(ring)
        put_u64(m, TAIL, 0)  # head is 32
        corrupt_message(ring.read_nowait, "a tail behind the head")
        m.close()


def length_field_too_large() -> None:
    for bad_len in (5000, 0x7FFFFFFF, 100, 9):
        with nb.Ring.create(4096) as ring:
            ring.write(1, b"hello")  # framed: 32 bytes published
            m = mapping(ring)
            assert struct.unpack_from("<I", m, DATA)[0] == 5
            put_u32(m, DATA, bad_len)
            message = corrupt_message(ring.read_nowait, f"a record length of {bad_len} over 32 published bytes")
            assert "record length" in message, message
            corrupt_message(lambda: ring.read(timeout=0.05), f"read() of a record length of {bad_len}")
            m.close()


def wrap_marker_beyond_tail() -> None:
    with nb.Ring.create(4096) as ring:
        ring.write(1, b"hello")
        m = mapping(ring)
        put_u32(m, DATA, 0xFFFFFFFF)  # "wrap here" at offset 0, but only 32 bytes are published
        message = corrupt_message(ring.read_nowait, "a wrap marker beyond the tail")
        assert "wrap" in message, message
        m.close()


def head_ahead_of_tail() -> None:
    with nb.Ring.create(4096) as ring:
        while True:
            try:
                ring.write(1, b"z" * 100)
            except nb.RingFull:
                break
        m = mapping(ring)
        tail = get_u64(m, TAIL)
        for head in (tail + 64, U64_MAX - 7, tail + 4096 * 16):
            put_u64(m, HEAD, head)
            for timeout in (0.0, 0.05):
                write = functools.partial(ring.write, 1, b"z" * 100, timeout=timeout)
                message = corrupt_message(write, f"a head of {head} ahead of the tail {tail}")
                assert "consumer index" in message, message
        # An unaligned head inside the valid range is refused as well.
        put_u64(m, HEAD, 3)
        corrupt_message(lambda: ring.write(1, b"z" * 100), "an unaligned head")
        m.close()


def fresh_handle_hostile_indices() -> None:
    """Hostile indices give ring errors, never panics: whether they are there before the peer attaches (the attach
    may refuse them) or are written after it attached (every operation must refuse them)."""
    cases = [(0, 8), (8192, 0), (U64_MAX - 7, U64_MAX - 7), (U64_MAX - 7, 0), (0, U64_MAX - 7), (4096, 0)]
    failures = []
    attached_with_hostile_indices = 0
    for poke_before_attach in (True, False):
        for tail, head in cases:
            ring = nb.Ring.create(4096)
            m = mapping(ring)
            if poke_before_attach:
                put_u64(m, TAIL, tail)
                put_u64(m, HEAD, head)
                try:
                    handle = nb.Ring.attach(*ring.fds())
                except nb.RingCorrupt:
                    m.close()
                    ring.close()
                    continue
                attached_with_hostile_indices += 1
            else:
                handle = nb.Ring.attach(*ring.fds())
                put_u64(m, TAIL, tail)
                put_u64(m, HEAD, head)
            ops: list[tuple[str, Callable[[], object]]] = [
                ("write", functools.partial(handle.write, 1, b"x" * 40)),
                ("write-big", functools.partial(handle.write, 1, b"x" * 2000)),
                ("read_nowait", handle.read_nowait),
                ("skip", handle.skip),
            ]
            for name, op in ops:
                try:
                    op()
                except nb.RingError:
                    pass
                except BaseException as err:  # noqa: BLE001 (a panic is what this scenario looks for)
                    failures.append(
                        f"tail={tail} head={head} {name}: {type(err).__module__}.{type(err).__name__}: {err}"
                    )
            handle.close()
            m.close()
            ring.close()
    assert not failures, "\n".join(failures)
    # (4096, 0) is a consistent full ring of garbage: the attach accepts it, and the reads must refuse the garbage.
    assert attached_with_hostile_indices >= 1


def _libc_map(fd: int, length: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr is not None
    assert addr != ctypes.c_void_p(-1).value
    return int(addr)


def unaligned_indices() -> None:
    """Unaligned head and tail (e.g. 4093) are not what any producer publishes: expect RingCorrupt.

    The write below must not touch memory past the data area; whether it did is reported in the message,
    read through a raw mapping of the segment's last page (whose bytes past the end of the memfd are shared).
    """
    problems = []
    for index in (4093, 4095, 4097, 3):
        ring = nb.Ring.create(4096)
        m = mapping(ring)
        put_u64(m, TAIL, index)
        put_u64(m, HEAD, index)
        end = DATA + 4096  # the segment's length; the page it ends in extends to 8192
        raw = _libc_map(ring.fds()[0], 8192)
        past_end_before = ctypes.string_at(raw + end, 8)
        try:
            handle = nb.Ring.attach(*ring.fds())  # refused outright is right; then also poke an attached handle
        except nb.RingCorrupt:
            put_u64(m, TAIL, 0)
            put_u64(m, HEAD, 0)
            handle = nb.Ring.attach(*ring.fds())
            put_u64(m, TAIL, index)
            put_u64(m, HEAD, index)
        try:
            handle.write(1, b"w" * 40)
        except nb.RingCorrupt:
            pass
        else:
            past_end_after = ctypes.string_at(raw + end, 8)
            overwritten = past_end_before != past_end_after
            problems.append(
                f"tail=head={index}: write accepted the unaligned index"
                + (f" and wrote past the segment end: {past_end_after.hex()}" if overwritten else "")
            )
        handle.close()
        m.close()
        ring.close()
    assert not problems, "\n".join(problems)


def garbage_headers(seed: int, trials: int) -> None:
    """Random bytes over the header region: attach succeeds or refuses, and reads never crash."""
    rng = random.Random(seed)
    outcomes = {"attached": 0, "refused": 0}
    for trial in range(trials):
        ring = nb.Ring.create(4096, name="fuzz")
        m = mapping(ring)
        mode = trial % 4
        if mode == 0:  # everything random
            m[:DATA] = rng.randbytes(DATA)
        elif mode == 1:  # identity line damaged a few bytes at a time, checksum recomputed half the time
            for _ in range(rng.randint(1, 4)):
                at = rng.randrange(0, IDENTITY_LEN)
                m[at] = rng.randrange(256)
            if rng.random() < 0.5:
                reseal(m)
        elif mode == 2:  # valid identity, random state, attacher and index lines
            put_u32(m, STATE, rng.choice([0, 1, 1, 1, 2, rng.randrange(1 << 32)]))
            put_u32(m, ATTACHER, rng.choice([0, 0, os.getpid(), rng.randrange(1 << 32)]))
            m[TAIL:DATA] = rng.randbytes(DATA - TAIL)
        else:  # valid identity and plausible-looking indices over random data
            head = rng.randrange(0, 1 << 16) & ~7
            put_u64(m, HEAD, head)
            put_u64(m, TAIL, head + (rng.randrange(0, 4096 + 64) & ~7))
            m[DATA:] = rng.randbytes(4096)
        handle = attach_or_error(ring)
        if handle is None:
            outcomes["refused"] += 1
        else:
            outcomes["attached"] += 1
            exercise(handle, write=False)
            handle.close()
        m.close()
        ring.close()
    print(outcomes, flush=True)
    assert outcomes["refused"] > 0
    assert outcomes["attached"] > 0


def garbage_indices_with_writes(seed: int, trials: int) -> None:
    """Valid identity, random producer/consumer lines and data: every operation, writes included, either
    works or raises a ring error (never a panic or a crash)."""
    rng = random.Random(seed)
    interesting = [0, 8, 4088, 4096, 4104, 8192, 1 << 32, U64_MAX - 7, U64_MAX, 4093, 3]
    failures = []
    refused = 0
    for trial in range(trials):
        ring = nb.Ring.create(4096)
        m = mapping(ring)
        # Half the trials damage the lines before the peer attaches (the attach may refuse), half after.
        handle = nb.Ring.attach(*ring.fds()) if trial % 4 >= 2 else None
        if trial % 2 == 0:
            m[TAIL:DATA] = rng.randbytes(DATA - TAIL)
        else:
            put_u64(m, TAIL, (rng.choice(interesting) + rng.choice([0, 0, 8, 64])) & U64_MAX)
            put_u64(m, HEAD, rng.choice(interesting))
        m[DATA:] = rng.randbytes(4096)
        tail, head = get_u64(m, TAIL), get_u64(m, HEAD)
        try:
            if handle is None:
                try:
                    handle = nb.Ring.attach(*ring.fds())
                except nb.RingCorrupt:
                    refused += 1
            if handle is not None:
                exercise(handle, write=True)
        except BaseException as err:  # noqa: BLE001 (a panic is what this scenario looks for)
            failures.append(f"trial {trial} tail={tail} head={head}: {type(err).__name__}: {err}")
        if handle is not None:
            handle.close()
        m.close()
        ring.close()
    assert not failures, f"{len(failures)} of {trials} trials failed:\n" + "\n".join(failures[:10])
    assert refused < trials // 2, "the trials that damage an attached handle must all reach the operations"


SCENARIOS: dict[str, Callable[[], None]] = {
    "tail_beyond_capacity": tail_beyond_capacity,
    "tail_behind_head": tail_behind_head,
    "length_field_too_large": length_field_too_large,
    "wrap_marker_beyond_tail": wrap_marker_beyond_tail,
    "head_ahead_of_tail": head_ahead_of_tail,
    "fresh_handle_hostile_indices": fresh_handle_hostile_indices,
    "unaligned_indices": unaligned_indices,
}


if __name__ == "__main__":
    name = sys.argv[1]
    if name == "garbage_headers":
        garbage_headers(int(sys.argv[2]), int(sys.argv[3]))
    elif name == "garbage_indices_with_writes":
        garbage_indices_with_writes(int(sys.argv[2]), int(sys.argv[3]))
    else:
        SCENARIOS[name]()
    print("ok", flush=True)
