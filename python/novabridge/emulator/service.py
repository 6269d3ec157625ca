"""What the emulator knows of the service: model ids, voices, rates, limits and the service's own messages.

Sources: the AWS user guides for v1 and Nova 2 and the Bedrock API reference, with their URLs in docs/nova-sonic.md;
the transient errors are those peers met in production (docs/nova-sonic.md, "Failures seen in practice").
"""

from __future__ import annotations

from enum import StrEnum

# The emulator keeps its own copy of the service's facts rather than importing the client's (novabridge.sonic.models
# and novabridge.sonic.wire): were both to read one list, a mistake in it would pass every test.
# tests/emulator/test_service_facts.py pins these to the documents they come from.

NOVA_SONIC_V1 = "amazon.nova-sonic-v1:0"
NOVA_2_SONIC = "amazon.nova-2-sonic-v1:0"
NOVA_2_5_SONIC = "amazon.nova-2-5-sonic"
MODEL_IDS = frozenset({NOVA_SONIC_V1, NOVA_2_SONIC, NOVA_2_5_SONIC})
"""Bedrock model ids: v1 and Nova 2 Sonic from the AWS user guides' request examples; Nova 2.5 Sonic as the peers
that default to it send it (Pipecat, Strands; no AWS page gives it yet)."""


class Generation(StrEnum):
    """The rules a model follows.

    ``nova-2-sonic`` adds text input during a session, turn detection and ``SYSTEM_SPEECH`` to v1's.
    """

    SONIC_1 = "nova-sonic"
    SONIC_2 = "nova-2-sonic"


GENERATIONS = {
    NOVA_SONIC_V1: Generation.SONIC_1,
    NOVA_2_SONIC: Generation.SONIC_2,
    NOVA_2_5_SONIC: Generation.SONIC_2,
}
NEWEST = {Generation.SONIC_1: NOVA_SONIC_V1, Generation.SONIC_2: NOVA_2_5_SONIC}
"""The model whose voices a model served as a named generation (``extra_models``) takes."""

_NOVA_2_VOICES = frozenset(
    {
        *("matthew", "tiffany", "amy", "olivia", "lupe", "carlos", "ambre", "florian", "tina", "lennart"),
        *("beatrice", "lorenzo", "carolina", "leo", "arjun", "kiara"),
    }
)
VOICES: dict[str, frozenset[str]] = {
    NOVA_SONIC_V1: frozenset(
        {"tiffany", "matthew", "amy", "ambre", "florian", "beatrice", "lorenzo", "greta", "lennart", "lupe", "carlos"}
    ),
    NOVA_2_SONIC: _NOVA_2_VOICES,
    NOVA_2_5_SONIC: _NOVA_2_VOICES,
}
"""``voiceId`` values each model takes: v1 from the user guide's "available voices"; Nova 2's 16 from its guide's
"Language support and multilingual capabilities" (LiveKit's ``SONIC2_VOICES`` lists the same), and Nova 2.5's the
same (LiveKit's ``with_nova_sonic_2_5`` takes that list)."""

BARGE_IN_MARKER = '{ "interrupted" : true }'
"""The textOutput content by which the service announces a barge-in (what the AWS samples, LiveKit and Strands
check for)."""

TEXT_INPUT_LIMIT_BYTES = 1024
"""One ``textInput`` holds at most 1 KB of text (Nova 2 user guide, "Managing chat history")."""
HISTORY_LIMIT_BYTES = 40 * 1024
"""The chat history given to a new stream is at most 40 KB in all (Nova 2 user guide, "Managing chat history")."""
EVENT_LIMIT_BYTES = 1_000_000
"""``BidirectionalInputPayloadPart.bytes`` holds at most 1,000,000 bytes (Amazon Bedrock API Reference)."""

SAMPLE_RATES = frozenset({8000, 16000, 24000})

CONNECTION_LIFETIME_S = 480.0
INPUT_TIMEOUT_S = 60.0
SILENCE_LIMIT_S = 175.0


class Endpointing(StrEnum):
    """Nova 2 ``turnDetectionConfiguration.endpointingSensitivity``; the value is the pause that ends a turn."""

    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"

    @property
    def pause_s(self) -> float:
        """The silence after speech that ends the user's turn (nova2 sonic-turn-taking)."""
        return {"HIGH": 1.5, "MEDIUM": 1.75, "LOW": 2.0}[self.value]


class Message(StrEnum):
    """Error messages exactly as the service words them."""

    INVALID_INPUT = "Invalid input request, please fix your input and try again."
    HISTORY_BEFORE_AUDIO = "Chat history should be sent completely before streaming audio."
    INPUT_TIMEOUT = "Timed out waiting for input events"
    RST_STREAM_531 = "InternalErrorCode=531::RST_STREAM closed stream. HTTP/2 error code: NO_ERROR"
    INSTABILITY = "System instability detected. Please retry your request."
    TOOL_RESULT_PARSE = "Tool Response parsing error"
    MODEL_TIMEOUT = "Model has timed out in processing the request"
    MODEL_STREAM_ERROR = "The model stream encountered an error. Please retry your request."
    THROTTLED = "Too many requests, please wait before trying again."
    TOO_MANY_STREAMS = "Too many concurrent requests. Please retry after the existing requests complete."
    UNKNOWN_MODEL = "The provided model identifier is invalid."
    BAD_SIGNATURE = "The request signature we calculated does not match the signature you provided."
    UNKNOWN_KEY = "The security token included in the request is invalid."
    EXPIRED_TOKEN = "The security token included in the request is expired"
    NO_MODEL_ACCESS = "You don't have access to the model with the specified model ID."


def wrong_region(region: str) -> str:
    """The refusal of a request signed for a region the endpoint does not serve (403 InvalidSignatureException)."""
    return f"Credential should be scoped to a valid region, not '{region}'."


class ServiceError(Exception):
    """An error the emulated service reports on the stream: the output union member and the service's message.

    ``detail`` says which rule fired; it goes to the log and the recording, never on the wire, so clients see
    exactly what the service would send.
    """

    def __init__(self, member: str, message: str, detail: str = "", **fields: object) -> None:
        super().__init__(message)
        self.member = member
        self.message = message
        self.detail = detail or message
        self.fields = fields


def invalid_input(detail: str) -> ServiceError:
    """The service's generic schema or sequencing rejection."""
    return ServiceError("validationException", Message.INVALID_INPUT, detail)


def validation(message: Message, detail: str = "") -> ServiceError:
    """A ValidationException with one of the service's specific messages."""
    return ServiceError("validationException", message, detail)


__all__ = [
    "BARGE_IN_MARKER",
    "CONNECTION_LIFETIME_S",
    "EVENT_LIMIT_BYTES",
    "GENERATIONS",
    "HISTORY_LIMIT_BYTES",
    "INPUT_TIMEOUT_S",
    "MODEL_IDS",
    "NEWEST",
    "NOVA_2_5_SONIC",
    "NOVA_2_SONIC",
    "NOVA_SONIC_V1",
    "SAMPLE_RATES",
    "SILENCE_LIMIT_S",
    "TEXT_INPUT_LIMIT_BYTES",
    "VOICES",
    "Endpointing",
    "Generation",
    "Message",
    "ServiceError",
    "invalid_input",
    "validation",
    "wrong_region",
]
