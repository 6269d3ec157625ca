"""The soak run's invariants: what the hosts sent and received against what the emulator recorded.

The emulator writes each stream's audio as it comes (``stream-N-user.pcm``, ``stream-N-assistant.pcm``) with a
journal of its answers (``stream-N-turns.jsonl``), even when it is killed. `StreamAudit` follows one stream's user
audio as it grows: with the worker's silence fill (zeros; the hosts never send a zero sample) taken out, it must be
pieces of one session's sent audio, in order. `settle` then checks every session as a whole: all its audio arrived
except what an error reported as dropped, nothing was repeated beyond a replay, each turn was answered once, in order,
within a bound, and each answer's audio reached the host byte for byte except what barge-ins, interruptions and
failed streams account for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from e2e.soak.host import SessionLog, SessionRecords, Utterance

RATE = 16000
PROBE = 48
"""Samples that locate a piece of recorded audio in what the hosts sent (the noise floor makes them unique)."""
REPLAY_LIMIT = int(3.5 * RATE)
"""How far a new stream may start before the previous one ended: the 3 s replay windows, and a frame's slack."""
ANSWER_BOUND_S = 25.0
"""Longest allowed wait from the end of a user turn to its answer's first audio at the host, faults included."""
NORMAL_END = "completed"


@dataclass
class Piece:
    """A stretch of a stream's user audio found in what its session sent.

    Recorded samples ``[recorded, recorded + length)`` (silence fill removed) are sent ``[sent, sent + length)``.
    """

    recorded: int
    sent: int
    length: int

    @property
    def sent_end(self) -> int:
        """Where the piece ends in what the session sent."""
        return self.sent + self.length


def _common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    differ = np.flatnonzero(a[:n] != b[:n])
    return int(differ[0]) if len(differ) else n


class StreamAudit:
    """One stream's user audio, checked against the sessions' sent audio as the recording grows."""

    def __init__(self, key: str, directory: Path, stream_id: int) -> None:
        self.key = key
        self.directory = directory
        self.stream_id = stream_id
        self.session: int | None = None
        self.pieces: list[Piece] = []
        self.violations: list[str] = []
        self._read = 0
        self._recorded = 0
        self._pending = np.zeros(0, np.int16)
        self.finished = False
        """Its stream has ended and all its audio is taken in: nothing more to follow."""

    def path(self, part: str) -> Path:
        """One of the stream's files: ``user.pcm``, ``assistant.pcm``, ``turns.jsonl``."""
        return self.directory / f"stream-{self.stream_id}-{part}"

    def summary(self) -> Path:
        """``stream-N.json``, which the emulator writes when the stream has ended, after its audio."""
        return self.directory / f"stream-{self.stream_id}.json"

    def advance(self, logs: Sequence[SessionLog], *, final: bool = False) -> None:
        """Take in what the recording gained since the last call.

        The file is read before the hosts' audio, so all of it was sent already. ``final``: place even a short rest.
        """
        with self.path("user.pcm").open("rb") as file:
            file.seek(self._read)
            data = file.read()
        data = data[: len(data) // 2 * 2]
        self._read += len(data)
        raw = np.frombuffer(data, "<i2")
        self._pending = np.concatenate([self._pending, raw[raw != 0]])
        self._take(logs, final)
        # What is left is a view of the array just concatenated: kept as it is, every stream's audit held its
        # last read (tens of KiB) to the end of the run, which grew the host's RSS.
        self._pending = self._pending.copy()

    def _take(self, logs: Sequence[SessionLog], final: bool) -> None:
        while len(self._pending):
            if self.pieces and self.session is not None:
                piece = self.pieces[-1]
                sent = logs[self.session].sent
                have = np.frombuffer(sent.read(2 * piece.sent_end, 2 * (piece.sent_end + len(self._pending))), "<i2")
                same = _common_prefix(have, self._pending)
                if same:
                    piece.length += same
                    self._recorded += same
                    self._pending = self._pending[same:]
                    continue
            if len(self._pending) < PROBE and not final:
                return  # too little to place yet
            if not self._place(logs):
                return

    def _place(self, logs: Sequence[SessionLog]) -> bool:
        probe = self._pending[:PROBE].tobytes()
        order = [self.session] if self.session is not None else []
        order += [i for i in range(len(logs)) if i != self.session]
        for index in order:
            found = logs[index].sent.find(probe)
            if found < 0:
                continue
            at = found // 2
            if self.session is None:
                self.session = index
            elif index != self.session:
                self.violations.append(f"{self.key}: audio of session {index} in a stream of session {self.session}")
            elif self.pieces and at < self.pieces[-1].sent_end:
                back = self.pieces[-1].sent_end - at
                self.violations.append(f"{self.key}: user audio goes back {back / RATE:.3f} s (repeated or reordered)")
            self.pieces.append(Piece(self._recorded, at, 0))
            return True
        self.violations.append(
            f"{self.key}: {len(self._pending)} samples of user audio that no host sent (corrupted or invented)"
        )
        self._recorded += len(self._pending)
        self._pending = self._pending[:0]
        return False

    def sent_position(self, raw_bytes: int) -> int | None:
        """Where the stream's user audio stood after ``raw_bytes`` recorded bytes, in its session's sent samples."""
        raw = np.fromfile(self.path("user.pcm"), "<i2", count=raw_bytes // 2)
        recorded = int(np.count_nonzero(raw))
        for piece in reversed(self.pieces):
            if piece.recorded <= recorded:
                return piece.sent + min(recorded - piece.recorded, piece.length)
        return None

    def outcome(self) -> str:
        """How the stream ended, from its summary; ``killed`` when the emulator died with it open."""
        summary = self.summary()
        if not summary.exists():
            return "killed"
        outcome: str = json.loads(summary.read_text())["outcome"]
        return outcome

    def answers(self) -> list[Answer]:
        """The stream's answers in order, each with the audio the emulator sent for it."""
        lines = [json.loads(line) for line in self.path("turns.jsonl").read_text().splitlines() if line.strip()]
        audio = self.path("assistant.pcm").read_bytes()
        offsets = {line["audio"]: line["assistant_offset"] for line in lines if "audio" in line}
        starts = [*sorted(offsets.values()), len(audio)]
        answers = []
        for line in lines:
            if "completion_id" not in line:
                continue
            start = offsets.get(line["completion_id"])
            end = starts[starts.index(start) + 1] if start is not None else 0
            answers.append(
                Answer(
                    self.key,
                    line["completion_id"],
                    line["turn"],
                    line["source"],
                    line["user_text"],
                    line["user_bytes"],
                    audio[start:end] if start is not None else b"",
                )
            )
        return answers


@dataclass
class Answer:
    """One completion as the emulator sent it."""

    stream: str
    completion_id: str
    turn: int
    """The emulator's index of the turn it answers: a late tool result's answer has its asking turn's."""
    source: str
    user_text: str
    user_bytes: int
    audio: bytes
    outcome: str = ""
    """At the host: ``completed``, ``interrupted``, ``cut`` (its stream failed under it), ``retired`` (its stream was
    being renewed: the session drops such an answer and asks its turn again on the next stream) or ``lost``."""


@dataclass
class SessionVerdict:
    """A session's figures and violations after the run."""

    session: int
    violations: list[str] = field(default_factory=list)
    user_sent: int = 0
    user_delivered: int = 0
    user_dropped_reported: int = 0
    assistant_sent: int = 0
    assistant_received: int = 0
    assistant_dropped_reported: int = 0
    assistant_cut: int = 0
    assistant_retired: int = 0
    answered: int = 0
    streams: int = 0


def _utterance_at(utterances: Sequence[Utterance], sample: int) -> Utterance | None:
    ended = [u for u in utterances if u.kind == "speech" and u.end and u.end <= sample]
    return ended[-1] if ended else None


def settle(log: SessionLog, audits: Sequence[StreamAudit], dropped_output: int) -> SessionVerdict:
    """Check one session at the end of the run (``audits``: its streams in the order they opened)."""
    records = log.read()
    verdict = SessionVerdict(log.index, streams=len(audits))
    bad = verdict.violations
    total = log.sent.size // 2
    verdict.user_sent = 2 * total
    verdict.user_dropped_reported = log.user_dropped_reported + log.refused_bytes

    # User audio: every sample arrived, except what was reported; no stream repeats more than a replay.
    covered = np.zeros(total, bool)
    previous_end: int | None = None
    for audit in audits:
        bad += audit.violations
        for piece in audit.pieces:
            covered[piece.sent : piece.sent_end] = True
        if audit.pieces and previous_end is not None and audit.pieces[0].sent < previous_end - REPLAY_LIMIT:
            back = (previous_end - audit.pieces[0].sent) / RATE
            bad.append(f"{audit.key}: starts {back:.2f} s before the previous stream's end (more than a replay)")
        if audit.pieces:
            previous_end = audit.pieces[-1].sent_end
    verdict.user_delivered = 2 * int(np.count_nonzero(covered))
    missing = verdict.user_sent - verdict.user_delivered
    if missing > verdict.user_dropped_reported:
        first = int(np.flatnonzero(~covered)[0])
        bad.append(
            f"user audio lost: {missing} bytes never reached the service, {verdict.user_dropped_reported} reported "
            f"dropped; the first missing sample is at {first / RATE:.3f} s"
        )

    # Answers: each maps to the user turn it answers; its audio reached the host as it should.
    answers: list[tuple[Answer, Utterance | None]] = []
    recognised: dict[str, Utterance | None] = {}
    """What the emulator transcribed of each spoken turn: a cut answer's turn is asked again in those words."""
    for position_of_stream, audit in enumerate(audits):
        stream_answers = audit.answers()
        failed = audit.outcome() != NORMAL_END
        renewed = not failed and position_of_stream < len(audits) - 1  # the session ended it for the next one
        asked: dict[int, Utterance | None] = {}
        for number, answer in enumerate(stream_answers):
            if answer.source == "tool":  # a tool result that came after its turn ended (Nova 2)
                turn = asked.get(answer.turn)
            elif answer.source == "text":
                typed = (u for u in records.utterances if u.kind == "text" and u.text == answer.user_text)
                turn = next(typed, None) or recognised.get(answer.user_text)
            else:
                position = audit.sent_position(answer.user_bytes)
                turn = _utterance_at(records.utterances, position) if position is not None else None
                recognised[answer.user_text] = turn
            asked.setdefault(answer.turn, turn)
            received = records.received_audio(answer.completion_id)
            last = number == len(stream_answers) - 1
            # Cut first: a stream that fails may have recorded as sent what never left it, barge-in or not.
            if last and failed and answer.completion_id not in records.turn_ends:
                answer.outcome = "cut"
            elif answer.completion_id in records.interrupted or answer.completion_id in records.host_interrupts:
                answer.outcome = "interrupted"
            elif answer.completion_id in records.turn_ends:
                answer.outcome = "completed"
            elif last and renewed and not received:
                answer.outcome = "retired"
            else:
                answer.outcome = "lost"
            _check_answer_audio(answer, received, bad)
            verdict.assistant_sent += len(answer.audio)
            verdict.assistant_received += len(received)
            if answer.outcome == "cut":
                verdict.assistant_cut += len(answer.audio) - len(received)
            elif answer.outcome == "retired":
                verdict.assistant_retired += len(answer.audio)
            elif answer.outcome == "interrupted":
                verdict.assistant_dropped_reported += len(answer.audio) - len(received)
            answers.append((answer, turn))

    if verdict.assistant_dropped_reported > dropped_output:
        bad.append(
            f"assistant audio lost: interrupted answers are {verdict.assistant_dropped_reported} bytes short at the "
            f"host, {dropped_output} reported dropped"
        )
    _check_turns(records, answers, verdict, covered)
    return verdict


def _check_answer_audio(answer: Answer, received: bytes, bad: list[str]) -> None:
    where = f"{answer.stream} answer {answer.completion_id[:8]} ({answer.outcome})"
    if answer.outcome == "completed" and received != answer.audio:
        same = _common_prefix(np.frombuffer(received, np.uint8), np.frombuffer(answer.audio, np.uint8))
        bad.append(f"{where}: host got {len(received)} bytes, emulator sent {len(answer.audio)}, same for {same}")
    elif not answer.audio.startswith(received):
        bad.append(f"{where}: the host's {len(received)} bytes are not what the emulator sent first")
    if answer.outcome == "lost" and answer.audio:
        bad.append(f"{where}: no TurnEnd, no barge-in and no failure, {len(answer.audio) - len(received)} bytes short")


def _check_turns(
    records: SessionRecords,
    answers: list[tuple[Answer, Utterance | None]],
    verdict: SessionVerdict,
    covered: np.ndarray,
) -> None:
    bad = verdict.violations
    by_turn: dict[int, list[Answer]] = {}
    latest = -1
    for answer, turn in answers:
        if turn is None:
            bad.append(f"{answer.stream} answer {answer.completion_id[:8]} answers no turn the user took")
            continue
        if answer.outcome == "retired":
            continue  # never heard: the next stream's answer is the turn's
        by_turn.setdefault(turn.index, []).append(answer)
        if answer.source == "tool":
            continue  # answered when its result came, after whatever the user asked meanwhile
        if turn.index < latest:
            bad.append(f"{answer.stream}: turn {turn.index} answered after turn {latest} (reordered)")
        latest = max(latest, turn.index)
    for turn in records.utterances:
        if not turn.end and turn.kind == "speech":
            continue  # still being spoken when the run ended
        replies = by_turn.get(turn.index, [])
        completed = [a for a in replies if a.outcome == "completed"]
        if len(completed) > 1:
            bad.append(f"turn {turn.index} ({turn.kind}) answered {len(completed)} times in full")
        if not replies:
            if turn.kind == "text" or covered[turn.start : turn.end].all():  # else its audio was dropped, reported
                bad.append(f"turn {turn.index} ({turn.kind} '{turn.text}') never answered")
            continue
        verdict.answered += 1
        heard = [records.first_audio_at[a.completion_id] for a in replies if a.completion_id in records.first_audio_at]
        if heard and min(heard) - turn.ended_at > ANSWER_BOUND_S:
            bad.append(f"turn {turn.index} answered {min(heard) - turn.ended_at:.1f} s after it ended")
