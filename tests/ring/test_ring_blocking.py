"""Blocking calls: the GIL is released, Ctrl-C and close() interrupt them, and aread() never blocks the loop."""

import asyncio
import contextlib
import signal
import subprocess
import threading
import time
from pathlib import Path

import novabridge as nb
import pytest
from support.interpreters import other_version
from support.ring_peers import Background, SpawnPeer, fill, process_task, wait_until_in_poll


def _count_for(seconds: float) -> int:
    """A pure-Python busy loop; returns how many iterations it managed in `seconds`."""
    count = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
    return count


def test_blocking_read_does_not_hold_the_gil(ring: nb.Ring) -> None:
    baseline = _count_for(0.1) * 3
    call: Background[object] = Background(lambda: ring.read(timeout=None))
    call.wait_blocked()
    count = _count_for(0.3)
    assert not call.done()
    assert count >= 100_000, f"{count} iterations in 0.3 s"
    assert count >= baseline // 4, f"{count} iterations with a reader blocked vs {baseline} alone"
    ring.close()
    call.join(2.0)
    assert isinstance(call.error, nb.RingClosed)


def test_blocking_write_does_not_hold_the_gil(ring: nb.Ring) -> None:
    fill(ring)
    call: Background[object] = Background(lambda: ring.write(1, b"x" * 100, timeout=None))
    call.wait_blocked()
    count = _count_for(0.3)
    assert not call.done()
    assert count >= 100_000, f"{count} iterations in 0.3 s"
    ring.close()
    call.join(2.0)
    assert isinstance(call.error, nb.RingClosed)


def test_other_thread_progresses_during_read_with_timeout(ring: nb.Ring) -> None:
    call: Background[object] = Background(lambda: ring.read(timeout=0.5))
    call.wait_blocked()
    count = _count_for(0.3)
    assert count >= 100_000
    call.join(3.0)
    assert call.error is None
    assert call.result is None


@pytest.mark.parametrize("role", ["block-read", "block-write"])
def test_ctrl_c_interrupts_blocking_call(spawn_peer: SpawnPeer, role: str) -> None:
    peer = spawn_peer(role, None)
    peer.expect("ready", timeout=20.0)
    wait_until_in_poll(process_task(peer.pid))  # inside the blocking call
    assert peer.proc.poll() is None
    sent = time.monotonic()
    peer.proc.send_signal(signal.SIGINT)
    try:
        peer.proc.wait(timeout=5.0)
    except subprocess.TimeoutExpired:
        status = Path(f"/proc/{peer.pid}/status").read_text().splitlines()
        signals = [line for line in status if line.startswith(("State", "Sig", "ShdPnd", "Threads"))]
        wchan = Path(f"/proc/{peer.pid}/wchan").read_text()
        pytest.fail(f"the peer ignored SIGINT for 5 s: {signals}, wchan {wchan!r}")
    elapsed = time.monotonic() - sent
    code, stderr = peer.finish()
    assert elapsed < 2.0, f"exited {elapsed:.2f} s after SIGINT"
    assert code != 0
    assert "KeyboardInterrupt" in stderr, stderr
    assert "Traceback" in stderr
    assert not any(line.startswith("error") for line in peer.lines), peer.lines


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_close_from_another_thread_wakes_blocked_read(ring: nb.Ring, timeout: float | None) -> None:
    call: Background[object] = Background(lambda: ring.read(timeout=timeout))
    call.wait_blocked()
    closed_at = time.monotonic()
    ring.close()
    call.assert_closed_within(closed_at)


def test_close_from_another_thread_wakes_blocked_write(ring: nb.Ring) -> None:
    fill(ring)
    call: Background[object] = Background(lambda: ring.write(1, b"x" * 100, timeout=None))
    call.wait_blocked()
    closed_at = time.monotonic()
    ring.close()
    call.assert_closed_within(closed_at)


def test_blocked_write_resumes_when_space_is_freed(ring: nb.Ring) -> None:
    count = fill(ring, 100)
    call: Background[int] = Background(lambda: ring.write(2, b"late", timeout=None))
    call.wait_blocked()
    freed_at = time.monotonic()
    first = ring.read_nowait()
    assert first is not None
    call.join(5.0)
    assert call.error is None
    assert call.result == count
    assert call.ended_at is not None
    assert call.ended_at - freed_at < 1.0
    payloads = []
    while (record := ring.read_nowait()) is not None:
        payloads.append(record.payload)
    assert payloads[-1] == b"late"
    assert len(payloads) == count


def test_blocked_read_wakes_on_write_from_another_thread(ring: nb.Ring) -> None:
    call: Background[nb.Record | None] = Background(lambda: ring.read(timeout=None))
    call.wait_blocked()
    written_at = time.monotonic()
    ring.write(4, b"wake")
    call.join(5.0)
    assert call.result is not None
    assert call.result.payload == b"wake"
    assert call.ended_at is not None
    assert call.ended_at - written_at < 1.0


# ---------------------------------------------------------------------------------------------------------
# aread


async def _ticker(stop: asyncio.Event) -> int:
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.001)
        ticks += 1
    return ticks


async def test_aread_receives_1000_records_in_order_without_blocking_the_loop() -> None:
    ring = nb.Ring.create(1 << 16, name="aread")
    total = 1000

    def produce() -> None:
        for i in range(total):
            ring.write(1, i.to_bytes(4, "little") * 25, timeout=10.0)
            if i % 100 == 99:
                time.sleep(0.02)

    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(stop))
    await asyncio.sleep(0.01)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    received = []
    try:
        for _ in range(total):
            received.append(await asyncio.wait_for(ring.aread(), timeout=10.0))
    finally:
        stop.set()
        ticks = await ticker
        producer.join(10.0)
        ring.close()
    # The consumer really slept on the eventfd (and was woken) rather than finding records queued.
    assert ring.stats().data_wakeups >= 1
    assert [r.seq for r in received] == list(range(total))
    assert [r.payload for r in received] == [i.to_bytes(4, "little") * 25 for i in range(total)]
    # The producer slept 10 x 20 ms: the loop kept ticking through those waits.
    assert ticks >= 20, f"only {ticks} ticks"


async def test_aread_returns_queued_record_at_once(ring: nb.Ring) -> None:
    ring.write(3, b"ready")
    record = await asyncio.wait_for(ring.aread(), timeout=1.0)
    assert record.payload == b"ready"


async def test_aread_wakes_on_peer_process_write(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("write-after", ring, 0.2, "hold", version=other_version())
        peer.expect("ready")
        stop = asyncio.Event()
        ticker = asyncio.create_task(_ticker(stop))
        start = time.monotonic()
        try:
            record = await asyncio.wait_for(ring.aread(), timeout=10.0)
        finally:
            stop.set()
            ticks = await ticker
        elapsed = time.monotonic() - start
        assert (record.kind, record.payload, record.seq) == (9, b"late", 0)
        assert elapsed >= 0.1
        assert ticks >= 20, f"the loop ticked {ticks} times in {elapsed:.2f} s"
        assert ring.stats().data_wakeups >= 1
        peer.finish()


async def test_aread_raises_ring_closed_after_peer_close(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("write-after", ring, 0.2, "close", version=other_version())
        peer.expect("ready")
        record = await asyncio.wait_for(ring.aread(), timeout=10.0)
        assert record.payload == b"late"
        with pytest.raises(nb.RingClosed):
            await asyncio.wait_for(ring.aread(), timeout=10.0)
        code, stderr = peer.finish()
        assert code == 0, stderr


async def test_aread_drains_then_ring_closed(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(1 << 14) as ring:
        peer = spawn_peer("write-close", ring, 30, version=other_version())
        peer.expect("done")
        got = []
        while True:
            try:
                record = await asyncio.wait_for(ring.aread(), timeout=10.0)
            except nb.RingClosed:
                break
            got.append(record.payload)
        assert got == [f"rec{i}".encode() for i in range(30)]
        peer.finish()


async def test_aread_raises_ring_closed_when_peer_is_killed(spawn_peer: SpawnPeer) -> None:
    with nb.Ring.create(4096) as ring:
        peer = spawn_peer("sleep", ring, version=other_version())
        peer.expect("ready")
        task = asyncio.ensure_future(ring.aread())
        await asyncio.sleep(0)  # one pass of the loop: aread ran until it awaits its wake-up, readers registered
        assert not task.done()
        killed_at = peer.kill()
        with pytest.raises(nb.RingClosed):
            await asyncio.wait_for(task, timeout=5.0)
        assert time.monotonic() - killed_at < 1.0


async def test_local_close_wakes_pending_aread(ring: nb.Ring) -> None:
    """close() on this handle ends a pending aread with RingClosed, like a blocked read."""
    task = asyncio.ensure_future(ring.aread())
    await asyncio.sleep(0)  # one pass of the loop: aread ran until it awaits its wake-up, readers registered
    assert not task.done()
    closed_at = time.monotonic()
    ring.close()
    done, _ = await asyncio.wait({task}, timeout=2.0)
    woke_after = time.monotonic() - closed_at
    if not done:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    assert done, f"the pending aread was still waiting {woke_after:.1f} s after close()"
    assert isinstance(task.exception(), nb.RingClosed)
    assert woke_after < 1.0


async def test_cancelled_aread_leaves_ring_usable(ring: nb.Ring) -> None:
    task = asyncio.ensure_future(ring.aread())
    await asyncio.sleep(0)  # aread awaits its wake-up, readers registered, when it is cancelled
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    ring.write(1, b"after cancel")
    record = await asyncio.wait_for(ring.aread(), timeout=1.0)
    assert record.payload == b"after cancel"
    record2 = ring.read_nowait()
    assert record2 is None


def test_a_busy_ring_issues_no_wake_up_without_a_waiter(ring: nb.Ring) -> None:
    # docs/ring.md: the writer signals only a reader that announced it sleeps; records that find none cost no
    # system call. 10,000 records written and read with nobody waiting: no wake-up either way.
    for round_ in range(200):  # 50 records of 48 bytes at a time: the 4 KiB ring never fills
        for index in range(50):
            ring.write(1, bytes([index]) * 24)
        for index in range(50):
            record = ring.read_nowait()
            assert record is not None
            assert record.seq == round_ * 50 + index
    stats = ring.stats()
    assert stats.records_written == stats.records_read == 10_000
    assert (stats.data_wakeups, stats.space_wakeups) == (0, 0)


def test_a_waiting_reader_costs_one_wake_up(ring: nb.Ring) -> None:
    call: Background[nb.Record | None] = Background(lambda: ring.read(timeout=None))
    call.wait_blocked()
    ring.write(4, b"wake")
    call.join(5.0)
    assert call.result is not None
    for _ in range(100):  # the reader no longer waits: these cost nothing
        ring.write(4, b"more")
    assert ring.stats().data_wakeups == 1
