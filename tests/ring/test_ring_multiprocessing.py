"""A Ring handed to a multiprocessing child attaches there (the descriptors travel with the start method)."""

import multiprocessing
from multiprocessing.connection import Connection

import novabridge as nb
import pytest


def _echo_child(uplink: nb.Ring, downlink: nb.Ring) -> None:
    record = uplink.read(timeout=10)
    assert record is not None
    downlink.write(record.kind, record.payload[::-1], flags=record.flags, timeout=5)


def _report_child(ring: nb.Ring, done: Connection) -> None:
    done.send((ring.ring_id, ring.peer_pid))


@pytest.mark.parametrize(
    "context",
    [multiprocessing.get_context("spawn"), multiprocessing.get_context("forkserver")],
    ids=["spawn", "forkserver"],
)
def test_rings_passed_to_a_process_attach_in_the_child(
    context: multiprocessing.context.SpawnContext | multiprocessing.context.ForkServerContext,
) -> None:
    with nb.Ring.create(4096, name="up") as uplink, nb.Ring.create(4096, name="down") as downlink:
        child = context.Process(target=_echo_child, args=(uplink, downlink))
        child.start()
        uplink.write(nb.RecordKind.EVENT, b"ping", flags=7)
        echo = downlink.read(timeout=30)
        child.join(timeout=30)
        assert child.exitcode == 0
        assert echo is not None
        assert (echo.payload, echo.flags) == (b"gnip", 7)
        assert uplink.peer_pid == child.pid


def test_the_child_sees_the_same_ring() -> None:
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    with nb.Ring.create(4096) as ring:
        child = context.Process(target=_report_child, args=(ring, send))
        child.start()
        ring_id, peer_pid = receive.recv()
        child.join(timeout=30)
        assert ring_id == ring.ring_id
        assert peer_pid == ring.creator_pid
