"""OpenAvatarChat handler: Nova Sonic in place of the ASR + LLM + TTS chain, with barge-in.

OpenAvatarChat (OAC) loads the first concrete `HandlerBase` subclass of this module, so `HandlerNovaSonic` is the
only one here. One instance serves every session; each session gets its own `SonicBridge` (its own worker process)
in its own `NovaSonicContext`, so sessions never share state.

- Inputs: ``MIC_AUDIO`` (int16 (1, N) at 16 kHz, continuous: Nova Sonic does its own turn detection and hears the
  user over the avatar) and ``HUMAN_TEXT`` (typed chat, Nova 2 only).
- Outputs: ``AVATAR_AUDIO`` (float32 (1, N) in [-1, 1] at 24 kHz, one ``speech_id`` per answer, each answer ended
  by ``zeros((1, 240))`` with ``avatar_speech_end=True``), ``AVATAR_TEXT`` (the answer as it is spoken, then
  ``""`` with ``avatar_text_end=True``) and ``HUMAN_TEXT`` (what Nova Sonic heard, then ``""`` with
  ``human_text_end=True``).
- ``create_context``/``start_context`` run on OAC's server event loop and never block: the worker comes from a
  warm pool, taken on the session's own thread. ``handle()`` runs on OAC's pump thread, never blocks and never
  raises (bad input is logged and dropped). Output is submitted by the session's pacing thread, at most
  ``pacing_lead_ms`` ahead of real time, so a barge-in leaves at most that much stale audio in the avatar.
- Local barge-in (``local_barge_in``): the browser's echo cancellation has removed the avatar's voice from the
  microphone, so voice there while an answer plays is the user. A `VoiceDetector` on the pump thread pauses the
  pacing at the voice's onset, without waiting for Nova Sonic's verdict; the service's ``Interrupted`` confirms it
  (the held audio is dropped), and without one the answer resumes where it stopped (`NovaSonicContext.barge_in_stats`
  counts both).
- A session that ends with a fatal error comes back by itself when its cause can pass
  (`novabridge.exceptions.recoverable`: the network or endpoint down, the service busy or failing, credentials
  missing or expired, workers that crash): a new session, with the conversation so far, after 1, 2, 4 ... at most
  30 s, one WARNING line per attempt; the microphone is dropped (and counted) meanwhile. A cause that needs a change
  of configuration (a model id the endpoint does not offer, access not granted, keys the service does not know) is
  logged once at ERROR, and the avatar stays silent.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import numpy as np
from chat_engine.common.handler_base import HandlerBase, HandlerBaseInfo, HandlerDataInfo, HandlerDetail
from chat_engine.contexts.handler_context import HandlerContext
from chat_engine.contexts.session_context import SessionContext
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from chat_engine.data_models.runtime_data.data_bundle import DataBundleDefinition, DataBundleEntry
from pydantic import BaseModel, Field, SecretStr, model_validator

from novabridge import pcm
from novabridge.emulator import published
from novabridge.events import Error, Interrupted, Reconnecting, SonicEvent, ToolCall
from novabridge.exceptions import WORKER_FAILED, BridgeError, EmulatorNotRunning, WorkerError, recoverable
from novabridge.frames import FrameConverter, ServiceFrame
from novabridge.host.bridge import SonicBridge, default_worker_python
from novabridge.host.pool import WorkerPool
from novabridge.openavatarchat._log import logger
from novabridge.openavatarchat.pacing import OUTPUT_RATE, SLICE_S, AnswerPacer, BargeInStats, LocalBargeIn
from novabridge.openavatarchat.trace import HopTrace
from novabridge.sonic.config import (
    Attempts,
    Endpointing,
    HistoryMessage,
    InferenceConfig,
    MaxTokens,
    ModelId,
    Probability,
    RenewalAfter,
    RetryPolicy,
    SonicConfig,
    SpeechPrompt,
    SystemPrompt,
)
from novabridge.sonic.keys import reveal_keys
from novabridge.sonic.tools import Tool, run_tool
from novabridge.voice_activity import VoiceDetector

INPUT_RATE = 16000
STOP_TIMEOUT_S = 0.9
"""What `destroy_context` may spend: joining the session's thread and closing the bridge."""
PACING_LEAD_MS = 60.0
"""The default ``pacing_lead_ms``: OAC's 30 ms pump poll, and as much again for stalls of this thread or the next.

Measured in OAC's real engine (its ``ChatSession`` and pump threads) with the emulator on a 2-vCPU machine, a
player starting at an answer's first slice and playing the slices back to back as the next handler received
them, ten 5 s answers per lead: the 1st percentile of the time a slice arrived before it was due was 14, 31 and
60 ms at leads of 40, 60 and 100 ms, none late. With the machine at load 2-4, 40 ms left a 17 ms gap, 60 ms one
of 2 ms in 1572 slices, 30 ms two in 786 (and a 120 ms stall of the whole machine broke even 100 ms once). Below
60 ms the margin is less than a common stall; each 20 ms more is 20 ms more of answer heard after a barge-in."""
EMULATOR_CREDENTIALS = ("AKIDEMULATOR", "emulator")
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 30.0
"""A session that ended with a cause that can pass is started again after 1, 2, 4 ... seconds, at most this."""


_SESSION = SonicConfig.model_fields
_INFERENCE = InferenceConfig.model_fields


class NovaSonicConfig(HandlerBaseConfigModel, BaseModel):
    """The handler's YAML settings (beside OAC's ``enabled``, ``module`` and ``concurrent_limit``)."""

    # The session's settings take SonicConfig's types, bounds and defaults, so a bad value fails as the YAML loads.
    model_id: ModelId = _SESSION["model_id"].default
    region: str | None = None
    """Bedrock region; None: ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, else us-east-1."""
    voice: str = _SESSION["voice"].default
    system_prompt: SystemPrompt = _SESSION["system_prompt"].default
    speech_prompt: SpeechPrompt | None = None
    """Nova 2's speech prompt (a ``SYSTEM_SPEECH`` block): the script Hindi code-switched speech is transcribed in."""
    endpointing: Endpointing | None = None
    """Nova 2 turn detection: the pause that ends the user's turn (1.5, 1.75 or 2.0 s)."""
    max_tokens: MaxTokens = _INFERENCE["max_tokens"].default
    temperature: Probability = _INFERENCE["temperature"].default
    top_p: Probability = _INFERENCE["top_p"].default
    tools_module: str | None = None
    """A module importable in OAC's Python with ``TOOLS``: `novabridge.sonic.Tool` objects or plain functions (their
    docstring describes them to the model). They run in OAC's process, in a thread per call."""
    worker_python: str | None = None
    """A Python >= 3.12 with ``novabridge[sonic]`` (``novabridge setup-worker`` prints one); None: this Python."""
    spare_workers: int = Field(1, ge=0, le=64)
    """Warm workers kept ready, so a new session never waits for one to boot."""
    emulator: bool = False
    """Talk to the local emulator that ``novabridge emulator`` runs, at the endpoint and with the CA it publishes
    (read at OAC's start and again for each session, so a restarted emulator is followed). False: Bedrock."""
    emulator_state_dir: str | None = None
    """Where that emulator publishes them, as given to ``novabridge emulator --state-dir``; None: its default."""
    endpoint_uri: str | None = None
    """``https://...`` of an endpoint other than Bedrock, given by hand; None: Bedrock (or ``emulator``)."""
    ca_file: str | None = None
    """The CA to trust at ``endpoint_uri``; None: the system trust store."""
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    aws_profile: str | None = None
    renewal_after_s: RenewalAfter = _SESSION["renewal_after_s"].default
    """Nova Sonic ends a stream after 8 minutes; the session moves to a new one after this long."""
    reconnect_attempts: Attempts = RetryPolicy.model_fields["max_attempts"].default
    """How often a session whose stream failed tries a new one (after 0.25, 0.5, 1, 2, 4 s) before it ends with the
    cause; a cause that can pass then brings a new session after 1, 2, 4 ... at most 30 s."""
    pacing_lead_ms: float = Field(PACING_LEAD_MS, ge=40.0, le=2000.0)
    """Audio handed to the avatar ahead of real time. It cannot be recalled (OAC's client queues it and plays it in
    real time), so after a barge-in it still plays: the smaller, the sooner the pause is heard. OAC's pump threads
    poll their queues every 30 ms, so the lead must stay above that, with room for this thread's own wake-ups
    (see `PACING_LEAD_MS` for the measurement behind the default)."""
    idle_audio: bool = False
    """Hand the avatar silence between answers, so the audio stream to the page never stops. OAC's WebRTC client
    (fastrtc) stamps audio by the samples it has sent, so after a pause in the stream the browser sees packets
    arriving seconds later than their stamps say and grows its jitter buffer: measured in Chromium, from 40 ms at the
    first answer to 544 ms two answers later, every bit of it added to the avatar's latency and to what plays after
    a barge-in. Turn it on when the page plays this handler's audio as it is (``PortraitAvatar``, or no avatar);
    leave it off for an avatar that re-emits the audio with its own video (LiteAvatar, MuseTalk, LAM)."""
    local_barge_in: bool = True
    """Pause the answer at the onset of the user's voice on the microphone, before Nova Sonic confirms the barge-in.
    Needs echo cancellation on the microphone (browsers apply it to WebRTC audio), or the avatar's own voice
    pauses it; the pause lifts by itself when the service does not confirm (``barge_in_resume_ms``)."""
    barge_in_threshold_db: float = Field(12.0, gt=0.0, le=60.0)
    """How far over the microphone's noise floor a sound must be to pause the answer. Raise it if false barge-ins
    (counted, and logged at INFO) come from background sounds or echo the browser did not cancel."""
    barge_in_resume_ms: float = Field(400.0, ge=0.0, le=5000.0)
    """How long a pause waits for Nova Sonic's confirmation once the voice has stopped (which is noticed 200 ms
    after its last sound) before the answer resumes. AWS documents that the service reacts when the user starts
    speaking during a response, so the confirmation follows the voice's onset, not its end: in OAC's page, 700 ms
    from onset to quiet through the confirmation with a 100 ms lead puts it about 0.5 s after the onset. A short
    sound's pause so lasts until 0.6 s after the sound, past the time a confirmation would have come."""
    barge_in_max_hold_ms: float = Field(1500.0, ge=100.0, le=10000.0)
    """The longest a pause waits for confirmation while the voice goes on (about three times the service's
    confirmation time): a voice Nova Sonic takes no notice of by then (another person, a TV) is not a barge-in."""
    trace_file: str | None = None
    """A file to append per-hop timings to, as JSON lines (`novabridge.openavatarchat.trace`); None: none kept."""

    @model_validator(mode="after")
    def _one_endpoint(self) -> Self:
        if self.emulator and (self.endpoint_uri or self.ca_file):
            raise ValueError("emulator: true finds the emulator's endpoint and CA itself; drop endpoint_uri/ca_file")
        return self

    def sonic_config(self, tools: list[Tool]) -> SonicConfig:
        """The session's config, validated now (so a bad YAML fails at OAC's start, not in a session).

        Raises:
            EmulatorNotRunning: ``emulator`` is set and no emulator is running (the message says how to start one).
        """
        endpoint_uri, ca_file = self.endpoint_uri, self.ca_file
        if self.emulator:
            state_dir = Path(self.emulator_state_dir) if self.emulator_state_dir else None
            running = published.find(state_dir)
            endpoint_uri, ca_file = running.endpoint_uri, str(running.ca_file)
        settings: dict[str, Any] = {
            "model_id": self.model_id,
            "voice": self.voice,
            "system_prompt": self.system_prompt,
            "speech_prompt": self.speech_prompt,
            "endpointing": self.endpointing,
            "inference": InferenceConfig(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p),
            "tools": tuple(tool.spec for tool in tools),
            "renewal_after_s": self.renewal_after_s,
            "retry": RetryPolicy(max_attempts=self.reconnect_attempts),
            "endpoint_uri": endpoint_uri,
            "ca_file": Path(ca_file) if ca_file else None,
            "profile": self.aws_profile,
        }
        if self.region:
            settings["region"] = self.region
        settings.update(reveal_keys(self))
        if self.emulator and settings["aws_access_key_id"] is None and self.aws_profile is None:
            # The emulator signs nothing off unless started with --credentials; the SDK still wants keys to sign.
            settings["aws_access_key_id"], settings["aws_secret_access_key"] = EMULATOR_CREDENTIALS
        return SonicConfig(**settings)


def load_tools(module_name: str | None) -> list[Tool]:
    """The ``TOOLS`` of ``module_name``: `Tool` objects, or functions made into tools by their name and docstring."""
    if not module_name:
        return []
    declared = getattr(importlib.import_module(module_name), "TOOLS", None)
    if not isinstance(declared, (list, tuple)):
        raise TypeError(f"tools_module {module_name} must define TOOLS, a list of novabridge.sonic.Tool or functions")
    return [item if isinstance(item, Tool) else Tool.from_function(item) for item in declared]


def _definition(entry: DataBundleEntry) -> DataBundleDefinition:
    definition = DataBundleDefinition()
    definition.add_entry(entry)
    return definition


def _output_definitions() -> dict[ChatDataType, DataBundleDefinition]:
    """What the handler emits; built once per handler and shared by its sessions' bundles, as OAC's handlers do."""
    return {
        ChatDataType.AVATAR_AUDIO: _definition(DataBundleEntry.create_audio_entry("avatar_audio", 1, OUTPUT_RATE)),
        ChatDataType.AVATAR_TEXT: _definition(DataBundleEntry.create_text_entry("avatar_text")),
        ChatDataType.HUMAN_TEXT: _definition(DataBundleEntry.create_text_entry("human_text")),
    }


class NovaSonicContext(HandlerContext):
    """One OAC session: its bridge, its session thread, the answers on their way out and the local barge-in.

    OAC's pump thread feeds the microphone in (`hear`, `send_audio`); the session's thread (`run`) runs the session on
    the bridge, starts a new one after a fatal end while the cause can pass, and has `pacer` hand the answers over.
    """

    def __init__(
        self,
        session_id: str,
        config: NovaSonicConfig,
        *,
        make_bridge: Callable[[tuple[HistoryMessage, ...]], SonicBridge],
        tools: dict[str, Tool],
        definitions: dict[ChatDataType, DataBundleDefinition],
        trace: HopTrace,
    ) -> None:
        """The session's state, with a bridge for its first session (no process is started here).

        Raises:
            EmulatorNotRunning: the config says ``emulator: true`` and the emulator has stopped.
        """
        super().__init__(session_id)
        self.make_bridge = make_bridge
        """A bridge for a new session with the given history."""
        self.bridge: SonicBridge | None = make_bridge(())
        """The session's bridge; replaced by a new one when a session that ended fatally is started again."""
        self.fatal: Error | None = None
        """The fatal error the current bridge's session ended with."""
        self.tools = tools
        self.started = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.early_audio: list[ServiceFrame] = []
        """Mic audio that came before the bridge had its worker (sent first, in order)."""
        self.early_text: list[str] = []
        self.frames = FrameConverter(INPUT_RATE)
        """Microphone frames, checked and resampled once: the detector hears them and the bridge sends them so."""
        self.dropped_inputs = 0
        """Inputs not passed on: malformed ones, and the microphone's while no session runs (between attempts)."""
        self.trace = trace
        self.pacer = AnswerPacer(
            self.submit_data,
            definitions,
            lead_s=config.pacing_lead_ms / 1000,
            idle_audio=config.idle_audio,
            trace=trace,
            session_id=session_id,
        )
        detector = (
            VoiceDetector(INPUT_RATE, threshold_db=config.barge_in_threshold_db) if config.local_barge_in else None
        )
        self.barge_in = LocalBargeIn(
            self.pacer,
            detector,
            resume_after_s=config.barge_in_resume_ms / 1000,
            max_hold_s=config.barge_in_max_hold_ms / 1000,
            trace=trace,
            session_id=session_id,
        )

    @property
    def detector(self) -> VoiceDetector | None:
        """The local barge-in's voice detector (None: ``local_barge_in`` is off)."""
        return self.barge_in.detector

    def barge_in_stats(self) -> BargeInStats:
        """The session's local barge-ins so far: pauses, how each ended, and their latencies."""
        return self.barge_in.stats()

    def hear(self, audio: np.ndarray[Any, Any], received_at: float) -> None:
        """From OAC's pump thread: the microphone chunk that arrived at ``received_at``, to the local barge-in."""
        self.barge_in.hear(audio, received_at)

    def send_audio(self, audio: ServiceFrame) -> None:
        """From OAC's pump thread: to the bridge, or held until the session's thread has taken a worker."""
        with self.lock:
            if not self.started.is_set():
                self.early_audio.append(audio)
                return
            bridge = self.bridge
        assert bridge is not None
        if bridge.closed:  # the session ended (logged); until a new one runs, OAC's microphone goes nowhere
            self.dropped_inputs += 1
            return
        bridge.send_audio(audio)

    def send_text(self, text: str) -> None:
        """Typed text, like `send_audio`."""
        with self.lock:
            if not self.started.is_set():
                self.early_text.append(text)
                return
            bridge = self.bridge
        assert bridge is not None
        if bridge.closed:
            self.dropped_inputs += 1
            return
        bridge.send_text(text)

    # --------------------------------------------------------------------------------- the session's own thread

    def run(self) -> None:
        """The session's thread: runs the session, and when it ends fatally, a new one while the cause can pass."""
        attempts = 0  # sessions in a row that ended with a cause that can pass
        bridge = self.bridge
        history: tuple[HistoryMessage, ...] = ()
        while True:
            failure: tuple[str, str] | None = None
            came_up = False
            if bridge is None:
                try:
                    bridge = self.make_bridge(history)
                except EmulatorNotRunning as error:  # `emulator: true`, and it is not running (yet, or again)
                    failure = ("EndpointUnreachable", str(error))
            if bridge is not None:
                failure, came_up = self._serve(bridge, attempts)
                if failure is None:
                    return  # destroy_context
                history = bridge.history
            assert failure is not None
            if came_up:
                attempts = 0  # it was up: the cause is a new one
            kind, message = failure
            if not recoverable(kind):
                logger.error(
                    f"Nova Sonic session {self.session_id}: {kind}: {message} (not retried: this cause does not pass "
                    "without a change of configuration; the avatar stays silent)"
                )
                return
            attempts += 1
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (attempts - 1))
            logger.warning(
                f"Nova Sonic session {self.session_id}: {kind}: {message} (a cause that can pass: a new session in "
                f"{delay:g} s, attempt {attempts}; the microphone is dropped until then)"
            )
            if self.stopping.wait(delay):
                return
            bridge = None

    def _serve(self, bridge: SonicBridge, attempts: int) -> tuple[tuple[str, str] | None, bool]:
        """Run a session on ``bridge`` and pace its output until it ends.

        Returns the fatal error it ended with (kind, message), or None when `destroy_context` ended it; and whether it
        was up (connected) at some point.
        """
        self.fatal = None
        failure: tuple[str, str] | None = None
        try:
            bridge.start(wait=False)
        except WorkerError as error:  # no worker could run it: a crash, or a worker Python that cannot
            failure = (WORKER_FAILED, str(error))
        with self.lock:
            stopping = self.stopping.is_set()
            if not stopping:
                self.bridge = bridge  # destroy_context closes it from now on
                self._hand_over_early_input(bridge if failure is None else None)
        if stopping or failure is not None:
            bridge.close()
            return (None if stopping else failure), False
        came_up = False
        pacer = self.pacer
        while not self.stopping.is_set():
            try:
                for event in bridge.poll(timeout=pacer.wait_s(paused=self.barge_in.holding)):
                    with pacer.lock:
                        self._on_event(event)
                if not came_up and bridge.ready:
                    came_up = True
                    if attempts:
                        logger.info(f"Nova Sonic session {self.session_id} is back (attempt {attempts})")
                self.barge_in.resume_if_unconfirmed()
                with pacer.lock:
                    pacer.submit_due(paused=self.barge_in.holding)
            except BridgeError:  # the bridge closed: destroy_context, or the session ended fatally
                break
            except Exception:  # noqa: BLE001 - a bug: logged, and the session goes on
                logger.exception(f"Nova Sonic session {self.session_id}: error in the output thread")
                time.sleep(SLICE_S)
        if self.stopping.is_set() or self.fatal is None:
            return None, came_up
        return (self.fatal.kind, self.fatal.message), came_up

    def _hand_over_early_input(self, bridge: SonicBridge | None) -> None:
        """What came before the first session had its worker: to ``bridge`` in order, or dropped (None: it has none).

        Called with `lock` held; from then on, input goes straight to the context's bridge.
        """
        early: list[tuple[str, Callable[[], None]]] = []
        if bridge is not None:
            early += [("audio", functools.partial(bridge.send_audio, audio)) for audio in self.early_audio]
            early += [("text", functools.partial(bridge.send_text, text)) for text in self.early_text]
        else:
            self.dropped_inputs += len(self.early_audio) + len(self.early_text)
        for what, send in early:
            try:
                send()
            except Exception as error:  # noqa: BLE001 - reported; the rest goes on
                self.dropped_inputs += 1
                logger.warning(f"Nova Sonic session {self.session_id}: early {what} dropped: {error}")
        self.early_audio.clear()
        self.early_text.clear()
        self.started.set()

    def _on_event(self, event: SonicEvent) -> None:
        """An event of the session (with the pacer's lock held): the session's part, then the answers'."""
        if isinstance(event, Interrupted):
            self.barge_in.confirm()
        elif isinstance(event, ToolCall):
            tool = self.tools.get(event.name)
            if tool is not None:
                threading.Thread(target=self._run_tool, args=(tool, event), daemon=True).start()
            else:
                logger.warning(f"Nova Sonic asked for tool {event.name}, which tools_module does not provide")
        elif isinstance(event, Reconnecting):
            logger.warning(f"Nova Sonic session {self.session_id} reconnecting: {event.reason}")
        elif isinstance(event, Error) and event.fatal:
            self.fatal = event  # the session's thread says what comes next, once the bridge has closed
        elif isinstance(event, Error):
            logger.warning(f"Nova Sonic session {self.session_id}: {event.kind}: {event.message}")
        self.pacer.on_event(event)

    def _run_tool(self, tool: Tool, call: ToolCall) -> None:
        result = asyncio.run(run_tool(tool, call.input, timeout_s=30.0))
        if self.bridge is not None and not self.stopping.is_set():
            try:
                self.bridge.send_tool_result(call.tool_use_id, result)
            except Exception as error:  # noqa: BLE001 - the session closed meanwhile
                logger.info(f"tool result for {call.name} not delivered: {error}")


class HandlerNovaSonic(HandlerBase):
    """Amazon Nova Sonic as the avatar's ears, brain and voice, through a novabridge worker per session."""

    def __init__(self) -> None:
        super().__init__()
        self.config = NovaSonicConfig()
        self.sonic_config: SonicConfig | None = None
        self.tools: list[Tool] = []
        self.pool: WorkerPool | None = None
        self.worker_python = ""
        self.definitions = _output_definitions()
        self.trace = HopTrace(None)

    def get_handler_info(self) -> HandlerBaseInfo:
        """The config model; OAC sets the name from the YAML key."""
        return HandlerBaseInfo(config_model=NovaSonicConfig, load_priority=0)

    def load(self, engine_config: ChatEngineConfigModel, handler_config: HandlerBaseConfigModel | None = None) -> None:
        """Validate the settings and warm the worker pool (once, at OAC's start)."""
        if isinstance(handler_config, NovaSonicConfig):
            self.config = handler_config
        self.tools = load_tools(self.config.tools_module)
        self.sonic_config = self.config.sonic_config(self.tools)
        self.worker_python = self.config.worker_python or default_worker_python()
        self.pool = WorkerPool.for_python(self.worker_python)
        self.pool.spare = max(self.pool.spare, self.config.spare_workers)
        self.pool.warm_up()
        self.trace = HopTrace(Path(self.config.trace_file).expanduser() if self.config.trace_file else None)
        endpoint = self.sonic_config.endpoint_uri or "Bedrock"
        if self.config.emulator:
            endpoint = f"the emulator at {endpoint} (found again for each session)"
        logger.info(
            f"Nova Sonic handler: {self.config.model_id}, voice {self.config.voice}, endpoint {endpoint}, "
            f"worker {self.worker_python}"
        )

    def create_context(
        self, session_context: SessionContext, handler_config: HandlerBaseConfigModel | None = None
    ) -> HandlerContext:
        """A session's context with its own bridge (no process is started here).

        Raises:
            EmulatorNotRunning: the config says ``emulator: true`` and the emulator has stopped.
        """
        return NovaSonicContext(
            session_context.session_info.session_id,
            self.config,
            make_bridge=self._new_bridge,
            tools={tool.spec.name: tool for tool in self.tools},
            definitions=self.definitions,
            trace=self.trace,
        )

    def _new_bridge(self, history: tuple[HistoryMessage, ...]) -> SonicBridge:
        """A bridge for a new session that knows ``history`` (no process is started here).

        Raises:
            EmulatorNotRunning: the config says ``emulator: true`` and the emulator has stopped.
        """
        if self.sonic_config is None or self.pool is None:
            raise RuntimeError("the handler was not loaded")
        # The emulator may have been restarted since OAC's start, on another port with another CA.
        sonic_config = self.config.sonic_config(self.tools) if self.config.emulator else self.sonic_config
        if history:
            sonic_config = sonic_config.model_copy(update={"history": history})
        return SonicBridge(
            sonic_config, worker_python=self.worker_python, host_rate=INPUT_RATE, out_rate=OUTPUT_RATE, pool=self.pool
        )

    def start_context(self, session_context: SessionContext, handler_context: HandlerContext) -> None:
        """Start the session's thread (`NovaSonicContext.run`), which takes a warm worker and paces the output."""
        assert isinstance(handler_context, NovaSonicContext)
        # The worker is taken on the session's own thread: nothing here waits, OAC's server loop included.
        handler_context.thread = threading.Thread(
            target=handler_context.run, name=f"novasonic-{handler_context.session_id}", daemon=True
        )
        handler_context.thread.start()

    def get_handler_detail(self, session_context: SessionContext, context: HandlerContext) -> HandlerDetail:
        """MIC_AUDIO and HUMAN_TEXT in; AVATAR_AUDIO (24 kHz), AVATAR_TEXT and HUMAN_TEXT out."""
        inputs = {
            ChatDataType.MIC_AUDIO: HandlerDataInfo(type=ChatDataType.MIC_AUDIO),
            ChatDataType.HUMAN_TEXT: HandlerDataInfo(type=ChatDataType.HUMAN_TEXT),
        }
        outputs = {kind: HandlerDataInfo(type=kind, definition=d) for kind, d in self.definitions.items()}
        return HandlerDetail(inputs=inputs, outputs=outputs)

    def handle(
        self, context: HandlerContext, inputs: ChatData, output_definitions: dict[ChatDataType, HandlerDataInfo]
    ) -> None:
        """Pass microphone audio or typed text to the session; never blocks, never raises."""
        # An exception here would kill OAC's pump thread for the rest of the session: log and drop instead.
        received_at = time.monotonic()
        try:
            assert isinstance(context, NovaSonicContext)
            if inputs.type == ChatDataType.MIC_AUDIO:
                frame = _mic_audio(context, inputs)
                if frame is not None and context.trace.enabled:
                    level = float(np.sqrt(np.mean(np.square(pcm.to_float32(frame.samples)))))
                    n = len(frame.samples)
                    context.trace.mark("mic", context.session_id, ts=inputs.timestamp[0], n=n, rms=level)
                if frame is not None:
                    context.hear(frame.samples, received_at)  # first: a pause should not wait for the send
                    context.send_audio(frame)
            elif inputs.type == ChatDataType.HUMAN_TEXT:
                text = inputs.data.get_main_data() if inputs.data is not None else None
                if isinstance(text, str) and text.strip():
                    context.send_text(text)
        except Exception as error:  # noqa: BLE001 - see above
            if isinstance(context, NovaSonicContext):
                context.dropped_inputs += 1
            logger.warning(f"Nova Sonic handler dropped a {inputs.type} input: {type(error).__name__}: {error}")

    def destroy_context(self, context: HandlerContext) -> None:
        """End the session's thread and worker, within a second."""
        if not isinstance(context, NovaSonicContext):
            return
        started = time.monotonic()
        context.stopping.set()
        if context.thread is not None:
            context.thread.join(STOP_TIMEOUT_S / 3)
        with context.lock:  # a bridge the session's thread makes from now on, it closes itself
            bridge = context.bridge
        if bridge is not None:
            bridge.close(max(0.0, STOP_TIMEOUT_S - (time.monotonic() - started)))

    def destroy(self) -> None:
        """Stop the warm workers (OAC's shutdown)."""
        if self.pool is not None:
            self.pool.close()
        self.trace.close()


def _mic_audio(context: NovaSonicContext, inputs: ChatData) -> ServiceFrame | None:
    """The input as the service takes it (int16 at 16 kHz; None if empty), or a clear error."""
    if inputs.data is None:
        raise ValueError("no data bundle")
    entry = inputs.data.get_main_definition_entry()
    rate = int(entry.sample_rate) if entry is not None and entry.sample_rate else INPUT_RATE
    # Checked before it can wait in the early buffer; the bridge sends it as it is.
    frame = context.frames.convert(inputs.data.get_main_data(), rate)
    return frame if frame.samples.size else None
