# SPDX-License-Identifier: Apache-2.0
"""The exceptions novabridge raises, all under `NovaBridgeError`.

The native extension raises these same classes (it imports them from here), so they can be caught without
touching `novabridge._novabridge`. Bad arguments raise the built-in `ValueError`/`TypeError`, and failed system
calls raise `OSError` with its errno.
"""

__all__ = [
    "BridgeError",
    "EmulatorNotRunning",
    "NovaBridgeError",
    "RecordTooLarge",
    "RingAlreadyAttached",
    "RingClosed",
    "RingCorrupt",
    "RingError",
    "RingFull",
]


class NovaBridgeError(Exception):
    """Base class of every novabridge error."""


class RingError(NovaBridgeError):
    """A shared-memory ring could not do what was asked."""


class RingFull(RingError):
    """The ring had no room for the record within the timeout; nothing was written."""


class RingClosed(RingError):
    """The ring no longer carries records: closed by either side (after draining), or the peer process died."""


class RingCorrupt(RingError):
    """The ring's shared header or an index in it is invalid: a foreign, stale, damaged or hostile mapping."""


class RingAlreadyAttached(RingError):
    """Another process is already attached to the ring as its peer."""


class RecordTooLarge(RingError, ValueError):
    """The payload is larger than the ring's `max_payload`; nothing was written."""


class BridgeError(NovaBridgeError):
    """A `SonicBridge` or its worker could not do what was asked.

    No worker could start, the session did not come up, or the bridge was used before `start` or after `close`.
    """


class EmulatorNotRunning(NovaBridgeError):
    """A client was told to use the local emulator, and none is running where it looked (`novabridge emulator`)."""
