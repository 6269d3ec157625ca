# SPDX-License-Identifier: Apache-2.0
"""Giving the memory an ended stream freed back to the system.

A stream that ends frees its connection's buffers (TLS and HTTP/2 state, event queues), in the worker allocated by
the CRT's threads in glibc arenas of their own. glibc keeps freed memory in its arenas for reuse, and fragmentation
keeps much of it from ever being reused, so RSS rose in steps with each stream replaced: a soak run measured a
worker's 2 MiB in 10 minutes of faults (``malloc_trim`` gave 1.8 MiB of it back), and a drive of the emulator that
churned streams +21 MiB in 10 minutes, +3.6 when trimmed. The worker trims a few seconds after each stream is
replaced, the emulator after streams end (at most once every `TRIM_EVERY_S`): a walk of the arenas, off the audio
path, a few times a minute at most.

Trimming cannot give back a heap that grew past blocks still in use, and glibc grows it for large blocks it would
otherwise map on their own: it maps a block of 128 KiB or more, but raises that threshold to the size of each mapped
block freed. In the emulator, once the first connection closed, every new connection's 256 KiB TLS buffer and every
synthesized sentence came from the heap, between small blocks that outlived them: in a soak run's churn of streams
its heap grew from 13 to 21 MiB in 7 minutes, 6.7 MiB of it free but not returnable.
`map_large_blocks` fixes the threshold, which also ends its raising, in the process that owns its allocator.
"""

from __future__ import annotations

import ctypes

__all__ = ["MMAP_THRESHOLD_BYTES", "TRIM_AFTER_S", "TRIM_EVERY_S", "map_large_blocks", "release_freed_memory"]

TRIM_AFTER_S = 5.0
"""How long after a stream is replaced to trim: the old stream's tasks and connection have ended by then."""
TRIM_EVERY_S = 10.0
"""The emulator trims at most this often, however many streams end."""

MMAP_THRESHOLD_BYTES = 64 * 1024
"""Blocks this large or larger are mapped on their own and unmapped when freed: a connection's buffers, a sentence's
audio. Smaller ones, the bulk of the traffic (a 32 ms frame and its base64 text), stay in the heap."""

_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)

# The interpreter's own symbols include its C library's (no ctypes.util.find_library, which runs ldconfig).
_libc = ctypes.CDLL(None)
_malloc_trim = getattr(_libc, "malloc_trim", None)  # glibc only (musl has no arenas to trim)
_mallopt = getattr(_libc, "mallopt", None)


def release_freed_memory() -> bool:
    """Return the free memory in every malloc arena to the system.

    False if this C library cannot (not glibc), or had nothing to give back.
    """
    if _malloc_trim is None:
        return False
    return bool(_malloc_trim(0))


def map_large_blocks(threshold_bytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Have malloc map every block of ``threshold_bytes`` or more on its own, for the rest of the process's life.

    For a process novabridge owns (the emulator's command); a library has no business tuning its host's allocator.
    False if this C library cannot (not glibc).
    """
    if _mallopt is None or _malloc_trim is None:  # mallopt alone is no sign of glibc's meaning of the parameter
        return False
    return bool(_mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
