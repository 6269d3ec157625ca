"""The worker and the emulator give back to the system the memory an ended stream freed (`novabridge.memory`)."""

import subprocess
import sys

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
