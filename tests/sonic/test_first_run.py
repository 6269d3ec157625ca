"""What a first run or production meets when a session cannot start: each a typed `SessionError` within 5 s that
names the cause and the fix, through the real SDK, transport, HTTP/2 and TLS against the emulator.

Every test also checks that asyncio reported nothing (an unretrieved task exception is a failure) and that neither
the secret key nor the session token shows in the message.
"""

import asyncio
import gc
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from novabridge.emulator import Emulator
from novabridge.events import TurnEnd
from novabridge.exceptions import CredentialsError, EndpointError, SessionError
from novabridge.sonic import SessionClosed, SonicConfig, SonicSession
from novabridge.sonic.models import NOVA_2_5_SONIC, NOVA_SONIC_V1
from support.aws import without_aws_settings
from support.emulator_in_process import EmulatorFactory

SECRET = "first-run-secret-never-shown"
KEY = ("AKIDFIRSTRUN", SECRET)
SESSION_TOKEN = "first-run-session-token-never-shown"
LIMIT_S = 5.0
"""The issue's bound: a session that cannot start says so, and why, within this."""


def config_for(emulator: Emulator, **overrides: Any) -> SonicConfig:
    settings: dict[str, Any] = {
        "endpoint_uri": emulator.endpoint_uri,
        "ca_file": emulator.ca_file,
        "aws_access_key_id": KEY[0],
        "aws_secret_access_key": SECRET,
        "region": "us-east-1",
        **overrides,
    }
    return SonicConfig(**{name: value for name, value in settings.items() if value is not None})


@pytest.fixture
async def loop_reports() -> AsyncIterator[list[dict[str, Any]]]:
    """What asyncio hands the loop's exception handler during the test (a task exception never retrieved, ...)."""
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    yield reports
    loop.set_exception_handler(None)


async def start_fails(config: SonicConfig, reports: list[dict[str, Any]]) -> SessionError:
    """Start a session that cannot start: the typed error, raised within `LIMIT_S`, nothing left unretrieved."""
    session = SonicSession(config)
    started = time.monotonic()
    with pytest.raises(SessionError) as caught:
        await session.start()
    elapsed = time.monotonic() - started
    error = caught.value
    assert elapsed < LIMIT_S, f"{error.kind} took {elapsed:.1f} s"
    assert str(error) == f"{error.kind}: {error.message}"
    for secret in (SECRET, SESSION_TOKEN):
        assert secret not in str(error)
    with pytest.raises(SessionClosed):  # a session that could not start is closed
        await session.send_audio(bytes(640))
    # Tasks the SDK and awscrt left behind report on collection or at their end: give them the chance.
    for _ in range(3):
        gc.collect()
        await asyncio.sleep(0.05)
    assert reports == [], [(report.get("message"), report.get("exception")) for report in reports]
    return error


# ------------------------------------------------------------------------------------------------ credentials


async def test_no_credentials_anywhere(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without_aws_settings(monkeypatch, tmp_path / "home")
    emulator = await make_emulator(options={"credentials": KEY})
    error = await start_fails(config_for(emulator, aws_access_key_id=None, aws_secret_access_key=None), loop_reports)
    assert isinstance(error, CredentialsError)
    assert error.kind == "NoCredentials"
    for fix in ("aws_access_key_id", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "aws sso login"):
        assert fix in error.message
    assert (emulator.rejected, emulator.recordings) == ([], [])  # nothing unsigned was sent


async def test_a_profile_that_does_not_exist(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    without_aws_settings(monkeypatch, tmp_path / "home")
    emulator = await make_emulator(options={"credentials": KEY})
    config = config_for(emulator, aws_access_key_id=None, aws_secret_access_key=None, profile="nobody")
    error = await start_fails(config, loop_reports)
    assert isinstance(error, CredentialsError)
    assert error.kind == "ProfileNotFound"
    assert "'nobody'" in error.message
    assert "aws configure --profile" in error.message


@pytest.mark.parametrize(
    ("key", "kind", "cause"),
    [
        pytest.param(
            ("AKIDSOMEONEELSE", SECRET), "UnrecognizedClientException", "does not know this access key", id="key"
        ),
        pytest.param(
            (KEY[0], "not-the-secret"), "InvalidSignatureException", "secret access key does not", id="secret"
        ),
    ],
)
async def test_keys_the_service_refuses(
    make_emulator: EmulatorFactory,
    loop_reports: list[dict[str, Any]],
    key: tuple[str, str],
    kind: str,
    cause: str,
) -> None:
    emulator = await make_emulator(options={"credentials": KEY})
    config = config_for(emulator, aws_access_key_id=key[0], aws_secret_access_key=key[1])
    error = await start_fails(config, loop_reports)
    assert isinstance(error, CredentialsError)
    assert error.kind == kind
    assert cause in error.message
    assert "not-the-secret" not in error.message
    assert [(status, error_type) for status, error_type, _ in emulator.rejected] == [(403, kind)]
    # The service's own words come through, though the SDK models no 403 of this operation and drops them.
    assert emulator.rejected[0][2] in error.message


async def test_an_expired_session_token(make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]) -> None:
    emulator = await make_emulator(options={"credentials": KEY, "credentials_expire_at": time.time() - 1})
    error = await start_fails(config_for(emulator, aws_session_token=SESSION_TOKEN), loop_reports)
    assert isinstance(error, CredentialsError)
    assert error.kind == "ExpiredTokenException"
    assert "The security token included in the request is expired" in error.message
    assert "aws sso login" in error.message
    assert emulator.rejected == [
        (403, "ExpiredTokenException", "The security token included in the request is expired")
    ]


# -------------------------------------------------------------------------------------------------- endpoint


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_endpoint_nothing_listens_on(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    emulator = await make_emulator()
    port = closed_port()
    error = await start_fails(config_for(emulator, endpoint_uri=f"https://127.0.0.1:{port}"), loop_reports)
    assert isinstance(error, EndpointError)
    assert error.kind == "EndpointUnreachable"
    assert f"127.0.0.1:{port}" in error.message
    assert "connection refused" in error.message
    assert "endpoint_uri" in error.message


START_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from novabridge.exceptions import SessionError
    from novabridge.sonic import SonicConfig, SonicSession

    async def main():
        reports = []
        asyncio.get_running_loop().set_exception_handler(lambda _, context: reports.append(context["message"]))
        config = SonicConfig.model_validate_json(sys.stdin.read())
        started = time.monotonic()
        try:
            await SonicSession(config).start()
            outcome = {"started": True}
        except SessionError as error:
            outcome = {"type": type(error).__name__, "kind": error.kind, "message": error.message}
        outcome["elapsed"] = time.monotonic() - started
        await asyncio.sleep(0.2)
        outcome["reports"] = reports
        print(json.dumps(outcome))

    asyncio.run(main())
    """
)
"""`SonicSession.start` in a process of its own, for failures that leave awscrt a connection attempt it cannot take
back: when the loop that made it closes, asyncio cancels the attempt's future, and awscrt's callback, 10-30 s later,
reports the cancelled future as an unraisable error in whatever runs then (here: the next test)."""


async def start_in_a_process(config: SonicConfig, *, loopback_only: bool = False) -> dict[str, Any]:
    """`START_SCRIPT` with ``config`` on its stdin (so no secret is in argv); its outcome, stderr checked empty."""
    command = [sys.executable, "-c", START_SCRIPT]
    if loopback_only:
        # A network namespace of its own, with loopback alone: no name resolves and nothing leaves the machine.
        command = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, START_SCRIPT]
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    secrets = {"aws_access_key_id": KEY[0], "aws_secret_access_key": SECRET}
    stdin = json.dumps({**config.model_dump(mode="json"), **secrets}).encode()
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode == 0, stderr.decode()
    assert stderr.decode() == ""
    outcome: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    assert outcome["elapsed"] < LIMIT_S, outcome
    assert outcome["reports"] == []
    assert SECRET not in outcome.get("message", "")
    return outcome


async def test_a_name_that_does_not_resolve_where_only_loopback_exists() -> None:
    config = SonicConfig(endpoint_uri="https://bedrock-runtime.nowhere.invalid", region="us-east-1")
    outcome = await start_in_a_process(config, loopback_only=True)
    assert outcome.get("type") == "EndpointError", outcome
    assert outcome["kind"] == "EndpointNotFound"
    assert "bedrock-runtime.nowhere.invalid" in outcome["message"]
    assert "DNS" in outcome["message"]


def test_a_ca_file_that_cannot_trust_anything_is_refused_by_the_config(tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    keys = {"aws_access_key_id": KEY[0], "aws_secret_access_key": SECRET}
    with pytest.raises(pydantic.ValidationError, match="holds no PEM certificate"):
        SonicConfig(endpoint_uri="https://127.0.0.1:1", ca_file=not_pem, **keys)
    with pytest.raises(pydantic.ValidationError, match="not a readable file"):
        SonicConfig(endpoint_uri="https://127.0.0.1:1", ca_file=tmp_path, **keys)


async def test_a_certificate_the_ca_file_does_not_trust(make_emulator: EmulatorFactory) -> None:
    target, other = await make_emulator(), await make_emulator()
    # awscrt's TLS (s2n) reports a failed handshake only after 10-30 s; the session names it within its deadline.
    outcome = await start_in_a_process(config_for(target, ca_file=other.ca_file))
    assert outcome.get("type") == "EndpointError", outcome
    assert outcome["kind"] == "TlsFailure"
    assert "does not trust" in outcome["message"]
    assert other.ca_file in outcome["message"]
    assert "ca_file" in outcome["message"].split("Fix:")[1]
    assert (target.recordings, target.rejected) == ([], [])


def test_an_explicit_default_port_is_dropped_and_a_region_must_be_one() -> None:
    # The SDK's signer fails on ":443" and the stream would never open.
    config = SonicConfig(endpoint_uri="https://localhost:443", aws_access_key_id="a", aws_secret_access_key="b")
    assert config.endpoint_uri == "https://localhost"
    assert config.endpoint == "https://localhost"
    assert SonicConfig(region="eu-north-1").endpoint == "https://bedrock-runtime.eu-north-1.amazonaws.com"
    with pytest.raises(pydantic.ValidationError, match="not an AWS region name"):
        SonicConfig(region="us east")


# ------------------------------------------------------------------------------------------ model and region


async def test_model_access_not_granted(make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]) -> None:
    emulator = await make_emulator(options={"credentials": KEY, "denied_models": {NOVA_2_5_SONIC}})
    error = await start_fails(config_for(emulator), loop_reports)
    assert type(error) is SessionError
    assert error.kind == "AccessDeniedException"
    assert "You don't have access to the model with the specified model ID." in error.message
    assert f"{NOVA_2_5_SONIC} in us-east-1" in error.message
    assert "bedrock:InvokeModel" in error.message


async def test_a_model_the_region_does_not_offer(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    emulator = await make_emulator(options={"credentials": KEY, "models": {NOVA_SONIC_V1}})
    error = await start_fails(config_for(emulator), loop_reports)
    assert type(error) is SessionError
    assert error.kind == "ValidationException"
    assert "The provided model identifier is invalid." in error.message
    assert "use a region that offers it" in error.message


async def test_a_model_it_does_not_know_is_served_as_the_generation_the_emulator_is_told(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    unknown = "amazon.nova-3-sonic"
    emulator = await make_emulator(options={"credentials": KEY})
    error = await start_fails(config_for(emulator, model_id=unknown), loop_reports)
    assert error.kind == "ValidationException"
    assert "The provided model identifier is invalid." in error.message

    serving = await make_emulator(options={"credentials": KEY, "extra_models": {unknown: "nova-2-sonic"}})
    session = SonicSession(config_for(serving, model_id=unknown, endpointing="HIGH"))
    await session.start()
    try:
        await session.send_text("What can you do?")  # typed text during a session: a Nova 2 rule
        async with asyncio.timeout(20):
            async for event in session.events():
                if isinstance(event, TurnEnd):
                    break
    finally:
        await session.close()
    (recording,) = serving.recordings
    assert recording.model_id == unknown
    assert [(turn.source, turn.user_text) for turn in recording.turns] == [("text", "What can you do?")]


async def test_a_region_the_endpoint_does_not_serve(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    emulator = await make_emulator(options={"credentials": KEY, "region": "us-east-1"})
    error = await start_fails(config_for(emulator, region="eu-west-1"), loop_reports)
    assert error.kind == "InvalidSignatureException"
    assert "Credential should be scoped to a valid region, not 'eu-west-1'." in error.message
    assert "set region" in error.message
    assert emulator.recordings == []


async def test_throttled_at_connect_for_longer_than_the_retries(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    emulator = await make_emulator(options={"credentials": KEY})
    emulator.inject("throttle", count=1000)
    error = await start_fails(config_for(emulator, retry={"max_attempts": 2, "initial_backoff_s": 0.05}), loop_reports)
    assert error.kind == "ThrottlingException"
    assert "gave up after 3 attempts" in error.message
    assert "quota" in error.message
    assert len(emulator.rejected) == 3
    # With the default policy the session keeps trying only while connect_timeout_s lasts.
    error = await start_fails(config_for(emulator, connect_timeout_s=2.0), loop_reports)
    assert error.kind == "ThrottlingException"
    assert "connect_timeout_s=2" in error.message
    assert len(emulator.rejected) > 4


async def test_a_started_session_is_unaffected(
    make_emulator: EmulatorFactory, loop_reports: list[dict[str, Any]]
) -> None:
    # The watch on each call stays out of the way of a stream that opens.
    emulator = await make_emulator(options={"credentials": KEY, "region": "us-east-1"})
    async with SonicSession(config_for(emulator, connect_timeout_s=2.0)) as session:
        await session.send_audio(bytes(3200))
    assert emulator.rejected == []
    assert [recording.outcome for recording in emulator.recordings] == ["completed"]
    gc.collect()
    await asyncio.sleep(0.05)
    assert loop_reports == []
