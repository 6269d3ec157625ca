# SPDX-License-Identifier: Apache-2.0
"""What runs in the host process: `SonicBridge`, and the `WorkerPool` of warm worker processes it takes from."""

from novabridge.host.bridge import BridgeMetrics, Latency, SonicBridge, default_worker_python
from novabridge.host.pool import WorkerPool, WorkerProcess

__all__ = ["BridgeMetrics", "Latency", "SonicBridge", "WorkerPool", "WorkerProcess", "default_worker_python"]
