# SPDX-License-Identifier: Apache-2.0
"""Worker side of the ring example: echo every record from the uplink ring back on the downlink ring."""

import platform
import sys

import novabridge as nb

fds = [int(fd) for fd in sys.argv[1:7]]
uplink, downlink = nb.Ring.attach(*fds[:3]), nb.Ring.attach(*fds[3:])
try:
    while True:
        record = uplink.read()  # blocks with the GIL released; Ctrl-C still works
        assert record is not None
        downlink.write(record.kind, record.payload, timeout=1.0)
except nb.RingClosed:
    downlink.write(nb.RecordKind.EVENT, platform.python_version().encode())
    downlink.close()
