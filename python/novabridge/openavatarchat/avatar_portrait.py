"""OpenAvatarChat handler: a weight-free avatar, a portrait whose mouth follows the voice it is given.

OpenAvatarChat's page plays the server's stream in a ``<video>`` element, which stays silent until video frames
arrive; every upstream avatar needs model weights and most a GPU. This handler needs neither: it takes the
``AVATAR_AUDIO`` a voice handler (Nova Sonic, or any TTS) emits and sends ``AVATAR_VIDEO`` at the page's frame rate
from the start of the session, so the page plays the voice on any CPU machine with nothing to download.

The audio itself goes to the client untouched (this handler reads it without consuming it), so the avatar adds no
latency. The mouth follows the audio's loudness on the clock the audio will be heard on: a voice handler submits
audio ``audio_lead_ms`` ahead of real time (novabridge's ``pacing_lead_ms``), so each new answer is drawn from
that far ahead. OpenAvatarChat loads the first concrete `HandlerBase` of this module: this is the only one.
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from chat_engine.common.handler_base import HandlerBase, HandlerBaseInfo, HandlerDataInfo, HandlerDetail
from chat_engine.contexts.handler_context import HandlerContext
from chat_engine.contexts.session_context import SessionContext
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry
from pydantic import BaseModel, Field

from novabridge import pcm
from novabridge.openavatarchat._log import logger
from novabridge.openavatarchat.handler_novasonic import PACING_LEAD_MS
from novabridge.openavatarchat.portrait import PortraitFrames, draw_frames, load_image, voice_level

OAC_RTC_MODULES = ("client.rtc_client.client_handler_rtc", "handlers.client.rtc_client.client_handler_rtc")
"""The names OAC's WebRTC client module is imported under: the handler loader's, and its stream's at each session."""
SOFTWARE_H264 = "libx264"
BLINK_EVERY_S = 4.2
BLINK_S = 0.15
STOP_TIMEOUT_S = 0.5


class PortraitAvatarConfig(HandlerBaseConfigModel, BaseModel):
    """The avatar's YAML settings (beside OAC's ``enabled``, ``module`` and ``concurrent_limit``)."""

    fps: int = Field(30, ge=5, le=60)
    """Frames a second. OAC's WebRTC client stamps video at 30 fps whatever it is sent, so keep 30 there."""
    width: int = Field(384, ge=16, le=1920)
    height: int = Field(384, ge=16, le=1080)
    portrait: str | None = None
    """An image (PNG, JPEG) to show with a glow that follows the voice; None: a drawn face whose mouth moves."""
    audio_lead_ms: float = Field(PACING_LEAD_MS, ge=0.0, le=2000.0)
    """How far ahead of real time the voice handler submits audio (novabridge's ``pacing_lead_ms``)."""


class VoiceEnvelope:
    """Voice levels on the clock the audio will be heard on, one per video frame; fed and read from two threads."""

    def __init__(self, fps: int, lead_s: float) -> None:
        self.tick_s = 1.0 / fps
        self.lead_s = lead_s
        self.start = 0.0
        """When ``levels[0]`` is heard (monotonic seconds)."""
        self.levels: collections.deque[float] = collections.deque()
        self.pending = np.zeros(0, np.float32)
        """Samples short of a whole frame's worth, kept for the next chunk."""
        self.lock = threading.Lock()

    def add(self, samples: np.ndarray[Any, Any], rate: int, now: float) -> None:
        """Audio submitted at ``now``: heard right after what came before it, or ``lead_s`` from now."""
        per_tick = max(1, round(rate * self.tick_s))
        with self.lock:
            if self.start + len(self.levels) * self.tick_s < now:  # what came before has been heard: a new answer
                self.levels.clear()
                self.pending = np.zeros(0, np.float32)
                self.start = now + self.lead_s
            audio = np.concatenate((self.pending, samples.astype(np.float32, copy=False)))
            whole = len(audio) // per_tick * per_tick
            self.levels.extend(voice_level(audio[i : i + per_tick]) for i in range(0, whole, per_tick))
            self.pending = audio[whole:]

    def level_at(self, now: float) -> float:
        """The level heard at ``now`` (0 in silence); earlier levels are forgotten."""
        with self.lock:
            while self.levels and self.start + self.tick_s <= now:
                self.levels.popleft()
                self.start += self.tick_s
            return self.levels[0] if self.levels and self.start <= now else 0.0


class PortraitAvatarContext(HandlerContext):
    """One OAC session: its voice envelope and the thread that sends its frames."""

    def __init__(self, session_id: str, fps: int, lead_s: float) -> None:
        super().__init__(session_id)
        self.fps = fps
        self.envelope = VoiceEnvelope(fps, lead_s)
        self.frames: PortraitFrames | None = None
        self.definition: DataBundleDefinition | None = None
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.frames_sent = 0
        self.dropped_inputs = 0


class HandlerPortraitAvatar(HandlerBase):
    """A portrait that speaks: ``AVATAR_AUDIO`` in (read, not consumed), ``AVATAR_VIDEO`` out."""

    def __init__(self) -> None:
        super().__init__()
        self.config = PortraitAvatarConfig()
        self.frames: PortraitFrames | None = None
        self.definition: DataBundleDefinition | None = None

    def get_handler_info(self) -> HandlerBaseInfo:
        """The config model; OAC sets the name from the YAML key."""
        return HandlerBaseInfo(config_model=PortraitAvatarConfig, load_priority=0)

    def load(self, engine_config: ChatEngineConfigModel, handler_config: HandlerBaseConfigModel | None = None) -> None:
        """Draw every frame once (a bad portrait or size fails here, at OAC's start)."""
        if isinstance(handler_config, PortraitAvatarConfig):
            self.config = handler_config
        config = self.config
        portrait = load_image(Path(config.portrait).expanduser()) if config.portrait else None
        self.frames = draw_frames(config.height, config.width, portrait)
        definition = DataBundleDefinition()
        entry = DataBundleEntry.create_framed_entry("avatar_video", [1, config.height, config.width, 3], 0, config.fps)
        definition.add_entry(entry)
        definition.lockdown()
        self.definition = definition
        use_openable_h264_encoder()
        look = f"portrait {config.portrait}" if config.portrait else "a drawn face"
        logger.info(f"Portrait avatar: {look}, {config.width}x{config.height} at {config.fps} fps")

    def create_context(
        self, session_context: SessionContext, handler_config: HandlerBaseConfigModel | None = None
    ) -> HandlerContext:
        """A session's context (its frame thread starts in `start_context`)."""
        if self.frames is None or self.definition is None:
            raise RuntimeError("the handler was not loaded")
        context = PortraitAvatarContext(
            session_context.session_info.session_id, self.config.fps, self.config.audio_lead_ms / 1000
        )
        context.frames = self.frames
        context.definition = self.definition
        return context

    def start_context(self, session_context: SessionContext, handler_context: HandlerContext) -> None:
        """Start sending frames at once: the page starts playing (sound included) on the first one."""
        assert isinstance(handler_context, PortraitAvatarContext)
        use_openable_h264_encoder()  # OAC re-imports its client module, and re-detects, when the first session starts
        handler_context.thread = threading.Thread(
            target=_send_frames, args=(handler_context,), name=f"portrait-{handler_context.session_id}", daemon=True
        )
        handler_context.thread.start()

    def get_handler_detail(self, session_context: SessionContext, context: HandlerContext) -> HandlerDetail:
        """AVATAR_AUDIO in, shared with the client (the default consume mode); AVATAR_VIDEO out."""
        inputs = {ChatDataType.AVATAR_AUDIO: HandlerDataInfo(type=ChatDataType.AVATAR_AUDIO)}
        outputs = {
            ChatDataType.AVATAR_VIDEO: HandlerDataInfo(type=ChatDataType.AVATAR_VIDEO, definition=self.definition)
        }
        return HandlerDetail(inputs=inputs, outputs=outputs)

    def handle(
        self, context: HandlerContext, inputs: ChatData, output_definitions: dict[ChatDataType, HandlerDataInfo]
    ) -> None:
        """Note the loudness of the voice; never blocks, never raises (that would kill OAC's pump thread)."""
        try:
            assert isinstance(context, PortraitAvatarContext)
            if inputs.type != ChatDataType.AVATAR_AUDIO or inputs.data is None:
                return
            audio = pcm.mono(inputs.data.get_main_data())
            entry = inputs.data.get_main_definition_entry()
            rate = int(entry.sample_rate) if entry is not None and entry.sample_rate else 24000
            context.envelope.add(pcm.to_float32(audio) if audio.dtype == np.int16 else audio, rate, time.monotonic())
        except Exception as error:  # noqa: BLE001 - see the docstring
            if isinstance(context, PortraitAvatarContext):
                context.dropped_inputs += 1
            logger.warning(f"Portrait avatar dropped an {inputs.type} input: {type(error).__name__}: {error}")

    def destroy_context(self, context: HandlerContext) -> None:
        """Stop the session's frames."""
        if isinstance(context, PortraitAvatarContext):
            context.stopping.set()
            if context.thread is not None:
                context.thread.join(STOP_TIMEOUT_S)


def h264_encoder_opens(name: str) -> bool:
    """Whether PyAV can open the H.264 encoder ``name`` here.

    Creating one is not enough: a GPU encoder opens only where its driver and device are.
    """
    import fractions

    import av

    try:
        codec = av.CodecContext.create(name, "w")
        codec.width, codec.height, codec.pix_fmt = 64, 64, "yuv420p"
        codec.time_base = fractions.Fraction(1, 30)
        codec.open()
    except Exception:  # noqa: BLE001 - any failure means the encoder is unusable here
        return False
    return True


def use_openable_h264_encoder(opens: Callable[[str], bool] = h264_encoder_opens) -> list[str]:
    """Make OAC's WebRTC client encode video with an encoder that opens; returns the modules changed.

    OAC's client picks a hardware H.264 encoder if PyAV can *create* it, which PyAV's wheels (built with NVENC) can
    on any machine, GPU or not; the encoder then fails to open on the first frame, no video is ever sent, and the
    page's ``<video>`` element (which plays the avatar's voice too) never starts. Where the chosen encoder does not
    open, this selects OAC's own software fallback, ``libx264``.
    """
    changed = []
    for name in OAC_RTC_MODULES:
        module = sys.modules.get(name)
        selected = getattr(module, "_selected_h264_encoder", None)
        if module is None or not isinstance(selected, str) or selected == SOFTWARE_H264 or opens(selected):
            continue
        module._selected_h264_encoder = SOFTWARE_H264  # type: ignore[attr-defined]
        changed.append(name)
        logger.info(f"OpenAvatarChat chose the H.264 encoder {selected}, which does not open here: using libx264")
    return changed


def _send_frames(context: PortraitAvatarContext) -> None:
    """Submit exactly ``fps`` frames a second, on the wall clock; frames due while this thread was held up go at once.

    OAC's WebRTC client stamps video frames by their count (1/fps apart), not by the clock. A skipped frame would
    put the stamps behind real time for good, and the browser, which plays audio and video of one stream in sync,
    would hold the voice back to match the lagging video.
    """
    assert context.frames is not None
    assert context.definition is not None
    tick_s = 1.0 / context.fps
    started = time.monotonic()
    ticks = 0
    while not context.stopping.is_set():
        now = time.monotonic()
        due = started + ticks * tick_s
        if due > now:
            context.stopping.wait(due - now)
            continue
        ticks += 1
        blink = (now - started) % BLINK_EVERY_S < BLINK_S
        frame = context.frames.frame(context.envelope.level_at(now), blink=blink)
        try:
            bundle = DataBundle(context.definition)
            bundle.set_main_data(frame[np.newaxis])
            context.submit_data(ChatData(type=ChatDataType.AVATAR_VIDEO, data=bundle))
            context.frames_sent += 1
        except Exception:  # noqa: BLE001 - a bug: logged, and the avatar goes on
            logger.exception(f"Portrait avatar {context.session_id}: a frame was not sent")
