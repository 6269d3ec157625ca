"""Per-hop timing of the OpenAvatarChat handler, written as JSON lines when ``trace_file`` is set.

Where does the time go between the user's last word and the avatar's first? Only part of the path is novabridge's:
the browser, WebRTC and OpenAvatarChat's pump threads come before the handler and after it. Each line stamps one
moment the handler sees with the wall clock (``time.time()``), which a browser's ``performance.timeOrigin +
performance.now()`` shares on the same machine, so the hops on either side of the handler can be told apart:

- ``mic``: a microphone chunk reached ``handle()``; ``ts`` is OAC's timestamp (samples since the session started).
- ``answer_audio``: the first audio of an answer came out of the bridge (the worker, the SDK and the service
  before it).
- ``avatar_audio``: the first audio of an answer was handed to the avatar (the pacing before it).
- ``local_pause`` / ``local_resume`` / ``interrupted``: a barge-in heard on the host, the pause lifted because the
  service did not confirm it, the service's confirmation.

Writing is off by default; when on, each line costs a few microseconds on the thread that writes it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO, Any


class HopTrace:
    """Append-only JSON lines, shared by every session of a handler (each line names its session)."""

    def __init__(self, path: Path | None) -> None:
        self._file: IO[str] | None = path.open("a", buffering=1) if path is not None else None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether lines are written."""
        return self._file is not None

    def mark(self, event: str, session: str, **fields: Any) -> None:
        """One line: ``{"t": wall seconds, "event": ..., "session": ..., **fields}``."""
        if self._file is None:
            return
        line = json.dumps({"t": time.time(), "event": event, "session": session, **fields})
        with self._lock:
            self._file.write(line + "\n")

    def close(self) -> None:
        """Stop writing."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
