"""The data types handlers declare as inputs and outputs."""

from enum import Enum
from typing import TYPE_CHECKING

from chat_engine.common.engine_channel_type import EngineChannelType


class ChatDataType(Enum):
    """A data type; ``value`` is its string name and ``channel_type`` the channel it travels on."""

    _value_: str
    channel_type: EngineChannelType

    def __init__(self, value: str, channel_type: EngineChannelType) -> None:
        self._value_ = value
        self.channel_type = channel_type

    if TYPE_CHECKING:  # what ``value`` is at run time (type checkers would infer the member's tuple)

        @property
        def value(self) -> str: ...

    NONE = ("none", EngineChannelType.NONE)
    HUMAN_TEXT = ("human_text", EngineChannelType.TEXT)
    AVATAR_TEXT = ("avatar_text", EngineChannelType.TEXT)
    HUMAN_VOICE_ACTIVITY = ("human_vad", EngineChannelType.EVENT)
    MIC_AUDIO = ("mic_audio", EngineChannelType.AUDIO)
    HUMAN_AUDIO = ("human_audio", EngineChannelType.AUDIO)
    AVATAR_AUDIO = ("avatar_audio", EngineChannelType.AUDIO)
    CAMERA_VIDEO = ("camera_video", EngineChannelType.VIDEO)
    AVATAR_VIDEO = ("avatar_video", EngineChannelType.VIDEO)
    AVATAR_MOTION_DATA = ("avatar_motion_data", EngineChannelType.MOTION_DATA)
