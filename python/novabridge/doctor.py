"""`novabridge doctor`: every check a Nova Sonic session depends on, each with a verdict and the fix, in one table.

Run from the host's environment (OpenAvatarChat's Python 3.11, or any other), it checks what a session meets, in
the order it meets it: the host's and the worker's interpreters and packages (the worker runs on Python >= 3.12
with ``novabridge[sonic]``, the host's novabridge version), where credentials come from (the SDK's own provider
chain, run in the worker's interpreter and environment; the source only, never a value), the region, the endpoint's
name, TCP port, TLS and HTTP/2 (ALPN ``h2``), and finally a real stream through a worker and the SDK: sessionStart
to the first event the service sends back, given two seconds after the stream opens. The exit status is 1 if any
check fails.

The endpoint: ``--emulator`` (the emulator published in the state folder), ``--aws`` (Bedrock's regional
endpoint), or ``--endpoint-uri`` (any other, such as a VPC endpoint of Bedrock). With none of them: the emulator if
one is published and running, else Bedrock. Someone who started the emulator means it; the endpoint row says which
was chosen and why.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from novabridge._novabridge import __version__
from novabridge.events import Error, Reconnecting
from novabridge.exceptions import BridgeError, EmulatorNotRunning, SessionError
from novabridge.host.pool import WorkerPool
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.models import DEFAULT_MODEL_ID, MODELS

STEP_TIMEOUT_S = 3.0
"""Each step of reaching the endpoint (name, TCP, TLS) may take this long."""
PROBE_TIMEOUT_S = 30.0
"""The worker's report (its interpreter starting, the SDK's import, the credential chain) may take this long."""
ANSWER_WINDOW_S = 2.0
"""Once the stream is open, how long the service has to send its first event back."""
START_GRACE_S = 10.0
"""The stream check waits ``connect_timeout_s`` plus this for the worker's session to come up or fail."""
GREETING = "Hello."
"""Typed to the model once the stream is open (Nova 2 answers text), so that the service has something to answer."""
EXPIRY_WARNING_S = 15 * 60
"""Temporary credentials that expire sooner than this are a warning: a conversation may outlive them."""
T = TypeVar("T")
WORKER_PACKAGES = ("novabridge", "aws-sdk-bedrock-runtime", "smithy-http", "awscrt")
SETUP_WORKER = "run `novabridge setup-worker` (it makes a Python >= 3.12 environment with novabridge[sonic])"

PROBE = """
import json, sys
report = {"python": "%d.%d.%d" % sys.version_info[:3], "packages": {}}
try:
    from importlib import metadata
except ImportError:
    metadata = None
for name in PACKAGES:
    try:
        report["packages"][name] = metadata.version(name)
    except Exception:
        report["packages"][name] = None
if sys.version_info >= (3, 12) and report["packages"]["novabridge"] is not None:
    try:
        import novabridge.worker.main  # what a worker imports: the SDK, awscrt and the native rings
    except Exception as error:
        report["import_error"] = "%s: %s" % (type(error).__name__, error)
    else:
        import asyncio
        settings = json.loads(sys.argv[1])
        try:
            from novabridge.sonic.credentials import find_credentials
            found = asyncio.run(find_credentials(settings["profile"], settings["region"]))
        except Exception as error:
            report["credentials_error"] = "%s: %s" % (type(error).__name__, error)
        else:
            report["credentials"] = found.as_dict()
sys.stdout.write("\\n" + json.dumps(report) + "\\n")
""".replace("PACKAGES", repr(WORKER_PACKAGES))
"""What the worker's interpreter runs (``python -c``) to report itself: written for any Python 3, since a worker
too old for the SDK must still say which version it is. Its report is the last line of its output."""


class Verdict(enum.StrEnum):
    """How a check came out."""

    OK = "ok"
    WARN = "warn"
    """It works, but something will likely go wrong later, or is not what was meant."""
    FAIL = "FAIL"
    SKIP = "skip"
    """Not tried: a check it depends on failed."""


@dataclasses.dataclass(frozen=True)
class Check:
    """One row of the table."""

    name: str
    verdict: Verdict
    finding: str
    fix: str = ""


Target = Literal["emulator", "aws"]


@dataclasses.dataclass(frozen=True)
class DoctorOptions:
    """What `novabridge doctor` was asked to check."""

    target: Target | None = None
    """``emulator``, ``aws``, or None: ``endpoint_uri`` if given, else the emulator if one runs, else Bedrock."""
    endpoint_uri: str | None = None
    ca_file: Path | None = None
    state_dir: Path | None = None
    """Where the emulator publishes its endpoint (None: ``~/.novabridge/emulator``)."""
    worker_python: str | None = None
    region: str | None = None
    profile: str | None = None


@dataclasses.dataclass(frozen=True)
class _Endpoint:
    kind: Literal["emulator", "aws", "custom"]
    endpoint_uri: str | None
    """None: Bedrock's regional endpoint."""
    ca_file: Path | None


# ----------------------------------------------------------------------------------------------- the checks


def _host() -> Check:
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("host", Verdict.OK, f"Python {version} ({sys.executable}), novabridge {__version__}")


def _worker_python(given: str | None) -> tuple[str, str]:
    """The worker's interpreter as a session would pick it, and why that one."""
    if given is not None:
        return given, "--worker-python"
    if sys.version_info >= (3, 12):
        return sys.executable, "by default this Python, as SonicBridge picks"
    from novabridge.setup_worker import DEFAULT_DIR

    return str(DEFAULT_DIR / "bin" / "python"), "by default the environment `novabridge setup-worker` makes"


def _probe_worker(python: str, profile: str | None, region: str) -> tuple[list[Check], dict[str, Any] | None]:
    """The worker's interpreter, its packages, and its report (None when it could not give one)."""
    name = "worker Python"
    fix = f"{SETUP_WORKER}, or pass --worker-python a Python >= 3.12 with novabridge[sonic]"
    settings = json.dumps({"profile": profile, "region": region})
    try:
        done = subprocess.run(
            [python, "-c", PROBE, settings], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False
        )
    except FileNotFoundError:
        return [Check(name, Verdict.FAIL, f"{python} does not exist", fix)], None
    except PermissionError:
        return [Check(name, Verdict.FAIL, f"{python} cannot be run (permission denied)", fix)], None
    except subprocess.TimeoutExpired:
        found = f"{python} gave no report within {PROBE_TIMEOUT_S:g} s (importing the SDK, or a credential_process)"
        return [Check(name, Verdict.FAIL, found, "run it by hand to see where it hangs")], None
    try:
        report = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        tail = " | ".join(done.stderr.strip().splitlines()[-3:]) or "no output"
        how = f"exited with status {done.returncode}" if done.returncode >= 0 else f"died of signal {-done.returncode}"
        return [Check(name, Verdict.FAIL, f"{python} {how} before reporting: {tail}", fix)], None
    version = report["python"]
    if tuple(int(part) for part in version.split(".")[:2]) < (3, 12):
        found = f"{python} is Python {version}; the Nova Sonic SDK needs >= 3.12"
        return [Check(name, Verdict.FAIL, found, fix)], None
    checks = [Check(name, Verdict.OK, f"Python {version} ({python})")]
    packages: dict[str, str | None] = report["packages"]
    listed = ", ".join(f"{package} {packages[package] or 'missing'}" for package in WORKER_PACKAGES)
    install = f"`{python} -m pip install 'novabridge[sonic]=={__version__}'`"
    if packages["novabridge"] is None:
        checks.append(Check("worker packages", Verdict.FAIL, f"novabridge is not installed for {python}", install))
        return checks, None
    if "import_error" in report:
        found = f"{listed}; novabridge[sonic] does not import: {report['import_error']}"
        checks.append(Check("worker packages", Verdict.FAIL, found, f"{install}, or {SETUP_WORKER}"))
        return checks, None
    if packages["novabridge"] != __version__:
        found = f"{listed}; the host has novabridge {__version__}: the two sides of the rings must match"
        checks.append(Check("worker packages", Verdict.FAIL, found, f"{install} (or the host's wheel)"))
        return checks, None
    checks.append(Check("worker packages", Verdict.OK, listed))
    return checks, report


def _credentials(report: dict[str, Any] | None, endpoint: _Endpoint | None) -> Check:
    name = "credentials"
    if report is None:
        return Check(name, Verdict.SKIP, "not looked for: the worker fails above (the SDK's chain runs there)")
    found: dict[str, Any] | None = report.get("credentials")
    if found is None:
        failed = f"the SDK's credential chain failed: {report.get('credentials_error')}"
        return Check(name, Verdict.FAIL, failed, "repair the AWS settings it names (environment, ~/.aws files)")
    if found["provider"] is None:
        hints = "; ".join(found["hints"])
        finding = found["where"] + (f"; {hints}" if hints else "")
        fix = (
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment the worker inherits, or name a "
            "profile (AWS_PROFILE, --profile) that `aws configure` made"
        )
        if endpoint is not None and endpoint.kind == "emulator":
            fix += (
                "; for the emulator any values do unless it was started with --credentials (OpenAvatarChat's "
                "handler with `emulator: true` signs with placeholders by itself)"
            )
        return Check(name, Verdict.FAIL, finding, fix)
    finding = found["where"]
    if found["temporary"]:
        finding += ", temporary (with a session token)"
    expires_at = found["expires_at"]
    if expires_at is not None:
        left_s = expires_at - time.time()
        if left_s <= 0:
            fix = "get fresh ones (`aws sso login`, assume the role again)"
            return Check(name, Verdict.FAIL, f"{finding}, expired {-left_s / 60:.0f} min ago", fix)
        finding += f", expiring in {left_s / 60:.0f} min"
        if left_s < EXPIRY_WARNING_S:
            return Check(name, Verdict.WARN, finding, "refresh them before a long conversation")
    return Check(name, Verdict.OK, finding)


def _region_setting(options: DoctorOptions) -> tuple[str, str]:
    """The region as `SonicConfig` takes it, and where from: the flag, AWS_REGION, AWS_DEFAULT_REGION, its default."""
    if options.region is not None:
        return options.region, "--region"
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if value := os.environ.get(variable):
            return value, variable
    return SonicConfig().region, "SonicConfig's default: neither AWS_REGION nor AWS_DEFAULT_REGION is set"


def _region(region: str, source: str, report: dict[str, Any] | None, endpoint: _Endpoint | None) -> Check:
    finding = f"{region} ({source})"
    try:
        SonicConfig(region=region)
    except ValueError:
        return Check("region", Verdict.FAIL, f"{finding} is not an AWS region name", "set AWS_REGION, e.g. us-east-1")
    credentials = (report or {}).get("credentials") or {}
    profile_region = credentials.get("profile_region")
    if profile_region and profile_region != region:
        finding += (
            f"; profile {credentials.get('profile')!r} says {profile_region}, which novabridge does not read "
            "(SonicConfig region, AWS_REGION or AWS_DEFAULT_REGION decide)"
        )
        return Check("region", Verdict.WARN, finding, f"set AWS_REGION={profile_region} if that was meant")
    model = MODELS[DEFAULT_MODEL_ID]  # the model the doctor's stream uses, SonicConfig's default
    if endpoint is not None and endpoint.kind == "aws" and region not in model.regions:
        finding += f"; {model.name} is offered in {', '.join(model.regions)}"
        return Check("region", Verdict.WARN, finding, "set AWS_REGION to one of those")
    return Check("region", Verdict.OK, finding)


def _endpoint(options: DoctorOptions) -> tuple[Check, _Endpoint | None]:
    from novabridge.emulator import published

    name = "endpoint"
    if options.endpoint_uri is not None:
        try:
            config = SonicConfig(endpoint_uri=options.endpoint_uri, ca_file=options.ca_file)
        except ValueError as error:
            found = "; ".join(str(item["msg"]).removeprefix("Value error, ") for item in _errors(error))
            return Check(name, Verdict.FAIL, found, "pass an https:// endpoint and a PEM CA file"), None
        where = f"{config.endpoint_uri} (--endpoint-uri"
        where += f", trusting {options.ca_file})" if options.ca_file is not None else ", the system's trust store)"
        return Check(name, Verdict.OK, where), _Endpoint("custom", config.endpoint_uri, options.ca_file)
    bedrock = _Endpoint("aws", None, None)
    if options.target == "aws":
        return Check(name, Verdict.OK, "Bedrock (--aws)"), bedrock
    try:
        emulator = published.find(options.state_dir)
    except EmulatorNotRunning as error:
        if options.target == "emulator":
            start = "novabridge emulator" + (f" --state-dir {options.state_dir}" if options.state_dir else "")
            fix = f"start `{start}` in another terminal and leave it running, or pass --aws to check Bedrock"
            finding, _, advice = str(error).rpartition(": ")
            if not advice.startswith(("start `", "restart `")):  # the fix is ours; keep the message whole otherwise
                finding = str(error)
            return Check(name, Verdict.FAIL, f"--emulator: {finding}", fix), None
        return Check(name, Verdict.OK, "Bedrock (no emulator is running; --emulator checks one)"), bedrock
    file = published.state_file(options.state_dir)
    how = "--emulator" if options.target == "emulator" else "one is running; --aws checks Bedrock"
    found = f"the emulator at {emulator.endpoint_uri} (published in {file}; {how})"
    return Check(name, Verdict.OK, found), _Endpoint("emulator", emulator.endpoint_uri, emulator.ca_file)


def _errors(error: ValueError) -> list[dict[str, Any]]:
    """A pydantic ValidationError's items (a ValueError of its own: one item)."""
    errors = getattr(error, "errors", None)
    return list(errors()) if callable(errors) else [{"msg": str(error)}]


def _in_thread(call: Callable[[], T], timeout_s: float) -> T:
    """``call()``, given up after ``timeout_s`` (TimeoutError) for calls with no timeout of their own (getaddrinfo)."""
    outcome: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            failure.append(error)

    thread = threading.Thread(target=run, name="novabridge-doctor", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if failure:
        raise failure[0]
    if not outcome:
        raise TimeoutError(f"no answer within {timeout_s:g} s")
    return outcome[0]


def _ms(since: float) -> str:
    return f"{(time.monotonic() - since) * 1000:.0f} ms"


def _reach(uri: str, endpoint: _Endpoint) -> list[Check]:
    """The name, the TCP connection, TLS with the session's trust, and HTTP/2: each a row, each timed."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    port = parts.port or 443
    where = f"{host}:{port}"
    skipped = [Check(step, Verdict.SKIP, "not tried: a step before it fails") for step in ("TCP", "TLS", "HTTP/2")]
    if endpoint.kind == "emulator":
        network_fix = "restart `novabridge emulator` (it publishes its new port) and run the doctor again"
    else:
        network_fix = f"check the endpoint, and that this machine's network and firewall let it reach {where}"
    started = time.monotonic()
    try:
        addresses = _in_thread(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), STEP_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        fix = "check the endpoint's name (or the region, which names Bedrock's) and this machine's DNS"
        return [Check("DNS", Verdict.FAIL, f"{host!r} does not resolve: {error}", fix), *skipped]
    shown = sorted({str(info[4][0]) for info in addresses})
    checks = [Check("DNS", Verdict.OK, f"{host} is {', '.join(shown[:3])} ({_ms(started)})")]

    refused: list[str] = []
    connected: socket.socket | None = None
    started = time.monotonic()
    for family, kind, proto, _, address in addresses:
        left_s = started + STEP_TIMEOUT_S - time.monotonic()  # for all of the name's addresses together
        if left_s <= 0:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(left_s)
        try:
            sock.connect(address)
        except OSError as error:
            sock.close()
            reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error)).lower()
            refused.append(f"{address[0]} port {port}: {reason}")
            continue
        connected = sock
        break
    if connected is None:
        found = f"{'; '.join(refused)} ({_ms(started)})"
        return [*checks, Check("TCP", Verdict.FAIL, found, network_fix), *skipped[1:]]
    checks.append(Check("TCP", Verdict.OK, f"connected to {where} ({_ms(started)})"))

    connected.settimeout(STEP_TIMEOUT_S)
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    context.set_alpn_protocols(["h2"])
    trust = f"the CA in {endpoint.ca_file}" if endpoint.ca_file is not None else "the system's trust store"
    started = time.monotonic()
    try:
        with context.wrap_socket(connected, server_hostname=host) as tls:
            protocol = tls.selected_alpn_protocol()
            version = tls.version()
    except ssl.SSLCertVerificationError as error:
        if endpoint.kind == "emulator":
            fix = "restart `novabridge emulator`: its published CA does not match the server on its port"
        elif endpoint.kind == "custom":
            fix = "pass --ca-file with the CA that signed the endpoint's certificate"
        else:
            fix = "something on the network intercepts TLS, or the system's CA store is missing (ca-certificates)"
        found = f"{where} presents a certificate that {trust} does not trust ({error.verify_message})"
        return [*checks, Check("TLS", Verdict.FAIL, found, fix), skipped[2]]
    except (OSError, ssl.SSLError) as error:
        found = f"the TLS handshake with {where} failed ({getattr(error, 'reason', None) or error})"
        return [*checks, Check("TLS", Verdict.FAIL, found, network_fix), skipped[2]]
    finally:
        connected.close()
    checks.append(Check("TLS", Verdict.OK, f"{version}, certificate trusted by {trust} ({_ms(started)})"))
    if protocol != "h2":
        found = f"{where} does not offer HTTP/2 (ALPN chose {protocol or 'nothing'}); the stream needs it"
        fix = "the endpoint must be Bedrock's runtime endpoint or the emulator's"
        return [*checks, Check("HTTP/2", Verdict.FAIL, found, fix)]
    return [*checks, Check("HTTP/2", Verdict.OK, "ALPN chose h2")]


def _split_fix(message: str) -> tuple[str, str]:
    """A session error's message as (finding, fix): novabridge's messages give the fix after ``Fix:``."""
    finding, _, fix = message.partition(" Fix: ")
    return finding, fix


def _stream(config: SonicConfig, pool: WorkerPool) -> Check:
    """A real stream through a worker of ``pool`` and the SDK: opened, then the first event back after a greeting."""
    from novabridge.host.bridge import SonicBridge

    name = "stream"
    if pool.wait_warm(PROBE_TIMEOUT_S) < 1:
        return Check(name, Verdict.FAIL, f"no worker started: {pool.error or 'not warm in time'}", SETUP_WORKER)
    pool.spare = 0  # the warm worker is the stream's: no replacement is started behind it
    bridge = SonicBridge(config, worker_python=pool.python, pool=pool)
    started = time.monotonic()
    try:
        bridge.start(timeout=config.connect_timeout_s + START_GRACE_S)
    except SessionError as error:
        finding, fix = _split_fix(error.message)
        return Check(name, Verdict.FAIL, f"{error.kind}: {finding}", fix)
    except BridgeError as error:
        return Check(name, Verdict.FAIL, str(error), "")
    opened = _ms(started)
    try:
        bridge.send_text(GREETING)
        asked = time.monotonic()
        deadline = asked + ANSWER_WINDOW_S
        while (left := deadline - time.monotonic()) > 0:
            for event in bridge.poll(timeout=left):
                if isinstance(event, Error):
                    if not event.fatal:
                        continue
                    finding, fix = _split_fix(event.message)
                    return Check(name, Verdict.FAIL, f"opened in {opened}, then {event.kind}: {finding}", fix)
                if isinstance(event, Reconnecting):
                    found = f"opened in {opened}, then failed and reconnects: {event.reason}"
                    return Check(name, Verdict.FAIL, found, "run the doctor again; if it persists, see the reason")
                answer = f"first event back ({type(event).__name__}) {_ms(asked)} after a typed {GREETING!r}"
                return Check(name, Verdict.OK, f"opened in {opened}; {answer}")
        found = f"opened in {opened}, but nothing came back within {ANSWER_WINDOW_S:g} s of a typed {GREETING!r}"
        return Check(name, Verdict.WARN, found, "run the doctor again; a service this slow delays every answer")
    finally:
        bridge.close()


def run(options: DoctorOptions) -> list[Check]:
    """Every check, in the order a session meets them."""
    worker_python, why = _worker_python(options.worker_python)
    endpoint_check, endpoint = _endpoint(options)
    region, region_source = _region_setting(options)
    # The stream's worker boots while the worker's report is made: each takes a second or two (the SDK's import).
    pool = WorkerPool(worker_python, spare=1)
    if endpoint is not None:
        pool.warm_up()
    try:
        worker_checks, report = _probe_worker(worker_python, options.profile, region)
        if worker_checks[0].verdict is Verdict.FAIL:
            worker_checks[0] = dataclasses.replace(worker_checks[0], finding=f"{worker_checks[0].finding} ({why})")
        region_check = _region(region, region_source, report, endpoint)
        checks = [_host(), *worker_checks, _credentials(report, endpoint), region_check, endpoint_check]
        config: SonicConfig | None = None
        if endpoint is None or region_check.verdict is Verdict.FAIL:
            checks += [Check(step, Verdict.SKIP, "not tried: no endpoint") for step in ("DNS", "TCP", "TLS", "HTTP/2")]
        else:
            try:
                config = SonicConfig(
                    endpoint_uri=endpoint.endpoint_uri, ca_file=endpoint.ca_file, region=region, profile=options.profile
                )
            except ValueError as error:
                found = "; ".join(str(item["msg"]).removeprefix("Value error, ") for item in _errors(error))
                checks.append(Check("session config", Verdict.FAIL, found, "see the endpoint row"))
            else:
                checks += _reach(config.endpoint, endpoint)
        if config is not None and not any(check.verdict is Verdict.FAIL for check in checks):
            checks.append(_stream(config, pool))
        else:
            checks.append(Check("stream", Verdict.SKIP, "not tried: fix what fails above first"))
        return checks
    finally:
        pool.close()


# ----------------------------------------------------------------------------------------------- the table


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    # Paths and commands stay whole, to be copied: lines break at spaces only.
    return textwrap.wrap(
        text, width, initial_indent=first, subsequent_indent=rest, break_long_words=False, break_on_hyphens=False
    )


def render(checks: list[Check], width: int | None = None) -> str:
    """The table: a verdict, the check and what was found on each row; the fix under each row that is not ok."""
    width = width or max(80, shutil.get_terminal_size((120, 24)).columns)
    name_width = max(len(check.name) for check in checks)
    indent = " " * (6 + name_width + 2)
    lines = []
    for check in checks:
        head = f"{check.verdict.value:<6}{check.name:<{name_width}}  "
        lines += _wrap(check.finding, width, head, indent) or [head]
        if check.fix and check.verdict in (Verdict.FAIL, Verdict.WARN):
            lines += _wrap(check.fix, width, f"{indent}fix: ", indent + "     ")
    counts = {verdict: sum(check.verdict is verdict for check in checks) for verdict in Verdict}
    summary = ", ".join(f"{counts[verdict]} {verdict.value}" for verdict in Verdict if counts[verdict])
    lines.append("")
    lines.append(f"{summary}: " + ("a session should work" if not counts[Verdict.FAIL] else "fix each FAIL above"))
    return "\n".join(lines)


def main(options: DoctorOptions) -> int:
    """The command: prints the table; 1 if any check fails, else 0."""
    checks = run(options)
    print(render(checks), flush=True)
    return 1 if any(check.verdict is Verdict.FAIL for check in checks) else 0
