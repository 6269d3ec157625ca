"""The conversation so far, kept as text so that a new stream can resume it (renewal, reconnection, restart).

One class serves the session (which resumes a new stream from it) and `SonicBridge` (which resumes a replacement
worker from it), so both keep the same conversation from the same transcripts.
"""

from __future__ import annotations

import threading

from novabridge.sonic.config import HistoryMessage
from novabridge.sonic.wire import HISTORY_LIMIT_BYTES, trim_history


class History:
    """USER and ASSISTANT messages in order; consecutive messages of one role are merged.

    Only what a replay could use is kept: the newest messages, back to the first that takes the total over
    `HISTORY_LIMIT_BYTES` (`trim_history` stops there). A conversation of days kept whole would grow the session and
    the bridge with every turn, to give a new stream the same 40 KB.

    Safe to add to from two threads (a bridge's host adds typed text from its sending thread, transcripts from its
    reading one).
    """

    def __init__(self, initial: tuple[HistoryMessage, ...] = ()) -> None:
        self._messages: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        for message in initial:
            self.add(message.role, message.text)

    def add(self, role: str, text: str) -> None:
        """Append ``text`` said by ``role`` (USER or ASSISTANT); blank text is not a message."""
        text = text.strip()
        if not text:
            return
        with self._lock:
            if self._messages and self._messages[-1][0] == role:
                self._messages[-1] = (role, f"{self._messages[-1][1]} {text}")
            else:
                self._messages.append((role, text))
            self._forget_unreplayable()

    def _forget_unreplayable(self) -> None:
        total = 0
        for index in range(len(self._messages) - 1, 0, -1):
            total += len(self._messages[index][1].encode("utf-8", "surrogatepass"))
            if total > HISTORY_LIMIT_BYTES:
                del self._messages[:index]
                return

    @property
    def messages(self) -> list[tuple[str, str]]:
        """The messages kept, oldest first."""
        with self._lock:
            return list(self._messages)

    def for_replay(self, limit_bytes: int = HISTORY_LIMIT_BYTES) -> list[tuple[str, str]]:
        """The newest messages within ``limit_bytes``, starting with USER (see `novabridge.sonic.wire.trim_history`).

        ``limit_bytes`` is at most `HISTORY_LIMIT_BYTES`: no more is kept.
        """
        return trim_history(self.messages, limit_bytes)

    def for_config(self, limit_bytes: int = HISTORY_LIMIT_BYTES) -> tuple[HistoryMessage, ...]:
        """`for_replay` as a `SonicConfig`'s ``history``: what a new session resumes from."""
        return tuple(HistoryMessage(role=role, text=text) for role, text in self.for_replay(limit_bytes))
