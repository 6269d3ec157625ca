"""Which failures of a stream are worth a reconnection, and which are the caller's to fix.

The classification follows what peers learned in production (docs/nova-sonic.md, "Failures seen in practice"):
LiveKit's retryable classes, plus the ValidationException messages that are really transient ("System instability
detected", "Timed out waiting for input events", InternalErrorCode=531) and a stream cut mid-frame
(InvalidEventBytes). Anything else that says the input is wrong is fatal: reconnecting would repeat it.

A failure to connect is named by its cause, with the fix, in words a first-time user can act on: no credentials,
credentials the service refuses, model access, the region, the endpoint's name, port, TLS or HTTP/2. The service's
error types and texts are those of the Bedrock user guide ("Troubleshooting Amazon Bedrock API Error Codes":
AccessDeniedException 403 "You don't have access to the model with the specified model ID.",
UnrecognizedClientException / InvalidSignatureException 403, ExpiredTokenException 403 "The security token
included in the request is expired"; ValidationException "The provided model identifier is invalid." for a model the
region does not offer). No message carries a secret: none of these texts holds one, and credentials are named by
where they come from, never by value.
"""

from __future__ import annotations

import concurrent.futures
import time
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime

from aws_sdk_bedrock_runtime import models
from awscrt.exceptions import AwsCrtError
from smithy_aws_core.config.exceptions import ConfigError, ProfileNotFoundError
from smithy_aws_event_stream.exceptions import EventError
from smithy_core.exceptions import SmithyError, SmithyIdentityError
from smithy_http.exceptions import SmithyHTTPError

from novabridge.exceptions import EXPIRED_CREDENTIAL_KINDS, SERVICE_FAILURE_KINDS, SessionError, session_error
from novabridge.sonic.config import SonicConfig

_TRANSIENT_SERVICE_ERRORS: tuple[type[Exception], ...] = tuple(getattr(models, kind) for kind in SERVICE_FAILURE_KINDS)

_TRANSIENT_VALIDATION_MESSAGES = (
    "System instability detected",
    "Timed out waiting for input events",
    "InternalErrorCode=531",
    "RST_STREAM",
)


_CREDENTIAL_SOURCES = (
    "give aws_access_key_id and aws_secret_access_key in SonicConfig, set AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY in the environment of the process that runs the session, or name a profile (SonicConfig "
    "profile or AWS_PROFILE) that `aws configure` or `aws sso login` set up"
)


class ServiceRefusal(Exception):
    """The service's answer to a request it refused, with the message the SDK drops for errors it does not model.

    Raised by `novabridge.sonic.connect` (the transport reads the answer while it still has the body).
    """

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(f"{status} {error_type}: {message}")
        self.status = status
        self.error_type = error_type
        self.message = message


class ConnectTimedOut(TimeoutError):
    """An attempt to open a stream ran out of time.

    ``kind`` and ``finding`` say which step of reaching the endpoint fails (`novabridge.sonic.connect.probe_endpoint`).
    """

    def __init__(self, kind: str, finding: str) -> None:
        super().__init__(finding)
        self.kind = kind
        self.finding = finding


class CredentialsExpired(Exception):
    """The credential source gave credentials past their expiry (`novabridge.sonic.signing.FreshCredentials`)."""

    def __init__(self, expired_at: float) -> None:
        super().__init__(f"the credentials expired at {expired_at}")
        self.expired_at = expired_at


@dataclass(frozen=True)
class Failure:
    """A classified stream failure."""

    kind: str
    """The exception's class name, e.g. ``ModelStreamErrorException``."""
    message: str
    transient: bool
    input_rejected: bool = False
    """The service refused an input: a ValidationException other than the transient ones."""

    @property
    def credentials_expired(self) -> bool:
        """Temporary credentials past their expiry, as the service or their source said: fresh ones may come."""
        return self.kind in EXPIRED_CREDENTIAL_KINDS

    def exception(self) -> SessionError:
        """The typed exception of this failure (`novabridge.exceptions.session_error`)."""
        return session_error(self.kind, self.message)


def classify(error: BaseException, config: SonicConfig | None = None) -> Failure:
    """Classify what ended a stream, or kept one from opening.

    With ``config``, a message names the model, region and endpoint concerned.
    """
    # The SDK wraps what is not its own (the CRT's connection errors) in a bare SmithyError.
    while type(error) is SmithyError and isinstance(error.__cause__, Exception):
        error = error.__cause__
    if (connecting := _connect_failure(error, config)) is not None:
        return connecting
    kind = type(error).__name__
    message = str(getattr(error, "message", "") or error) or kind
    if isinstance(error, models.ValidationException):
        transient = any(m in message for m in _TRANSIENT_VALIDATION_MESSAGES)
        return Failure(kind, message, transient, input_rejected=not transient)
    if isinstance(error, _TRANSIENT_SERVICE_ERRORS):
        return Failure(kind, message, True)
    if isinstance(error, (EventError, AwsCrtError, OSError, TimeoutError, concurrent.futures.InvalidStateError)):
        # A cut frame, a dropped connection, a reset: the network's fault, not the conversation's.
        return Failure(kind, message, True)
    return Failure(kind, message, False)


def _connect_failure(error: BaseException, config: SonicConfig | None) -> Failure | None:
    """The failures of reaching the service and being let in, named with their fix; None for the others."""
    model = config.model_id if config is not None else "the model"
    region = config.region if config is not None else "the configured region"
    endpoint = urllib.parse.urlsplit(config.endpoint).netloc if config is not None else "the endpoint"
    if isinstance(error, SessionError):
        return Failure(error.kind, error.message, False)
    if isinstance(error, ProfileNotFoundError):
        return Failure(
            "ProfileNotFound",
            f"{error} Fix: name a profile that exists (`aws configure --profile NAME` makes one), or leave "
            "SonicConfig profile and AWS_PROFILE unset",
            False,
        )
    if isinstance(error, ConfigError):
        return Failure(
            "AwsConfigError",
            f"the shared AWS config could not be used ({error}). Fix: repair the files AWS_CONFIG_FILE and "
            "AWS_SHARED_CREDENTIALS_FILE name (by default ~/.aws/config and ~/.aws/credentials)",
            False,
        )
    if isinstance(error, CredentialsExpired):
        when = datetime.fromtimestamp(error.expired_at, UTC).isoformat(timespec="seconds")
        return Failure(
            "ExpiredCredentials",
            f"the credentials the SDK's sources give expired at {when} ({time.time() - error.expired_at:.0f} s ago), "
            "and none fresher are to be had: they are temporary credentials (an assumed role, SSO, an instance or "
            "container role, a credential_process) that nothing renewed. Fix: get fresh ones (`aws sso login`, "
            "assume the role again) or repair what refreshes them",
            False,
        )
    if isinstance(error, SmithyIdentityError):
        return Failure(
            "NoCredentials",
            f"no AWS credentials to sign with ({error}). Fix: {_CREDENTIAL_SOURCES}",
            False,
        )
    if isinstance(error, ServiceRefusal):
        return _refusal(error, region)
    if isinstance(error, models.AccessDeniedException):
        text = error.message or "access denied"
        return Failure(
            "AccessDeniedException",
            f"{text} Fix: grant this account access to {model} in {region} (Bedrock console, Model access), and "
            "allow these credentials the bedrock:InvokeModel action on it in IAM",
            False,
        )
    if isinstance(error, models.ValidationException) and "model identifier is invalid" in (error.message or ""):
        return Failure(
            "ValidationException",
            f"{error.message} {model} is not offered at {endpoint} ({region}). Fix: use a region that offers it "
            "(Nova 2 Sonic: us-east-1, us-west-2, ap-northeast-1) or another model_id",
            False,
        )
    if isinstance(error, ConnectTimedOut):
        return Failure(error.kind, f"{error.finding}. {_ENDPOINT_FIXES[error.kind]}", True)
    if isinstance(error, SmithyHTTPError) and "HTTP/2" in str(error):
        return Failure("NoHttp2", f"{endpoint}: {error}. {_ENDPOINT_FIXES['NoHttp2']}", False)
    if isinstance(error, AwsCrtError):
        for prefix, kind in _CRT_CONNECT_ERRORS:
            if error.name.startswith(prefix):
                found = f"{error.message.rstrip('.')} ({error.name})"
                return Failure(kind, f"{endpoint}: {found}. {_ENDPOINT_FIXES[kind]}", True)
    return None


def gave_up(failure: Failure, attempts: int, spent_s: float, config: SonicConfig) -> Failure:
    """The fatal failure of a start whose transient failures outlasted its retries or ``connect_timeout_s``."""
    tries = f"{attempts} attempts in {spent_s:.1f} s" if attempts > 1 else f"{spent_s:.1f} s"
    message = f"{failure.message} (gave up after {tries}; connect_timeout_s={config.connect_timeout_s:g})"
    if failure.kind == "ThrottlingException":
        message += ". Fix: start again later, or ask for a higher Bedrock quota for the model in Service Quotas"
    return Failure(failure.kind, message, False)


_CRT_CONNECT_ERRORS = (
    ("AWS_IO_DNS_", "EndpointNotFound"),
    ("AWS_IO_SOCKET_CONNECTION_REFUSED", "EndpointUnreachable"),
    ("AWS_IO_SOCKET_NETWORK_DOWN", "EndpointUnreachable"),
    ("AWS_IO_SOCKET_NO_ROUTE_TO_HOST", "EndpointUnreachable"),
    ("AWS_IO_SOCKET_INVALID_ADDRESS", "EndpointUnreachable"),
    ("AWS_IO_TLS_", "TlsFailure"),
)
"""awscrt's errors of reaching an endpoint, by name prefix."""

_ENDPOINT_FIXES = {
    "EndpointNotFound": "Fix: check endpoint_uri (or region, which names Bedrock's endpoint) and this machine's DNS",
    "EndpointUnreachable": "Fix: check endpoint_uri and that the endpoint is up (`novabridge emulator` prints its "
    "endpoint_uri), and that no firewall or proxy is in the way",
    "TlsFailure": "Fix: for the emulator give its ca_file (it prints it); for Bedrock leave ca_file unset, so the "
    "system's trust store is used, and check that nothing on the network intercepts TLS",
    "NoHttp2": "Fix: endpoint_uri must be Bedrock's runtime endpoint or the emulator's",
    "ConnectTimeout": "Fix: raise connect_timeout_s if the network is slow, or check the endpoint's health",
}


def _refusal(error: ServiceRefusal, region: str) -> Failure:
    kind, text = error.error_type, error.message.rstrip(".") + "."
    if kind in ("UnrecognizedClientException", "InvalidClientTokenId"):
        fix = f"the service does not know this access key id. Fix: use an active IAM key: {_CREDENTIAL_SOURCES}"
    elif kind in ("InvalidSignatureException", "SignatureDoesNotMatch") and "region" in text:
        fix = f"the request was signed for {region}, which this endpoint does not serve. Fix: set region (SonicConfig "
        fix += "region, or AWS_REGION) to the endpoint's region"
    elif kind in ("InvalidSignatureException", "SignatureDoesNotMatch", "IncompleteSignature"):
        fix = "the secret access key does not match the access key id. Fix: give the secret that belongs to the key"
    elif kind in EXPIRED_CREDENTIAL_KINDS:
        fix = "these are temporary credentials (an assumed role, SSO, an instance or container role) past their "
        fix += "expiry. Fix: get fresh ones (`aws sso login`, assume the role again) or refresh the session token"
    elif kind == "AccessDeniedException":
        fix = f"Fix: grant these credentials access to the model in {region} (Bedrock console, Model access, and the "
        fix += "bedrock:InvokeModel action in IAM)"
    else:
        return Failure(kind, f"the service refused the stream with {error.status} {kind}: {text}", error.status >= 500)
    return Failure(kind, f"{text} {fix[0].upper()}{fix[1:]}", False)
