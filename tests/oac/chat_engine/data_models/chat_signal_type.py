"""Kinds and sources of chat signals."""

from enum import Enum


class ChatSignalType(str, Enum):  # noqa: UP042 - OAC's (str, Enum): str() differs from StrEnum
    """What a signal asks for."""

    BEGIN = "begin"
    END = "end"
    INTERRUPT = "interrupt"


class ChatSignalSourceType(str, Enum):  # noqa: UP042 - OAC's (str, Enum): str() differs from StrEnum
    """Who sent a signal."""

    CLIENT = "client"
