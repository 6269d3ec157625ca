# SPDX-License-Identifier: Apache-2.0
"""The shared-memory record ring: record kinds and the asyncio side of `Ring.aread()`."""

import asyncio
import copyreg
import enum
import os
from multiprocessing import reduction
from typing import Any

from novabridge._novabridge import Record, Ring

__all__ = ["RecordKind", "aread"]


class RecordKind(enum.IntEnum):
    """The record kinds novabridge itself uses. Any 16-bit kind may be written; these are the conventions."""

    AUDIO = 1
    """PCM s16le mono at the ring's agreed rate."""
    EVENT = 2
    """A UTF-8 JSON event."""
    CONTROL = 3
    """Flow control between host and worker."""


def _wake(woken: "asyncio.Future[None]") -> None:
    if not woken.done():
        woken.set_result(None)


async def aread(ring: Ring) -> Record:
    """Await the next record of `ring` without blocking the loop or polling (what `Ring.aread()` returns).

    The loop watches the ring's eventfd (and the peer's pidfd) with `add_reader`; the producer signals the
    eventfd only after this coroutine has announced that it sleeps, so a busy ring costs no system calls.
    """
    loop = asyncio.get_running_loop()
    waiter = ring._waiter()
    while True:
        record = waiter.prepare()
        if record is not None:
            return record
        woken: asyncio.Future[None] = loop.create_future()
        fds = waiter.fds()
        for fd in fds:
            loop.add_reader(fd, _wake, woken)
        try:
            await woken
        finally:
            for fd in fds:
                loop.remove_reader(fd)
            waiter.finish()


def _attach_passed(*passed: Any) -> Ring:
    """Rebuilds a pickled `Ring` in a `multiprocessing` child from the descriptors the start method passed."""
    fds = [fd.detach() for fd in passed]
    try:
        return Ring.attach(*fds)
    finally:
        for fd in fds:
            os.close(fd)  # attach holds its own copies


def _reduce_ring(ring: Ring) -> tuple[Any, tuple[Any, ...]]:
    # DupFd hands each descriptor to the child during process start (spawn passes it, forkserver sends it).
    return _attach_passed, tuple(reduction.DupFd(fd) for fd in ring.fds())


# A Ring passed to a multiprocessing.Process attaches in the child, whatever the start method.
copyreg.pickle(Ring, _reduce_ring)
