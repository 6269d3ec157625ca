"""The channel kinds the engine moves data on."""

from enum import Enum


class EngineChannelType(str, Enum):  # noqa: UP042 - OAC's (str, Enum): str() differs from StrEnum
    """Kind of a session input/output channel; also the channel of each ``ChatDataType``."""

    NONE = "none"
    TEXT = "text"
    AUDIO = "audio"
    VIDEO = "video"
    EVENT = "event"
    MOTION_DATA = "motion_data"
