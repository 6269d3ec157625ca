"""`novabridge emulator` as a process: readiness line, TLS with ALPN h2, signals, stdin faults, bad arguments.

The emulator needs Python 3.12 (its codec is the SDK's), so it always runs on the 3.12 interpreter; these tests run
on both interpreters and import neither the emulator nor the SDK. Requests are spoken in raw HTTP/2 (hand-encoded
frames and HPACK literals) so that the 3.11 pass can open streams without the SDK.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from support.interpreters import python_for

KNOWN_FAULTS = ["throttle", "instability", "model-stream-error", "corrupt-frame", "reset", "rst-531", "expire", "slow"]
NOVA_2 = "amazon.nova-2-sonic-v1:0"
THROTTLED = "Too many requests, please wait before trying again."


def emulator_command(*args: str, python: str | None = None) -> list[str]:
    """The command on Python 3.12 (or ``python``); it publishes its endpoint only where a test says (--state-dir),
    never in the home folder, where a user's own emulator may be published."""
    publishing = () if "--state-dir" in args else ("--no-state",)
    return [python or python_for("312"), "-m", "novabridge", "emulator", *publishing, *args]


class EmulatorProcess:
    """A `novabridge emulator` child with line-by-line access to its stdout."""

    def __init__(self, args: tuple[str, ...], *, stdin: int = subprocess.PIPE, python: str | None = None) -> None:
        self.proc = subprocess.Popen(
            emulator_command(*args, python=python), stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._buffer = b""
        self._eof = False
        self.ca_directory: Path | None = None

    def _fill(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout.fileno()], [], [], max(0.0, deadline - time.monotonic()))
        if ready:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            self._buffer += chunk
            self._eof = not chunk

    def readline(self, timeout: float = 30.0) -> str:
        """The next stdout line; fails if none comes within `timeout` or the process ends first."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            if self._eof:
                self.proc.wait(timeout=10)
                raise AssertionError(
                    f"emulator exited ({self.proc.returncode}) before a line; stdout {self._buffer!r}, "
                    f"stderr:\n{self.stderr()}"
                )
            if time.monotonic() >= deadline:
                raise AssertionError(f"no stdout line within {timeout} s; got {self._buffer!r}")
            self._fill(deadline)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    def read_json(self, timeout: float = 30.0) -> dict[str, Any]:
        value = json.loads(self.readline(timeout))
        assert isinstance(value, dict), value
        return value

    def assert_no_line(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._eof:
            self._fill(deadline)
        assert b"\n" not in self._buffer, f"unexpected output {self._buffer!r}"

    def ready(self) -> "Endpoint":
        info = self.read_json()
        endpoint = Endpoint(info["endpoint_uri"], info["ca_file"])
        self.ca_directory = Path(endpoint.ca_file).parent
        return endpoint

    def write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def wait_exit(self, timeout: float = 10.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the emulator still runs {timeout} s later") from None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send `signum` and wait for the exit status."""
        self.proc.send_signal(signum)
        return self.wait_exit(timeout)

    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read().decode(errors="replace")

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        if self.ca_directory is not None:  # a killed emulator leaves its certificates behind
            shutil.rmtree(self.ca_directory, ignore_errors=True)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class Endpoint:
    """The readiness line's endpoint_uri and ca_file."""

    def __init__(self, endpoint_uri: str, ca_file: str) -> None:
        self.endpoint_uri = endpoint_uri
        self.ca_file = ca_file
        parsed = urllib.parse.urlsplit(endpoint_uri)
        assert parsed.scheme == "https", endpoint_uri
        assert parsed.hostname is not None
        assert parsed.port is not None
        self.host: str = parsed.hostname
        self.port: int = parsed.port

    def tls(self, timeout: float = 10.0) -> ssl.SSLSocket:
        """A TLS connection trusting only the emulator's CA, offering ALPN h2."""
        context = ssl.create_default_context(cafile=self.ca_file)
        context.set_alpn_protocols(["h2"])
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            return context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


class Launch(Protocol):
    def __call__(self, *args: str, stdin: int = subprocess.PIPE, python: str | None = None) -> EmulatorProcess: ...


@pytest.fixture
def launch() -> Iterator[Launch]:
    """Start `novabridge emulator ARGS...` on Python 3.12 (or ``python=``); every process is killed and reaped at
    teardown."""
    processes: list[EmulatorProcess] = []

    def start(*args: str, stdin: int = subprocess.PIPE, python: str | None = None) -> EmulatorProcess:
        process = EmulatorProcess(args, stdin=stdin, python=python)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.cleanup()


def run_cli(*args: str, python: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        emulator_command(*args, python=python),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ------------------------------------------------------------------------------------------------ raw HTTP/2

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def hpack_literal(name: str, value: str) -> bytes:
    """A header field as an HPACK literal without indexing, new name, no Huffman coding."""

    def string(text: str) -> bytes:
        data = text.encode()
        assert len(data) < 127
        return bytes([len(data)]) + data

    return b"\x00" + string(name) + string(value)


class H2Connection:
    """Just enough HTTP/2 to send bodiless POSTs one after another and collect each response's DATA."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.sock = endpoint.tls()
        assert self.sock.selected_alpn_protocol() == "h2"
        self.sock.sendall(PREFACE + h2_frame(SETTINGS, 0, 0))
        self._buffer = b""
        self._next_stream = 1

    def close(self) -> None:
        self.sock.close()

    def open_stream(self, path: str, *, end_stream: bool = False) -> int:
        """Send a POST's headers (with END_STREAM: an empty body); returns the stream id."""
        stream = self._next_stream
        self._next_stream += 2
        block = b"".join(
            hpack_literal(name, value)
            for name, value in [
                (":method", "POST"),
                (":scheme", "https"),
                (":path", path),
                (":authority", f"{self.endpoint.host}:{self.endpoint.port}"),
                ("content-type", "application/vnd.amazon.eventstream"),
            ]
        )
        self.sock.sendall(h2_frame(HEADERS, (END_STREAM if end_stream else 0) | END_HEADERS, stream, block))
        return stream

    def post(self, path: str, timeout: float = 15.0) -> bytes:
        """POST with an empty body; returns the response's DATA when it ends."""
        stream = self.open_stream(path, end_stream=True)
        body = b""
        deadline = time.monotonic() + timeout
        while True:
            kind, flags, frame_stream, payload = self._read_frame(deadline)
            if kind == SETTINGS and not flags & ACK:
                self.sock.sendall(h2_frame(SETTINGS, ACK, 0))
            elif kind == GOAWAY:
                raise AssertionError(f"server sent GOAWAY {payload!r}")
            elif frame_stream == stream:
                if kind == RST_STREAM:
                    raise AssertionError(f"stream {stream} reset: {payload!r}")
                if kind == DATA:
                    body += payload
                if kind in (DATA, HEADERS) and flags & END_STREAM:
                    return body

    def read_until_closed(self, timeout: float = 10.0) -> list[int]:
        """Read (as a well-behaved client would) until the server closes the connection; the frame types seen."""
        kinds: list[int] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                kinds.append(self._read_frame(deadline)[0])
            except (EOFError, ConnectionError, ssl.SSLError):
                return kinds
            except TimeoutError:
                raise AssertionError(f"the server kept the connection open for {timeout} s; frames {kinds}") from None

    def _read_frame(self, deadline: float) -> tuple[int, int, int, bytes]:
        while True:
            if len(self._buffer) >= 9:
                length = int.from_bytes(self._buffer[:3], "big")
                if len(self._buffer) >= 9 + length:
                    header, payload = self._buffer[:9], self._buffer[9 : 9 + length]
                    self._buffer = self._buffer[9 + length :]
                    return header[3], header[4], int.from_bytes(header[5:9], "big") & 0x7FFFFFFF, payload
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no complete HTTP/2 frame in time")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the server closed the connection")
            self._buffer += data


def stream_path(model_id: str = NOVA_2) -> str:
    return f"/model/{urllib.parse.quote(model_id, safe='')}/invoke-with-bidirectional-stream"


def wait_for(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------------ tests


def test_ready_line_then_tls_with_alpn_h2(launch: Launch) -> None:
    emulator = launch()
    first = emulator.read_json()
    assert set(first) == {"endpoint_uri", "ca_file"}
    endpoint = Endpoint(first["endpoint_uri"], first["ca_file"])
    assert endpoint.host == "127.0.0.1"
    assert endpoint.endpoint_uri == f"https://127.0.0.1:{endpoint.port}"
    assert endpoint.port > 0
    ca_file = Path(endpoint.ca_file)
    assert ca_file.is_absolute()
    text = ca_file.read_text()
    assert text.startswith("-----BEGIN CERTIFICATE-----")
    assert text.rstrip().endswith("-----END CERTIFICATE-----")
    assert "PRIVATE KEY" not in text
    with endpoint.tls() as tls:
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # Only the emulator's own CA is trusted: the system store does not vouch for it.
    with (
        socket.create_connection((endpoint.host, endpoint.port), timeout=10) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(sock, server_hostname=endpoint.host).close()
    assert emulator.proc.poll() is None
    assert emulator.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_ends_the_emulator_cleanly(launch: Launch, signum: int) -> None:
    emulator = launch()
    endpoint = emulator.ready()
    ca_directory = Path(endpoint.ca_file).parent
    assert ca_directory.is_dir()
    with endpoint.tls():
        pass
    started = time.monotonic()
    assert emulator.stop(signum) == 0, emulator.stderr()
    assert time.monotonic() - started < 5.0
    assert not ca_directory.exists(), "the certificates were left behind"
    assert "Traceback" not in emulator.stderr()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((endpoint.host, endpoint.port), timeout=5).close()


def test_a_signal_cuts_open_streams_and_records_them(launch: Launch, tmp_path: Path) -> None:
    emulator = launch("--record-dir", str(tmp_path))
    endpoint = emulator.ready()
    idle = H2Connection(endpoint)
    busy = H2Connection(endpoint)
    try:
        busy.open_stream(stream_path())  # no END_STREAM: the stream stays open, waiting for events
        time.sleep(0.3)
        started = time.monotonic()
        emulator.proc.send_signal(signal.SIGTERM)
        idle.read_until_closed(timeout=8)
        busy.read_until_closed(timeout=5)
    finally:
        idle.close()
        busy.close()
    assert emulator.wait_exit() == 0, emulator.stderr()
    assert time.monotonic() - started < 5.0
    assert not Path(endpoint.ca_file).parent.exists()
    summary = json.loads((tmp_path / "stream-1.json").read_text())
    assert summary["model_id"] == NOVA_2
    assert summary["outcome"] != "open"


def test_the_endpoint_is_published_in_the_state_dir_while_the_emulator_serves(launch: Launch, tmp_path: Path) -> None:
    state = tmp_path / "state"
    emulator = launch("--state-dir", str(state))
    endpoint = emulator.ready()
    published = json.loads((state / "endpoint.json").read_text())
    assert published == {"endpoint_uri": endpoint.endpoint_uri, "ca_file": endpoint.ca_file, "pid": emulator.proc.pid}
    assert emulator.stop() == 0, emulator.stderr()
    assert not (state / "endpoint.json").exists()
    assert f"published in {state / 'endpoint.json'}" in emulator.stderr()
    # A second emulator replaces the first one's file; the first, stopping later, leaves the second's alone.
    first = launch("--state-dir", str(state))
    first.ready()
    second = launch("--state-dir", str(state))
    endpoint = second.ready()
    assert first.stop() == 0
    assert json.loads((state / "endpoint.json").read_text())["endpoint_uri"] == endpoint.endpoint_uri
    assert run_cli("--state-dir", str(state), "--no-state").returncode == 2  # one or the other


def test_from_a_python_that_cannot_run_it_the_emulator_runs_on_the_workers(launch: Launch) -> None:
    """The OpenAvatarChat environment (3.11) starts it on the worker's 3.12, in its own place (exec, same pid)."""
    emulator = launch("--worker-python", python_for("312"), python=python_for("311"))
    endpoint = emulator.ready()
    with endpoint.tls() as tls:
        assert tls.selected_alpn_protocol() == "h2"
    argv = Path(f"/proc/{emulator.proc.pid}/cmdline").read_bytes().split(b"\0")
    assert argv[:4] == [python_for("312").encode(), b"-m", b"novabridge", b"emulator"]
    assert emulator.stop() == 0
    assert "this is Python 3.11; running it on" in emulator.stderr()
    missing = run_cli("--worker-python", "/nonexistent/python", python=python_for("311"))
    assert missing.returncode == 2
    assert "--worker-python /nonexistent/python does not exist: run `novabridge setup-worker`" in missing.stderr
    # A worker Python without the emulator says how to get it, instead of handing the command on again.
    without = run_cli("--worker-python", python_for("311"), python=python_for("311"))
    assert without.returncode == 2
    assert "run `novabridge setup-worker` again" in without.stderr
    assert without.stderr.count("running it on") == 1


def test_a_fixed_port_is_honoured(launch: Launch) -> None:
    port = free_port()
    emulator = launch("--port", str(port))
    endpoint = emulator.ready()
    assert endpoint.endpoint_uri == f"https://127.0.0.1:{port}"
    with endpoint.tls() as tls:
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.getpeername()[1] == port


def test_a_busy_port_is_an_error(launch: Launch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        emulator = launch("--port", str(busy.getsockname()[1]))
        assert emulator.proc.wait(timeout=30) != 0
        assert emulator.proc.stdout is not None
        assert emulator.proc.stdout.read() == b""


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_a_non_loopback_host_needs_allow_remote(host: str) -> None:
    result = run_cli("--host", host)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "non-loopback" in result.stderr
    assert host in result.stderr
    assert "allow" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_a_bad_fault_names_the_known_kinds() -> None:
    result = run_cli("--fault", "nonsense")
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "nonsense" in result.stderr
    for kind in KNOWN_FAULTS:
        assert kind in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("spec", ["throttle:count=0", "slow:delay=1", "instability:after_s=soon"])
def test_a_bad_fault_parameter_is_a_usage_error(spec: str) -> None:
    result = run_cli("--fault", "throttle", "--fault", spec)
    assert result.returncode == 2, result
    assert result.stderr.startswith("novabridge emulator: "), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("empty-answer.yaml", "turns:\n  - user: hi\n    assistant: ''\n", "turn 1: assistant"),
        ("unknown-key.yaml", "turns: []\nvoices: [amy]\n", "unknown keys"),
        ("broken.json", '{"turns": [', "broken.json"),
        ("field.yaml", "turns:\n  - assistant: 'It is {temperature}.'\n", "temperature"),
        ("missing.yaml", None, "missing.yaml"),
    ],
)
def test_a_bad_scenario_is_a_usage_error(tmp_path: Path, name: str, text: str | None, message: str) -> None:
    path = tmp_path / name
    if text is not None:
        path.write_text(text, encoding="utf-8")
    result = run_cli("--scenario", str(path))
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_good_scenario_is_accepted(launch: Launch, tmp_path: Path) -> None:
    path = tmp_path / "turns.yaml"
    path.write_text("turns:\n  - user: hi\n    assistant: Hello {n}.\n", encoding="utf-8")
    emulator = launch("--scenario", str(path))
    emulator.ready()
    assert emulator.stop() == 0


def test_fault_lines_on_stdin_are_acknowledged(launch: Launch) -> None:
    emulator = launch()
    emulator.ready()
    emulator.write("model-stream-error:after_chunks=3,count=2\n")
    assert emulator.read_json() == {"armed": "model-stream-error", "count": 2}
    emulator.write("\n   \n")
    emulator.assert_no_line(0.3)
    emulator.write("throttle\n")
    assert emulator.read_json() == {"armed": "throttle", "count": 1}
    emulator.write("nonsense\n")
    error = emulator.read_json()
    assert set(error) == {"error"}
    assert "nonsense" in error["error"]
    assert all(kind in error["error"] for kind in KNOWN_FAULTS)
    for bad in ("throttle:count=0", "slow:delay=1", "rst-531:after_s=x"):
        emulator.write(bad + "\n")
        assert set(emulator.read_json()) == {"error"}, bad
    emulator.write("  slow:delay_s=0.5  \n")
    assert emulator.read_json() == {"armed": "slow", "count": 1}
    assert emulator.proc.poll() is None
    assert emulator.stop() == 0


def test_several_fault_lines_in_one_write_are_each_acknowledged(launch: Launch) -> None:
    emulator = launch()
    emulator.ready()
    emulator.write("throttle\nslow:count=2\nnonsense\n")
    assert emulator.read_json(timeout=3) == {"armed": "throttle", "count": 1}
    assert emulator.read_json(timeout=3) == {"armed": "slow", "count": 2}
    assert set(emulator.read_json(timeout=3)) == {"error"}


def test_a_partial_stdin_line_does_not_stall_the_server(launch: Launch) -> None:
    emulator = launch()
    endpoint = emulator.ready()
    emulator.write("thro")
    time.sleep(0.3)
    with endpoint.tls(timeout=3) as tls:
        assert tls.selected_alpn_protocol() == "h2"
    emulator.write("ttle\n")
    assert emulator.read_json(timeout=5) == {"armed": "throttle", "count": 1}
    assert emulator.stop(timeout=5) == 0


def test_closed_stdin_is_fine(launch: Launch) -> None:
    emulator = launch()
    endpoint = emulator.ready()
    assert emulator.proc.stdin is not None
    emulator.proc.stdin.close()
    time.sleep(0.3)
    with endpoint.tls() as tls:
        assert tls.selected_alpn_protocol() == "h2"
    assert emulator.proc.poll() is None
    assert emulator.stop() == 0


def test_stdin_from_dev_null_is_fine(launch: Launch) -> None:
    emulator = launch(stdin=subprocess.DEVNULL)
    endpoint = emulator.ready()
    time.sleep(0.3)
    assert emulator.proc.poll() is None, f"the emulator died: {emulator.stderr()}"
    with endpoint.tls() as tls:
        assert tls.selected_alpn_protocol() == "h2"
    assert emulator.stop() == 0


@pytest.mark.parametrize("spec", ["amazon.nova-3-sonic", "amazon.nova-3-sonic=nova-3-sonic", "=nova-2-sonic"])
def test_a_bad_served_model_is_a_usage_error(spec: str) -> None:
    result = run_cli("--serve-model", spec)
    assert result.returncode == 2, result
    assert "expected ID=GENERATION with GENERATION one of nova-sonic, nova-2-sonic" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_served_model_opens_a_stream_and_an_unknown_one_is_refused(launch: Launch, tmp_path: Path) -> None:
    emulator = launch("--serve-model", "amazon.nova-3-sonic=nova-2-sonic", "--record-dir", str(tmp_path))
    connection = H2Connection(emulator.ready())
    try:
        assert connection.post(stream_path("amazon.nova-3-sonic")) == b""
        wait_for(tmp_path / "stream-1.json")
        assert json.loads((tmp_path / "stream-1.json").read_text())["model_id"] == "amazon.nova-3-sonic"
        rejected = json.loads(connection.post(stream_path("amazon.nova-4-sonic")))
        assert rejected == {"message": "The provided model identifier is invalid."}
    finally:
        connection.close()
    assert emulator.stop() == 0


def test_it_logs_each_stream_and_each_refusal_with_its_rule(launch: Launch, tmp_path: Path) -> None:
    emulator = launch("--record-dir", str(tmp_path))
    connection = H2Connection(emulator.ready())
    try:
        assert connection.post(stream_path()) == b""
        wait_for(tmp_path / "stream-1.json")
        assert json.loads(connection.post(stream_path("amazon.nova-4-sonic")))["message"] == (
            "The provided model identifier is invalid."
        )
    finally:
        connection.close()
    assert emulator.stop() == 0
    log = emulator.stderr()
    assert re.search(r"INFO: stream 1: [0-9.]+s opened: model amazon\.nova-2-sonic-v1:0, key none \(unsigned\)", log), (
        log
    )
    assert re.search(r"INFO: stream 1: [0-9.]+s closed: client-closed, 0 turns, 0 bytes of user audio", log), log
    refused = 'WARNING: refused: 400 ValidationException "The provided model identifier is invalid." '
    assert refused + "[model 'amazon.nova-4-sonic' is not served here (served: amazon.nova-2-5-sonic," in log, log
    # The same lines are in the stream's recording.
    recorded = json.loads((tmp_path / "stream-1.json").read_text())["log"]
    assert [line.split(" ", 1)[1].split(":")[0] for line in recorded] == ["opened", "closed"]


def test_quiet_logs_nothing_for_a_stream_or_a_refusal(launch: Launch) -> None:
    emulator = launch("--quiet")
    connection = H2Connection(emulator.ready())
    try:
        assert connection.post(stream_path()) == b""
        assert json.loads(connection.post(stream_path("amazon.nova-4-sonic")))["message"]
    finally:
        connection.close()
    assert emulator.stop() == 0
    log = emulator.stderr()
    assert "stream 1" not in log, log
    assert "refused" not in log, log


def test_record_dir_is_created_when_a_stream_begins(launch: Launch, tmp_path: Path) -> None:
    record_dir = tmp_path / "records" / "run-1"
    emulator = launch("--record-dir", str(record_dir))
    endpoint = emulator.ready()
    assert not record_dir.exists(), "nothing is recorded before a stream begins"
    connection = H2Connection(endpoint)
    try:
        assert connection.post(stream_path()) == b"", "a stream closed at once gets no events"
        wait_for(record_dir / "stream-1.json")
        summary = json.loads((record_dir / "stream-1.json").read_text())
        assert summary["stream_id"] == 1
        assert summary["model_id"] == NOVA_2
        assert summary["outcome"] == "client-closed"
        assert summary["input_events"] == []
        assert (record_dir / "stream-1-user.pcm").read_bytes() == b""
        assert (record_dir / "stream-1-assistant.pcm").read_bytes() == b""
        assert (record_dir / "stream-1-turns.jsonl").read_bytes() == b""
        # A request refused before its stream begins is not a stream and is not recorded.
        rejected = json.loads(connection.post(stream_path("amazon.unknown-model-v9:0")))
        assert rejected == {"message": "The provided model identifier is invalid."}
        assert connection.post(stream_path()) == b""
        wait_for(record_dir / "stream-2.json")
    finally:
        connection.close()
    assert emulator.stop() == 0
    assert sorted(p.name for p in record_dir.iterdir()) == [
        "stream-1-assistant.pcm",
        "stream-1-turns.jsonl",
        "stream-1-user.pcm",
        "stream-1.json",
        "stream-2-assistant.pcm",
        "stream-2-turns.jsonl",
        "stream-2-user.pcm",
        "stream-2.json",
    ]


def test_a_fault_armed_on_stdin_takes_effect(launch: Launch, tmp_path: Path) -> None:
    record_dir = tmp_path / "records"
    emulator = launch("--record-dir", str(record_dir))
    endpoint = emulator.ready()
    emulator.write("throttle:count=2\n")
    assert emulator.read_json() == {"armed": "throttle", "count": 2}
    connection = H2Connection(endpoint)
    try:
        assert json.loads(connection.post(stream_path())) == {"message": THROTTLED}
        assert json.loads(connection.post(stream_path())) == {"message": THROTTLED}
        assert connection.post(stream_path()) == b""
        wait_for(record_dir / "stream-1.json")
    finally:
        connection.close()
    assert emulator.stop() == 0
    assert sorted(p.name for p in record_dir.glob("*.json")) == ["stream-1.json"]


def test_a_fault_from_the_command_line_takes_effect(launch: Launch) -> None:
    emulator = launch("--fault", "throttle")
    endpoint = emulator.ready()
    connection = H2Connection(endpoint)
    try:
        assert json.loads(connection.post(stream_path())) == {"message": THROTTLED}
        assert connection.post(stream_path()) == b""
    finally:
        connection.close()


def test_emulator_process_arms_faults_while_it_runs(tmp_path: Path) -> None:
    from novabridge.emulator.process import EmulatorProcess as Served

    record_dir = tmp_path / "records"
    emulator = Served(python_for("312"), ["--record-dir", str(record_dir)])
    try:
        emulator.inject("throttle:count=2")
        with pytest.raises(ValueError, match="unknown fault 'bogus'; known: throttle"):
            emulator.inject("bogus")
        endpoint = Endpoint(emulator.endpoint_uri, emulator.ca_file)
        connection = H2Connection(endpoint)
        try:
            assert json.loads(connection.post(stream_path())) == {"message": THROTTLED}
            assert json.loads(connection.post(stream_path())) == {"message": THROTTLED}
            assert connection.post(stream_path()) == b"", "armed twice, taken twice"
        finally:
            connection.close()
    finally:
        emulator.stop()
    assert emulator.process.returncode == 0
