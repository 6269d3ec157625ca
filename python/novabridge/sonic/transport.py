"""The HTTP/2 transport for InvokeModelWithBidirectionalStream, to Bedrock or to a local endpoint.

The SDK's default transport (aiohttp) cannot hold a duplex stream; the CRT client can, over HTTP/2 with TLS only.
Bedrock is reached with the system trust store. The emulator is reached with the same client trusting its CA file,
so the code path to the service and to the emulator differs in the endpoint and the trust anchor, nothing else.

Two more duties fall to the transport, which alone sees the connection: it keeps the service's answer to a request
it refused (the SDK drops the message of the errors it does not model, such as a 403 UnrecognizedClientException),
and it retrieves the outcome of awscrt's task that writes the request body, which nobody awaits.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from awscrt import io as crt_io
from smithy_http.aio import HTTPResponse
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig
from smithy_http.aio.interfaces import HTTPRequest
from smithy_http.aio.interfaces import HTTPResponse as HTTPResponseInterface
from smithy_http.interfaces import HTTPRequestConfiguration

from novabridge.sonic.connect import Attempt
from novabridge.sonic.errors import ServiceRefusal

logger = logging.getLogger("novabridge.sonic")


class SonicTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` that insists on HTTP/2 and optionally trusts only the CA in ``ca_file``."""

    def __init__(self, *, ca_file: str | os.PathLike[str] | None = None) -> None:
        super().__init__(client_config=AWSCRTHTTPClientConfig(force_http_2=True))
        self._open_streams: dict[Any, int] = {}
        """Per connection: the streams on it not yet completed."""
        self._dropped: set[Any] = set()
        """Connections `drop_connections` took out of the pool while streams were still open on them."""
        self._closing: set[asyncio.Task[None]] = set()
        # The CRT client keeps its connections in `_connections` and builds each from `_tls_ctx`, with no public hook
        # for either; the test suite pins both against the SDK versions the `sonic` extra allows.
        if "_connections" not in vars(self):
            raise RuntimeError("this smithy-http version keeps no _connections; a failed connection cannot be dropped")
        if ca_file is None:
            return
        if "_tls_ctx" not in vars(self):
            raise RuntimeError("this smithy-http version keeps no _tls_ctx; custom trust cannot be installed")
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(ca_filepath=os.fspath(ca_file))
        self._tls_ctx = crt_io.ClientTlsContext(options)

    def drop_connections(self) -> None:
        """Open a new connection for the next request: one on which a stream could not be opened is not trusted.

        After an endpoint restarted, a connection attempt refused and one answered 429, the CRT kept a connection on
        which no later stream was ever answered, and the session gave up (found by the soak run). Streams still open
        on a dropped connection carry on; the connection is closed when the last of them ends (at once if none is
        open). Forgotten without a close, the CRT kept it open for as long as the session lived, on both ends: the
        soak run found workers holding four connections for one stream, the emulator holding them all.
        """
        for connection in self._connections.values():
            if self._open_streams.get(connection, 0):
                self._dropped.add(connection)
            else:
                self._close_later(connection)
        self._connections.clear()

    def _close_later(self, connection: Any) -> None:
        task = asyncio.get_running_loop().create_task(connection.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _stream_ended(self, connection: Any) -> None:
        """On the loop: one of ``connection``'s streams ended; a dropped connection is closed with its last one."""
        left = self._open_streams[connection] - 1
        if left:
            self._open_streams[connection] = left
            return
        del self._open_streams[connection]
        if connection in self._dropped:
            self._dropped.discard(connection)
            self._close_later(connection)

    async def close(self) -> None:
        """Close the connections, the dropped ones still open included."""
        dropped, self._dropped = list(self._dropped), set()
        await super().close()
        await asyncio.gather(*(connection.close() for connection in dropped), *self._closing, return_exceptions=True)

    async def send(  # type: ignore[override] # an error answer comes back read whole, not as the CRT's stream
        self, request: HTTPRequest, *, request_config: HTTPRequestConfiguration | None = None
    ) -> HTTPResponseInterface:
        """Send the request; an error answer is read whole and kept for the `Attempt` that made the request."""
        response = await super().send(request, request_config=request_config)
        attempt = Attempt.current()
        if attempt is not None:
            attempt.responded = True
        if 200 <= response.status < 300:
            return response
        body = await response.consume_body_async()
        if attempt is not None:
            attempt.refusal = _refusal(response, body)
        # The SDK reads the body again to find the error: it gets the same bytes.
        return HTTPResponse(status=response.status, fields=response.fields, body=body, reason=response.reason)

    async def _await_response(self, stream: Any) -> Any:
        # awscrt writes the request body in a task of its own (`_writer`) that nobody awaits. When the service ends
        # the stream first (a refusal, an error event), ending the body then fails in that task with
        # AWS_ERROR_HTTP_STREAM_HAS_COMPLETED, which asyncio would log as never retrieved. The test suite pins both
        # private names against the versions the `sonic` extra allows.
        writer = getattr(stream, "_writer", None)
        if isinstance(writer, asyncio.Future):
            writer.add_done_callback(_writer_done)
        # Counted from here until the service has ended its response (or the stream completed, whichever comes
        # first; both are reported on the CRT's thread), so that a dropped connection is closed once nothing comes
        # on it any more. Not the completion alone: a stream the service ended, whose request a failed session never
        # closed, does not complete, and its connection stayed open (the soak run's workers held two such).
        connection, loop = stream.connection, asyncio.get_running_loop()
        self._open_streams[connection] = self._open_streams.get(connection, 0) + 1
        ended = [stream.completion_future]
        response_ended = getattr(stream, "_remote_completion_future", None)  # awscrt's HTTP/2 END_STREAM from the peer
        if isinstance(response_ended, concurrent.futures.Future):
            ended.append(response_ended)
        once = threading.Lock()

        def stream_ended(_: object) -> None:
            if once.acquire(blocking=False):
                _on_loop(loop, self._stream_ended, connection)

        for future in ended:
            future.add_done_callback(stream_ended)
        return await super()._await_response(stream)


def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[Any], None], argument: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the process is ending, and the connection with it
        loop.call_soon_threadsafe(callback, argument)


def _writer_done(writer: asyncio.Future[Any]) -> None:
    if not writer.cancelled() and (error := writer.exception()) is not None:
        logger.debug("request body writer ended: %r", error)


def _refusal(response: HTTPResponseInterface, body: bytes) -> ServiceRefusal:
    """The service's error type (header ``x-amzn-errortype``, or the body's ``__type``) and message."""
    try:
        document = json.loads(body) if body else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    error_type = ""
    if "x-amzn-errortype" in response.fields:
        error_type = response.fields["x-amzn-errortype"].as_string()
    error_type = (error_type or str(document.get("__type", ""))).split(":")[0].rsplit("#", 1)[-1]
    message = str(document.get("message") or document.get("Message") or "")
    return ServiceRefusal(response.status, error_type or f"HTTP{response.status}", message)
