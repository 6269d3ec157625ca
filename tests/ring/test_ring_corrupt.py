"""Damaged and hostile rings, seen through a second mapping of the shared segment: RingCorrupt, never a crash."""

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import novabridge as nb
import pytest
from support.interpreters import other_version
from support.ring_peers import SpawnPeer

from ring.ring_fuzz import ATTACHER, CHECKSUM, DATA, STATE, fnv1a, mapping, put_u32, reseal

HERE = Path(__file__).resolve().parent


@pytest.fixture
def ring() -> Iterator[nb.Ring]:
    r = nb.Ring.create(4096, name="victim")
    yield r
    r.close()


def _attach_refused(ring: nb.Ring, match: str) -> None:
    with pytest.raises(nb.RingCorrupt, match=match):
        nb.Ring.attach(*ring.fds())


def test_header_layout_is_as_documented(ring: nb.Ring) -> None:
    m = mapping(ring)
    assert m[:8] == b"NBRING\x00\x01"
    assert int.from_bytes(m[8:12], "little") == nb.LAYOUT_VERSION
    assert int.from_bytes(m[12:16], "little") == DATA
    assert int.from_bytes(m[16:24], "little") == 4096
    assert int.from_bytes(m[24:32], "little") == ring.ring_id
    assert int.from_bytes(m[40:44], "little") == os.getpid()
    assert int.from_bytes(m[44:48], "little") == len("victim")
    assert m[48:54] == b"victim"
    assert int.from_bytes(m[CHECKSUM : CHECKSUM + 8], "little") == fnv1a(m[:96])
    assert int.from_bytes(m[STATE : STATE + 4], "little") == 1
    assert int.from_bytes(m[ATTACHER : ATTACHER + 4], "little") == 0
    ring.write(1, b"abc")
    assert int.from_bytes(m[128:136], "little") == 32  # tail: one framed record
    assert int.from_bytes(m[256:264], "little") == 0  # head
    assert int.from_bytes(m[DATA : DATA + 4], "little") == 3
    assert m[DATA + 24 : DATA + 27] == b"abc"
    ring.read_nowait()
    assert int.from_bytes(m[256:264], "little") == 32
    m.close()


def test_bad_magic(ring: nb.Ring) -> None:
    m = mapping(ring)
    m[0:6] = b"XXRING"
    _attach_refused(ring, "magic")
    reseal(m)
    _attach_refused(ring, "magic")
    m.close()


@pytest.mark.parametrize("version", [0, 2, 0xFFFFFFFF])
def test_wrong_layout_version(ring: nb.Ring, version: int) -> None:
    m = mapping(ring)
    put_u32(m, 8, version)
    _attach_refused(ring, "version")
    reseal(m)
    _attach_refused(ring, "version")
    m.close()


@pytest.mark.parametrize("offset", [0x60, 0x61, 0x67])
def test_checksum_mismatch(ring: nb.Ring, offset: int) -> None:
    m = mapping(ring)
    m[offset] ^= 0x01
    _attach_refused(ring, "checksum")
    m.close()


@pytest.mark.parametrize("offset", [16, 24, 40, 48, 95])
def test_identity_change_without_checksum(ring: nb.Ring, offset: int) -> None:
    m = mapping(ring)
    m[offset] ^= 0x80
    _attach_refused(ring, "checksum")
    m.close()


def test_state_init_never_completed(ring: nb.Ring) -> None:
    m = mapping(ring)
    put_u32(m, STATE, 0)
    _attach_refused(ring, "never completed")
    m.close()


def test_unknown_state(ring: nb.Ring) -> None:
    m = mapping(ring)
    put_u32(m, STATE, 7)
    _attach_refused(ring, "state")
    m.close()


def test_closed_state_gives_ring_closed(ring: nb.Ring) -> None:
    m = mapping(ring)
    put_u32(m, STATE, 2)
    with pytest.raises(nb.RingClosed):
        nb.Ring.attach(*ring.fds())
    m.close()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ((12, 4), 512, "data offset"),
        ((16, 8), 12288, "power of two"),
        ((16, 8), 2048, "power of two"),
        ((16, 8), 1 << 31, "power of two"),
        ((16, 8), 8192, "does not match"),
        ((44, 4), 49, "name length"),
        ((44, 4), 0xFFFFFFFF, "name length"),
    ],
)
def test_resealed_identity_with_bad_field(ring: nb.Ring, field: tuple[int, int], value: int, match: str) -> None:
    m = mapping(ring)
    at, width = field
    m[at : at + width] = value.to_bytes(width, "little")
    reseal(m)
    _attach_refused(ring, match)
    m.close()


def test_name_not_utf8(ring: nb.Ring) -> None:
    m = mapping(ring)
    m[48:50] = b"\xff\xfe"
    reseal(m)
    _attach_refused(ring, "UTF-8")
    m.close()


def test_refused_attach_leaves_ring_usable(ring: nb.Ring) -> None:
    m = mapping(ring)
    original = bytes(m[:96])
    m[0] = ord("X")
    _attach_refused(ring, "magic")
    assert ring.peer_pid == 0
    m[:96] = original
    with nb.Ring.attach(*ring.fds()) as peer:
        peer.write(1, b"fine")
        record = ring.read_nowait()
        assert record is not None
        assert record.payload == b"fine"
    m.close()


# ---------------------------------------------------------------------------------------------------------
# The wrong kinds of descriptor


def test_regular_file_as_segment(ring: nb.Ring) -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"\0" * (DATA + 4096))
        f.flush()
        _, data, space = ring.fds()
        with pytest.raises(nb.RingCorrupt, match="memfd"):
            nb.Ring.attach(f.fileno(), data, space)


def test_pipe_as_segment(ring: nb.Ring) -> None:
    r, w = os.pipe()
    try:
        _, data, space = ring.fds()
        with pytest.raises(nb.RingCorrupt):
            nb.Ring.attach(r, data, space)
        with pytest.raises(nb.RingCorrupt):
            nb.Ring.attach(w, data, space)
    finally:
        os.close(r)
        os.close(w)


def test_unsealed_memfd_as_segment(ring: nb.Ring) -> None:
    fd = os.memfd_create("fake", os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, DATA + 4096)
        os.pwrite(fd, os.pread(ring.fds()[0], DATA, 0), 0)
        _, data, space = ring.fds()
        with pytest.raises(nb.RingCorrupt, match="sealed"):
            nb.Ring.attach(fd, data, space)
    finally:
        os.close(fd)


def test_sealed_memfd_too_small(ring: nb.Ring) -> None:
    import fcntl

    fd = os.memfd_create("tiny", os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, 1024)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW)
        _, data, space = ring.fds()
        with pytest.raises(nb.RingCorrupt, match="too small"):
            nb.Ring.attach(fd, data, space)
    finally:
        os.close(fd)


def _non_eventfds() -> list[tuple[str, Callable[[], tuple[int, list[int]]]]]:
    def pipe() -> tuple[int, list[int]]:
        r, w = os.pipe()
        return r, [r, w]

    def regular() -> tuple[int, list[int]]:
        fd, path = tempfile.mkstemp()
        os.unlink(path)
        return fd, [fd]

    def sock() -> tuple[int, list[int]]:
        a, b = socket.socketpair()
        fa, fb = a.detach(), b.detach()
        return fa, [fa, fb]

    def memfd() -> tuple[int, list[int]]:
        fd = os.memfd_create("x")
        return fd, [fd]

    return [("pipe", pipe), ("regular", regular), ("socket", sock), ("memfd", memfd)]


@pytest.mark.parametrize(("kind", "make"), _non_eventfds(), ids=[k for k, _ in _non_eventfds()])
@pytest.mark.parametrize("position", [1, 2])
def test_non_eventfd_as_eventfd(
    ring: nb.Ring, kind: str, make: Callable[[], tuple[int, list[int]]], position: int
) -> None:
    fd, to_close = make()
    try:
        fds = list(ring.fds())
        fds[position] = fd
        with pytest.raises(nb.RingCorrupt, match="eventfd"):
            nb.Ring.attach(*fds)
    finally:
        for f in to_close:
            os.close(f)


def test_segment_as_eventfd(ring: nb.Ring) -> None:
    seg, data, _ = ring.fds()
    with pytest.raises(nb.RingCorrupt, match="eventfd"):
        nb.Ring.attach(seg, data, seg)


def test_failed_attach_in_another_process_does_not_claim_the_ring(ring: nb.Ring, spawn_peer: SpawnPeer) -> None:
    """A process whose attach is refused (here: a pipe instead of an eventfd) must not become the peer."""
    r, w = os.pipe()
    try:
        seg, _, space = ring.fds()
        bad = spawn_peer("attach", None, version=other_version(), fds=(seg, r, space))
        assert bad.expect("Ring") == "RingCorrupt"
        code, stderr = bad.finish()
        assert code == 0, stderr
    finally:
        os.close(r)
        os.close(w)
    assert ring.peer_pid == 0, f"the refused process {bad.pid} became the ring's peer"
    good = spawn_peer("attach", ring, version=other_version())
    assert good.expect("attached").startswith("attached")
    good.finish()


# ---------------------------------------------------------------------------------------------------------
# Hostile indices and lengths, in a child process (a crash must not take pytest down)


def _isolated(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, str(HERE / "ring_fuzz.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=50,
        cwd=str(HERE),
    )
    assert result.returncode == 0, f"exit code {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stdout.rstrip().endswith("ok"), result.stdout


def test_tail_beyond_head_plus_capacity_is_corrupt() -> None:
    _isolated("tail_beyond_capacity")


def test_tail_behind_head_is_corrupt() -> None:
    _isolated("tail_behind_head")


def test_record_length_beyond_published_data_is_corrupt() -> None:
    _isolated("length_field_too_large")


def test_wrap_marker_beyond_tail_is_corrupt() -> None:
    _isolated("wrap_marker_beyond_tail")


def test_head_ahead_of_tail_makes_write_corrupt() -> None:
    _isolated("head_ahead_of_tail")


def test_handle_attached_to_hostile_indices_raises_ring_errors_not_panics() -> None:
    _isolated("fresh_handle_hostile_indices")


def test_unaligned_indices_are_corrupt_and_never_written_past_the_segment() -> None:
    _isolated("unaligned_indices")


def test_random_garbage_headers_never_crash() -> None:
    _isolated("garbage_headers", "12345", "200")


def test_random_garbage_indices_with_writes_only_raise_ring_errors() -> None:
    _isolated("garbage_indices_with_writes", "777", "200")
