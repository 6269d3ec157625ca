"""The worker and the emulator give back to the system the memory an ended stream freed, and the emulator keeps large
blocks out of its heap (`novabridge.memory`)."""

import json
import subprocess
import sys
from typing import Any

# Memory freed by other threads stays in their glibc arenas (each thread allocates in its own arena), as awscrt's
# threads leave a replaced connection's buffers: after the threads free it, RSS stays up until a trim.
SCRIPT = r"""
import threading

from novabridge.memory import release_freed_memory


def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def churn():
    blocks = [bytearray(60_000) for _ in range(1000)]  # below malloc's mmap threshold: in the thread's arena
    del blocks[::2]  # freed memory interleaved with live blocks: the arena cannot shrink from its top
    keep.append(blocks)


keep = []
threads = [threading.Thread(target=churn) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
before = rss_kib()
released = release_freed_memory()
print(before, rss_kib(), released)
"""


def test_memory_other_threads_freed_is_given_back() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    before, after, released = done.stdout.split()
    assert released == "True"
    # 4 threads freed half of their 1,000 blocks of 60 KB each: about 114 MiB; most of it goes back.
    assert int(before) - int(after) > 50 * 1024, done.stdout


# glibc raises its mmap threshold to the size of each mapped block freed: after that, blocks as large as a TLS
# connection's buffer come from the heap, where smaller blocks that outlive them keep it from shrinking.
LARGE_BLOCKS = r"""
import ctypes, json, sys

from novabridge.memory import map_large_blocks


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
fixed = map_large_blocks() if sys.argv[1] == "fixed" else None
large = bytearray(1 << 20)
del large  # mapped, then freed: the threshold rises unless fixed
before = libc.mallinfo2()
buffers, small = [], []
for _ in range(64):
    buffers.append(bytearray(256 * 1024))
    small.append(bytearray(600))  # outlives the buffers, as a connection's bookkeeping outlives its buffer
after = libc.mallinfo2()
print(json.dumps({"fixed": fixed, "heap_growth": after.arena - before.arena, "mapped": after.hblkhd - before.hblkhd}))
"""


def test_large_blocks_are_mapped_on_their_own_once_the_threshold_is_fixed() -> None:
    def run(mode: str) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-c", LARGE_BLOCKS, mode], capture_output=True, text=True, timeout=60, check=True
        )
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    mib = 1 << 20
    raised, fixed = run("default"), run("fixed")
    assert raised["heap_growth"] >= 15 * mib  # 64 buffers of 256 KiB in the heap: the behaviour fixed below
    assert fixed["fixed"] is True
    assert fixed["mapped"] >= 16 * mib  # every buffer mapped on its own
    assert fixed["heap_growth"] < 1 * mib  # only the small blocks
