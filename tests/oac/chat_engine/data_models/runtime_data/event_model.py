"""Events that may ride on a ``DataBundle`` (defined by OAC, not emitted by its engine)."""

from enum import Enum

from pydantic import BaseModel, Field


class EventType(str, Enum):  # noqa: UP042 - OAC's (str, Enum): str() differs from StrEnum
    """Kinds of event."""

    EVT_START_AVATAR_SPEAKING = "start_avatar_speaking"
    EVT_END_AVATAR_SPEAKING = "end_avatar_speaking"
    EVT_START_HUMAN_SPEAKING = "start_human_speaking"
    EVT_END_HUMAN_SPEAKING = "end_human_speaking"
    EVT_HUMAN_TEXT = "human_speech_text"
    EVT_HUMAN_TEXT_END = "human_speech_text_end"
    EVT_AVATAR_TEXT = "avatar_speech_text"
    EVT_AVATAR_TEXT_END = "avatar_speech_text_end"
    EVT_SESSION_START = "session_start"
    EVT_SESSION_STOP = "session_stop"
    EVT_INTERRUPT_SPEECH = "interrupt_speech"
    EVT_SERVER_ERROR = "server_error"


class EventEmbeddingDataType(str, Enum):  # noqa: UP042 - OAC's (str, Enum): str() differs from StrEnum
    """Encoding of an event's payload."""

    NOT_SET = "not_set"
    TEXT = "text"
    JSON = "json"
    BASE64 = "base64"


class EventData(BaseModel):
    """An event; ``event_time`` None means instant, -1 means the receiver decides."""

    event_type: EventType | None = Field(default=None)
    event_subtype: str | None = Field(default=None)
    event_data_type: EventEmbeddingDataType | None = Field(default=None)
    event_data: str | None = Field(default=None)
    event_time: int | None = Field(default=None)
    event_time_unit: int | None = Field(default=None)

    def is_valid(self) -> bool:
        """An event is valid once it has a type."""
        return self.event_type is not None
