"""`SonicConfig`: everything a Nova Sonic session needs, validated before any connection is made.

Importable without the SDK (the 3.11 host builds the config, the 3.12 worker runs the session). Credentials are
`SecretStr`, so they never show in a repr, a log line or an error message.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from novabridge.sonic.models import DEFAULT_MODEL_ID, Generation, model_for
from novabridge.sonic.wire import HISTORY_LIMIT_BYTES

logger = logging.getLogger("novabridge.sonic")

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly assistant. The user and you will engage in a spoken dialog exchanging the transcripts of a "
    "natural real-time conversation. Keep your responses short, generally two or three sentences for chatty "
    "scenarios."
)

Rate = Literal[8000, 16000, 24000]


@functools.cache  # once per process and id: the host and the worker each validate the config
def _check_model_id(model_id: str) -> str:
    model = model_for(model_id)
    if not model.known:
        logger.warning(
            "model %r is not one novabridge knows; it is given %s's rules (the newest generation it knows)",
            model_id,
            model.generation.value,
        )
    elif model.retired():
        logger.warning(
            "%s (%s) reached its end of life on %s: Bedrock no longer serves it; choose %s",
            model.name,
            model_id,
            model.end_of_life,
            DEFAULT_MODEL_ID,
        )
    return model_id


# The settings' types with their bounds, for every config that passes them on (the OAC handler's YAML) to use as is.
ModelId = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9.:_/-]+$"), AfterValidator(_check_model_id)]
"""A Bedrock model id (`novabridge.sonic.models`): an unknown one is taken with a warning, a retired one too."""
Endpointing = Literal["HIGH", "MEDIUM", "LOW"]
SystemPrompt = Annotated[str, Field(min_length=1)]
SpeechPrompt = Annotated[str, Field(min_length=1)]
MaxTokens = Annotated[int, Field(ge=1, le=10_000)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
RenewalAfter = Annotated[float, Field(gt=0.0, le=470.0)]
"""Seconds before a stream is renewed: under the 8-minute connection limit, with room to open the next."""
Attempts = Annotated[int, Field(ge=0, le=100)]

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$")
"""An AWS region name: us-east-1, ap-northeast-1, us-gov-west-1, ..."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InferenceConfig(_Model):
    """sessionStart.inferenceConfiguration."""

    max_tokens: MaxTokens = 1024
    top_p: Probability = 0.9
    temperature: Probability = 0.7


class RetryPolicy(_Model):
    """Reconnection after transient errors: exponential backoff from ``initial_backoff_s`` up to ``max_backoff_s``."""

    max_attempts: Attempts = 5
    """Consecutive failed attempts before the session gives up with a fatal error (0: never reconnect)."""
    initial_backoff_s: float = Field(0.25, ge=0.0, le=60.0)
    max_backoff_s: float = Field(8.0, ge=0.0, le=300.0)

    def backoff_s(self, attempt: int) -> float:
        """The wait before reconnection attempt ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** (attempt - 1)))


class ToolSpec(_Model):
    """A tool the model may call: its name, what it does, and the JSON schema of its input."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = Field(min_length=1)
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}, "required": []})

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        if schema.get("type") != "object":
            raise ValueError('the input schema must describe an object ({"type": "object", ...})')
        return schema


class HistoryMessage(_Model):
    """A message of earlier conversation, replayed to a new stream."""

    role: Literal["USER", "ASSISTANT"]
    text: str = Field(min_length=1)


def _env(*names: str) -> str | None:
    for name in names:
        if value := os.environ.get(name):
            return value
    return None


class SonicConfig(_Model):
    """How to reach Nova Sonic and what the conversation is."""

    model_id: ModelId = DEFAULT_MODEL_ID
    region: str = Field(default_factory=lambda: _env("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1")
    endpoint_uri: str | None = None
    """``https://...``; None means Bedrock's regional endpoint. The emulator prints its own."""
    ca_file: Path | None = None
    """Trust only this CA (the emulator's); None means the system trust store."""
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    profile: str | None = None
    """A shared-config profile to read credentials from when no keys are given."""
    voice: str = "matthew"
    system_prompt: SystemPrompt = DEFAULT_SYSTEM_PROMPT
    speech_prompt: SpeechPrompt | None = None
    """Nova 2's speech prompt, sent after the system prompt as a ``SYSTEM_SPEECH`` block: it sets the script that
    Hindi code-switched speech is transcribed in. Use one of the prompts AWS documents, unchanged."""
    inference: InferenceConfig = InferenceConfig()
    endpointing: Endpointing | None = None
    """Nova 2 turn detection: the pause that ends a user turn (1.5, 1.75 or 2.0 s). None: the service default."""
    input_rate: Rate = 16000
    output_rate: Rate = 24000
    tools: tuple[ToolSpec, ...] = ()
    history: tuple[HistoryMessage, ...] = ()
    renewal_after_s: RenewalAfter = 360.0
    """Move to a fresh stream after this long, ahead of the 8-minute connection limit."""
    credentials_refresh_s: float = Field(180.0, gt=0.0, le=3600.0)
    """With temporary credentials from the SDK's sources (no keys given here), move to a stream signed with fresh
    ones this long before the current stream's expire (LiveKit's plugin recycles its session 3 minutes ahead)."""
    retry: RetryPolicy = RetryPolicy()
    connect_timeout_s: float = Field(4.0, gt=0.0, le=120.0)
    """How long connecting may take: each attempt (DNS, TCP, TLS, the service's answer), and at `start` all of its
    attempts together. By then a connection that cannot be made has failed with its cause named. Each opening event
    the stream takes (a long history is hundreds) gives the attempt this long again from then."""
    frame_ms: int = Field(32, ge=10, le=200)
    """Audio is sent to the service in frames of this duration (the docs suggest about 32 ms)."""

    @property
    def endpoint(self) -> str:
        """Where a session connects: ``endpoint_uri``, else Bedrock's runtime endpoint in ``region``."""
        return self.endpoint_uri or f"https://bedrock-runtime.{self.region}.amazonaws.com"

    @field_validator("endpoint_uri")
    @classmethod
    def _https(cls, uri: str | None) -> str | None:
        if uri is None:
            return None
        if not uri.startswith("https://"):
            raise ValueError("endpoint_uri must be https:// (the stream needs HTTP/2, which the SDK speaks over TLS)")
        parts = urllib.parse.urlsplit(uri)
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"endpoint_uri {uri!r} has an invalid port") from None
        if not parts.hostname:
            raise ValueError(f"endpoint_uri {uri!r} names no host")
        if port == 443:
            # The SDK's signer fails on an explicit default port (it rebuilds the URI with a method the URI type
            # lacks), and then the stream never opens: the port is implied by https anyway.
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            uri = urllib.parse.urlunsplit(parts._replace(netloc=host))
        return uri

    @field_validator("region")
    @classmethod
    def _region_name(cls, region: str) -> str:
        if not _REGION.match(region):
            raise ValueError(f"region {region!r} is not an AWS region name (like us-east-1)")
        return region

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is None:
            return None
        if not path.is_file():
            raise ValueError(f"ca_file {path} is not a readable file")
        # Refused here rather than as a TLS failure at connect: a file that holds no certificate can trust nothing.
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=path)
        except ssl.SSLError:
            raise ValueError(
                f"ca_file {path} holds no PEM certificate: it must be the CA certificate that signed the endpoint's "
                "certificate (the emulator prints its own as ca_file)"
            ) from None
        except OSError as error:
            raise ValueError(f"ca_file {path} cannot be read: {error.strerror or error}") from None
        return path

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        model = model_for(self.model_id)
        if self.voice not in model.voices:
            known = ", ".join(sorted(model.voices))
            raise ValueError(f"voice {self.voice!r} is not a voice of {self.model_id}; choose one of {known}")
        if self.endpointing is not None and model.generation is Generation.SONIC_1:
            raise ValueError("endpointing (turnDetectionConfiguration) is a Nova 2 setting; v1 rejects it")
        if self.speech_prompt is not None and model.generation is Generation.SONIC_1:
            raise ValueError("speech_prompt (a SYSTEM_SPEECH block) is a Nova 2 setting; v1 rejects it")
        if (self.aws_access_key_id is None) != (self.aws_secret_access_key is None):
            raise ValueError("give both aws_access_key_id and aws_secret_access_key, or neither")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tool names must be unique: {names}")
        size = sum(len(message.text.encode()) for message in self.history)
        if size > HISTORY_LIMIT_BYTES:
            raise ValueError(f"history is {size} bytes; the service accepts at most {HISTORY_LIMIT_BYTES}")
        return self
