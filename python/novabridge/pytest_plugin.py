# SPDX-License-Identifier: Apache-2.0
"""A pytest plugin: test any Nova Sonic client offline against `novabridge emulator`.

Installed with novabridge (entry point ``pytest11``); the fixture needs the ``emulator`` extra in the interpreter
that runs the emulator. A test asks for ``nova_sonic_emulator``, gets a fresh emulator on 127.0.0.1, and points its
client at it: ``endpoint_uri`` and trust for any SDK version (``SSL_CERT_FILE`` is set to a bundle with the
emulator's CA for the test, which awscrt's default TLS context reads, so a config the SDK copies keeps it), a ready
SDK config (`NovaSonicEmulator.client_config`), the environment variables (`NovaSonicEmulator.environ`) or a
novabridge `SonicConfig`::

    async def test_my_bot_answers(nova_sonic_emulator):
        bot = MyBot(endpoint_uri=nova_sonic_emulator.endpoint_uri, region=nova_sonic_emulator.region)
        ...
        assert nova_sonic_emulator.recordings()[0].turns[0]["answer"]

``@pytest.mark.nova_sonic_scenario({"turns": [...]})`` (or a scenario file's path) scripts the answers; ini options
``nova_sonic_emulator_python`` (the interpreter that runs the emulator: the SDK pins of the client under test and
of the emulator may conflict; a relative path is taken from the ini file's folder) and ``nova_sonic_emulator_args``
(more `novabridge emulator` options).
"""

from __future__ import annotations

import dataclasses
import json
import os
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from novabridge.emulator.process import EmulatorProcess
from novabridge.sonic.config import SonicConfig

__all__ = ["NovaSonicEmulator", "Recording"]

ACCESS_KEY_ID = "AKIDEMULATOR"
SECRET_ACCESS_KEY = "emulator-secret"
REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class Recording:
    """What the emulator heard and said on one stream that has ended."""

    stream_id: int
    summary: dict[str, Any]
    """The stream's record: its model, its ``turns`` (the user's text, the answer, whether it was interrupted, tool
    calls), its ``input_events`` and its outcome."""
    user_audio: bytes
    """The user's audio as it arrived (s16le at the stream's input rate), silence frames included."""
    assistant_audio: bytes

    @property
    def turns(self) -> list[dict[str, Any]]:
        """The stream's turns."""
        return list(self.summary["turns"])


class NovaSonicEmulator:
    """A running emulator for one test, and what a client needs to reach it."""

    def __init__(self, process: EmulatorProcess, record_dir: Path, ca_bundle: Path) -> None:
        self.process = process
        self.record_dir = record_dir
        self.endpoint_uri = process.endpoint_uri
        """``https://127.0.0.1:PORT``: the SDK config's ``endpoint_uri``."""
        self.ca_file = Path(process.ca_file)
        """The emulator's CA alone (PEM)."""
        self.ca_bundle = ca_bundle
        """This machine's trusted CAs and the emulator's: what ``SSL_CERT_FILE`` names during the test."""
        self.region = REGION
        self.access_key_id = ACCESS_KEY_ID
        self.secret_access_key = SECRET_ACCESS_KEY

    def environ(self) -> dict[str, str]:
        """The environment that points an SDK client built from the environment here.

        SDK 0.12 reads ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``; every version's awscrt reads ``SSL_CERT_FILE``.
        """
        return {
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.endpoint_uri,
            "SSL_CERT_FILE": str(self.ca_bundle),
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
        }

    def config(self, **settings: object) -> SonicConfig:
        """A novabridge `SonicConfig` for this endpoint, with ``settings``."""
        return SonicConfig.model_validate(
            {
                "endpoint_uri": self.endpoint_uri,
                "ca_file": self.ca_file,
                "region": self.region,
                "aws_access_key_id": self.access_key_id,
                "aws_secret_access_key": self.secret_access_key,
                **settings,
            }
        )

    async def client_config(self, **overrides: Any) -> Any:
        """A resolved ``AsyncBedrockRuntimeConfig`` (``aws-sdk-bedrock-runtime`` 0.12) for this endpoint.

        With the emulator's credentials and the CRT transport over HTTP/2; ``overrides`` as ``resolve`` takes them.

        Older SDKs build their ``Config`` with ``endpoint_uri`` and the CRT transport: trust comes from
        ``SSL_CERT_FILE``, which any copy of the transport the SDK makes reads again.
        """
        # Imported here: the SDK is optional, and the plugin loads in every project that installs novabridge.
        from aws_sdk_bedrock_runtime.config import AsyncBedrockRuntimeConfig
        from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig

        settings: dict[str, Any] = {
            "endpoint_uri": self.endpoint_uri,
            "region": self.region,
            "transport": AWSCRTHTTPClient(client_config=AWSCRTHTTPClientConfig(force_http_2=True)),
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }
        return await AsyncBedrockRuntimeConfig.resolve(**(settings | overrides))

    def inject(self, spec: str) -> None:
        """Arm a fault (``KIND[:name=value,...]``, as ``novabridge emulator --fault`` takes it) on the next stream."""
        self.process.inject(spec)

    def recordings(self, count: int = 0, timeout: float = 10.0) -> list[Recording]:
        """The streams that have ended, in the order they opened.

        First waits up to ``timeout`` seconds for at least ``count`` of them: the emulator writes a stream's record
        as the stream closes, just after its client has moved on.
        """
        deadline = time.monotonic() + timeout
        while len(list(self.record_dir.glob("stream-*.json"))) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        found = []
        for summary_file in self.record_dir.glob("stream-*.json"):
            stream_id = int(summary_file.stem.removeprefix("stream-"))
            found.append(
                Recording(
                    stream_id,
                    json.loads(summary_file.read_text()),
                    (self.record_dir / f"stream-{stream_id}-user.pcm").read_bytes(),
                    (self.record_dir / f"stream-{stream_id}-assistant.pcm").read_bytes(),
                )
            )
        return sorted(found, key=lambda recording: recording.stream_id)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("nova_sonic_emulator_python", "the Python that runs `novabridge emulator` (default: this one)")
    parser.addini("nova_sonic_emulator_args", "more `novabridge emulator` options for every test", type="args")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nova_sonic_scenario(scenario): the emulator's scripted turns for this test, as a dict or a file's path",
    )


def _ca_bundle(ca_file: Path, into: Path) -> Path:
    """A PEM file with the CAs this machine trusts and ``ca_file``: trusting the emulator loses nothing else."""
    paths = ssl.get_default_verify_paths()
    system = [os.environ.get("SSL_CERT_FILE"), paths.cafile, paths.openssl_cafile]
    found = next((Path(path) for path in system if path and Path(path).is_file()), None)
    bundle = into / "ca-bundle.pem"
    bundle.write_text((found.read_text() if found is not None else "") + "\n" + ca_file.read_text())
    return bundle


def _emulator_python(config: pytest.Config) -> str:
    """The ini option's interpreter: a relative path is taken from the ini file's folder, as a project commits it."""
    python = config.getini("nova_sonic_emulator_python")
    if not python:
        return sys.executable
    if os.sep in python and not os.path.isabs(python) and config.inipath is not None:
        return str(config.inipath.parent / python)
    return str(python)


@pytest.fixture
def nova_sonic_emulator(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NovaSonicEmulator]:
    """A fresh `novabridge emulator` on 127.0.0.1 for this test (see the module's documentation)."""
    folder = tmp_path_factory.mktemp("nova-sonic-emulator")
    record_dir = folder / "recordings"
    args = ["--record-dir", str(record_dir), "--credentials", f"{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}"]
    marker = request.node.get_closest_marker("nova_sonic_scenario")
    if marker is not None:
        scenario = marker.args[0] if marker.args else marker.kwargs["scenario"]
        if isinstance(scenario, dict):
            path = folder / "scenario.json"
            path.write_text(json.dumps(scenario))
            scenario = path
        args += ["--scenario", str(scenario)]
    args += request.config.getini("nova_sonic_emulator_args")
    python = _emulator_python(request.config)
    process = EmulatorProcess(python, args)
    try:
        emulator = NovaSonicEmulator(process, record_dir, _ca_bundle(Path(process.ca_file), folder))
        monkeypatch.setenv("SSL_CERT_FILE", str(emulator.ca_bundle))
        yield emulator
    finally:
        process.stop()
