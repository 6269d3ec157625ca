"""SigV4 checking of the request that opens a stream, for emulators configured with test credentials.

Only the request signature is checked (the per-event chunk signatures chain from it); that is enough to prove a
client signs with the credentials it was given, and to answer 403 as the service does when it does not.

Temporary credentials (an assumed role, SSO, an instance or container role) are a key id, a secret and a session
token with an expiry. `read_issued_keys` reads them in the document a ``credential_process`` prints (the AWS CLI's
"Sourcing credentials with an external process": ``Version`` 1, ``AccessKeyId``, ``SecretAccessKey``,
``SessionToken``, ``Expiration`` in ISO 8601), as a JSON list, so a test can hand the same documents to the client's
credential process and to the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from novabridge.emulator.service import Message, wrong_region

_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<scope>[^,]+), ?"
    r"SignedHeaders=(?P<headers>[^,]+), ?Signature=(?P<signature>[0-9a-f]{64})$"
)


class SignatureError(Exception):
    """The request is not signed with the configured credentials; ``error_type`` is the service's, ``rule`` ours."""

    def __init__(self, error_type: str, message: str, rule: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.rule = rule


@dataclass(frozen=True)
class IssuedKey:
    """Credentials the emulated account issued: a key, its secret, and for temporary ones a token and an expiry."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    """Temporary credentials carry one; a request signed with them must send it (``X-Amz-Security-Token``)."""
    expires_at: float | None = None
    """When they stop working (``time.time()``); None: never."""

    def __repr__(self) -> str:
        return f"IssuedKey({self.access_key_id!r}, expires_at={self.expires_at!r})"


def read_issued_keys(path: Path) -> dict[str, IssuedKey]:
    """The temporary credentials in ``path``: a JSON list of credential process documents, by access key id.

    Raises:
        ValueError: the file cannot be read or is not such a list.
    """
    try:
        documents = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"credentials file {path}: {error}") from None
    if not isinstance(documents, list):
        raise ValueError(f"credentials file {path}: expected a JSON list of credential process documents")  # noqa: TRY004 - the file's content, not an argument
    keys: dict[str, IssuedKey] = {}
    for document in documents:
        try:
            expiration = document.get("Expiration")
            expires_at = None
            if expiration is not None:
                moment = datetime.fromisoformat(expiration)
                expires_at = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
            key = IssuedKey(
                str(document["AccessKeyId"]), str(document["SecretAccessKey"]), document.get("SessionToken"), expires_at
            )
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"credentials file {path}: not a credential process document ({error!r})") from None
        keys[key.access_key_id] = key
    return keys


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def signing_key(scope: dict[str, Any]) -> str | None:
    """The access key id a request says it is signed with, checked or not (for the log)."""
    match = _AUTHORIZATION.match(_headers(scope).get("authorization", ""))
    return match["key"] if match is not None else None


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
        raise SignatureError(
            "InvalidSignatureException", wrong_region(signed_for), f"signed for region {signed_for!r}, not {region!r}"
        )


def verify_request(scope: dict[str, Any], keys: Mapping[str, IssuedKey], now: float) -> IssuedKey:
    """Check the Authorization header of an ASGI HTTP scope against the credentials issued; the key that signed it.

    Raises:
        SignatureError: unsigned, signed with a key not issued, without its session token, with credentials past
            their expiry at ``now`` (``time.time()``), or the signature does not match.
    """
    headers = _headers(scope)
    match = _AUTHORIZATION.match(headers.get("authorization", ""))
    if match is None:
        raise SignatureError(
            "AccessDeniedException", "Missing or malformed Authorization header.", "no SigV4 Authorization header"
        )
    issued = keys.get(match["key"])
    if issued is None:
        raise SignatureError("UnrecognizedClientException", Message.UNKNOWN_KEY, f"key {match['key']} is not issued")
    if issued.session_token is not None and not hmac.compare_digest(
        headers.get("x-amz-security-token", ""), issued.session_token
    ):
        raise SignatureError("UnrecognizedClientException", Message.UNKNOWN_KEY, "the session token does not match")
    if issued.expires_at is not None and now >= issued.expires_at:
        raise SignatureError("ExpiredTokenException", Message.EXPIRED_TOKEN, f"key {issued.access_key_id} expired")
    scope_parts = match["scope"].split("/")
    amz_date = headers.get("x-amz-date", "")
    if len(scope_parts) != 4 or scope_parts[3] != "aws4_request" or not amz_date.startswith(scope_parts[0]):
        raise SignatureError(
            "InvalidSignatureException",
            "Credential scope does not match the request date.",
            f"credential scope {match['scope']!r} against x-amz-date {amz_date!r}",
        )
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
    key = _hmac(("AWS4" + issued.secret_access_key).encode(), scope_parts[0])
    for part in scope_parts[1:]:
        key = _hmac(key, part)
    expected = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match["signature"]):
        raise SignatureError(
            "InvalidSignatureException",
            Message.BAD_SIGNATURE,
            f"the signature with key {issued.access_key_id}'s secret",
        )
    return issued


def _canonical_query(query: str) -> str:
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    encoded = sorted((urllib.parse.quote(k, safe=""), urllib.parse.quote(v, safe="")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)
