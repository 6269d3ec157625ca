# SPDX-License-Identifier: Apache-2.0
"""novabridge: join synchronous real-time audio hosts to Amazon Nova Sonic through shared-memory rings.

The foundation is `Ring`, a lock-free single-producer single-consumer record ring in shared memory that two
processes (possibly running different Python versions) use to exchange audio frames and events, and
`Resampler`, a streaming low-delay resampler between the usual audio rates. On them, `SonicBridge` runs a Nova
Sonic session in a worker process for a synchronous host.
"""

from novabridge import pcm
from novabridge._novabridge import (
    LAYOUT_VERSION,
    MAX_CAPACITY,
    MAX_NAME_LEN,
    MIN_CAPACITY,
    RECORD_HEADER_LEN,
    Record,
    Resampler,
    Ring,
    RingStats,
    __version__,
    monotonic_ns,
)
from novabridge.exceptions import (
    BridgeError,
    CredentialsError,
    EmulatorNotRunning,
    EndpointError,
    InvalidInput,
    LinkError,
    NovaBridgeError,
    RecordTooLarge,
    RingAlreadyAttached,
    RingClosed,
    RingCorrupt,
    RingError,
    RingFull,
    SessionError,
    WorkerError,
)

# The host's API, after the native names it builds on.
from novabridge.host.bridge import BridgeMetrics, SonicBridge
from novabridge.host.pool import WorkerPool
from novabridge.ring import RecordKind
from novabridge.sonic.config import SonicConfig

__all__ = [
    "LAYOUT_VERSION",
    "MAX_CAPACITY",
    "MAX_NAME_LEN",
    "MIN_CAPACITY",
    "RECORD_HEADER_LEN",
    "BridgeError",
    "BridgeMetrics",
    "CredentialsError",
    "EmulatorNotRunning",
    "EndpointError",
    "InvalidInput",
    "LinkError",
    "NovaBridgeError",
    "Record",
    "RecordKind",
    "RecordTooLarge",
    "Resampler",
    "Ring",
    "RingAlreadyAttached",
    "RingClosed",
    "RingCorrupt",
    "RingError",
    "RingFull",
    "RingStats",
    "SessionError",
    "SonicBridge",
    "SonicConfig",
    "WorkerError",
    "WorkerPool",
    "__version__",
    "monotonic_ns",
    "pcm",
]
