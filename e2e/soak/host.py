"""One conversation of a soak run, as a host lives it: a microphone thread at real time and an event thread.

The user speaks, types, barges in and calls for tools on a seeded schedule; everything sent and received is kept in
a `SessionLog` for the ledger. The user's audio never holds a zero sample (a faint noise floor is always there), so
the worker's silence fill, all zeros, can be told apart from it in the emulator's recordings, and the noise makes
every stretch of it unique, so any piece of a recording points to exactly one place in what the host sent.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from novabridge import SonicBridge
from novabridge.emulator.voice import synthesize
from novabridge.events import (
    AudioOut,
    Error,
    Interrupted,
    Reconnecting,
    Renewed,
    SonicEvent,
    Stage,
    ToolCall,
    Transcript,
    TurnEnd,
)
from novabridge.exceptions import RingFull

RATE = 16000
FRAME = 640
"""40 ms: the microphone frame (OpenAvatarChat sends 60 ms, WebRTC 20 ms)."""
NOISE_LEVEL = 40
"""The noise floor's peak, about -58 dBFS: below any voice detector's threshold, never zero."""
WORDS = [
    "tell",
    "me",
    "about",
    "the",
    "weather",
    "lights",
    "music",
    "kitchen",
    "timer",
    "tomorrow",
    "please",
    "again",
    "what",
    "when",
    "how",
    "long",
]
TEXT_SHARE = 0.2
BARGE_IN_SHARE = 0.15
INTERRUPT_SHARE = 0.1
SLOW_TOOL_SHARE = 0.25
ANSWER_WAIT_S = 20.0
"""A user who hears no answer speaks again after this long (the ledger reports the unanswered turn)."""
TOOL_ANSWER_S = 3.0
"""After a tool result is sent, how long the host waits for its answer to begin before it counts as idle."""
DEAF_S = 3.0
BURST_S = 3.0
TURN_GAP_S = 1.0
"""The shortest pause between two things the user says: a shorter one is within the service's endpointing (the run's
emulator waits 0.6 s of silence), which hears them as one turn."""
HEARD_TURNS = 16
"""How many turns back an answer's first audio is told from the rest (answers come one after another)."""
_DROPPED_BYTES = re.compile(r"(\d+) bytes")


@dataclass(slots=True)
class Utterance:
    """A user turn: speech (samples ``start``..``end`` of what the host sent) or typed text."""

    index: int
    kind: str
    text: str
    start: int
    end: int = 0
    ended_at: float = 0.0
    """``time.monotonic()`` when the user stopped. The run paces and times everything by the monotonic clock: the
    machine's wall clock was seen to jump ahead mid-run."""
    barge_in: bool = False


class AudioFile:
    """Audio one thread appends and others read, kept in a file: the host's memory is the library's to measure."""

    WINDOW = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self._file = path.open("w+b", buffering=0)
        self._fd = self._file.fileno()
        self.size = 0
        # `find` reads into this one buffer: a new bytes object per window (4 MiB then) went through malloc, whose
        # threshold for giving large blocks back at once rose to meet them, and swung the host's heap by megabytes.
        self._window = bytearray()

    def append(self, data: bytes) -> int:
        """Add ``data``; where it starts."""
        start = self.size
        os.pwrite(self._fd, data, start)
        self.size += len(data)
        return start

    def truncate(self, size: int) -> None:
        """Take back what was appended after ``size``."""
        self.size = size
        os.truncate(self._fd, size)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (as many as there are)."""
        end = min(end, self.size)
        return os.pread(self._fd, end - start, start) if end > start else b""

    def find(self, probe: bytes, start: int = 0) -> int:
        """The first even offset at or after ``start`` where ``probe`` occurs, or -1; read a window at a time."""
        size = self.size
        if len(self._window) < self.WINDOW + len(probe):
            self._window = bytearray(self.WINDOW + len(probe))
        view = memoryview(self._window)
        while start < size:
            got = os.preadv(self._fd, [view[: min(self.WINDOW + len(probe), size - start)]], start)
            at = self._window.find(probe, 0, got)
            while at >= 0 and (start + at) % 2:
                at = self._window.find(probe, at + 1, got)
            if at >= 0:
                return start + at
            start += self.WINDOW
        return -1

    def close(self) -> None:
        """Close the file (it stays on disk)."""
        self._file.close()


@dataclass
class SessionRecords:
    """What one session's host took, heard and saw of its turns, read back from its journal for the ledger."""

    received: AudioFile
    utterances: list[Utterance] = field(default_factory=list)
    received_chunks: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per turn (completion) id: where its audio, as the host received it, lies in ``received`` (start, end)."""
    first_audio_at: dict[str, float] = field(default_factory=dict)
    turn_ends: set[str] = field(default_factory=set)
    interrupted: set[str] = field(default_factory=set)
    """Turns the service's barge-in interrupted."""
    host_interrupts: set[str] = field(default_factory=set)
    """Turns the host cut with `SonicBridge.interrupt`."""
    recoveries_s: list[float] = field(default_factory=list)
    """From each `Reconnecting` to the first event from the service after it."""

    def received_audio(self, turn_id: str) -> bytes:
        """All the audio of ``turn_id`` the host received, in order."""
        return b"".join(self.received.read(a, b) for a, b in self.received_chunks.get(turn_id, []))


@dataclass
class SessionLog:
    """What one session's host sent, saw and did, in order; shared between its threads under ``lock``.

    Whatever grows with the turns goes to files (the audio, and a journal of the turns that `read` gives back), not
    to this process's memory: the host's RSS is measured for the library's leaks, and a run's own records kept here
    grew it by megabytes in half an hour (small objects, and the dict and list tables that hold them, reallocated as
    they grew, which fragments the heap).
    """

    index: int
    directory: Path
    lock: threading.Lock = field(default_factory=threading.Lock)
    refused_bytes: int = 0
    """Audio `send_audio` refused (RingFull): not queued, and said so."""
    turns_taken: int = 0
    user_dropped_reported: int = 0
    """User audio bytes an `Error` reported as never reaching the service."""
    tool_calls: int = 0
    tool_results_dropped: int = 0
    """Late results for tool uses the service no longer waited for (`ToolResultDropped`, `InputNotDelivered`)."""
    reconnects: int = 0
    fatal_errors: list[Error] = field(default_factory=list)
    last_service_event_at: float = field(default_factory=time.monotonic)
    recent: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=60))
    """The last events and actions, for a violation's report."""

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.sent = AudioFile(self.directory / f"session-{self.index}-sent.pcm")
        """Every byte of user audio `SonicBridge.send_audio` accepted, in order."""
        self.received = AudioFile(self.directory / f"session-{self.index}-received.pcm")
        self._journal_path = self.directory / f"session-{self.index}-turns.jsonl"
        self._journal = self._journal_path.open("w")
        self._receiving: tuple[str, int, int] | None = None
        """The received audio not yet journalled: one turn's, contiguous (turn id, start, end)."""

    def _write(self, line: dict[str, Any]) -> None:
        with self.lock:
            self._journal.write(json.dumps(line) + "\n")

    def take_turn(self, utterance: Utterance) -> None:
        """The user began ``utterance`` (typed text is taken whole)."""
        self.turns_taken += 1
        self._write({"turn": dataclasses.astuple(utterance)})

    def end_turn(self, utterance: Utterance) -> None:
        """The user stopped speaking ``utterance`` (its ``end`` and ``ended_at`` are set)."""
        self._write({"ended": utterance.index, "end": utterance.end, "ended_at": utterance.ended_at})

    def receive(self, turn_id: str, pcm: bytes) -> None:
        """Keep assistant audio the host received; a turn's chunks that follow each other make one range."""
        start = self.received.append(pcm)
        if self._receiving and self._receiving[0] == turn_id and self._receiving[2] == start:
            self._receiving = (turn_id, self._receiving[1], start + len(pcm))
            return
        self._flush_received()
        self._receiving = (turn_id, start, start + len(pcm))

    def _flush_received(self) -> None:
        if self._receiving:
            turn_id, start, end = self._receiving
            self._write({"audio": turn_id, "start": start, "end": end})
        self._receiving = None

    def heard(self, turn_id: str, at: float) -> None:
        """The first audio of ``turn_id`` reached the host at ``at``."""
        self._write({"heard": turn_id, "at": at})

    def turn_ended(self, turn_id: str) -> None:
        """A `TurnEnd` came for ``turn_id``."""
        self._write({"turn_end": turn_id})

    def interrupted(self, turn_id: str) -> None:
        """The service's barge-in interrupted ``turn_id``."""
        self._write({"interrupted": turn_id})

    def host_interrupted(self, turn_id: str) -> None:
        """The host cut ``turn_id`` with `SonicBridge.interrupt`."""
        self._write({"host_interrupt": turn_id})

    def recovered(self, after_s: float) -> None:
        """The service was heard from ``after_s`` after a `Reconnecting`."""
        self._write({"recovered_s": after_s})

    def read(self) -> SessionRecords:
        """Everything journalled so far."""
        self._flush_received()
        with self.lock:
            if not self._journal.closed:
                self._journal.flush()
        records = SessionRecords(self.received)
        by_index: dict[int, Utterance] = {}
        for text in self._journal_path.read_text().splitlines():
            line = json.loads(text)
            if "turn" in line:
                utterance = Utterance(*line["turn"])
                records.utterances.append(utterance)
                by_index[utterance.index] = utterance
            elif "ended" in line:
                by_index[line["ended"]].end = line["end"]
                by_index[line["ended"]].ended_at = line["ended_at"]
            elif "audio" in line:
                records.received_chunks.setdefault(line["audio"], []).append((line["start"], line["end"]))
            elif "heard" in line:
                records.first_audio_at.setdefault(line["heard"], line["at"])
            elif "turn_end" in line:
                records.turn_ends.add(line["turn_end"])
            elif "interrupted" in line:
                records.interrupted.add(line["interrupted"])
            elif "host_interrupt" in line:
                records.host_interrupts.add(line["host_interrupt"])
            elif "recovered_s" in line:
                records.recoveries_s.append(line["recovered_s"])
        return records

    def close(self) -> None:
        """Close the audio files and the journal."""
        self._flush_received()
        with self.lock:
            self._journal.close()
        self.sent.close()
        self.received.close()

    def note(self, what: str) -> None:
        """Remember ``what`` happened, with the time."""
        self.recent.append(f"{time.time():.3f} {what}")


class SoakSession:
    """A bridge driven by a seeded user: ``start()``, then ``finish()`` when the run ends."""

    def __init__(self, log: SessionLog, bridge: SonicBridge, seed: int) -> None:
        self.log = log
        self.bridge = bridge
        self._rng = random.Random(seed)
        self._noise = np.random.default_rng(seed)
        self._speech = np.zeros(0, np.int16)
        self._speaking: Utterance | None = None
        self._awaiting: Utterance | None = None
        self._hearing = False
        """An answer is playing: a turn begun now is a barge-in."""
        self._open_turns: set[str] = set()
        """Turns the service began (heard, asked a tool, answered) and has not ended: replaced streams' excepted."""
        self._heard: collections.deque[str] = collections.deque(maxlen=HEARD_TURNS)
        """The turns whose audio has begun, the newest."""
        self._tool_answer_due = 0.0
        self._next_at = time.monotonic() + self._rng.uniform(0.5, 2.0)
        self._spoke_until = 0.0
        """When the user last stopped speaking."""
        self._quiet = False
        """Finishing: no new turn."""
        self._stop = threading.Event()
        self._deaf_until = 0.0
        self._burst_frames = 0
        self._timers: list[tuple[float, str, Any]] = []
        self._timers_lock = threading.Lock()
        self._reconnecting_since: float | None = None
        self._mic = threading.Thread(target=self._run_mic, name=f"soak-mic-{log.index}", daemon=True)
        self._reader = threading.Thread(target=self._run_reader, name=f"soak-events-{log.index}", daemon=True)
        self.crashed: BaseException | None = None

    def start(self) -> None:
        """Connect, then start the user's two threads."""
        self.bridge.start()
        self._mic.start()
        self._reader.start()

    # ------------------------------------------------------------------------------------------- chaos hooks

    def go_deaf(self) -> None:
        """Stop reading events for `DEAF_S`."""
        self._deaf_until = time.monotonic() + DEAF_S
        self.log.note("chaos: deaf")

    def burst(self) -> None:
        """Send the next `BURST_S` of audio at once."""
        self._burst_frames = round(BURST_S * RATE / FRAME)
        self.log.note("chaos: burst")

    # --------------------------------------------------------------------------------------------- the user

    def _frame(self) -> np.ndarray:
        noise = self._noise.integers(1, NOISE_LEVEL, FRAME, dtype=np.int16)
        noise *= self._noise.choice(np.array([-1, 1], np.int16), FRAME)
        take = min(FRAME, len(self._speech))
        if take:
            voiced = self._speech[:take].astype(np.int32) + noise[:take]
            # A voice sample that cancels the noise to zero would look like silence fill.
            noise[:take] = np.where(voiced == 0, 1, np.clip(voiced, -32768, 32767)).astype(np.int16)
            self._speech = self._speech[take:]
        return noise

    def _begin_turn(self, now: float) -> None:
        log = self.log
        barge_in = self._hearing
        index = log.turns_taken
        if self._rng.random() < TEXT_SHARE and not barge_in:
            text = f"soak session {log.index} text {index}"
            utterance = Utterance(index, "text", text, log.sent.size // 2, log.sent.size // 2, now)
            log.take_turn(utterance)
            log.note(f"text {index}")
            self.bridge.send_text(text)
            self._awaiting = utterance
            self._next_at = now + ANSWER_WAIT_S
            return
        words = " ".join(self._rng.choices(WORDS, k=self._rng.randint(2, 5)))
        pcm = np.frombuffer(synthesize(words, voice="matthew", rate=RATE), np.int16)
        self._speech = (pcm * self._rng.uniform(0.3, 0.6)).astype(np.int16)
        self._speaking = Utterance(index, "speech", words, log.sent.size // 2, barge_in=barge_in)
        log.take_turn(self._speaking)
        log.note(f"speech {index}{' (barge-in)' if barge_in else ''}: {words}")
        self._next_at = float("inf")

    def _turn_due(self, now: float) -> bool:
        # Not before TURN_GAP_S after the last speech: the end of an earlier turn (one cut by a barge-in, or asked again
        # after a failure) may come just after the user stopped, and is no answer to what they said.
        return not self._quiet and self._speaking is None and now >= max(self._next_at, self._spoke_until + TURN_GAP_S)

    def _run_mic(self) -> None:
        due = time.monotonic()
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self._turn_due(now):
                    self._begin_turn(now)
                frame = self._frame()
                # Kept before it is sent: the emulator may record it before send_audio returns.
                start = self.log.sent.append(frame.tobytes())
                try:
                    self.bridge.send_audio(frame)
                except RingFull:
                    self.log.sent.truncate(start)
                    self.log.refused_bytes += frame.nbytes
                    self.log.note("send refused: ring full")
                if self._speaking is not None and not len(self._speech):
                    self._speaking.end = self.log.sent.size // 2
                    self._speaking.ended_at = self._spoke_until = time.monotonic()
                    self.log.end_turn(self._speaking)
                    self._awaiting, self._speaking = self._speaking, None
                    self._next_at = time.monotonic() + ANSWER_WAIT_S
                due += FRAME / RATE
                if self._burst_frames:
                    self._burst_frames -= 1
                    due = time.monotonic()
                else:
                    time.sleep(max(0.0, due - time.monotonic()))
        except BaseException as error:  # noqa: BLE001 - reported by the run as a violation
            self.crashed = error

    # ------------------------------------------------------------------------------------------- the events

    def _after(self, delay_s: float, action: str, argument: Any = None) -> None:
        with self._timers_lock:
            self._timers.append((time.monotonic() + delay_s, action, argument))

    def _run_timers(self) -> None:
        now = time.monotonic()
        with self._timers_lock:
            due = [t for t in self._timers if t[0] <= now]
            self._timers = [t for t in self._timers if t[0] > now]
        for _, action, argument in due:
            if action == "interrupt":
                turn_id = argument
                dropped = self.bridge.interrupt(turn_id)  # that answer alone: the next may be queued behind it
                self.log.host_interrupted(turn_id)
                self.log.note(f"interrupt {turn_id[:8]}: {dropped} bytes dropped")
            elif action == "tool":
                tool_use_id, value = argument
                self.bridge.send_tool_result(tool_use_id, {"value": value})
                self._tool_answer_due = time.monotonic() + TOOL_ANSWER_S
                self.log.note(f"tool result {tool_use_id[:8]}")

    def _run_reader(self) -> None:
        try:
            while not self._stop.is_set():
                if time.monotonic() < self._deaf_until:
                    time.sleep(0.05)
                    continue
                for event in self.bridge.poll(timeout=0.05):
                    self._on_event(event)
                self._run_timers()
        except BaseException as error:  # noqa: BLE001 - reported by the run as a violation
            self.crashed = error

    def _on_event(self, event: SonicEvent) -> None:
        log = self.log
        now = time.monotonic()
        if not isinstance(event, (Reconnecting, Error)):
            log.last_service_event_at = now
            if self._reconnecting_since is not None:
                log.recovered(now - self._reconnecting_since)
                self._reconnecting_since = None
        if isinstance(event, AudioOut):
            turn_id = event.turn_id
            self._turn_began(turn_id)
            if turn_id not in self._heard:
                self._heard.append(turn_id)
                log.heard(turn_id, now)
                self._hearing = True
                log.note(f"answer {turn_id[:8]} starts")
                if self._awaiting is not None and self._rng.random() < BARGE_IN_SHARE:
                    self._next_at = now + self._rng.uniform(0.3, 1.0)  # the user talks over the answer
                elif self._rng.random() < INTERRUPT_SHARE:
                    self._after(self._rng.uniform(0.2, 0.8), "interrupt", turn_id)
            log.receive(turn_id, event.pcm)
            return
        log.note(type(event).__name__ + " " + " ".join(str(v)[:80] for v in vars_of(event)))
        if isinstance(event, TurnEnd):
            self._open_turns.discard(event.turn_id)
            log.turn_ended(event.turn_id)
            self._hearing = False
            self._answered(now)
        elif isinstance(event, Interrupted):
            log.interrupted(event.turn_id)
            self._hearing = False
        elif isinstance(event, Transcript) and event.role == "USER" and event.stage is Stage.FINAL:
            self._turn_began(event.turn_id)
        elif isinstance(event, ToolCall):
            self._turn_began(event.turn_id)
            log.tool_calls += 1
            slow = self._rng.random() < SLOW_TOOL_SHARE
            self._after(
                self._rng.uniform(2.0, 6.0) if slow else self._rng.uniform(0.05, 0.5),
                "tool",
                (event.tool_use_id, log.tool_calls),
            )
        elif isinstance(event, Renewed):
            self._open_turns.clear()  # a replaced stream's turns end with it; what they left is asked again
        elif isinstance(event, Reconnecting):
            self._open_turns.clear()
            log.reconnects += 1
            if self._reconnecting_since is None:
                self._reconnecting_since = now
        elif isinstance(event, Error):
            if event.fatal:
                log.fatal_errors.append(event)
            if event.kind in ("ToolResultDropped", "InputNotDelivered"):
                log.tool_results_dropped += 1
            elif event.kind == "AudioDropped" and (match := _DROPPED_BYTES.search(event.message)):
                log.user_dropped_reported += int(match.group(1))

    def _turn_began(self, turn_id: str) -> None:
        if turn_id:  # an unnamed turn could never be seen to end
            self._open_turns.add(turn_id)

    def _answered(self, now: float) -> None:
        if self._awaiting is not None and self._speaking is None:
            self._awaiting = None
            self._next_at = now + self._rng.uniform(0.3, 1.5)

    # ------------------------------------------------------------------------------------------------- end

    def quiesce(self) -> None:
        """No new turns from now on."""
        self._quiet = True

    def idle(self) -> bool:
        """No turn in progress: nothing spoken or awaited, no turn the service began unended, no tool result due."""
        # Awaited alone is not enough: a turn ended by a barge-in clears it while the turn that cut it goes on.
        with self._timers_lock:
            timers = bool(self._timers)
        busy = self._open_turns or timers or time.monotonic() < self._tool_answer_due
        return self._speaking is None and self._awaiting is None and not busy

    def finish(self) -> None:
        """Stop both threads and close the bridge."""
        self._stop.set()
        self._mic.join(5)
        self._reader.join(5)
        self.bridge.close()


def vars_of(event: SonicEvent) -> list[Any]:
    """An event's fields, for the log."""
    return [getattr(event, name) for name in getattr(event, "__slots__", ()) if name != "pcm"]
