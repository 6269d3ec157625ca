"""The handler interface: what a handler declares (info, inputs/outputs) and the calls the engine makes."""

import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from chat_engine.contexts.handler_context import HandlerContext, HandlerResultType
from chat_engine.contexts.session_context import SessionContext
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from chat_engine.data_models.runtime_data.data_bundle import DataBundleDefinition


class ChatDataConsumeMode(Enum):
    """ONCE: the first (highest-priority) consumer takes the data and distribution stops there."""

    ONCE = -1
    DEFAULT = 0


@dataclass
class HandlerBaseInfo:
    """Static handler info; ``name`` is overwritten with the config key, smaller ``load_priority`` loads first."""

    name: str | None = None
    config_model: type[HandlerBaseConfigModel] | None = None
    client_session_delegate_class: type[Any] | None = None
    load_priority: int = 0


@dataclass
class HandlerDataInfo:
    """One declared input or output; inputs are ordered by ``input_priority``, then by type name."""

    type: ChatDataType = ChatDataType.NONE
    definition: DataBundleDefinition | None = None
    input_priority: int = 0
    input_consume_mode: ChatDataConsumeMode = ChatDataConsumeMode.DEFAULT

    def __lt__(self, other: "HandlerDataInfo") -> bool:
        if self.input_priority == other.input_priority:
            return self.type.value < other.type.value
        return self.input_priority < other.input_priority


@dataclass
class HandlerDetail:
    """A handler's inputs and outputs for one session."""

    inputs: dict[ChatDataType, HandlerDataInfo] = field(default_factory=dict)
    outputs: dict[ChatDataType, HandlerDataInfo] = field(default_factory=dict)


class HandlerBase(ABC):
    """Base of all handlers; one instance serves every session, per-session state lives in the context."""

    def __init__(self) -> None:
        self.engine: weakref.ReferenceType[Any] | None = None
        self.handler_root: str | None = None

    def on_before_register(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Called at registration, before ``get_handler_info``."""

    @abstractmethod
    def get_handler_info(self) -> HandlerBaseInfo:
        """Static info, including the config model class."""

    @abstractmethod
    def load(self, engine_config: ChatEngineConfigModel, handler_config: HandlerBaseConfigModel | None = None) -> None:
        """Once at engine start, in ``load_priority`` order."""

    @abstractmethod
    def create_context(
        self, session_context: SessionContext, handler_config: HandlerBaseConfigModel | None = None
    ) -> HandlerContext:
        """Per session: build this handler's context (the session is not started yet)."""

    @abstractmethod
    def start_context(self, session_context: SessionContext, handler_context: HandlerContext) -> None:
        """Per session, at ``ChatSession.start()``; ``submit_data`` works from here on."""

    @abstractmethod
    def get_handler_detail(self, session_context: SessionContext, context: HandlerContext) -> HandlerDetail:
        """Per session, right after ``create_context``: declared inputs and outputs."""

    @abstractmethod
    def handle(
        self,
        context: HandlerContext,
        inputs: ChatData,
        output_definitions: dict[ChatDataType, HandlerDataInfo],
    ) -> HandlerResultType | Iterable[HandlerResultType | None] | None:
        """Called on the handler's pump thread for each input; may return or yield outputs."""

    @abstractmethod
    def destroy_context(self, context: HandlerContext) -> None:
        """Per session, at ``ChatSession.stop()`` after this handler's pump thread has ended."""

    def destroy(self) -> None:  # noqa: B027 - optional hook, empty by design
        """At engine shutdown."""
