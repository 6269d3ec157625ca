"""Ring fixtures: a ring closed at teardown, and peer processes reaped at teardown."""

import sys
from collections.abc import Iterator

import novabridge as nb
import pytest
from support.interpreters import Version, python_for
from support.ring_peers import PEER_SCRIPT, Peer, SpawnPeer


@pytest.fixture
def spawn_peer() -> Iterator[SpawnPeer]:
    """Starts `ring_peer.py ROLE FDS... ARGS...` on an interpreter; every peer is reaped at teardown.

    Call as `spawn_peer(role, ring, *args, version="311")`; `ring=None` for roles that make their own ring;
    `fds=` passes other descriptors than the ring's. Without `version`, the peer runs on this interpreter.
    """
    peers: list[Peer] = []

    def spawn(
        role: str,
        ring: nb.Ring | None,
        *args: object,
        version: Version | None = None,
        fds: tuple[int, ...] | None = None,
    ) -> Peer:
        python = python_for(version) if version is not None else sys.executable
        if fds is None:
            fds = ring.fds() if ring is not None else ()
        peer = Peer([python, str(PEER_SCRIPT), role, *map(str, fds), *map(str, args)], pass_fds=fds)
        peers.append(peer)
        return peer

    yield spawn
    for peer in peers:
        peer.cleanup()


@pytest.fixture
def ring() -> Iterator[nb.Ring]:
    """A 4 KiB ring, closed at teardown."""
    r = nb.Ring.create(4096, name="test")
    yield r
    r.close()
