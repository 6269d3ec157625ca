"""`novabridge doctor` as a user runs it: a subprocess of the host's Python, its table and its exit status.

Every run has a home folder and an environment of its own (no AWS settings but those a test gives, instance
metadata off), a worker on the project's Python 3.12, and an endpoint on 127.0.0.1: the emulator a fixture runs and
publishes in a folder of the test's, or a port nothing listens on. The one run that names Bedrock does so where only
loopback exists.
"""

import datetime
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from novabridge import __version__
from novabridge.emulator.process import EmulatorProcess
from support.interpreters import python_for

pytestmark = pytest.mark.interpreter_independent

WORKER = python_for("312")
KEY_ID = "AKIDDOCTORTEST"
SECRET = "doctor-secret-never-shown-9f3c"
PROFILE_SECRET = "doctor-profile-secret-never-shown-41d7"
CHECKS = ["host", "worker Python", "worker packages", "credentials", "region", "endpoint"]
CHECKS += ["DNS", "TCP", "TLS", "HTTP/2", "stream"]
LOOPBACK_ONLY = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]
"""Runs a command in a network namespace of its own with loopback alone: nothing it does reaches another machine."""
ROW = re.compile(r"^(ok|warn|FAIL|skip) +(.+?)  +(.*)$")


@dataclass
class Row:
    verdict: str
    finding: str
    fix: str


@dataclass
class Outcome:
    status: int
    output: str
    rows: dict[str, Row]
    elapsed_s: float

    def row(self, name: str) -> Row:
        assert name in self.rows, self.output
        return self.rows[name]


def parse(output: str) -> dict[str, Row]:
    """The table's rows by check name; a wrapped finding or fix is joined back into one line."""
    rows: dict[str, Row] = {}
    current: Row | None = None
    in_fix = False
    for line in output.splitlines():
        if match := ROW.match(line):
            current = rows[match[2]] = Row(match[1], match[3], "")
            in_fix = False
        elif current is not None and line.strip().startswith("fix: "):
            current.fix, in_fix = line.strip().removeprefix("fix: "), True
        elif current is not None and line.startswith(" ") and line.strip():
            if in_fix:
                current.fix += " " + line.strip()
            else:
                current.finding += " " + line.strip()
    return rows


def doctor(home: Path, *args: str, env: dict[str, str] | None = None, wrap: list[str] | None = None) -> Outcome:
    """``novabridge doctor ARGS`` on this interpreter, with ``home`` as HOME and only the AWS settings in ``env``."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true", "COLUMNS": "100"}
    environment |= env or {}
    started = time.monotonic()
    done = subprocess.run(
        [*(wrap or []), sys.executable, "-m", "novabridge", "doctor", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )
    output = done.stdout + done.stderr
    return Outcome(done.returncode, output, parse(done.stdout), time.monotonic() - started)


KEYS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder where a running emulator has published its endpoint and CA."""
    state = tmp_path_factory.mktemp("emulator-state")
    emulator = EmulatorProcess(python_for("312"), state_dir=state)
    try:
        yield state
    finally:
        emulator.stop()


def published_endpoint(state: Path) -> str:
    endpoint = json.loads((state / "endpoint.json").read_text())["endpoint_uri"]
    assert isinstance(endpoint, str)
    return endpoint


def test_against_the_running_emulator_every_check_is_ok(state_dir: Path, tmp_path: Path) -> None:
    result = doctor(tmp_path, "--emulator", "--state-dir", str(state_dir), "--worker-python", WORKER, env=KEYS)
    assert result.status == 0, result.output
    assert list(result.rows) == CHECKS
    assert {name: row.verdict for name, row in result.rows.items()} == dict.fromkeys(CHECKS, "ok"), result.output
    assert f"novabridge {__version__}" in result.row("host").finding
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]}" in result.row("host").finding
    assert WORKER in result.row("worker Python").finding
    assert "Python 3.12" in result.row("worker Python").finding
    assert f"novabridge {__version__}" in result.row("worker packages").finding
    assert "aws-sdk-bedrock-runtime 0." in result.row("worker packages").finding
    assert "awscrt 0." in result.row("worker packages").finding
    assert result.row("credentials").finding == "environment variables AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY"
    assert result.row("region").finding.startswith("us-east-1 (")
    assert published_endpoint(state_dir) in result.row("endpoint").finding
    assert "TLSv1.3" in result.row("TLS").finding
    assert result.row("HTTP/2").finding == "ALPN chose h2"
    stream = re.fullmatch(
        r"opened in (\d+) ms; first event back \((\w+)\) (\d+) ms after a typed 'Hello.'", result.row("stream").finding
    )
    assert stream is not None, result.output
    assert int(stream[3]) < 2000  # the window the check gives the service
    assert "11 ok: a session should work" in result.output
    # The credentials are named by where they come from: neither the secret nor the key id is ever printed.
    assert SECRET not in result.output
    assert KEY_ID not in result.output


def test_credentials_from_a_profile_name_the_profile_and_a_profile_region_novabridge_ignores(
    state_dir: Path, tmp_path: Path
) -> None:
    aws = tmp_path / ".aws"
    aws.mkdir()
    (aws / "credentials").write_text(
        f"[doctor]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {PROFILE_SECRET}\n"
    )
    (aws / "config").write_text("[profile doctor]\nregion = eu-west-1\n")
    env = {"AWS_PROFILE": "doctor", "AWS_REGION": "us-west-2"}
    result = doctor(tmp_path, "--emulator", "--state-dir", str(state_dir), "--worker-python", WORKER, env=env)
    # A warning is not a failure: the stream still signs with the profile's keys.
    assert result.status == 0, result.output
    assert result.row("credentials").verdict == "ok"
    assert result.row("credentials").finding == "the keys of profile 'doctor' in ~/.aws/credentials or ~/.aws/config"
    region = result.row("region")
    assert region.verdict == "warn"
    assert region.finding.startswith("us-west-2 (AWS_REGION); profile 'doctor' says eu-west-1")
    assert region.fix == "set AWS_REGION=eu-west-1 if that was meant"
    assert result.row("stream").verdict == "ok"
    assert "10 ok, 1 warn" in result.output
    assert PROFILE_SECRET not in result.output
    assert "AKIDPROFILE" not in result.output


def test_temporary_credentials_that_expire_soon_are_a_warning(state_dir: Path, tmp_path: Path) -> None:
    # A credential_process (the SDK core's own provider) handing out session credentials that expire in 5 minutes.
    expiration = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=5, seconds=30)
    answer = {
        "Version": 1,
        "AccessKeyId": "ASIADOCTORTEMP",
        "SecretAccessKey": SECRET,
        "SessionToken": "doctor-session-token-never-shown",
        "Expiration": expiration.isoformat(),
    }
    process = tmp_path / "credentials.sh"
    process.write_text(f"#!/bin/sh\necho '{json.dumps(answer)}'\n")
    process.chmod(0o755)
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "config").write_text(f"[default]\ncredential_process = {process}\n")
    result = doctor(tmp_path, "--emulator", "--state-dir", str(state_dir), "--worker-python", WORKER)
    assert result.status == 0, result.output
    credentials = result.row("credentials")
    assert credentials.verdict == "warn"
    assert credentials.finding == (
        "the credential_process of profile 'default' in ~/.aws/credentials or ~/.aws/config, temporary (with a "
        "session token), expiring in 5 min"
    )
    assert credentials.fix == "refresh them before a long conversation"
    assert result.row("stream").verdict == "ok"  # the emulator takes them
    for secret in (SECRET, "ASIADOCTORTEMP", "doctor-session-token-never-shown"):
        assert secret not in result.output


def test_without_credentials_anywhere_credentials_fail_with_the_fix(state_dir: Path, tmp_path: Path) -> None:
    result = doctor(tmp_path, "--emulator", "--state-dir", str(state_dir), "--worker-python", WORKER)
    assert result.status == 1, result.output
    credentials = result.row("credentials")
    assert credentials.verdict == "FAIL"
    assert credentials.finding.startswith("no credentials found (looked at environment variables AWS_ACCESS_KEY_ID")
    assert "profile 'default' in ~/.aws/credentials or ~/.aws/config" in credentials.finding
    assert credentials.fix.startswith("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")
    assert "for the emulator any values do" in credentials.fix
    # Everything else that can be checked still is; the stream, which would only fail the same way, is not tried.
    for name in ("worker Python", "worker packages", "region", "endpoint", "DNS", "TCP", "TLS", "HTTP/2"):
        assert result.row(name).verdict == "ok", result.output
    assert result.row("stream").verdict == "skip"
    assert "1 FAIL" in result.output


def test_with_no_emulator_published_emulator_fails_with_how_to_start_one(tmp_path: Path) -> None:
    empty = tmp_path / "state"
    result = doctor(tmp_path, "--emulator", "--state-dir", str(empty), "--worker-python", WORKER, env=KEYS)
    assert result.status == 1, result.output
    endpoint = result.row("endpoint")
    assert endpoint.verdict == "FAIL"
    assert f"no emulator is running ({empty / 'endpoint.json'} does not exist)" in endpoint.finding
    assert endpoint.fix == (
        f"start `novabridge emulator --state-dir {empty}` in another terminal and leave it running, or pass --aws to "
        "check Bedrock"
    )
    assert [result.row(name).verdict for name in ("DNS", "TCP", "TLS", "HTTP/2", "stream")] == ["skip"] * 5
    assert result.row("worker packages").verdict == "ok"
    assert SECRET not in result.output


def test_a_worker_python_too_old_for_the_sdk_fails_naming_it(state_dir: Path, tmp_path: Path) -> None:
    old = python_for("311")
    result = doctor(tmp_path, "--emulator", "--state-dir", str(state_dir), "--worker-python", old, env=KEYS)
    assert result.status == 1, result.output
    worker = result.row("worker Python")
    assert worker.verdict == "FAIL"
    assert worker.finding.startswith(f"{old} is Python 3.11.")
    assert worker.finding.endswith("the Nova Sonic SDK needs >= 3.12 (--worker-python)")
    assert worker.fix.startswith("run `novabridge setup-worker`")
    assert "worker packages" not in result.rows  # nothing to say of packages a Python this old cannot run
    assert result.row("credentials").verdict == "skip"
    assert result.row("stream").verdict == "skip"
    assert result.row("TLS").verdict == "ok"  # the endpoint is still checked from the host


def test_a_worker_python_that_does_not_exist_fails_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-venv" / "bin" / "python"
    result = doctor(tmp_path, "--emulator", "--state-dir", str(tmp_path), "--worker-python", str(missing), env=KEYS)
    assert result.status == 1
    assert result.row("worker Python").verdict == "FAIL"
    assert result.row("worker Python").finding == f"{missing} does not exist (--worker-python)"


def test_a_worker_python_without_novabridge_fails_with_the_install_command(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    subprocess.run([WORKER, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=60)
    python = str(bare / "bin" / "python")
    result = doctor(tmp_path, "--emulator", "--state-dir", str(tmp_path), "--worker-python", python, env=KEYS)
    assert result.status == 1
    assert result.row("worker Python").verdict == "ok"
    packages = result.row("worker packages")
    assert packages.verdict == "FAIL"
    assert packages.finding == f"novabridge is not installed for {python}"
    assert packages.fix == f"`{python} -m pip install 'novabridge[sonic]=={__version__}'`"


def test_a_worker_with_another_novabridge_version_fails_as_a_mismatch(tmp_path: Path) -> None:
    # A Python 3.12 environment that imports the project's novabridge and SDK (through a .pth file) but whose
    # metadata, found first, says another version: what a worker left on an older release looks like.
    other = tmp_path / "other"
    subprocess.run([WORKER, "-m", "venv", "--without-pip", str(other)], check=True, timeout=60)
    python = str(other / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    shared = subprocess.run(
        [WORKER, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "shared.pth").write_text(shared + "\n")
    metadata = Path(site) / "novabridge-0.0.1.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: novabridge\nVersion: 0.0.1\n")
    result = doctor(tmp_path, "--emulator", "--state-dir", str(tmp_path), "--worker-python", python, env=KEYS)
    assert result.status == 1
    packages = result.row("worker packages")
    assert packages.verdict == "FAIL"
    assert packages.finding.startswith("novabridge 0.0.1, aws-sdk-bedrock-runtime 0.")
    assert packages.finding.endswith(f"the host has novabridge {__version__}: the two sides of the rings must match")
    assert packages.fix == f"`{python} -m pip install 'novabridge[sonic]=={__version__}'` (or the host's wheel)"
    assert result.row("credentials").verdict == "skip"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the socket is: nothing listens there


def test_an_endpoint_whose_port_is_closed_fails_tcp_at_once(tmp_path: Path) -> None:
    port = closed_port()
    result = doctor(tmp_path, "--endpoint-uri", f"https://127.0.0.1:{port}", "--worker-python", WORKER, env=KEYS)
    assert result.status == 1, result.output
    assert result.row("DNS").verdict == "ok"
    tcp = result.row("TCP")
    assert tcp.verdict == "FAIL"
    refused = re.fullmatch(rf"127\.0\.0\.1 port {port}: connection refused \((\d+) ms\)", tcp.finding)
    assert refused is not None, tcp.finding
    assert int(refused[1]) < 1000
    assert tcp.fix == f"check the endpoint, and that this machine's network and firewall let it reach 127.0.0.1:{port}"
    assert [result.row(name).verdict for name in ("TLS", "HTTP/2", "stream")] == ["skip"] * 3
    assert result.row("credentials").verdict == "ok"


def test_an_endpoint_whose_certificate_is_not_trusted_fails_tls(state_dir: Path, tmp_path: Path) -> None:
    # The emulator's endpoint without its CA: the system's trust store does not know it.
    endpoint = published_endpoint(state_dir)
    result = doctor(tmp_path, "--endpoint-uri", endpoint, "--worker-python", WORKER, env=KEYS)
    assert result.status == 1, result.output
    assert result.row("TCP").verdict == "ok"
    tls = result.row("TLS")
    assert tls.verdict == "FAIL"
    assert "presents a certificate that the system's trust store does not trust" in tls.finding
    assert tls.fix == "pass --ca-file with the CA that signed the endpoint's certificate"
    assert result.row("HTTP/2").verdict == "skip"


def test_bedrock_where_no_name_resolves_fails_dns_without_leaving_the_machine(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--aws", "--region", "us-west-2", "--worker-python", WORKER, env=KEYS, wrap=LOOPBACK_ONLY)
    assert result.status == 1, result.output
    assert result.row("endpoint").finding == "Bedrock (--aws)"
    assert result.row("region").verdict == "ok"
    dns = result.row("DNS")
    assert dns.verdict == "FAIL"
    assert dns.finding.startswith("'bedrock-runtime.us-west-2.amazonaws.com' does not resolve")
    assert dns.fix.startswith("check the endpoint's name")
    assert [result.row(name).verdict for name in ("TCP", "TLS", "HTTP/2", "stream")] == ["skip"] * 4


def test_bedrock_in_a_region_without_nova_sonic_is_a_warning(tmp_path: Path) -> None:
    env = {**KEYS, "AWS_REGION": "eu-west-3"}
    result = doctor(tmp_path, "--aws", "--worker-python", WORKER, env=env, wrap=LOOPBACK_ONLY)
    region = result.row("region")
    assert region.verdict == "warn"
    assert region.finding == (
        "eu-west-3 (AWS_REGION); Nova 2.5 Sonic is offered in us-east-1, us-west-2, eu-north-1, ap-northeast-1"
    )


def test_ca_file_without_endpoint_uri_is_a_usage_error(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--ca-file", str(tmp_path / "ca.pem"))
    assert result.status == 2
    assert "--ca-file goes with --endpoint-uri" in result.output


def test_emulator_and_aws_exclude_each_other(tmp_path: Path) -> None:
    result = doctor(tmp_path, "--emulator", "--aws")
    assert result.status == 2
    assert "not allowed with argument" in result.output
