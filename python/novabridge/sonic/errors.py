"""Which failures of a stream are worth a reconnection, and which are the caller's to fix.

The classification follows what peers learned in production (../shared/notes/nova-sonic.md §1.6, §3): LiveKit's
retryable classes, plus the ValidationException messages that are really transient ("System instability
detected", "Timed out waiting for input events", InternalErrorCode=531) and a stream cut mid-frame
(InvalidEventBytes). Anything else that says the input is wrong is fatal: reconnecting would repeat it.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass

from aws_sdk_bedrock_runtime import models
from awscrt.exceptions import AwsCrtError
from smithy_aws_event_stream.exceptions import EventError

_TRANSIENT_SERVICE_ERRORS: tuple[type[Exception], ...] = (
    models.ThrottlingException,
    models.ModelStreamErrorException,
    models.ModelTimeoutException,
    models.ServiceUnavailableException,
    models.InternalServerException,
    models.ModelNotReadyException,
    models.ModelErrorException,
)

_TRANSIENT_VALIDATION_MESSAGES = (
    "System instability detected",
    "Timed out waiting for input events",
    "InternalErrorCode=531",
    "RST_STREAM",
)


@dataclass(frozen=True)
class Failure:
    """A classified stream failure."""

    kind: str
    """The exception's class name, e.g. ``ModelStreamErrorException``."""
    message: str
    transient: bool


def classify(error: BaseException) -> Failure:
    """Classify what ended a stream."""
    kind = type(error).__name__
    message = str(getattr(error, "message", "") or error) or kind
    if isinstance(error, models.ValidationException):
        return Failure(kind, message, any(m in message for m in _TRANSIENT_VALIDATION_MESSAGES))
    if isinstance(error, _TRANSIENT_SERVICE_ERRORS):
        return Failure(kind, message, True)
    if isinstance(error, (EventError, AwsCrtError, OSError, TimeoutError, concurrent.futures.InvalidStateError)):
        # A cut frame, a dropped connection, a reset: the network's fault, not the conversation's.
        return Failure(kind, message, True)
    return Failure(kind, message, False)
