"""Per-session identity and the queue type of session I/O channels."""

import asyncio
import queue
from typing import Any, TypeAlias

from pydantic import BaseModel, Field

IOQueueType: TypeAlias = queue.Queue[Any] | asyncio.Queue[Any]


class SessionInfoData(BaseModel):
    """Session id and the base (ticks per second) of the session's timestamps."""

    session_id: str
    timestamp_base: int = Field(default=16000)
