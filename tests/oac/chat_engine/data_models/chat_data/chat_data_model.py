"""The unit of data passed between handlers."""

from dataclasses import dataclass

from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle


@dataclass
class ChatData:
    """A typed, timestamped ``DataBundle``; ``source`` is the producing handler's name."""

    source: str | None = None
    type: ChatDataType = ChatDataType.NONE
    timestamp: tuple[int, int] = (0, 0)
    data: DataBundle | None = None

    def is_timestamp_valid(self) -> bool:
        """A timestamp is (count, base) and valid when count >= 0 and base > 0."""
        return self.timestamp[0] >= 0 and self.timestamp[1] > 0
