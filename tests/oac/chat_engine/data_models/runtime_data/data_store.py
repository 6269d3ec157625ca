"""Storage cell of one ``DataBundle`` entry."""

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class DataStoreType(IntEnum):
    """Where a stored value lives; INVALID means nothing is stored."""

    INVALID = 0
    LOCAL_MEMORY = 1


@dataclass
class DataStore:
    """One value and where it is stored."""

    data: Any
    storage: DataStoreType = DataStoreType.INVALID

    @property
    def valid(self) -> bool:
        """Whether a value has been stored."""
        return self.storage != DataStoreType.INVALID

    def set_data(self, data: Any, storage: DataStoreType) -> None:
        """Store ``data`` with the given storage kind."""
        self.data = data
        self.storage = storage

    def get_data(self) -> Any:
        """The stored value (None when nothing was stored)."""
        return self.data
