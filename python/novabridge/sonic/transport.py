"""The HTTP/2 transport for InvokeModelWithBidirectionalStream, to Bedrock or to a local endpoint.

The SDK's default transport (aiohttp) cannot hold a duplex stream; the CRT client can, over HTTP/2 with TLS only.
Bedrock is reached with the system trust store. The emulator is reached with the same client trusting its CA file,
so the code path to the service and to the emulator differs in the endpoint and the trust anchor, nothing else.
"""

from __future__ import annotations

import os

from awscrt import io as crt_io
from smithy_http.aio.crt import AWSCRTHTTPClient, AWSCRTHTTPClientConfig


class SonicTransport(AWSCRTHTTPClient):
    """``AWSCRTHTTPClient`` that insists on HTTP/2 and optionally trusts only the CA in ``ca_file``."""

    def __init__(self, *, ca_file: str | os.PathLike[str] | None = None) -> None:
        super().__init__(client_config=AWSCRTHTTPClientConfig(force_http_2=True))
        if ca_file is None:
            return
        # The CRT client has no public hook for trust; it builds every connection from `_tls_ctx`. The test suite
        # pins this attribute against the SDK versions the `sonic` extra allows.
        if "_tls_ctx" not in vars(self):
            raise RuntimeError("this smithy-http version keeps no _tls_ctx; custom trust cannot be installed")
        options = crt_io.TlsContextOptions()
        options.override_default_trust_store_from_path(ca_filepath=os.fspath(ca_file))
        self._tls_ctx = crt_io.ClientTlsContext(options)
