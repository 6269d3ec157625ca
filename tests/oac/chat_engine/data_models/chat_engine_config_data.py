"""Pydantic models of the ``chat_engine`` config section and of the per-handler config base."""

from typing import Any

from pydantic import BaseModel, Field

from chat_engine.common.engine_channel_type import EngineChannelType
from chat_engine.data_models.chat_data_type import ChatDataType

# OAC modules import EngineChannelType from here too; say so, so that strict type checkers accept it.
__all__ = [
    "ChatDataType",
    "ChatEngineConfigModel",
    "ChatEngineOutputSource",
    "EngineChannelType",
    "HandlerBaseConfigModel",
]


class HandlerBaseConfigModel(BaseModel):
    """Fields every handler config has; handler configs subclass it."""

    enabled: bool = Field(default=True)
    module: str | None = Field(default=None)
    concurrent_limit: int = Field(default=1)


class ChatEngineOutputSource(BaseModel):
    """An engine output: data of ``type`` produced by ``handler`` (one name or several)."""

    handler: str | list[str] | None
    type: ChatDataType


class ChatEngineConfigModel(BaseModel):
    """The ``chat_engine`` section of an OAC config file."""

    model_root: str = ""
    concurrent_limit: int = Field(default=1)
    handler_search_path: list[str] = Field(default_factory=list)
    handler_configs: dict[str, dict[str, Any]] | None = None
    outputs: dict[EngineChannelType, ChatEngineOutputSource] = Field(default_factory=dict)
    turn_config: dict[str, Any] | None = Field(default=None)
