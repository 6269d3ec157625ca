"""A control signal sent to a session (only END from the client has an effect in OAC)."""

from pydantic import BaseModel, Field

from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_signal_type import ChatSignalSourceType, ChatSignalType


class ChatSignal(BaseModel):
    """Signal type, the stream it concerns, and its sender."""

    type: ChatSignalType | None = Field(default=None)
    stream_type: ChatDataType | None = Field(default=None)
    source_type: ChatSignalSourceType | None = Field(default=None)
    source_name: str = Field(default="")
