"""`classify`: which failures of a stream the session reconnects after and which end it, on the SDK's own
exception types, without a stream."""

import concurrent.futures

import pytest

pytest.importorskip("aws_sdk_bedrock_runtime", reason="the session's errors are the Nova Sonic SDK's (Python 3.12)")

from aws_sdk_bedrock_runtime import models
from novabridge.exceptions import SERVICE_FAILURE_KINDS, SessionError
from novabridge.sonic.errors import Failure, classify
from smithy_aws_event_stream.exceptions import InvalidEventBytes
from smithy_core.exceptions import SmithyError
from support import service_messages as says


@pytest.mark.parametrize("message", [says.INSTABILITY, says.INPUT_TIMEOUT, says.RST_STREAM_531])
def test_the_validation_errors_that_are_really_transient_reconnect(message: str) -> None:
    assert classify(models.ValidationException(message=message)) == Failure(
        "ValidationException", message, transient=True, input_rejected=False
    )


@pytest.mark.parametrize("message", [says.INVALID_INPUT, says.HISTORY_BEFORE_AUDIO, says.TOOL_RESULT_PARSE])
def test_other_validation_errors_are_a_rejected_input_that_a_new_stream_would_repeat(message: str) -> None:
    failure = classify(models.ValidationException(message=message))
    assert failure == Failure("ValidationException", message, transient=False, input_rejected=True)
    error = failure.exception()
    assert isinstance(error, SessionError)
    assert str(error) == f"ValidationException: {message}"


@pytest.mark.parametrize("kind", SERVICE_FAILURE_KINDS)
def test_the_services_own_failures_reconnect(kind: str) -> None:
    failure = classify(getattr(models, kind)(message="try again"))
    assert failure == Failure(kind, "try again", transient=True)
    assert not failure.credentials_expired


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidEventBytes(), "InvalidEventBytes"),  # a frame cut mid-way
        (ConnectionResetError(104, "Connection reset by peer"), "ConnectionResetError"),
        (TimeoutError("slow"), "TimeoutError"),
        (TimeoutError(), "TimeoutError"),
        (concurrent.futures.InvalidStateError("done"), "InvalidStateError"),
    ],
)
def test_the_networks_failures_reconnect(error: BaseException, kind: str) -> None:
    failure = classify(error)
    assert (failure.kind, failure.transient, failure.input_rejected) == (kind, True, False)


def test_what_the_sdk_wraps_is_classified_by_its_cause() -> None:
    wrapped = SmithyError("the CRT failed")
    wrapped.__cause__ = TimeoutError("connection timed out")  # as `raise ... from` sets it
    assert classify(wrapped) == Failure("TimeoutError", "connection timed out", transient=True)


def test_anything_else_ends_the_session() -> None:
    assert classify(ValueError("a bug")) == Failure("ValueError", "a bug", transient=False)
    assert classify(RuntimeError()) == Failure("RuntimeError", "RuntimeError", transient=False)


def test_a_session_error_keeps_its_kind_and_message() -> None:
    failure = classify(SessionError("ExpiredTokenException", says.EXPIRED_TOKEN))
    assert failure == Failure("ExpiredTokenException", says.EXPIRED_TOKEN, transient=False)
    assert failure.credentials_expired
