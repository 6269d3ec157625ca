# SPDX-License-Identifier: Apache-2.0
"""Host side of the ring example: send 20 ms audio frames to a worker process and read them back.

Run: `python examples/ring_echo.py [WORKER_PYTHON]`. The worker may be a different Python version (the
host of OpenAvatarChat runs 3.11, the Nova Sonic worker 3.12); both only need `novabridge` installed.
"""

import subprocess
import sys
import time
from pathlib import Path

import novabridge as nb
import numpy as np

worker_python = sys.argv[1] if len(sys.argv) > 1 else sys.executable
uplink = nb.Ring.create(1 << 20, name="uplink")  # host -> worker
downlink = nb.Ring.create(1 << 20, name="downlink")  # worker -> host
fds = uplink.fds() + downlink.fds()
worker_script = Path(__file__).with_name("ring_echo_worker.py")
worker = subprocess.Popen([worker_python, str(worker_script), *map(str, fds)], pass_fds=fds)

frame = (np.sin(np.arange(320) / 5.0) * 8000).astype(np.int16)  # 20 ms of 16 kHz mono PCM
uplink.write(nb.RecordKind.AUDIO, frame, timeout=1.0)
downlink.read(timeout=10.0)  # the first echo waits for the worker to start
round_trips = []
for _ in range(50):
    sent = time.monotonic_ns()
    uplink.write(nb.RecordKind.AUDIO, frame, timeout=1.0)
    echo = downlink.read(timeout=5.0)
    assert echo is not None
    assert echo.payload == frame.tobytes()
    round_trips.append((time.monotonic_ns() - sent) / 1000)

uplink.close()  # the worker reads what is left, gets RingClosed, and exits
worker.wait(timeout=5)
worker_version = downlink.read(timeout=5.0)
assert worker_version is not None
round_trips.sort()
print(f"50 frames echoed by a Python {worker_version.payload.decode()} worker;", end=" ")
print(f"round trip median {round_trips[25]:.0f} us, max {round_trips[-1]:.0f} us")
print(downlink.stats())
