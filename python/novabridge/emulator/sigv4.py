"""SigV4 checking of the request that opens a stream, for emulators configured with test credentials.

Only the request signature is checked (the per-event chunk signatures chain from it); that is enough to prove a
client signs with the credentials it was given, and to answer 403 as the service does when it does not.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from typing import Any

from novabridge.emulator.service import Message, wrong_region

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), ?"
    r"SignedHeaders=(?P<headers>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """The request is not signed with the configured credentials; ``error_type`` is the service's."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def check_region(scope: dict[str, Any], region: str) -> None:
    """Check that a signed request is scoped to ``region``, as a regional endpoint checks it before the signature.

    Raises:
        SignatureError: the credential scope names another region (unsigned requests are left to `verify_request`).
    """
    match = _AUTHORIZATION.match(_headers(scope).get("authorization", ""))
    if match is None:
        return
    parts = match["scope"].split("/")
    signed_for = parts[1] if len(parts) == 4 else ""
    if signed_for != region:
        raise SignatureError("InvalidSignatureException", wrong_region(signed_for))


def verify_request(scope: dict[str, Any], access_key_id: str, secret_access_key: str, *, expired: bool = False) -> None:
    """Check the Authorization header of an ASGI HTTP scope against the credentials.

    ``expired``: the credentials are temporary ones past their expiry; a request signed with them is refused.

    Raises:
        SignatureError: unsigned, signed with another key, with expired credentials, or the signature does not
            match.
    """
    headers = _headers(scope)
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        raise SignatureError("AccessDeniedException", "Missing or malformed Authorization header.")
    if not hmac.compare_digest(match["key"], access_key_id):
        raise SignatureError("UnrecognizedClientException", Message.UNKNOWN_KEY)
    if expired:
        raise SignatureError("ExpiredTokenException", Message.EXPIRED_TOKEN)
    scope_parts = match["scope"].split("/")
    amz_date = headers.get("x-amz-date", "")
    if len(scope_parts) != 4 or scope_parts[3] != "aws4_request" or not amz_date.startswith(scope_parts[0]):
        raise SignatureError("InvalidSignatureException", "Credential scope does not match the request date.")
    signed = match["headers"].split(";")
    canonical_headers = "".join(f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed)
    raw_path = scope.get("raw_path") or scope["path"].encode()
    canonical_request = "\n".join(
        [
            scope["method"],
            urllib.parse.quote(raw_path.decode("latin-1"), safe="/"),
            _canonical_query(scope.get("query_string", b"").decode("latin-1")),
            canonical_headers,
            ";".join(signed),
            headers.get("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            match["scope"],
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(("AWS4" + secret_access_key).encode(), scope_parts[0])
    for part in scope_parts[1:]:
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError("InvalidSignatureException", Message.BAD_SIGNATURE)


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted((urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe="")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)
