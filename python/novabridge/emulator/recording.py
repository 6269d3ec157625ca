"""What the emulator received and sent on each stream, so tests can prove nothing was lost or reordered.

Saved to a directory, a stream's audio is written as it comes (``stream-N-user.pcm``, ``stream-N-assistant.pcm``),
with a journal of its turns (``stream-N-turns.jsonl``), so an emulator that is killed leaves what it had received and
sent; ``stream-N.json``, the summary, is written when the stream ends.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("novabridge.emulator")


@dataclass
class TurnRecord:
    """One assistant turn as the emulator played it."""

    index: int
    """0-based, across the whole stream."""
    source: str
    """``"speech"`` (ended by endpointing), ``"text"`` (cross-modal input) or ``"tool"``: the answer to a tool result
    that came after its turn had ended (Nova 2's asynchronous tools); ``index`` is then the asking turn's."""
    user_text: str
    answer: str
    speech_end_s: float | None = None
    """Input-clock position where the user's speech ended (spoken turns)."""
    assistant_audio: bytearray = field(default_factory=bytearray)
    """The audio sent for this turn, in order (unless the stream's recording keeps no audio)."""
    assistant_audio_bytes: int = 0
    """How much audio was sent for this turn."""
    tool_use_id: str | None = None
    tool_result: str | None = None
    interrupted: bool = False
    played_s: float = 0.0
    """How much of the turn's audio had played (on the playout clock) when it ended or was interrupted."""


@dataclass
class StreamRecording:
    """One InvokeModelWithBidirectionalStream call."""

    stream_id: int
    model_id: str
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: float | None = None
    input_events: list[dict[str, Any]] = field(default_factory=list)
    """Every event received, in order; ``audioInput.content`` is replaced by its byte count and digest."""
    output_events: list[dict[str, Any]] = field(default_factory=list)
    """Every event sent, in order; ``audioOutput.content`` is replaced likewise."""
    user_audio: bytearray = field(default_factory=bytearray)
    """All ``audioInput`` PCM received, decoded, concatenated in arrival order."""
    assistant_audio: bytearray = field(default_factory=bytearray)
    """All ``audioOutput`` PCM sent, concatenated in order."""
    turns: list[TurnRecord] = field(default_factory=list)
    speech_prompt: str | None = None
    """The text of the stream's ``SYSTEM_SPEECH`` block (Nova 2's speech prompt), if it sent one."""
    outcome: str = "open"
    """``open``, ``completed`` (sessionEnd), ``client-closed`` (input closed without sessionEnd),
    ``client-disconnected``, ``connection-closed`` (cut by either side), ``error``, ``reset``, ``corrupt-frame``."""
    error: tuple[str, str, str] | None = None
    """(output union member, message on the wire, which rule or fault fired)."""
    access_key_id: str | None = None
    """The key that signed the request, when the emulator checks signatures."""
    credentials_left_s: float | None = None
    """How long the credentials that signed the request had left when the stream opened (None: no expiry)."""
    keep_audio: bool = True
    """Keep the audio in `user_audio`, `assistant_audio` and the turns, and the events in `input_events` and
    `output_events`. A server that keeps no recordings (the CLI, which writes them through to ``--record-dir``) keeps
    only byte counts and digests: a stream's audio is megabytes by its end, and its events (one per 32 ms frame) as
    many again in small objects, which a soak run's emulator held by the tens of MiB, growing and shrinking with the
    streams' ages."""
    log: list[str] = field(default_factory=list)
    """What the emulator logged of this stream (`note`), each line with the seconds since it opened."""
    _files: dict[str, IO[bytes]] = field(default_factory=dict, repr=False)
    _user_digest: Any = field(default_factory=hashlib.sha256, repr=False)
    _assistant_digest: Any = field(default_factory=hashlib.sha256, repr=False)
    _user_bytes: int = 0
    _assistant_bytes: int = 0

    def write_through(self, directory: Path) -> None:
        """From now on, append audio and turns to this stream's files in ``directory`` as they come."""
        directory.mkdir(parents=True, exist_ok=True)
        for part in _STREAMED_FILES:
            # Unbuffered: each write reaches the kernel at once, and survives this process being killed.
            self._files[part] = open(directory / f"stream-{self.stream_id}-{part}", "ab", buffering=0)  # noqa: SIM115
        for part in () if self.keep_audio else _EVENT_FILES.values():  # moved into the summary at `save`
            self._files[part] = open(directory / f"stream-{self.stream_id}-{part}", "w+b")  # noqa: SIM115

    def add_input_event(self, event: dict[str, Any]) -> None:
        """An event received (audio summarized: `summarize_audio_event`)."""
        self._add_event("input_events", self.input_events, event)

    def add_output_event(self, event: dict[str, Any]) -> None:
        """An event sent (audio summarized: `summarize_audio_event`)."""
        self._add_event("output_events", self.output_events, event)

    def _add_event(self, name: str, kept: list[dict[str, Any]], event: dict[str, Any]) -> None:
        if self.keep_audio:
            kept.append(event)
        elif self._files:
            self._files[_EVENT_FILES[name]].write(json.dumps(event).encode() + b"\n")

    def note(self, message: str, level: int = logging.INFO) -> None:
        """Log ``message`` about this stream (stderr of `novabridge emulator`) and keep the line in the recording."""
        line = f"{time.monotonic() - self.opened_at:.3f}s {message}"
        self.log.append(line)
        logger.log(level, "stream %d: %s", self.stream_id, line)

    def add_user_audio(self, pcm: bytes) -> None:
        """``audioInput`` PCM received."""
        self._user_bytes += len(pcm)
        self._user_digest.update(pcm)
        if self.keep_audio:
            self.user_audio += pcm
        if self._files:
            self._files["user.pcm"].write(pcm)

    def begin_answer(self, turn: TurnRecord, completion_id: str) -> None:
        """A turn's answer begins (its ``completionStart``): journal where the user's audio stood then."""
        self._journal(
            {
                "turn": turn.index,
                "completion_id": completion_id,
                "source": turn.source,
                "user_text": turn.user_text,
                "user_bytes": self.user_audio_bytes,
            }
        )

    def add_assistant_audio(self, turn: TurnRecord, completion_id: str, pcm: bytes) -> None:
        """``audioOutput`` PCM sent for ``turn``; a turn's audio is contiguous in the stream's."""
        if not turn.assistant_audio_bytes:
            self._journal({"audio": completion_id, "assistant_offset": self.assistant_audio_bytes})
        turn.assistant_audio_bytes += len(pcm)
        self._assistant_bytes += len(pcm)
        self._assistant_digest.update(pcm)
        if self.keep_audio:
            self.assistant_audio += pcm
            turn.assistant_audio += pcm
        if self._files:
            self._files["assistant.pcm"].write(pcm)

    def _journal(self, line: dict[str, Any]) -> None:
        if self._files:
            self._files["turns.jsonl"].write(json.dumps(line).encode() + b"\n")

    @property
    def user_audio_bytes(self) -> int:
        """How much user audio was received."""
        return len(self.user_audio) if self.keep_audio else self._user_bytes

    @property
    def assistant_audio_bytes(self) -> int:
        """How much assistant audio was sent."""
        return len(self.assistant_audio) if self.keep_audio else self._assistant_bytes

    @property
    def user_audio_sha256(self) -> str:
        """Digest of all user audio received."""
        digest: str = (hashlib.sha256(self.user_audio) if self.keep_audio else self._user_digest).hexdigest()
        return digest

    @property
    def assistant_audio_sha256(self) -> str:
        """Digest of all assistant audio sent."""
        digest: str = (hashlib.sha256(self.assistant_audio) if self.keep_audio else self._assistant_digest).hexdigest()
        return digest

    def event_names(self, *, sent: bool = False) -> list[str]:
        """The event names in order, received (default) or sent."""
        return [next(iter(e["event"])) for e in (self.output_events if sent else self.input_events)]

    def save(self, directory: Path) -> Path:
        """Write ``stream-N.json``, and ``stream-N-{user,assistant}.pcm`` unless they were written through."""
        directory.mkdir(parents=True, exist_ok=True)
        stem = directory / f"stream-{self.stream_id}"
        events = {name: self._event_lines(name) for name in _EVENT_FILES}
        if self._files:
            for part in _STREAMED_FILES:
                self._files.pop(part).close()
        else:
            stem.with_name(stem.name + "-user.pcm").write_bytes(self.user_audio)
            stem.with_name(stem.name + "-assistant.pcm").write_bytes(self.assistant_audio)
        summary = {
            "stream_id": self.stream_id,
            "model_id": self.model_id,
            "outcome": self.outcome,
            "error": self.error,
            "access_key_id": self.access_key_id,
            "credentials_left_s": self.credentials_left_s,
            "user_audio_bytes": self.user_audio_bytes,
            "user_audio_sha256": self.user_audio_sha256,
            "assistant_audio_bytes": self.assistant_audio_bytes,
            "assistant_audio_sha256": self.assistant_audio_sha256,
            "duration_s": (self.closed_at or time.monotonic()) - self.opened_at,
            "turns": [
                {
                    **{k: v for k, v in dataclasses.asdict(turn).items() if k != "assistant_audio"},
                    "assistant_audio_bytes": len(turn.assistant_audio)
                    if self.keep_audio
                    else turn.assistant_audio_bytes,
                }
                for turn in self.turns
            ],
            "log": self.log,
        }
        path = stem.with_suffix(".json")
        # Written aside and renamed: a reader that waits for the summary (the pytest plugin) never sees half of it.
        # The events go in a line at a time, never all in memory at once.
        partial = stem.with_suffix(".json.partial")
        with partial.open("w") as out:
            out.write(json.dumps(summary, indent=1).removesuffix("\n}"))
            for name, lines in events.items():
                out.write(f',\n "{name}": [')
                for number, line in enumerate(lines):
                    out.write(("," if number else "") + "\n  " + line)
                out.write("\n ]")
            out.write("\n}\n")
        partial.replace(path)
        for part in _EVENT_FILES.values():
            if part in self._files:
                self._files.pop(part).close()
                stem.with_name(f"{stem.name}-{part}").unlink()
        return path

    def _event_lines(self, name: str) -> Iterator[str]:
        """The events as JSON text, one each: from memory, or from the file they were written through to."""
        file = self._files.get(_EVENT_FILES[name])
        if file is None:
            yield from (json.dumps(event) for event in getattr(self, name))
            return
        file.seek(0)
        for line in file:
            yield line.decode().rstrip("\n")


_STREAMED_FILES = ("user.pcm", "assistant.pcm", "turns.jsonl")
"""What a recording written through appends to as it comes, and leaves on disk."""
_EVENT_FILES = {"input_events": "input-events.jsonl", "output_events": "output-events.jsonl"}
"""Where a recording written through keeps its events until `save` moves them into the summary."""


def summarize_audio_event(body: dict[str, Any], kind: str, pcm: bytes) -> dict[str, Any]:
    """A copy of an audio event with the content replaced by its size and digest."""
    inner = dict(body["event"][kind])
    inner["content"] = {"bytes": len(pcm), "sha256": hashlib.sha256(pcm).hexdigest()}
    return {"event": {kind: inner}}
