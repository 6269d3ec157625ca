# SPDX-License-Identifier: Apache-2.0
"""``python -m novabridge.worker UPLINK_FDS DOWNLINK_FDS``: see `novabridge.worker.main`."""

from novabridge.worker.main import main

main()
