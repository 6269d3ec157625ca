# SPDX-License-Identifier: Apache-2.0
"""The exceptions novabridge raises, all under `NovaBridgeError`.

The native extension raises these same classes (it imports them from here), so they can be caught without
touching `novabridge._novabridge`. Bad arguments raise the built-in `ValueError`/`TypeError`, and failed system
calls raise `OSError` with its errno.
"""

__all__ = [
    "BridgeError",
    "CredentialsError",
    "EmulatorNotRunning",
    "EndpointError",
    "InvalidInput",
    "LinkError",
    "NovaBridgeError",
    "RecordTooLarge",
    "RingAlreadyAttached",
    "RingClosed",
    "RingCorrupt",
    "RingError",
    "RingFull",
    "SessionError",
    "WorkerError",
    "recoverable",
    "session_error",
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

    No worker could start (`WorkerError`), or the bridge was used before `start` or after `close`. A session that
    could not connect raises `SessionError` instead.
    """


class WorkerError(BridgeError):
    """No worker process could run the session.

    Its Python is missing or older than 3.12, lacks ``novabridge[sonic]``, or died while starting; the message names
    which, and how to fix it.
    """


class LinkError(BridgeError, ValueError):
    """A record on the rings between a bridge and its worker that is not one of `novabridge.link`'s records.

    Raised by `novabridge.link`'s decoders for that record alone: the rings frame records, so the next decodes.
    """


class SessionError(NovaBridgeError):
    """The Nova Sonic session could not start, or ended with a fatal error.

    ``kind`` names the cause: the service's error type where the service gave one (``AccessDeniedException``,
    ``ValidationException``, ``ThrottlingException``, ...), else novabridge's own (``NoCredentials``,
    ``EndpointUnreachable``, ``ConnectTimeout``, ...). The message says what happened and what to change; it never
    holds a secret. `SonicSession.start` and `SonicBridge.start` raise it, and the same ``kind`` and message arrive
    as the fatal `novabridge.events.Error` event of a session that was not waited for.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message

    @property
    def recoverable(self) -> bool:
        """A later session may succeed with the same configuration (`novabridge.exceptions.recoverable`)."""
        return recoverable(self.kind)


class CredentialsError(SessionError):
    """No credentials were found, or the service refused the ones given (unknown key, wrong secret, expired)."""


class EndpointError(SessionError):
    """The endpoint could not be reached: refused connection, unknown name, TLS failure, or no answer in time."""


CREDENTIAL_KINDS = frozenset(
    {
        "NoCredentials",
        "ProfileNotFound",
        "AwsConfigError",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "ExpiredTokenException",
        "ExpiredToken",
        "ExpiredCredentials",
    }
)
"""Kinds that mean the credentials: missing, unknown to the service, signed wrongly, or expired."""
ENDPOINT_KINDS = frozenset({"EndpointUnreachable", "EndpointNotFound", "TlsFailure", "NoHttp2", "ConnectTimeout"})
"""Kinds that mean the endpoint could not be reached."""
SERVICE_FAILURE_KINDS = (
    "ThrottlingException",
    "ModelStreamErrorException",
    "ModelTimeoutException",
    "ServiceUnavailableException",
    "InternalServerException",
    "ModelNotReadyException",
    "ModelErrorException",
)
"""The service's errors that say it is busy or failing, not that the request is wrong: worth another stream."""
EXPIRED_CREDENTIAL_KINDS = frozenset({"ExpiredTokenException", "ExpiredToken", "ExpiredCredentials"})
"""Kinds that mean temporary credentials past their expiry: the service's, and ``ExpiredCredentials`` when their
source gave them already expired (nothing was sent: the SDK does not sign with them)."""
WORKER_FAILED = "WorkerFailed"
"""The ``kind`` of the fatal `Error` when no worker can run the session (a `WorkerError` from `start`)."""
RECOVERABLE_KINDS = frozenset(
    {
        *SERVICE_FAILURE_KINDS,
        "StreamEnded",
        "EndpointUnreachable",
        "EndpointNotFound",
        "ConnectTimeout",
        "NoCredentials",
        *EXPIRED_CREDENTIAL_KINDS,
        WORKER_FAILED,
    }
)
"""Kinds of fatal error whose cause can pass while the configuration stays as it is: the service busy or failing
(after the session's own retries gave up), the endpoint or the network down, credentials missing or past their
expiry (a login or the credential source's next rotation brings fresh ones), workers that crash. The other kinds
need a change before a session can succeed: a model id the endpoint does not offer, access not granted, keys the
service does not know, a profile or endpoint that is wrong."""


def recoverable(kind: str) -> bool:
    """Whether a session that ended with an error of this ``kind`` is worth starting again, later, as it is."""
    return kind in RECOVERABLE_KINDS


def session_error(kind: str, message: str) -> SessionError:
    """The `SessionError` subclass for a failure's ``kind`` (so the host rebuilds what the worker classified)."""
    if kind in CREDENTIAL_KINDS:
        return CredentialsError(kind, message)
    if kind in ENDPOINT_KINDS:
        return EndpointError(kind, message)
    return SessionError(kind, message)


class EmulatorNotRunning(NovaBridgeError):
    """A client was told to use the local emulator, and none is running where it looked (`novabridge emulator`)."""


class ProtocolError(NovaBridgeError, ValueError):
    """An event that does not have the documented shape: from the service, or across the link."""


class InvalidInput(NovaBridgeError, ValueError):
    """Text or a tool result that Nova Sonic would reject, refused before anything was sent.

    Not valid UTF-8 (a lone surrogate), not strict JSON (NaN, infinity, a type JSON cannot carry), or over one of
    the service's documented size limits (`novabridge.sonic.wire`). The conversation goes on as if the call had not
    been made.
    """
