"""The HTTP/2 + TLS endpoint: hypercorn serving InvokeModelWithBidirectionalStream on loopback.

`Emulator` runs it on the caller's event loop (``async with``); `ThreadedEmulator` runs it on a loop of its own in a
thread, for synchronous code and for tests that drive the SDK on another loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import os
import re
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from hypercorn.asyncio import serve
from hypercorn.config import Config

from novabridge.emulator import _hypercorn, service
from novabridge.emulator.certs import kept_certificates, write_certificates
from novabridge.emulator.conversation import Conversation, End
from novabridge.emulator.faults import CONNECT_FAULTS, Fault, FaultKind, FaultPlan
from novabridge.emulator.options import EmulatorOptions
from novabridge.emulator.recording import StreamRecording
from novabridge.emulator.scenario import Scenario
from novabridge.emulator.service import Message, invalid_input
from novabridge.emulator.sigv4 import (
    IssuedKey,
    SignatureError,
    check_region,
    read_issued_keys,
    signing_key,
    verify_request,
)
from novabridge.emulator.wire import InputDecoder, WireError, encode_exception, encode_output_event, truncated_frame
from novabridge.memory import TRIM_EVERY_S, release_freed_memory

logger = logging.getLogger("novabridge.emulator")

_PATH = re.compile(r"^/model/([^/]+)/invoke-with-bidirectional-stream$")

DRAIN_QUIET_S = 0.2
"""A stalled stream's request is drained until nothing more comes for this long..."""
DRAIN_LIMIT_S = 2.0
"""...or for at most this long."""

Scope = dict[str, Any]
Message_ = dict[str, Any]


class _QuietTLSShutdown(logging.Filter):
    """Drops the TLS shutdown noise of clients that keep sending after the server said goodbye.

    hypercorn lets ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY`` escape from a connection's close; it is harmless.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ssl.SSLError) or "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in record.getMessage())


_quiet_tls_shutdown = _QuietTLSShutdown()


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Emulator:
    """A local Nova Sonic endpoint that the unmodified SDK reaches through ``endpoint_uri`` and ``ca_file``."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        scenario: Scenario | None = None,
        options: EmulatorOptions | None = None,
        faults: Iterable[Fault] = (),
        allow_remote: bool = False,
        record_dir: str | os.PathLike[str] | None = None,
        keep_recordings: bool = True,
        certs_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(f"refusing to serve on non-loopback address {host!r} without allow_remote=True")
        self.host = host
        self.port = port
        self.scenario = scenario or Scenario()
        self.options = options or EmulatorOptions()
        self.faults = FaultPlan()
        for fault in faults:
            self.faults.add(fault)
        self.record_dir = Path(record_dir) if record_dir is not None else None
        """When set, each stream's recording is written there as the stream runs, its summary when it ends (for
        clients in other processes)."""
        self.keep_recordings = keep_recordings
        """Keep ended streams' recordings in `recordings`, and the refusals in `rejected`. A long-running server that
        nobody inspects in process (the CLI) keeps only the open streams' recordings and no refusals: a day of streams
        would otherwise grow without bound."""
        self.certs_dir = Path(certs_dir) if certs_dir is not None else None
        """When set, the CA and the server certificate are kept there and used again by the next run with it, so a
        client keeps its ``ca_file`` across restarts (`novabridge.emulator.certs.kept_certificates`)."""
        self.recordings: list[StreamRecording] = []
        """One per stream accepted, in order of arrival."""
        self.rejected: list[tuple[int, str, str]] = []
        """Requests refused before a stream began: (HTTP status, error type, message); kept with `keep_recordings`."""
        self._active = 0
        self._conversations: set[Conversation] = set()
        self._directory: Path | None = None
        self._ca_file: Path | None = None
        self._stop: asyncio.Event | None = None
        self._server: asyncio.Task[None] | None = None
        self._started = False

    @property
    def endpoint_uri(self) -> str:
        """``https://HOST:PORT``, the SDK's ``endpoint_uri``."""
        self._require_started()
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    @property
    def ca_file(self) -> str:
        """The PEM CA certificate a client must trust."""
        self._require_started()
        assert self._ca_file is not None
        return str(self._ca_file)

    @property
    def active_streams(self) -> int:
        """Streams open right now."""
        return self._active

    def inject(self, fault: Fault | FaultKind | str, **params: Any) -> Fault:
        """Arm a fault, e.g. ``inject("model-stream-error", after_chunks=3)``; safe from any thread."""
        if not isinstance(fault, Fault):
            fault = Fault(FaultKind(fault), **params)
        elif params:
            raise TypeError("parameters go into the Fault when one is given")
        self.faults.add(fault)
        return fault

    def _require_started(self) -> None:
        if not self._started:
            raise RuntimeError("the emulator is not running; use `async with Emulator() as emu` or start()")

    async def start(self) -> None:
        """Generate the certificates, bind, and serve in a task on the running loop."""
        if self._started:
            raise RuntimeError("the emulator is already running")
        if self.certs_dir is not None:
            files = kept_certificates(self.certs_dir, hosts=(self.host,))
        else:
            self._directory = Path(tempfile.mkdtemp(prefix="novabridge-emulator-"))
            files = write_certificates(self._directory, hosts=(self.host,))
        self._ca_file = files.ca_file
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((self.host, self.port))
            sock.listen(256)
        except OSError:
            sock.close()
            if self._directory is not None:
                shutil.rmtree(self._directory, ignore_errors=True)
                self._directory = None
            raise
        self.port = sock.getsockname()[1]
        config = Config()
        config.bind = [f"fd://{sock.detach()}"]
        config.certfile = str(files.cert_file)
        config.keyfile = str(files.key_file)
        config.alpn_protocols = ["h2"]
        config.accesslog = None
        config.errorlog = logging.getLogger("novabridge.emulator.http")
        for name in ("novabridge.emulator.http", "asyncio"):
            logging.getLogger(name).addFilter(_quiet_tls_shutdown)
        config.graceful_timeout = 1.0
        config.ssl_handshake_timeout = 2.0  # a client stuck in a failed handshake must not delay stop()
        config.h2_max_concurrent_streams = max(100, 2 * self.options.max_streams)
        config.keep_alive_timeout = 3600.0
        _hypercorn.install()
        self._stop = asyncio.Event()
        started = asyncio.Event()
        app = _App(self, started)
        self._server = asyncio.create_task(serve(app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({waiter, self._server}, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiter.cancel()
            await self._server  # raises the startup failure
        self._started = True

    async def stop(self) -> None:
        """Stop serving (open streams are ended) and delete the certificates (unless kept in ``certs_dir``)."""
        if self._server is not None and self._stop is not None:
            # hypercorn waits for open connections; end every stream so they close.
            for conversation in list(self._conversations):
                conversation.abort("server-stopped")
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError, ssl.SSLError, ConnectionError):
                await self._server
        self._server = None
        self._started = False
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class ThreadedEmulator:
    """`Emulator` on its own event loop in a daemon thread: ``with ThreadedEmulator() as emu: ...``."""

    def __init__(self, **kwargs: Any) -> None:
        self.emulator = Emulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.emulator, name)

    def start(self) -> None:
        """Start the thread and wait until the endpoint serves."""
        failure: list[BaseException] = []
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self.emulator.start())
            except Exception as error:  # noqa: BLE001 - handed to the starting thread, which raises it
                failure.append(error)
                started.set()
                loop.close()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.emulator.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="novabridge-emulator", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _App:
    """The raw ASGI application: one duplex HTTP/2 stream per InvokeModelWithBidirectionalStream call."""

    def __init__(self, emulator: Emulator, started: asyncio.Event) -> None:
        self.emulator = emulator
        self.started = started
        self.stream_ids = 0
        self._trim_pending = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                    self.started.set()
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _reject(self, receive: Any, send: Any, status: int, error_type: str, message: str, rule: str) -> None:
        """Answer a request that opens no stream; ``rule`` says which check refused it (in the log only)."""
        logger.warning("refused: %d %s %s [%s]", status, error_type, json.dumps(message), rule)
        if self.emulator.keep_recordings:
            self.emulator.rejected.append((status, error_type, message))
        body = json.dumps({"message": message}).encode()
        # hypercorn hands the request's DATA over through a small queue, and puts the stream's end there as the
        # response ends: what the client sent before the refusal is taken meanwhile, or a full queue would hold this
        # stream, and the reading of its whole connection, for ever.
        taking = asyncio.ensure_future(_take_request(receive))
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"x-amzn-errortype", error_type.encode()),
                        (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body, "more_body": False})
        finally:
            taking.cancel()
            await asyncio.gather(taking, return_exceptions=True)

    async def _http(self, scope: Scope, receive: Any, send: Any) -> None:
        emulator = self.emulator
        match = _PATH.match(scope["path"])
        if scope["method"] != "POST" or match is None:
            rule = f"{scope['method']} {scope['path']} is not InvokeModelWithBidirectionalStream"
            await self._reject(receive, send, 404, "UnknownOperationException", "Unknown operation", rule)
            return
        model_id = urllib.parse.unquote(match.group(1))
        options = emulator.options
        signer: IssuedKey | None = None
        now = time.time()
        try:
            # The service's order: the credential scope's region, then the key, its expiry and the signature.
            if options.region is not None:
                check_region(scope, options.region)
            keys = _issued_keys(options)
            if keys is not None:
                signer = verify_request(scope, keys, now)
        except SignatureError as error:
            await self._reject(receive, send, 403, error.error_type, error.message, f"{model_id}: {error.rule}")
            return
        except ValueError as error:  # a credentials file being written by hand: the service's own fault
            rule = f"the credentials file: {error}"
            await self._reject(
                receive, send, 500, "InternalServerException", "An internal server error occurred.", rule
            )
            return
        if emulator.faults.take(CONNECT_FAULTS) is not None:
            await self._reject(
                receive, send, 429, "ThrottlingException", Message.THROTTLED, f"{model_id}: fault throttle"
            )
            return
        if not options.offers(model_id):
            offered = ", ".join(sorted((service.MODEL_IDS & options.models) | set(options.extra_models)))
            rule = f"model {model_id!r} is not served here (served: {offered}; --serve-model adds one)"
            await self._reject(receive, send, 400, "ValidationException", Message.UNKNOWN_MODEL, rule)
            return
        if model_id in options.denied_models:
            rule = f"model {model_id!r} is denied (--deny-model)"
            await self._reject(receive, send, 403, "AccessDeniedException", Message.NO_MODEL_ACCESS, rule)
            return
        if emulator.active_streams >= emulator.options.max_streams:
            rule = f"{model_id}: {emulator.active_streams} streams open (--max-streams {options.max_streams})"
            await self._reject(receive, send, 429, "ThrottlingException", Message.TOO_MANY_STREAMS, rule)
            return

        self.stream_ids += 1
        recording = StreamRecording(self.stream_ids, model_id, keep_audio=emulator.keep_recordings)
        if signer is not None:
            recording.access_key_id = signer.access_key_id
            recording.credentials_left_s = None if signer.expires_at is None else signer.expires_at - now
        claimed = signing_key(scope)
        key = claimed and f"{claimed} (signature not checked)" if signer is None else signer.access_key_id
        key = key or "none (unsigned)"
        expiry = (
            ""
            if recording.credentials_left_s is None
            else f", credentials expire in {recording.credentials_left_s:.0f} s"
        )
        recording.note(f"opened: model {model_id}, key {key}{expiry}")
        if emulator.record_dir is not None:
            recording.write_through(emulator.record_dir)
        emulator.recordings.append(recording)
        conversation = Conversation(
            recording=recording, options=emulator.options, scenario=emulator.scenario, faults=emulator.faults
        )
        emulator._active += 1
        emulator._conversations.add(conversation)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/vnd.amazon.eventstream"),
                    (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
                ],
            }
        )
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(receive, conversation))
        watchdog = loop.create_task(conversation.watchdog())
        try:
            await self._write(scope, send, conversation)
        finally:
            emulator._active -= 1
            emulator._conversations.discard(conversation)
            reader.cancel()
            watchdog.cancel()
            conversation.abort("connection-closed")  # only if the stream had not ended by itself
            await asyncio.gather(reader, watchdog, return_exceptions=True)
            if conversation.stalled:
                await _drain(receive)
            turns, heard = len(recording.turns), recording.user_audio_bytes
            recording.note(f"closed: {recording.outcome}, {turns} turns, {heard} bytes of user audio")
            if emulator.record_dir is not None:
                recording.save(emulator.record_dir)
            if not emulator.keep_recordings:
                emulator.recordings.remove(recording)
                self._trim_later()

    def _trim_later(self) -> None:
        """Free what ended streams left, and give it back (`novabridge.memory`), once their connections closed too.

        A closed connection is a reference cycle (hypercorn's protocol, its streams, their tasks and the TLS transport
        refer to one another), which only a full collection frees. With the emulator's 60,000 long-lived objects
        Python runs one rarely: in a soak run, closed connections and their TLS buffers stayed for minutes, and the
        RSS grew 2-4 MiB in 10 minutes. A full collection takes about 15 ms, at most once every `TRIM_EVERY_S`.
        """
        if self._trim_pending:
            return
        self._trim_pending = True

        def trim() -> None:
            self._trim_pending = False
            gc.collect()
            release_freed_memory()

        asyncio.get_running_loop().call_later(TRIM_EVERY_S, trim)

    async def _read(self, receive: Any, conversation: Conversation) -> bool:
        """Feed input events to the conversation until the client ends its request; False if it went away."""
        decoder = InputDecoder()
        while True:
            await conversation.stall_if_due()
            message = await receive()
            if message["type"] == "http.disconnect":
                conversation.abort("client-disconnected")
                return False
            more = message.get("more_body", False)
            if not conversation.finished:
                try:
                    for event in decoder.decode(message.get("body", b"")):
                        conversation.receive(event.body)
                        if conversation.finished:
                            break
                        if self.emulator.options.input_event_s:
                            await asyncio.sleep(self.emulator.options.input_event_s)
                    if not more:
                        decoder.finish()  # a request cut inside a frame is malformed, not a clean end
                except WireError as error:
                    conversation.fail(invalid_input(f"malformed event stream: {error}"))
                except service.ServiceError as error:
                    conversation.fail(error)
            if not more:
                conversation.input_ended()
                return True
            if decoder.ended:
                conversation.input_ended()

    async def _write(self, scope: Scope, send: Any, conversation: Conversation) -> None:
        """Send the conversation's output until its end."""
        recording = conversation.recording
        while True:
            item = await conversation.output.get()
            if isinstance(item, End):
                if item.abort == "reset":
                    _sever_connection(scope)
                    return
                if item.abort == "corrupt-frame":
                    # Cut mid-frame at once, as a dying stream does; the client cannot react to half a frame.
                    await send({"type": "http.response.body", "body": truncated_frame(), "more_body": False})
                    return
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            if isinstance(item, tuple):
                _, error = item
                frame = encode_exception(error.member, error.message, **error.fields)
            else:
                frame = encode_output_event(item)
                if "audioOutput" not in item["event"]:
                    recording.add_output_event(item)
            await send({"type": "http.response.body", "body": frame, "more_body": True})


async def _take_request(receive: Any) -> None:
    """Take a refused stream's request, whatever it holds, until the stream ends."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _drain(receive: Any) -> None:
    """Take what is left of a stalled stream's request, so hypercorn can go on reading the connection.

    hypercorn hands a request's body over through a small queue and reads nothing more from the connection while it
    is full; nobody takes from it once the application has returned, so a stall would otherwise outlive the stream.
    Taken until the request ends, nothing comes for `DRAIN_QUIET_S`, or `DRAIN_LIMIT_S` has passed.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_LIMIT_S):
            while True:
                async with asyncio.timeout(DRAIN_QUIET_S):
                    message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return


def _issued_keys(options: EmulatorOptions) -> dict[str, IssuedKey] | None:
    """The credentials a request may be signed with, the file's read now; None: signatures are not checked.

    Raises:
        ValueError: the credentials file cannot be read.
    """
    if options.credentials is None and options.credentials_file is None:
        return None
    keys: dict[str, IssuedKey] = {}
    if options.credentials is not None:
        access_key_id, secret_access_key = options.credentials
        keys[access_key_id] = IssuedKey(access_key_id, secret_access_key, expires_at=options.credentials_expire_at)
    if options.credentials_file is not None:
        keys.update(read_issued_keys(options.credentials_file))
    return keys


def _sever_connection(scope: Scope) -> None:
    """Cut the TCP connection under a stream, as a network failure would (ASGI has no handle on it)."""
    wanted = (tuple(scope["server"]), tuple(scope["client"]))
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with sock:
            try:
                ends = (sock.getsockname()[:2], sock.getpeername()[:2])
            except OSError:
                continue
            if ends == wanted:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
                return
