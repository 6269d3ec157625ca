# SPDX-License-Identifier: Apache-2.0
"""novabridge: join synchronous real-time audio hosts to Amazon Nova Sonic through shared-memory rings.

The foundation is `Ring`, a lock-free single-producer single-consumer record ring in shared memory that two
processes (possibly running different Python versions) use to exchange audio frames and events, and
`Resampler`, a streaming low-delay resampler between the usual audio rates.
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
    NovaBridgeError,
    RecordTooLarge,
    RingAlreadyAttached,
    RingClosed,
    RingCorrupt,
    RingError,
    RingFull,
)
from novabridge.ring import RecordKind

__all__ = [
    "LAYOUT_VERSION",
    "MAX_CAPACITY",
    "MAX_NAME_LEN",
    "MIN_CAPACITY",
    "RECORD_HEADER_LEN",
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
    "__version__",
    "monotonic_ns",
    "pcm",
]
