"""Opening a stream within a deadline, and finding out why one could not be opened.

The SDK's ``invoke_model_with_bidirectional_stream`` returns once the request is signed and on its way. A failure
before that (no credentials, a signing error) ends the SDK's request task and leaves the call waiting forever, the
task's exception never retrieved. `RequestWatch`, an SDK interceptor, tells the `Attempt` that started a call when
its request task ends and why, so the attempt raises at once. An attempt that makes no progress ends at its deadline
(s2n-tls under awscrt reports a failed TLS handshake only after 10-30 s; a silent network never reports), and
`probe_endpoint` then finds which step fails: the name, the TCP connection, TLS, or HTTP/2.

Nothing an abandoned attempt leaves running is cancelled: awscrt cannot take back a connection attempt, and
cancelling the future it completes makes its callback thread report an ``InvalidStateError`` when the attempt ends.
Its tasks run to their end, and their outcome is retrieved and dropped. (Only if the event loop closes first does
asyncio cancel them, with that report 10-30 s later; a worker process has exited by then.)
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

from smithy_core.interceptors import InputContext, Interceptor, OutputContext

from novabridge.sonic.errors import ServiceRefusal

PROBE_TIMEOUT_S = 1.0
"""How long `probe_endpoint` may take for each step after an attempt timed out."""

_ATTEMPT: contextvars.ContextVar[Attempt | None] = contextvars.ContextVar("novabridge_attempt", default=None)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Done callback of a task nobody awaits any more: its exception is known, and not worth a log line."""
    if not task.cancelled():
        task.exception()


class Attempt:
    """One call that opens a stream, followed through the SDK's request task (see `RequestWatch`)."""

    def __init__(self) -> None:
        self.request_task: asyncio.Task[Any] | None = None
        """The SDK's task that resolves the identity, signs, connects and awaits the response."""
        self.error: BaseException | None = None
        """Why the request task failed, once it has."""
        self.ended = asyncio.Event()
        self.refusal: ServiceRefusal | None = None
        """The service's answer when it refused the request (set by the transport, which still has the body)."""
        self.responded = False
        """The service answered the request (so there is a stream whose end can be sent)."""
        self.resolving_credentials = False
        """The attempt is waiting for its credentials' source (`novabridge.sonic.signing.FreshCredentials`)."""

    @staticmethod
    def current() -> Attempt | None:
        """The attempt whose call is running in this task, if any (for the transport and the interceptor)."""
        return _ATTEMPT.get()

    async def invoke(self, client: Any, request: Any, plugins: list[Any] | None = None) -> Any:
        """``client.invoke_model_with_bidirectional_stream(request, plugins)``, raising if its request task fails."""
        context = contextvars.copy_context()
        context.run(_ATTEMPT.set, self)
        call = asyncio.get_running_loop().create_task(
            client.invoke_model_with_bidirectional_stream(request, plugins), context=context
        )
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            while not call.done():
                await asyncio.wait({call, ended}, return_when=asyncio.FIRST_COMPLETED)
                if self.error is not None and not call.done():
                    # The request died before it was sent: the call would wait for it forever.
                    call.cancel()
                    raise self.error
        finally:
            ended.cancel()
            if not call.done():
                call.cancel()  # our own cancellation (the deadline): the call only waits for the request task
        return call.result()

    async def output(self, stream: Any) -> Any:
        """``stream.await_output()``; cancelling the wait (the deadline) leaves the SDK's tasks running to their end."""
        output = asyncio.ensure_future(stream.await_output())
        output.add_done_callback(_retrieve)
        return await asyncio.shield(output)

    def abandon(self) -> None:
        """Whatever the attempt's request task still does, its outcome is dropped when it ends."""
        if self.request_task is not None:
            self.request_task.add_done_callback(_retrieve)


class RequestWatch(Interceptor[Any, Any, Any, Any]):
    """Reports the SDK's request task of each call made through `Attempt.invoke`, and how it ended."""

    def read_before_execution(self, context: InputContext[Any]) -> None:
        """The SDK's request task starts: it is the attempt's to watch."""
        attempt = _ATTEMPT.get()
        if attempt is not None:
            attempt.request_task = asyncio.current_task()

    def read_after_execution(self, context: OutputContext[Any, Any, Any, Any]) -> None:
        """The SDK's request task ends: with the response, or with the reason it failed."""
        attempt = _ATTEMPT.get()
        if attempt is None:
            return
        if isinstance(context.response, Exception):
            attempt.error = context.response
        attempt.ended.set()


async def probe_endpoint(uri: str, ca_file: Path | None, timeout_s: float = PROBE_TIMEOUT_S) -> tuple[str, str]:
    """Which step of reaching ``uri`` fails: resolving its name, connecting, TLS with the session's trust, HTTP/2.

    Returns the failure's kind and what was found. When every step succeeds, the endpoint itself did not answer
    in time: kind ``ConnectTimeout``.
    """
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    port = parts.port or 443
    where = f"{host}:{port}"
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["h2"])
    step = "name"
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.get_running_loop().getaddrinfo(host, port)
            step = "connect"
            _, writer = await asyncio.open_connection(host, port, ssl=context, server_hostname=host)
    except TimeoutError:
        if step == "name":
            return "EndpointNotFound", f"the name {host!r} does not resolve (no answer from the name service)"
        return "EndpointUnreachable", f"{where} did not complete a TCP and TLS handshake"
    except ssl.SSLCertVerificationError as error:
        trust = f"the CA in ca_file {ca_file}" if ca_file is not None else "the system's trust store"
        return "TlsFailure", f"{where} presents a certificate that {trust} does not trust ({error.verify_message})"
    except ssl.SSLError as error:
        return "TlsFailure", f"the TLS handshake with {where} failed ({error.reason or error})"
    except OSError as error:
        if step == "name":
            return "EndpointNotFound", f"the name {host!r} does not resolve ({error})"
        return "EndpointUnreachable", f"cannot connect to {where} ({error.strerror or error})"
    protocol = writer.get_extra_info("ssl_object").selected_alpn_protocol()
    writer.transport.abort()  # the probe's own connection: nothing to say on it
    if protocol != "h2":
        return "NoHttp2", f"{where} does not offer HTTP/2 (ALPN chose {protocol or 'nothing'})"
    return "ConnectTimeout", f"{where} accepts TLS and HTTP/2, but the service did not answer"
