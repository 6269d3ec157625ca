"""Rings shared between the pytest process and a peer process on the other Python version (3.11 <-> 3.12)."""

import os
import sys
import time

import novabridge as nb
import pytest
from support.interpreters import other_version, this_version
from support.ring_peers import Background, SpawnPeer, fill, process_task, read_until_closed, wait_until_in_poll

from ring.ring_peer import payload_block, plan

STRESS_RECORDS = 100_000
STRESS_SEED = 20240611


def test_both_interpreters_are_involved() -> None:
    assert this_version() == ("311" if sys.version_info[:2] == (3, 11) else "312")
    assert other_version() != this_version()


@pytest.mark.timeout(90)
def test_100k_random_records_from_311_producer_to_312_consumer(spawn_peer: SpawnPeer) -> None:
    """The producer always runs on 3.11 and the consumer on 3.12; the pytest process is one of them."""
    ring = nb.Ring.create(1 << 20, name="stress")
    assert ring.max_payload >= 64 * 1024
    deadline = time.monotonic() + 60.0
    try:
        if this_version() == "312":
            peer = spawn_peer("produce", ring, STRESS_SEED, STRESS_RECORDS, version="311")
            peer.expect("ready")
            block = payload_block(STRESS_SEED)
            last_t = 0
            for seq, (kind, flags, offset, size) in enumerate(plan(STRESS_SEED, STRESS_RECORDS)):
                record = ring.read(timeout=max(0.0, deadline - time.monotonic()))
                assert record is not None, f"timed out at record {seq}"
                assert (record.seq, record.kind, record.flags, len(record)) == (seq, kind, flags, size)
                assert record.payload == block[offset : offset + size], f"record {seq} differs"
                assert record.t_ns >= last_t
                last_t = record.t_ns
            peer.expect("done", timeout=10)
            with pytest.raises(nb.RingClosed):
                ring.read(timeout=10.0)
        else:
            peer = spawn_peer("consume", ring, STRESS_SEED, STRESS_RECORDS, version="312")
            peer.expect("ready")
            view = memoryview(payload_block(STRESS_SEED))
            for seq, (kind, flags, offset, size) in enumerate(plan(STRESS_SEED, STRESS_RECORDS)):
                assert ring.write(kind, view[offset : offset + size], flags=flags, timeout=None) == seq
                assert time.monotonic() < deadline, f"only {seq} records written in 60 s"
            ring.close()
            peer.expect(f"ok {STRESS_RECORDS}", timeout=max(1.0, deadline - time.monotonic()))
        code, stderr = peer.finish()
        assert code == 0, stderr
        stats = ring.stats()
        assert stats.records_written == STRESS_RECORDS
        assert stats.bytes_written == sum(size for _, _, _, size in plan(STRESS_SEED, STRESS_RECORDS))
        if this_version() == "312":  # (a producer's stats are frozen when it closes, before the peer drains)
            assert stats.records_read == STRESS_RECORDS
            assert stats.fill_bytes == 0
    finally:
        ring.close()


def _wait_blocked(call: Background[object], seconds: float = 0.3) -> None:
    time.sleep(seconds)
    assert not call.done(), f"the call ended early: {call.result!r} / {call.error!r}"


def test_peer_sigkill_during_blocking_read(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("sleep", ring, version=other_version())
        peer.expect("ready")
        assert ring.peer_pid == peer.pid
        call: Background[object] = Background(lambda: ring.read(timeout=None))
        _wait_blocked(call)
        killed_at = peer.kill()
        call.assert_closed_within(killed_at)
        # Later reads say the same.
        with pytest.raises(nb.RingClosed):
            ring.read_nowait()
        with pytest.raises(nb.RingClosed):
            ring.read(timeout=1.0)


def test_peer_sigkill_during_blocking_write(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("sleep", ring, version=other_version())
        peer.expect("ready")
        assert fill(ring, 300) > 0
        call: Background[object] = Background(lambda: ring.write(1, b"y" * 300, timeout=None))
        _wait_blocked(call)
        killed_at = peer.kill()
        call.assert_closed_within(killed_at)


def test_peer_sigkill_during_read_with_timeout(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("sleep", ring, version=other_version())
        peer.expect("ready")
        call: Background[object] = Background(lambda: ring.read(timeout=20.0))
        _wait_blocked(call)
        killed_at = peer.kill()
        call.assert_closed_within(killed_at)


def test_records_of_a_killed_peer_are_delivered_first(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(1 << 16) as ring:
        peer = spawn_peer("write-hold", ring, 50, version=other_version())
        peer.expect("written")
        peer.kill()
        peer.proc.wait(timeout=10)
        got = [r.payload for r in read_until_closed(ring, timeout=5.0)]
        assert got == [f"rec{i}".encode() for i in range(50)]


@pytest.mark.parametrize("when", ["while-writing", "after-exit"])
def test_peer_close_delivers_everything_then_ring_closed(spawn_peer: SpawnPeer, when: str) -> None:
    count = 2000 if when == "while-writing" else 50
    with nb.Ring.create(1 << 14) as ring:
        peer = spawn_peer("write-close", ring, count, version=other_version())
        peer.expect("ready")
        if when == "after-exit":
            peer.expect("done")
            code, stderr = peer.finish()
            assert code == 0, stderr
        got = read_until_closed(ring)
        assert [r.payload for r in got] == [f"rec{i}".encode() for i in range(count)]
        assert [r.seq for r in got] == list(range(count))
        assert all(r.kind == 5 for r in got)
        code, stderr = peer.finish()
        assert code == 0, stderr
        with pytest.raises(nb.RingClosed):
            ring.write(1, b"x")
        with pytest.raises(nb.RingClosed):
            ring.read(timeout=0.1)


def test_peer_sees_ring_closed_when_creator_closes(spawn_peer: SpawnPeer) -> None:
    ring = nb.Ring.create(4096)
    peer = spawn_peer("read-until-closed", ring, version=other_version())
    peer.expect("ready")
    for i in range(10):
        ring.write(1, f"m{i}".encode(), timeout=5.0)
    # The peer has read all ten and blocks in read() again.
    deadline = time.monotonic() + 10
    while ring.stats().records_read < 10:
        assert time.monotonic() < deadline, ring.stats()
        time.sleep(0.002)
    wait_until_in_poll(process_task(peer.pid))
    closed_at = time.monotonic()
    ring.close()
    line = peer.expect("read ", timeout=5.0)
    assert line == "read " + ",".join(f"m{i}" for i in range(10))
    peer.expect("RingClosed", timeout=1.0)
    code, stderr = peer.finish(timeout=5.0)
    assert code == 0, stderr
    assert time.monotonic() - closed_at < 5.0


def test_second_attaching_process_gets_ring_already_attached(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        assert ring.peer_pid == 0
        first = spawn_peer("sleep", ring, version=other_version())
        first.expect("ready")
        assert ring.peer_pid == first.pid
        second = spawn_peer("attach", ring, version=this_version())
        assert second.expect("RingAlreadyAttached") == "RingAlreadyAttached"
        code, stderr = second.finish()
        assert code == 0, stderr
        # The first peer is still the one attached; once it exits (dropping its handle closes the ring), a
        # third process is refused as well.
        assert ring.peer_pid == first.pid
        first.finish()
        third = spawn_peer("attach", ring, version=other_version())
        assert third.expect("Ring") in ("RingAlreadyAttached", "RingClosed")
        third.finish()


def test_peer_attach_reports_creator_as_peer(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("attach", ring, version=other_version())
        assert peer.expect("attached") == f"attached peer_pid={os.getpid()}"
        code, stderr = peer.finish()
        assert code == 0, stderr
