"""The pytest plugin the wheel ships (`nova_sonic_emulator`), used as another project would: an inner pytest run
in a subprocess, which finds the plugin through its ``pytest11`` entry point."""

import os
import sys

import pytest
from support.interpreters import python_for

SESSION_TEST = """
import asyncio
import time

import pytest
from novabridge.events import Transcript, TurnEnd
from novabridge.sonic import SonicSession


async def typed_turn(config, text):
    session = SonicSession(config)
    await session.start()
    try:
        await session.send_text(text)
        said = []
        async for event in session.events():
            if isinstance(event, Transcript) and event.role == "ASSISTANT":
                said.append(event.text)
            if isinstance(event, TurnEnd):
                return said
    finally:
        await session.close()


@pytest.mark.nova_sonic_scenario({"turns": [{"assistant": "Scripted for this test."}]})
def test_a_typed_turn_is_answered_from_the_scenario(nova_sonic_emulator):
    said = asyncio.run(asyncio.wait_for(typed_turn(nova_sonic_emulator.config(), "Hello there?"), 30))
    assert "Scripted for this test." in said
    [recording] = nova_sonic_emulator.recordings(count=1)
    assert [(turn["user_text"], turn["answer"]) for turn in recording.turns] == [
        ("Hello there?", "Scripted for this test.")
    ]
    # Waiting for a stream that never comes ends at the timeout, with the streams there are.
    started = time.monotonic()
    assert len(nova_sonic_emulator.recordings(count=2, timeout=0.5)) == 1
    assert 0.5 <= time.monotonic() - started < 5


async def open_a_stream(config):
    from aws_sdk_bedrock_runtime.client import AsyncBedrockRuntimeClient
    from aws_sdk_bedrock_runtime.models import InvokeModelWithBidirectionalStreamOperationInput

    client = AsyncBedrockRuntimeClient(config=config)
    operation = InvokeModelWithBidirectionalStreamOperationInput(model_id="amazon.nova-2-sonic-v1:0")
    stream = await client.invoke_model_with_bidirectional_stream(operation)
    await stream.input_stream.close()


def test_the_sdk_reaches_it_with_the_crt_default_trust(nova_sonic_emulator):
    # The transport in client_config() has no custom TLS context: the CA comes from SSL_CERT_FILE.
    async def run():
        await open_a_stream(await nova_sonic_emulator.client_config())

    asyncio.run(asyncio.wait_for(run(), 30))
"""

REACH_TEST = """
import os
import socket
import ssl
import urllib.parse

import pytest


def test_it_is_up_trusted_and_takes_faults(nova_sonic_emulator):
    assert os.environ["SSL_CERT_FILE"] == str(nova_sonic_emulator.ca_bundle)
    assert nova_sonic_emulator.environ()["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] == nova_sonic_emulator.endpoint_uri
    parts = urllib.parse.urlsplit(nova_sonic_emulator.endpoint_uri)
    assert parts.hostname == "127.0.0.1"
    context = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
    context.set_alpn_protocols(["h2"])
    with socket.create_connection((parts.hostname, parts.port), 5) as sock:
        with context.wrap_socket(sock, server_hostname=parts.hostname) as tls:
            assert tls.selected_alpn_protocol() == "h2"
    nova_sonic_emulator.inject("throttle")
    with pytest.raises(ValueError):
        nova_sonic_emulator.inject("no-such-fault")


def test_the_environment_is_restored_after_a_test():
    assert "nova-sonic-emulator" not in os.environ.get("SSL_CERT_FILE", "")
"""


@pytest.mark.interpreter_independent
def test_a_project_tests_its_nova_sonic_code_with_the_fixture(pytester: pytest.Pytester) -> None:
    pytest.importorskip("aws_sdk_bedrock_runtime")
    pytester.makepyfile(test_with_emulator=SESSION_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_emulator_may_run_on_another_interpreter(pytester: pytest.Pytester) -> None:
    # A client whose SDK pin conflicts with the emulator's runs the emulator from another environment.
    pytester.makeini(f"[pytest]\nnova_sonic_emulator_python = {python_for('312')}\n")
    pytester.makepyfile(test_reach=REACH_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_relative_emulator_python_is_taken_from_the_ini_files_folder(pytester: pytest.Pytester) -> None:
    # As a project commits it, a path within its checkout, and pytest started from the folder above the project.
    project = pytester.mkdir("project")
    python = os.path.relpath(python_for("312"), project)
    (project / "pytest.ini").write_text(f"[pytest]\nnova_sonic_emulator_python = {python}\n")
    (project / "test_reach.py").write_text(REACH_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "project")
    result.assert_outcomes(passed=2)


def test_an_emulator_that_cannot_start_says_why(pytester: pytest.Pytester) -> None:
    pytester.makeini(f"[pytest]\nnova_sonic_emulator_python = {sys.executable}-missing\n")
    pytester.makepyfile(test_reach=REACH_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "faults")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*FileNotFoundError*-missing*"])
