"""Per-session, per-handler state; handlers subclass ``HandlerContext`` to keep their own."""

from typing import TYPE_CHECKING, Any, TypeAlias

from numpy.typing import NDArray

from chat_engine._standin_logger import logger
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle

if TYPE_CHECKING:
    from chat_engine.core.chat_session import ChatDataSubmitter

HandlerResultType: TypeAlias = ChatData | DataBundle | tuple[ChatDataType, NDArray[Any]]


class HandlerContext:
    """Holds the session id, the owning handler's name and, once the session starts, the data submitter."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.owner: str | None = None
        self.data_submitter: ChatDataSubmitter | None = None

    def submit_data(self, data: HandlerResultType) -> None:
        """Send output into the session from any thread; before ``start()`` it is logged and dropped."""
        if self.data_submitter is None:
            logger.error("Session is not started, data submitter not ready.")
            return
        self.data_submitter.submit(data)
