"""The Nova Sonic handler's output side: answers paced to the avatar, and the local barge-in that pauses them.

`AnswerPacer` takes the session's events and hands the avatar its answers' audio and words at real time plus a
lead, which is all a barge-in leaves playing (OAC cannot recall what it was given). `LocalBargeIn` pauses that
pacing at the onset of the user's voice on the microphone, before the service's verdict, and resumes it when no
verdict comes. Both live in one `novabridge.openavatarchat.handler_novasonic.NovaSonicContext` per session.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition

from novabridge import pcm
from novabridge.events import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, Stage, Transcript, TurnEnd
from novabridge.openavatarchat._log import logger
from novabridge.openavatarchat.trace import HopTrace
from novabridge.voice_activity import VoiceDetector, VoiceEnded, VoiceStarted

OUTPUT_RATE = 24000
END_MARKER_SAMPLES = 240
SLICE_S = 0.02
"""Audio is handed to the avatar in slices of this length, so the pacing lead is kept to within a slice."""
IDLE_LEAD_S = 0.04
"""With ``idle_audio``, the silence kept queued ahead of real time between answers: enough to ride out OAC's 30 ms
pump polls, and all an answer's first audio can wait behind."""
SILENCE = np.zeros((1, round(SLICE_S * OUTPUT_RATE)), np.float32)


@dataclass
class _Answer:
    """One assistant turn on its way to the avatar."""

    speech_id: str
    audio: collections.deque[np.ndarray[Any, Any]] = field(default_factory=collections.deque)
    texts: collections.deque[tuple[int, str]] = field(default_factory=collections.deque)
    """The answer's words not shown yet, each with the slice of audio it precedes: words appear as they are spoken,
    and those of audio a barge-in dropped never appear."""
    slices_received: int = 0
    slices_submitted: int = 0
    text_started: bool = False
    audio_received: bool = False
    audio_submitted: bool = False
    finished: bool = False
    """The service ended the turn: once its audio is out, the end markers follow."""


class AnswerPacer:
    """A session's answers, handed to the avatar as ``AVATAR_AUDIO`` and ``AVATAR_TEXT`` at most ``lead_s`` ahead.

    The session's thread feeds it events (`on_event`) and asks it to submit what is due (`submit_due`), both with
    `lock` held; `LocalBargeIn` takes the same lock to pause it from OAC's pump thread.
    """

    def __init__(
        self,
        submit: Callable[[ChatData], None],
        definitions: dict[ChatDataType, DataBundleDefinition],
        *,
        lead_s: float,
        idle_audio: bool,
        trace: HopTrace,
        session_id: str,
    ) -> None:
        self.submit = submit
        """Where bundles go: the session's `HandlerContext.submit_data`."""
        self.definitions = definitions
        self.lead_s = lead_s
        self.idle_audio = idle_audio
        self.trace = trace
        self.session_id = session_id
        self.lock = threading.Lock()
        """Held by the session's thread while it changes the answers or submits, and by `LocalBargeIn` to pause them:
        once a pause is in place, nothing more is submitted. Never held for longer than a submission."""
        self.answers: collections.deque[_Answer] = collections.deque()
        self.by_turn: dict[str, _Answer] = {}
        self.playout_until = 0.0
        """Wall time at which the audio handed to the avatar so far has played."""

    def has_audio_to_come(self) -> bool:
        """Whether an answer still has audio to hand over, or may get more (with `lock` held)."""
        return any(answer.audio or not answer.finished for answer in self.answers)

    def wait_s(self, *, paused: bool) -> float:
        """How long the session's thread may sleep: until the avatar needs more audio, at most a slice."""
        if paused or not any(answer.audio or answer.finished for answer in self.answers):
            return SLICE_S
        ahead = self.playout_until - time.monotonic()
        return min(SLICE_S, max(0.0, ahead - self.lead_s))

    def on_event(self, event: SonicEvent) -> None:
        """An event of the session, as it bears on the answers (with `lock` held)."""
        if isinstance(event, AudioOut):
            samples = pcm.to_float32(np.frombuffer(event.pcm, dtype="<i2"))
            answer = self._answer(event.turn_id)
            if not answer.audio_received:
                answer.audio_received = True
                self.trace.mark("answer_audio", self.session_id, speech_id=answer.speech_id)
            step = round(SLICE_S * OUTPUT_RATE)
            for offset in range(0, len(samples), step):
                answer.audio.append(samples[offset : offset + step])
                answer.slices_received += 1
        elif isinstance(event, Transcript) and event.role == "USER" and event.stage is Stage.FINAL:
            speech_id = str(uuid.uuid4())
            self._submit_text(ChatDataType.HUMAN_TEXT, "human_text", event.text, speech_id, end=False)
            self._submit_text(ChatDataType.HUMAN_TEXT, "human_text", "", speech_id, end=True)
        elif isinstance(event, Transcript) and event.role == "ASSISTANT" and event.stage is Stage.SPECULATIVE:
            answer = self._answer(event.turn_id)
            answer.texts.append((answer.slices_received, event.text))  # shown when its audio starts playing
        elif isinstance(event, Interrupted):
            interrupted = self.by_turn.get(event.turn_id)
            if interrupted is not None:
                interrupted.audio.clear()  # what the avatar has not been given is dropped at once, and its words
                interrupted.texts.clear()
                interrupted.finished = True
        elif isinstance(event, TurnEnd):
            ended = self.by_turn.get(event.turn_id)
            if ended is not None:
                ended.finished = True
        elif isinstance(event, Reconnecting):
            for answer in self.answers:
                answer.finished = True  # an answer cut by the reconnection ends here
        elif isinstance(event, Error) and event.fatal:
            for answer in self.answers:
                answer.audio.clear()  # the session is over: what was not given to the avatar will not be
                answer.texts.clear()
                answer.finished = True

    def submit_due(self, *, paused: bool) -> None:
        """Hand the avatar what keeps it ``lead_s`` ahead of real time; end finished answers (with `lock` held).

        While a barge-in pause holds (``paused``), no audio of an answer is submitted (an answer with none left may
        still end). With ``idle_audio``, silence fills in whenever nothing else keeps the avatar `IDLE_LEAD_S` ahead.
        """
        now = time.monotonic()
        self.playout_until = max(self.playout_until, now)
        while self.answers:
            answer = self.answers[0]
            while answer.audio and not paused and self.playout_until - now < self.lead_s:
                chunk = answer.audio.popleft()
                self._show_text(answer, answer.slices_submitted)
                self._submit_audio(chunk.reshape(1, -1), answer.speech_id, end=False)
                answer.slices_submitted += 1
                if not answer.audio_submitted:
                    answer.audio_submitted = True
                    self.trace.mark("avatar_audio", self.session_id, speech_id=answer.speech_id)
                self.playout_until += len(chunk) / OUTPUT_RATE
            if answer.audio or not answer.finished:
                break
            self._show_text(answer, answer.slices_received)  # words after the last audio, or of a text-only answer
            self._submit_audio(np.zeros((1, END_MARKER_SAMPLES), np.float32), answer.speech_id, end=True)
            if answer.text_started:
                self._submit_text(ChatDataType.AVATAR_TEXT, "avatar_text", "", answer.speech_id, end=True)
            self.answers.popleft()
            self.by_turn = {turn: a for turn, a in self.by_turn.items() if a is not answer}
        if self.idle_audio:
            while self.playout_until - now < IDLE_LEAD_S:  # nothing else is due: silence keeps the stream going
                self._submit_audio(SILENCE, "", end=False)
                self.playout_until += SILENCE.shape[1] / OUTPUT_RATE

    def _answer(self, turn_id: str) -> _Answer:
        answer = self.by_turn.get(turn_id)
        if answer is None:
            answer = self.by_turn[turn_id] = _Answer(speech_id=str(uuid.uuid4()))
            self.answers.append(answer)
        return answer

    def _show_text(self, answer: _Answer, upto: int) -> None:
        """Hand the avatar the answer's words that precede audio slice ``upto``."""
        while answer.texts and answer.texts[0][0] <= upto:
            _, text = answer.texts.popleft()
            shown = text if not answer.text_started else " " + text
            answer.text_started = True
            self._submit_text(ChatDataType.AVATAR_TEXT, "avatar_text", shown, answer.speech_id, end=False)

    def _submit_audio(self, audio: np.ndarray[Any, Any], speech_id: str, *, end: bool) -> None:
        bundle = DataBundle(self.definitions[ChatDataType.AVATAR_AUDIO])
        bundle.set_main_data(audio)
        bundle.add_meta("avatar_speech_end", end)
        bundle.add_meta("speech_id", speech_id)
        self.submit(ChatData(type=ChatDataType.AVATAR_AUDIO, data=bundle))

    def _submit_text(self, kind: ChatDataType, entry: str, text: str, speech_id: str, *, end: bool) -> None:
        bundle = DataBundle(self.definitions[kind])
        bundle.set_main_data(text)
        bundle.add_meta(f"{entry}_end", end)
        bundle.add_meta("speech_id", speech_id)
        self.submit(ChatData(type=kind, data=bundle))


@dataclass(frozen=True)
class BargeInStats:
    """A session's local barge-ins so far (`LocalBargeIn.stats`, `NovaSonicContext.barge_in_stats`)."""

    pauses: int
    """Answers paused at the onset of the user's voice."""
    confirmed: int
    """Pauses Nova Sonic confirmed with ``Interrupted``: the held audio was dropped."""
    false: int
    """Pauses it did not confirm (a cough, a "mm-hm", a door): the answer resumed with nothing lost."""
    holding: bool
    """Whether a pause is waiting for the service now."""
    unpaused_interruptions: int
    """The service's barge-ins with no pause in place: voice the detector missed, or a confirmation that came after
    the answer had resumed (if these are common, raise ``barge_in_resume_ms``)."""
    onset_to_pause_ms_mean: float | None
    onset_to_pause_ms_max: float | None
    """From the voice's onset to the pause: the audio from the onset to the end of the microphone chunk that carried
    it (the chunk had to arrive whole) plus the time `handle` took to pause; None before the first pause."""
    confirm_ms_mean: float | None
    confirm_ms_max: float | None
    """From a pause to the service's confirmation; None before the first confirmation."""


@dataclass
class _Hold:
    """A pause of the pacing, waiting for the service's verdict on the user's voice."""

    paused_at: float
    voice_ended_at: float | None = None
    """When the detector reported the voice's end (None while it goes on)."""
    voiced_s: float = 0.0


@dataclass
class _Latencies:
    """Count, sum and maximum of a latency, in seconds."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    def mean_ms(self) -> float | None:
        return self.total_s / self.count * 1000 if self.count else None

    def max_ms(self) -> float | None:
        return self.max_s * 1000 if self.count else None


class LocalBargeIn:
    """Pauses a session's `AnswerPacer` at the onset of the user's voice, until the service confirms or not.

    The browser's echo cancellation has removed the avatar's voice from the microphone, so voice there while an
    answer plays is the user. The pause is in place while `holding`; its state is guarded by the pacer's lock.
    """

    def __init__(
        self,
        pacer: AnswerPacer,
        detector: VoiceDetector | None,
        *,
        resume_after_s: float,
        max_hold_s: float,
        trace: HopTrace,
        session_id: str,
    ) -> None:
        self.pacer = pacer
        self.detector = detector
        """The user's voice on the microphone (None: ``local_barge_in`` is off); fed on OAC's pump thread."""
        self.resume_after_s = resume_after_s
        self.max_hold_s = max_hold_s
        self.trace = trace
        self.session_id = session_id
        self.hold: _Hold | None = None
        self._pauses = 0
        self._confirmed = 0
        self._false = 0
        self._unpaused_interruptions = 0
        self._onset_to_pause = _Latencies()
        self._confirm = _Latencies()

    @property
    def holding(self) -> bool:
        """Whether a pause is in place (read with the pacer's lock held, to act on it)."""
        return self.hold is not None

    def stats(self) -> BargeInStats:
        """The local barge-ins so far: pauses, how each ended, and their latencies."""
        with self.pacer.lock:
            return BargeInStats(
                pauses=self._pauses,
                confirmed=self._confirmed,
                false=self._false,
                holding=self.hold is not None,
                unpaused_interruptions=self._unpaused_interruptions,
                onset_to_pause_ms_mean=self._onset_to_pause.mean_ms(),
                onset_to_pause_ms_max=self._onset_to_pause.max_ms(),
                confirm_ms_mean=self._confirm.mean_ms(),
                confirm_ms_max=self._confirm.max_ms(),
            )

    def hear(self, audio: np.ndarray[Any, Any], received_at: float) -> None:
        """From OAC's pump thread: the microphone chunk that arrived at ``received_at``, through the detector."""
        if self.detector is None:
            return
        for event in self.detector.feed(audio):
            if isinstance(event, VoiceStarted):
                self._voice_started(self.detector.position_s - event.at_s, received_at)
            elif isinstance(event, VoiceEnded):
                with self.pacer.lock:
                    if self.hold is not None:
                        self.hold.voice_ended_at = time.monotonic()
                        self.hold.voiced_s = event.voiced_s

    def _voice_started(self, heard_s: float, received_at: float) -> None:
        with self.pacer.lock:
            if self.hold is not None:  # the voice came back before the verdict: keep waiting
                self.hold.voice_ended_at = None
                return
            if not self.pacer.has_audio_to_come():
                return  # nothing left to hold back
            now = time.monotonic()
            self.hold = _Hold(paused_at=now)
            self._pauses += 1
            self._onset_to_pause.add(heard_s + (now - received_at))
        self.trace.mark("local_pause", self.session_id)

    def confirm(self) -> None:
        """The service's ``Interrupted`` (the session's thread, holding the pacer's lock): a pause in place was right."""
        self.trace.mark("interrupted", self.session_id, paused=self.hold is not None)
        if self.hold is None:
            self._unpaused_interruptions += 1
            return
        self._confirmed += 1
        self._confirm.add(time.monotonic() - self.hold.paused_at)
        self.hold = None

    def resume_if_unconfirmed(self) -> None:
        """The session's thread: end a pause the service has not confirmed in time, a false barge-in.

        That is ``resume_after_s`` after the voice stopped, or ``max_hold_s`` after the pause began. The pause is
        counted and logged, and the answer resumes where it stopped.
        """
        with self.pacer.lock:
            hold = self.hold
            if hold is None:
                return
            now = time.monotonic()
            held_s = now - hold.paused_at
            quiet = hold.voice_ended_at is not None and now - hold.voice_ended_at >= self.resume_after_s
            if not quiet and held_s < self.max_hold_s:
                return
            self.hold = None
            self._false += 1
        self.trace.mark("local_resume", self.session_id)
        sound = f"{hold.voiced_s * 1000:.0f} ms of sound" if hold.voice_ended_at is not None else "a voice going on"
        logger.info(
            f"Nova Sonic session {self.session_id}: false barge-in ({sound}, not confirmed by the service in "
            f"{held_s * 1000:.0f} ms); the answer resumes"
        )
