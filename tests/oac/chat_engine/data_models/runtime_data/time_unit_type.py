"""Units of an entry's time axis."""

from enum import IntEnum


class TimeUnitType(IntEnum):
    """Unit of an entry's time axis; NONE marks non-temporal data such as text."""

    NONE = 0
    FRAME = 1
    AUDIO_SAMPLE = 2
    SECOND = 3
