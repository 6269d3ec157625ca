"""The ring's Python API within one process: argument validation, round trips, errors, stats, closing."""

import math
import os
import time

import novabridge as nb
import numpy as np
import pytest
from novabridge import exceptions
from support.ring_peers import fill, framed_len

# ---------------------------------------------------------------------------------------------------------
# create / attach validation


@pytest.mark.parametrize("capacity", [0, 1, 1000, 2048, 4095, 4097, 6000, 12288, (1 << 20) + 4096])
def test_create_rejects_capacity_not_a_power_of_two_in_range(capacity: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        nb.Ring.create(capacity)


def test_create_rejects_capacity_above_1_gib() -> None:
    with pytest.raises(ValueError, match="power of two"):
        nb.Ring.create(nb.MAX_CAPACITY * 2)
    assert nb.MAX_CAPACITY == 1 << 30


def test_create_rejects_capacity_below_4_kib() -> None:
    for capacity in (2048, 1024, 8):
        with pytest.raises(ValueError, match="power of two from 4096"):
            nb.Ring.create(capacity)
    assert nb.MIN_CAPACITY == 4096


def test_create_accepts_power_of_two_capacities() -> None:
    for capacity in (4096, 8192, 1 << 16, 1 << 20):
        with nb.Ring.create(capacity) as ring:
            assert ring.capacity == capacity
            assert ring.max_payload == capacity // 2 - nb.RECORD_HEADER_LEN
            assert ring.stats().capacity == capacity


def test_create_rejects_name_longer_than_48_bytes() -> None:
    assert nb.MAX_NAME_LEN == 48
    with pytest.raises(ValueError, match="name"):
        nb.Ring.create(4096, name="a" * 49)
    # 25 two-byte characters: 25 characters but 50 bytes.
    with pytest.raises(ValueError, match="name"):
        nb.Ring.create(4096, name="é" * 25)
    with nb.Ring.create(4096, name="a" * 48) as ring:
        assert ring.name == "a" * 48
    with nb.Ring.create(4096, name="é" * 24) as ring:
        assert ring.name == "é" * 24


def test_create_rejects_name_with_nul() -> None:
    with pytest.raises(ValueError, match="NUL"):
        nb.Ring.create(4096, name="up\0link")


@pytest.mark.parametrize("count", [0, 1, 2, 4, 6])
def test_attach_rejects_wrong_number_of_fds(ring: nb.Ring, count: int) -> None:
    fds = (ring.fds() * 2)[:count]
    with pytest.raises(ValueError, match="3 descriptors"):
        nb.Ring.attach(*fds)


@pytest.mark.parametrize("position", [0, 1, 2])
def test_attach_rejects_negative_fd(ring: nb.Ring, position: int) -> None:
    fds = list(ring.fds())
    fds[position] = -1
    with pytest.raises(ValueError, match=">= 0"):
        nb.Ring.attach(*fds)


def test_attach_with_closed_fd_raises_oserror_or_corrupt(ring: nb.Ring) -> None:
    seg, data, space = ring.fds()
    dup = os.dup(data)
    os.close(dup)
    for fds in ((dup, data, space), (seg, dup, space), (seg, data, dup)):
        with pytest.raises((OSError, nb.RingCorrupt)):
            nb.Ring.attach(*fds)


def test_attach_with_bogus_fd_numbers_raises_oserror_or_corrupt() -> None:
    with pytest.raises((OSError, nb.RingCorrupt)):
        nb.Ring.attach(100_000, 100_001, 100_002)


def test_attach_with_non_int_fd_raises_type_error(ring: nb.Ring) -> None:
    seg, data, _ = ring.fds()
    with pytest.raises(TypeError):
        nb.Ring.attach(seg, data, "5")  # type: ignore[arg-type]


def test_attach_same_process_sees_same_ring(ring: nb.Ring) -> None:
    with nb.Ring.attach(*ring.fds()) as peer:
        assert peer.ring_id == ring.ring_id
        assert peer.name == ring.name == "test"
        assert peer.capacity == ring.capacity
        assert peer.creator_pid == ring.creator_pid == os.getpid()
        assert ring.peer_pid == os.getpid()
        ring.write(3, b"across handles")
        record = peer.read(timeout=1.0)
        assert record is not None
        assert (record.kind, record.payload) == (3, b"across handles")


# ---------------------------------------------------------------------------------------------------------
# write / read round trips


def test_bytes_round_trip(ring: nb.Ring) -> None:
    assert ring.write(7, b"hello", flags=0xABCD) == 0
    record = ring.read_nowait()
    assert record is not None
    assert (record.kind, record.flags, record.seq, record.payload, len(record)) == (7, 0xABCD, 0, b"hello", 5)
    assert isinstance(record.payload, bytes)


def test_empty_payload_round_trip(ring: nb.Ring) -> None:
    ring.write(1, b"")
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == b""
    assert len(record) == 0


def test_bytearray_round_trip(ring: nb.Ring) -> None:
    data = bytearray(b"\x00\x01\xff" * 100)
    ring.write(2, data)
    data[0] = 99  # the ring holds a copy
    record = ring.read(timeout=0)
    assert record is not None
    assert record.payload == b"\x00\x01\xff" * 100


def test_memoryview_round_trip(ring: nb.Ring) -> None:
    source = bytes(range(256))
    ring.write(3, memoryview(source))
    ring.write(3, memoryview(source)[10:20])
    first, second = ring.read_nowait(), ring.read_nowait()
    assert first is not None
    assert second is not None
    assert first.payload == source
    assert second.payload == source[10:20]


def test_numpy_int16_round_trip(ring: nb.Ring) -> None:
    frame = (np.sin(np.arange(320) / 5.0) * 8000).astype(np.int16)
    ring.write(nb.RecordKind.AUDIO, frame)
    record = ring.read_nowait()
    assert record is not None
    assert record.kind == nb.RecordKind.AUDIO
    assert record.payload == frame.tobytes()
    assert len(record) == 640
    np.testing.assert_array_equal(np.frombuffer(record.payload, dtype=np.int16), frame)


def test_numpy_float32_round_trip(ring: nb.Ring) -> None:
    arr = np.linspace(-1.0, 1.0, 301, dtype=np.float32)
    ring.write(4, arr)
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == arr.tobytes()
    np.testing.assert_array_equal(np.frombuffer(record.payload, dtype=np.float32), arr)


def test_numpy_2d_c_contiguous_round_trip(ring: nb.Ring) -> None:
    arr = np.arange(60, dtype=np.int16).reshape(3, 20)
    ring.write(4, arr)
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == arr.tobytes()


def test_non_contiguous_numpy_raises_value_error(ring: nb.Ring) -> None:
    arr = np.arange(100, dtype=np.int16)
    with pytest.raises(ValueError, match="contiguous"):
        ring.write(1, arr[::2])
    with pytest.raises(ValueError, match="contiguous"):
        ring.write(1, np.arange(60, dtype=np.float32).reshape(6, 10).T)
    assert ring.read_nowait() is None
    assert ring.stats().records_written == 0


@pytest.mark.parametrize("payload", ["text", 42, None, [1, 2, 3]])
def test_non_buffer_payload_raises_type_error(ring: nb.Ring, payload: object) -> None:
    with pytest.raises(TypeError):
        ring.write(1, payload)  # type: ignore[arg-type]
    assert ring.read_nowait() is None


def test_kind_and_flags_range(ring: nb.Ring) -> None:
    ring.write(0, b"a", flags=0)
    ring.write(65535, b"b", flags=65535)
    first, second = ring.read_nowait(), ring.read_nowait()
    assert first is not None
    assert second is not None
    assert (first.kind, first.flags) == (0, 0)
    assert (second.kind, second.flags) == (65535, 65535)
    for kind, flags in ((70000, 0), (65536, 0), (-1, 0), (1, 70000), (1, -1)):
        with pytest.raises(OverflowError):
            ring.write(kind, b"x", flags=flags)
    assert ring.read_nowait() is None
    assert ring.stats().records_written == 2


def test_seq_numbers_count_from_zero(ring: nb.Ring) -> None:
    seqs = [ring.write(1, bytes(i)) for i in range(20)]
    assert seqs == list(range(20))
    got = []
    while (record := ring.read_nowait()) is not None:
        got.append(record.seq)
    assert got == list(range(20))
    assert ring.write(1, b"after") == 20


def test_seq_not_consumed_by_failed_writes(ring: nb.Ring) -> None:
    assert ring.write(1, b"a") == 0
    with pytest.raises(nb.RecordTooLarge):
        ring.write(1, bytes(ring.max_payload + 1))
    count = fill(ring)
    with pytest.raises(nb.RingFull):
        ring.write(1, b"b" * 100, timeout=0)
    while ring.read_nowait() is not None:
        pass
    assert ring.write(1, b"c") == 1 + count


def test_t_ns_is_monotonic_clock_at_write(ring: nb.Ring) -> None:
    before = time.monotonic_ns()
    ring.write(1, b"x")
    after = time.monotonic_ns()
    record = ring.read_nowait()
    assert record is not None
    assert before <= record.t_ns <= after
    assert before <= nb.monotonic_ns()
    assert nb.monotonic_ns() >= after


def test_record_repr_and_fields(ring: nb.Ring) -> None:
    ring.write(2, b"{}", flags=3)
    record = ring.read_nowait()
    assert record is not None
    assert "kind=2" in repr(record)
    assert "flags=3" in repr(record)


# ---------------------------------------------------------------------------------------------------------
# too large / full / timeouts


def test_record_too_large(ring: nb.Ring) -> None:
    ring.write(1, b"before")
    assert issubclass(nb.RecordTooLarge, ValueError)
    with pytest.raises(nb.RecordTooLarge) as info:
        ring.write(1, bytes(ring.max_payload + 1))
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, nb.RingError)
    with pytest.raises(ValueError, match="exceeds"):
        ring.write(1, np.zeros(ring.max_payload, dtype=np.int16))
    # Nothing else was lost, and the largest payload still fits.
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == b"before"
    assert ring.read_nowait() is None
    big = bytes(range(256)) * (ring.max_payload // 256) + b"z" * (ring.max_payload % 256)
    assert len(big) == ring.max_payload
    ring.write(2, big)
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == big
    assert ring.stats().records_written == 2


def test_max_payload_fits_wherever_the_head_is() -> None:
    with nb.Ring.create(4096) as ring:
        big = b"m" * ring.max_payload
        for pad in range(0, 200, 8):
            ring.write(1, bytes(pad))
            ring.read_nowait()
            ring.write(2, big)
            record = ring.read_nowait()
            assert record is not None
            assert record.payload == big


def _drain(ring: nb.Ring) -> list[nb.Record]:
    out = []
    while (record := ring.read_nowait()) is not None:
        out.append(record)
    return out


def test_ring_full_with_timeout_zero(ring: nb.Ring) -> None:
    written = [bytes([i]) * 100 for i in range(fill(ring, 100))]
    assert len(written) == ring.capacity // framed_len(100)
    stats = ring.stats()
    assert stats.full_events == 1
    assert isinstance(nb.RingFull("x"), nb.RingError)
    with pytest.raises(nb.RingFull):
        ring.write(1, b"y" * 100, timeout=0)
    with pytest.raises(nb.RingFull):
        ring.write(1, b"y" * 100, timeout=0.0)
    assert ring.stats().full_events == 3
    assert ring.stats().records_written == len(written)
    records = _drain(ring)
    assert [r.payload for r in records] == written
    assert [r.seq for r in records] == list(range(len(written)))


def test_ring_full_with_timeout_waits(ring: nb.Ring) -> None:
    count = fill(ring, 500)
    start = time.monotonic()
    with pytest.raises(nb.RingFull, match="nothing was written"):
        ring.write(1, b"late" * 100, timeout=0.05)
    elapsed = time.monotonic() - start
    assert 0.05 <= elapsed < 2.0
    records = _drain(ring)
    assert [r.payload for r in records] == [bytes([i]) * 500 for i in range(count)]
    assert ring.write(1, b"fits now") == count


def test_ring_full_small_record_still_fits_partial_space(ring: nb.Ring) -> None:
    # Whatever room the 1000-byte records leave, a record needing more fails and one that fits succeeds.
    fill(ring, 1000)
    free = ring.capacity - ring.stats().fill_bytes
    with pytest.raises(nb.RingFull):
        ring.write(1, bytes(free))
    if free >= framed_len(0):
        ring.write(1, b"")


@pytest.mark.parametrize("timeout", [-1.0, -0.001, math.nan, math.inf, -math.inf])
def test_invalid_timeouts_raise_value_error(ring: nb.Ring, timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        ring.write(1, b"x", timeout=timeout)
    with pytest.raises(ValueError, match="timeout"):
        ring.read(timeout=timeout)
    assert ring.read_nowait() is None


def test_read_timeout_on_empty_ring_returns_none(ring: nb.Ring) -> None:
    start = time.monotonic()
    assert ring.read(timeout=0.05) is None
    elapsed = time.monotonic() - start
    assert 0.05 <= elapsed < 2.0
    start = time.monotonic()
    assert ring.read(timeout=0) is None
    assert time.monotonic() - start < 0.5
    assert ring.read_nowait() is None


def test_read_with_timeout_returns_queued_record_at_once(ring: nb.Ring) -> None:
    ring.write(1, b"now")
    start = time.monotonic()
    record = ring.read(timeout=5.0)
    assert record is not None
    assert record.payload == b"now"
    assert time.monotonic() - start < 1.0


# ---------------------------------------------------------------------------------------------------------
# skip


def test_skip_all(ring: nb.Ring) -> None:
    assert ring.skip() == 0
    for i in range(10):
        ring.write(1 + i % 3, bytes([i]))
    assert ring.skip() == 10
    assert ring.read_nowait() is None
    assert ring.skip(None) == 0
    assert ring.stats().records_skipped == 10
    assert ring.write(1, b"next") == 10


def test_skip_kind_keeps_others_in_order(ring: nb.Ring) -> None:
    for i in range(12):
        ring.write(1 if i % 3 == 0 else 2, bytes([i]))
    assert ring.skip(1) == 4
    records = _drain(ring)
    assert [r.seq for r in records] == [i for i in range(12) if i % 3 != 0]
    assert [r.payload for r in records] == [bytes([i]) for i in range(12) if i % 3 != 0]
    assert all(r.kind == 2 for r in records)
    assert ring.stats().records_skipped == 4


def test_skip_kind_then_more_writes_keep_order(ring: nb.Ring) -> None:
    for i in range(6):
        ring.write(i % 2, bytes([i]))
    assert ring.skip(0) == 3
    ring.write(1, b"\x06")
    ring.write(0, b"\x07")
    assert ring.skip(5) == 0
    records = _drain(ring)
    assert [r.payload for r in records] == [b"\x01", b"\x03", b"\x05", b"\x06", b"\x07"]
    # A later skip(kind) also filters the records an earlier skip kept aside.
    for i in range(4):
        ring.write(i % 2, bytes([i]))
    assert ring.skip(0) == 2
    assert ring.skip(1) == 2
    assert ring.read_nowait() is None


def test_skip_frees_space(ring: nb.Ring) -> None:
    count = fill(ring, 200)
    with pytest.raises(nb.RingFull):
        ring.write(1, b"x" * 200)
    assert ring.skip() == count
    assert ring.stats().fill_bytes == 0
    ring.write(1, b"x" * 200)


def test_skip_kind_out_of_range(ring: nb.Ring) -> None:
    with pytest.raises(OverflowError):
        ring.skip(70000)
    with pytest.raises(OverflowError):
        ring.skip(-1)


# ---------------------------------------------------------------------------------------------------------
# stats


def test_stats_counters(ring: nb.Ring) -> None:
    stats = ring.stats()
    assert (stats.records_written, stats.bytes_written, stats.records_read, stats.bytes_read) == (0, 0, 0, 0)
    assert (stats.records_skipped, stats.fill_bytes, stats.full_events, stats.capacity) == (0, 0, 0, 4096)
    assert stats.fill_ratio == 0.0
    ring.write(1, b"12345")
    ring.write(1, b"")
    ring.write(1, bytes(100))
    stats = ring.stats()
    assert (stats.records_written, stats.bytes_written) == (3, 105)
    assert stats.fill_bytes == framed_len(5) + framed_len(0) + framed_len(100)
    assert stats.fill_ratio == pytest.approx(stats.fill_bytes / 4096)
    ring.read_nowait()
    stats = ring.stats()
    assert (stats.records_read, stats.bytes_read) == (1, 5)
    assert stats.fill_bytes == framed_len(0) + framed_len(100)
    ring.read_nowait()
    ring.read_nowait()
    stats = ring.stats()
    assert (stats.records_read, stats.bytes_read, stats.fill_bytes) == (3, 105, 0)
    fill(ring, 100)
    with pytest.raises(nb.RingFull):
        ring.write(1, bytes(100))
    stats = ring.stats()
    assert stats.full_events == 2
    assert ring.capacity - 2 * framed_len(100) < stats.fill_bytes <= ring.capacity
    assert stats.fill_ratio == pytest.approx(stats.fill_bytes / ring.capacity)
    with nb.Ring.create(4096) as fresh:
        assert fill(fresh, 104) == 32  # 32 framed records of 128 bytes fill it exactly
        stats = fresh.stats()
        assert (stats.fill_bytes, stats.fill_ratio, stats.full_events) == (4096, 1.0, 1)
    assert "records_written" in repr(stats)


def test_stats_skip_counts_records_once() -> None:
    """A skipped record is counted as skipped, not also as read: written == read + skipped once drained."""
    with nb.Ring.create(1 << 14) as ring:
        for i in range(10):
            ring.write(1 if i % 2 == 0 else 2, b"x" * 10)
        assert ring.skip(1) == 5
        _drain(ring)
        ring.write(3, b"y" * 8)
        assert ring.skip() == 1
        stats = ring.stats()
        assert (stats.records_written, stats.records_skipped) == (11, 6)
        assert (stats.records_read, stats.bytes_read) == (5, 50)
        assert stats.records_read + stats.records_skipped == stats.records_written


def test_stats_after_close(ring: nb.Ring) -> None:
    ring.write(1, b"abc")
    ring.write(1, b"defg")
    ring.read_nowait()
    ring.close()
    stats = ring.stats()
    assert (stats.records_written, stats.bytes_written, stats.records_read, stats.bytes_read) == (2, 7, 1, 3)
    assert stats.fill_bytes == framed_len(4)
    assert stats.capacity == 4096
    assert ring.stats().records_written == 2


def test_stats_after_close_of_unused_ring() -> None:
    ring = nb.Ring.create(8192)
    ring.close()
    assert ring.stats().records_written == 0
    assert ring.stats().capacity == 8192


# ---------------------------------------------------------------------------------------------------------
# close, context manager, properties


def test_closed_ring_rejects_every_operation(ring: nb.Ring) -> None:
    ring.write(1, b"queued")
    assert not ring.closed
    ring.close()
    assert ring.closed
    ring.close()  # idempotent
    assert ring.closed
    with pytest.raises(nb.RingClosed):
        ring.write(1, b"x")
    with pytest.raises(nb.RingClosed):
        ring.write(1, bytes(ring.max_payload + 1))
    with pytest.raises(nb.RingClosed):
        ring.read()
    with pytest.raises(nb.RingClosed):
        ring.read(timeout=0.01)
    with pytest.raises(nb.RingClosed):
        ring.read_nowait()
    with pytest.raises(nb.RingClosed):
        ring.skip()
    with pytest.raises(nb.RingClosed):
        ring.fds()
    with pytest.raises(nb.RingClosed):
        _ = ring.peer_pid
    # The immutable description still answers.
    assert ring.capacity == 4096
    assert ring.name == "test"


async def test_closed_ring_rejects_aread(ring: nb.Ring) -> None:
    ring.close()
    with pytest.raises(nb.RingClosed):
        await ring.aread()


def test_context_manager_closes() -> None:
    with nb.Ring.create(4096, name="ctx") as ring:
        assert not ring.closed
        ring.write(1, b"x")
    assert ring.closed
    with pytest.raises(nb.RingClosed):
        ring.read_nowait()


def test_context_manager_closes_on_exception() -> None:
    with pytest.raises(RuntimeError), nb.Ring.create(4096) as ring:
        raise RuntimeError("boom")
    assert ring.closed


def test_close_seen_by_attached_handle(ring: nb.Ring) -> None:
    peer = nb.Ring.attach(*ring.fds())
    peer.write(1, b"one")
    peer.write(1, b"two")
    peer.close()
    assert not ring.closed
    assert [r.payload for r in (ring.read_nowait(), ring.read_nowait()) if r is not None] == [b"one", b"two"]
    with pytest.raises(nb.RingClosed):
        ring.read_nowait()
    with pytest.raises(nb.RingClosed):
        ring.write(1, b"three")


def test_properties_and_repr() -> None:
    with nb.Ring.create(8192, name="uplink") as ring:
        assert ring.name == "uplink"
        assert ring.capacity == 8192
        assert ring.creator_pid == os.getpid()
        assert ring.peer_pid == 0
        assert isinstance(ring.ring_id, int)
        text = repr(ring)
        assert "uplink" in text
        assert "8192" in text
        assert "closed" not in text
        fds = ring.fds()
        assert len(fds) == 3
        assert len(set(fds)) == 3
        assert all(fd >= 0 for fd in fds)
    assert "uplink" in repr(ring)
    assert "closed" in repr(ring)


def test_ring_ids_differ() -> None:
    with nb.Ring.create(4096) as a, nb.Ring.create(4096) as b:
        assert a.ring_id != b.ring_id


def test_dropping_handle_closes_ring(ring: nb.Ring) -> None:
    peer = nb.Ring.attach(*ring.fds())
    peer.write(1, b"bye")
    del peer
    record = ring.read_nowait()
    assert record is not None
    assert record.payload == b"bye"
    with pytest.raises(nb.RingClosed):
        ring.read(timeout=1.0)


# ---------------------------------------------------------------------------------------------------------
# exceptions


@pytest.mark.parametrize(
    "cls",
    [nb.RingError, nb.RingFull, nb.RingClosed, nb.RingCorrupt, nb.RingAlreadyAttached, nb.RecordTooLarge],
)
def test_exceptions_subclass_novabridge_error(cls: type[Exception]) -> None:
    assert issubclass(cls, nb.NovaBridgeError)
    assert issubclass(cls, nb.RingError)
    assert issubclass(cls, Exception)
    assert getattr(exceptions, cls.__name__) is cls


def test_raised_exceptions_are_catchable_as_novabridge_error(ring: nb.Ring) -> None:
    fill(ring)
    with pytest.raises(nb.NovaBridgeError):
        ring.write(1, b"x" * 100)
    with pytest.raises(nb.NovaBridgeError):
        ring.write(1, bytes(ring.max_payload + 1))
    ring.close()
    with pytest.raises(nb.NovaBridgeError):
        ring.read_nowait()


def test_record_kind_values() -> None:
    assert (nb.RecordKind.AUDIO, nb.RecordKind.EVENT, nb.RecordKind.CONTROL) == (1, 2, 3)
    assert nb.LAYOUT_VERSION == 1
    assert nb.RECORD_HEADER_LEN == 24
