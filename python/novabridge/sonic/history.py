"""The conversation so far, kept as text so that a new stream can resume it (renewal, reconnection, restart)."""

from __future__ import annotations

from novabridge.protocol import HISTORY_LIMIT_BYTES, trim_history
from novabridge.sonic.config import HistoryMessage


class History:
    """USER and ASSISTANT messages in order; consecutive messages of one role are merged."""

    def __init__(self, initial: tuple[HistoryMessage, ...] = ()) -> None:
        self._messages: list[tuple[str, str]] = []
        for message in initial:
            self.add(message.role, message.text)

    def add(self, role: str, text: str) -> None:
        """Append ``text`` said by ``role`` (USER or ASSISTANT)."""
        text = text.strip()
        if not text:
            return
        if self._messages and self._messages[-1][0] == role:
            self._messages[-1] = (role, f"{self._messages[-1][1]} {text}")
        else:
            self._messages.append((role, text))

    @property
    def messages(self) -> list[tuple[str, str]]:
        """All messages, oldest first."""
        return list(self._messages)

    def for_replay(self, limit_bytes: int = HISTORY_LIMIT_BYTES) -> list[tuple[str, str]]:
        """The newest messages within ``limit_bytes``, starting with USER (see `protocol.trim_history`)."""
        return trim_history(self._messages, limit_bytes)
