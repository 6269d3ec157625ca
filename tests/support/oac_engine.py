"""OpenAvatarChat's real engine around the Nova Sonic handler: a ChatSession with the handler and a client standing
where OAC's RTC client is, the input pump fed as OAC's client feeds it, and handlers made for an emulator."""

import contextlib
import queue
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from support.emulator_process import EmulatorProcess
from support.interpreters import python_for
from support.oac import oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.common.engine_channel_type import EngineChannelType
from chat_engine.common.handler_base import HandlerBase, HandlerBaseInfo, HandlerDataInfo, HandlerDetail
from chat_engine.contexts.handler_context import HandlerContext
from chat_engine.contexts.session_context import SessionContext
from chat_engine.core.chat_session import ChatSession
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import (
    ChatEngineConfigModel,
    ChatEngineOutputSource,
    HandlerBaseConfigModel,
)
from chat_engine.data_models.session_info_data import IOQueueType, SessionInfoData
from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig, NovaSonicContext

FRAME = 960  # what OAC's RTC client delivers: 60 ms at 16 kHz


class StampedQueue(queue.Queue[Any]):
    """An engine output queue that notes when each item was submitted."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[tuple[float, Any]] = []

    def put_nowait(self, item: Any) -> None:
        self.stamps.append((time.monotonic(), item))
        super().put_nowait(item)


@dataclass
class Client(HandlerBase):
    """Stands where OAC's RTC client is: it consumes what the avatar would show and say."""

    received: "queue.Queue[ChatData]" = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # OAC's HandlerBase.__init__ is unannotated

    def get_handler_info(self) -> HandlerBaseInfo:
        return HandlerBaseInfo(config_model=HandlerBaseConfigModel)

    def load(self, engine_config: ChatEngineConfigModel, handler_config: HandlerBaseConfigModel | None = None) -> None:
        pass

    def create_context(
        self, session_context: SessionContext, handler_config: HandlerBaseConfigModel | None = None
    ) -> HandlerContext:
        return HandlerContext(session_context.session_info.session_id)

    def start_context(self, session_context: SessionContext, handler_context: HandlerContext) -> None:
        pass

    def get_handler_detail(self, session_context: SessionContext, context: HandlerContext) -> HandlerDetail:
        types = (ChatDataType.AVATAR_AUDIO, ChatDataType.AVATAR_TEXT, ChatDataType.HUMAN_TEXT)
        return HandlerDetail(inputs={t: HandlerDataInfo(type=t) for t in types}, outputs={})

    def handle(
        self, context: HandlerContext, inputs: ChatData, output_definitions: dict[ChatDataType, HandlerDataInfo]
    ) -> None:
        self.received.put(inputs)

    def destroy_context(self, context: HandlerContext) -> None:
        pass


class Session:
    """One OAC session as ChatEngine builds it: the Nova Sonic handler and a client, with the input pump."""

    def __init__(self, handler: HandlerNovaSonic, name: str) -> None:
        self.mic: IOQueueType = queue.Queue()
        self.text: IOQueueType = queue.Queue()
        self.audio_out = StampedQueue()
        self.context = SessionContext(
            SessionInfoData(session_id=name),
            {EngineChannelType.AUDIO: self.mic, EngineChannelType.TEXT: self.text},
            {EngineChannelType.AUDIO: self.audio_out},
        )
        outputs = {EngineChannelType.AUDIO: ChatEngineOutputSource(handler="NovaSonic", type=ChatDataType.AVATAR_AUDIO)}
        self.session = ChatSession(self.context, ChatEngineConfigModel(outputs=outputs))
        self.client = Client()
        for key, h in (("NovaSonic", handler), ("RtcClient", self.client)):
            info = h.get_handler_info()
            info.name = key
            assert info.config_model is not None
            config = handler.config if h is handler else info.config_model()
            self.session.prepare_handler(h, info, config)
        self.session.start()
        self.seen: list[ChatData] = []
        context = self.session.handlers["NovaSonic"].env.context
        assert isinstance(context, NovaSonicContext)
        self.nova = context  # the engine forgets its handlers at stop()

    def speak(self, audio: np.ndarray, speed: float = 4.0) -> None:
        for offset in range(0, len(audio), FRAME):
            self.mic.put((16000, audio[offset : offset + FRAME].reshape(1, -1)))
            time.sleep(FRAME / 16000 / speed)

    def collect(self, until: Any, timeout: float = 30.0) -> list[ChatData]:
        deadline = time.monotonic() + timeout
        while not until(self.seen):
            assert time.monotonic() < deadline, summary(self.seen)
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.client.received.get(timeout=0.1))
        return self.seen

    def stop(self) -> float:
        started = time.monotonic()
        self.session.stop()
        return time.monotonic() - started


def summary(seen: list[ChatData]) -> list[tuple[str, Any]]:
    out = []
    for item in seen:
        assert item.data is not None
        main = item.data.get_main_data()
        out.append((item.type.name, main if isinstance(main, str) else getattr(main, "shape", None)))
    return out


def ends(kind: ChatDataType, count: int) -> Any:
    key = "avatar_speech_end" if kind == ChatDataType.AVATAR_AUDIO else f"{kind.value}_end"

    def done(seen: list[ChatData]) -> bool:
        return sum(1 for s in seen if s.type == kind and s.data is not None and s.data.get_meta(key)) >= count

    return done


@pytest.fixture
def make_handler() -> Iterator[Any]:
    made: list[HandlerNovaSonic] = []

    def make(emulator: EmulatorProcess, **settings: Any) -> HandlerNovaSonic:
        handler = HandlerNovaSonic()
        info = handler.get_handler_info()
        assert info.config_model is NovaSonicConfig
        config = NovaSonicConfig.model_validate(
            {
                "module": "novabridge/openavatarchat/handler_novasonic",
                "worker_python": python_for("312"),
                "endpoint_uri": emulator.config().endpoint_uri,
                "ca_file": str(emulator.config().ca_file),
                "aws_access_key_id": "AKIDTEST",
                "aws_secret_access_key": "secret",
                **settings,
            }
        )
        handler.load(ChatEngineConfigModel(), config)
        made.append(handler)
        return handler

    yield make
    for handler in made:
        handler.destroy()


def audio_of(seen: list[ChatData]) -> list[tuple[str, np.ndarray, bool]]:
    out = []
    for item in seen:
        if item.type == ChatDataType.AVATAR_AUDIO:
            assert item.data is not None
            main = item.data.get_main_data()
            assert isinstance(main, np.ndarray)
            out.append((str(item.data.get_meta("speech_id")), main, bool(item.data.get_meta("avatar_speech_end"))))
    return out
