"""The OAC stand-in (tests/oac/chat_engine) behaves like OpenAvatarChat where a handler relies on it."""

import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "oac"))

from chat_engine.common.engine_channel_type import EngineChannelType
from chat_engine.common.handler_base import (
    ChatDataConsumeMode,
    HandlerBase,
    HandlerBaseInfo,
    HandlerDataInfo,
    HandlerDetail,
)
from chat_engine.contexts.handler_context import HandlerContext, HandlerResultType
from chat_engine.contexts.session_context import SessionContext
from chat_engine.core.chat_session import ChatSession
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import (
    ChatEngineConfigModel,
    ChatEngineOutputSource,
    HandlerBaseConfigModel,
)
from chat_engine.data_models.runtime_data.data_bundle import (
    DataBundle,
    DataBundleDefinition,
    DataBundleEntry,
    VariableSize,
)
from chat_engine.data_models.session_info_data import IOQueueType, SessionInfoData

WAIT = 5.0  # seconds; each hop of the engine polls every 30 ms


def avatar_audio_definition() -> DataBundleDefinition:
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_audio_entry("avatar_audio", 1, 24000))
    return definition


@dataclass
class Seen:
    """What one handle() call received."""

    type: ChatDataType
    source: str | None
    timestamp: tuple[int, int]
    main: Any
    entry: DataBundleEntry | None
    meta: dict[str, Any]
    thread: threading.Thread


@dataclass
class Calls:
    created: list[HandlerContext] = field(default_factory=list)
    started: list[HandlerContext] = field(default_factory=list)
    destroyed: list[HandlerContext] = field(default_factory=list)
    seen: "queue.Queue[Seen]" = field(default_factory=queue.Queue)


class RecordingHandler(HandlerBase):
    """Declares the given inputs/outputs, records every call; handle() may fail, block, yield or return."""

    def __init__(
        self,
        inputs: dict[ChatDataType, HandlerDataInfo],
        outputs: dict[ChatDataType, HandlerDataInfo] | None = None,
        *,
        fail_on_first: bool = False,
        block_seconds: float = 0.0,
        result: Any = None,
    ) -> None:
        super().__init__()
        self.inputs = inputs
        self.outputs = outputs or {}
        self.fail_on_first = fail_on_first
        self.block_seconds = block_seconds
        self.result = result
        self.calls = Calls()

    def get_handler_info(self) -> HandlerBaseInfo:
        return HandlerBaseInfo(config_model=HandlerBaseConfigModel)

    def load(self, engine_config: ChatEngineConfigModel, handler_config: HandlerBaseConfigModel | None = None) -> None:
        pass

    def create_context(
        self, session_context: SessionContext, handler_config: HandlerBaseConfigModel | None = None
    ) -> HandlerContext:
        context = HandlerContext(session_context.session_info.session_id)
        self.calls.created.append(context)
        return context

    def start_context(self, session_context: SessionContext, handler_context: HandlerContext) -> None:
        self.calls.started.append(handler_context)

    def get_handler_detail(self, session_context: SessionContext, context: HandlerContext) -> HandlerDetail:
        return HandlerDetail(inputs=self.inputs, outputs=self.outputs)

    def handle(
        self,
        context: HandlerContext,
        inputs: ChatData,
        output_definitions: dict[ChatDataType, HandlerDataInfo],
    ) -> Any:
        assert inputs.data is not None
        self.calls.seen.put(
            Seen(
                type=inputs.type,
                source=inputs.source,
                timestamp=inputs.timestamp,
                main=inputs.data.get_main_data(),
                entry=inputs.data.get_main_definition_entry(),
                meta=dict(inputs.data.metadata),
                thread=threading.current_thread(),
            )
        )
        if self.fail_on_first:
            self.fail_on_first = False
            raise RuntimeError("handler bug")
        if self.block_seconds:
            time.sleep(self.block_seconds)
        return self.result

    def destroy_context(self, context: HandlerContext) -> None:
        self.calls.destroyed.append(context)


def mic_handler(**kwargs: Any) -> RecordingHandler:
    """The handler shape novabridge uses: MIC_AUDIO in, AVATAR_AUDIO out."""
    return RecordingHandler(
        inputs={ChatDataType.MIC_AUDIO: HandlerDataInfo(type=ChatDataType.MIC_AUDIO)},
        outputs={
            ChatDataType.AVATAR_AUDIO: HandlerDataInfo(
                type=ChatDataType.AVATAR_AUDIO, definition=avatar_audio_definition()
            )
        },
        **kwargs,
    )


def avatar_sink(**kwargs: Any) -> RecordingHandler:
    return RecordingHandler(
        inputs={ChatDataType.AVATAR_AUDIO: HandlerDataInfo(type=ChatDataType.AVATAR_AUDIO)}, **kwargs
    )


class Harness:
    """A session built as ChatEngine._create_session does, with an AUDIO input queue and engine output queue."""

    def __init__(self, outputs: dict[EngineChannelType, ChatEngineOutputSource] | None = None) -> None:
        self.input_audio: IOQueueType = queue.Queue()
        self.output_audio: IOQueueType = queue.Queue()
        self.session_context = SessionContext(
            SessionInfoData(session_id="standin-session"),
            {EngineChannelType.AUDIO: self.input_audio},
            {EngineChannelType.AUDIO: self.output_audio},
        )
        self.session = ChatSession(self.session_context, ChatEngineConfigModel(outputs=outputs or {}))
        self.handlers: dict[str, RecordingHandler] = {}

    def add(self, name: str, handler: RecordingHandler) -> HandlerContext:
        info = handler.get_handler_info()
        info.name = name  # HandlerManager.register_handler overwrites it with the config key
        assert info.config_model is not None
        env = self.session.prepare_handler(handler, info, info.config_model())
        self.handlers[name] = handler
        assert env.context is not None
        return env.context

    def pump_threads(self) -> dict[str, threading.Thread]:
        threads = {}
        for name, record in self.session.handlers.items():
            assert name is not None
            assert record.pump_thread is not None
            threads[name] = record.pump_thread
        return threads


MakeHarness = Callable[..., Harness]


@pytest.fixture
def make_harness() -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def make(outputs: dict[EngineChannelType, ChatEngineOutputSource] | None = None) -> Harness:
        made.append(Harness(outputs))
        return made[-1]

    yield make
    for h in made:  # pump threads are not daemons: a failed test must still stop its session
        if h.session_context.shared_states.active:
            h.session.stop()


def mic_chunk(n: int = 960, first: int = 0) -> "np.ndarray[Any, np.dtype[np.int16]]":
    chunk = np.zeros((1, n), dtype=np.int16)
    chunk[0, 0] = first
    return chunk


def get(q: "queue.Queue[Any] | IOQueueType", timeout: float = WAIT) -> Any:
    assert isinstance(q, queue.Queue)
    return q.get(timeout=timeout)


def test_mic_audio_flows_from_input_queue_to_handle(make_harness: MakeHarness) -> None:
    h = make_harness()
    handler = mic_handler()
    context = h.add("Nova", handler)
    assert handler.calls.created == [context]
    assert context.owner == "Nova"
    assert context.data_submitter is None
    h.session.start()
    assert handler.calls.started == [context]
    assert context.data_submitter is not None

    h.input_audio.put_nowait((16000, mic_chunk(first=7)))
    h.input_audio.put_nowait((16000, mic_chunk(first=8), (4800, 16000)))
    first, second = get(handler.calls.seen), get(handler.calls.seen)

    assert first.type is ChatDataType.MIC_AUDIO
    assert first.source == ""  # the session's input pump owns no handler name
    assert isinstance(first.main, np.ndarray)
    assert first.main.shape == (1, 960)
    assert first.main.dtype == np.int16
    assert first.main[0, 0] == 7
    assert first.entry is not None
    assert (first.entry.name, first.entry.sample_rate, first.entry.time_axis) == ("mic_audio", 16000, 1)
    assert first.timestamp[1] == 16000
    assert first.timestamp[0] >= 0
    assert first.thread is not threading.main_thread()
    assert first.thread is h.pump_threads()["Nova"]
    assert second.timestamp == (4800, 16000)  # a third tuple element is taken as the timestamp
    assert second.main[0, 0] == 8


def test_submit_data_from_another_thread_reaches_sinks_but_not_the_producer(make_harness: MakeHarness) -> None:
    h = make_harness({EngineChannelType.AUDIO: ChatEngineOutputSource(handler="Nova", type=ChatDataType.AVATAR_AUDIO)})
    producer = RecordingHandler(
        inputs={
            ChatDataType.MIC_AUDIO: HandlerDataInfo(type=ChatDataType.MIC_AUDIO),
            ChatDataType.AVATAR_AUDIO: HandlerDataInfo(type=ChatDataType.AVATAR_AUDIO),
        },
        outputs={
            ChatDataType.AVATAR_AUDIO: HandlerDataInfo(
                type=ChatDataType.AVATAR_AUDIO, definition=avatar_audio_definition()
            )
        },
    )
    producer_context = h.add("Nova", producer)
    sink = avatar_sink()
    h.add("Client", sink)

    early = DataBundle(avatar_audio_definition())
    early.set_main_data(np.zeros((1, 240), dtype=np.float32))
    producer_context.submit_data(early)  # before start(): logged and dropped, as in OAC

    h.session.start()

    def worker() -> None:
        bundle = DataBundle(avatar_audio_definition())
        bundle.set_main_data(np.full((1, 480), 0.5, dtype=np.float32))
        bundle.add_meta("speech_id", "turn-1")
        bundle.add_meta("avatar_speech_end", False)
        producer_context.submit_data(bundle)  # a bare DataBundle: the single declared output type

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()

    out = get(h.output_audio)
    assert isinstance(out, ChatData)
    assert out.type is ChatDataType.AVATAR_AUDIO
    assert out.source == "Nova"
    assert out.is_timestamp_valid()
    assert out.data is not None
    assert out.data.get_meta("speech_id") == "turn-1"
    seen = get(sink.calls.seen)
    assert seen.source == "Nova"
    assert seen.main.shape == (1, 480)
    assert seen.entry is not None
    assert seen.entry.sample_rate == 24000
    assert seen.meta == {"speech_id": "turn-1", "avatar_speech_end": False}
    with pytest.raises(queue.Empty):
        producer.calls.seen.get(timeout=0.2)  # never routed back to its producer
    with pytest.raises(queue.Empty):
        sink.calls.seen.get(timeout=0.1)  # the early submit was dropped
    assert h.output_audio.empty()
    h.session.stop()


def test_yielded_results_are_routed_and_once_stops_distribution(make_harness: MakeHarness) -> None:
    h = make_harness()

    def results() -> Iterator[HandlerResultType]:
        for value in (0.25, 0.5):
            bundle = DataBundle(avatar_audio_definition())
            bundle.set_main_data(np.full((1, 240), value, dtype=np.float32))
            yield bundle

    class Yielding(RecordingHandler):
        def handle(
            self,
            context: HandlerContext,
            inputs: ChatData,
            output_definitions: dict[ChatDataType, HandlerDataInfo],
        ) -> Iterator[HandlerResultType]:
            super().handle(context, inputs, output_definitions)
            return results()

    producer = Yielding(
        inputs={ChatDataType.MIC_AUDIO: HandlerDataInfo(type=ChatDataType.MIC_AUDIO)},
        outputs={
            ChatDataType.AVATAR_AUDIO: HandlerDataInfo(
                type=ChatDataType.AVATAR_AUDIO, definition=avatar_audio_definition()
            )
        },
    )
    h.add("Nova", producer)
    late = avatar_sink()
    h.add("Client", late)  # prepared first among the sinks, but DEFAULT priority 0
    avatar = RecordingHandler(
        inputs={
            ChatDataType.AVATAR_AUDIO: HandlerDataInfo(
                type=ChatDataType.AVATAR_AUDIO, input_priority=-1, input_consume_mode=ChatDataConsumeMode.ONCE
            )
        }
    )
    h.add("Avatar", avatar)
    h.session.start()

    h.input_audio.put_nowait((16000, mic_chunk()))
    first, second = get(avatar.calls.seen), get(avatar.calls.seen)
    assert (first.main[0, 0], second.main[0, 0]) == (0.25, 0.5)
    assert first.source == "Nova"
    with pytest.raises(queue.Empty):
        late.calls.seen.get(timeout=0.2)


def test_data_bundle_checks_shapes_and_locks_its_definition() -> None:
    definition = avatar_audio_definition()
    entry = definition.get_main_entry()
    assert entry is not None
    assert entry.shape == [1, VariableSize()]
    assert (entry.time_axis, entry.sample_rate) == (1, 24000)
    bundle = DataBundle(definition)
    with pytest.raises(RuntimeError, match="Invalid time axis"):
        bundle.set_main_data(np.zeros(480, dtype=np.float32))  # 1-D audio is rejected
    with pytest.raises(RuntimeError, match="does not match definition shape"):
        bundle.set_main_data(np.zeros((1, 1, 480), dtype=np.float32))
    with pytest.raises(RuntimeError, match="Shape mismatch"):
        bundle.set_main_data(np.zeros((2, 480), dtype=np.float32))  # the channel axis is fixed at 1
    with pytest.raises(RuntimeError, match="Dimension mismatch"):
        bundle.set_main_data(np.zeros((1, 0), dtype=np.float32))
    with pytest.raises(RuntimeError, match="Unknown data name"):
        bundle.set_data("nope", np.zeros((1, 4), dtype=np.float32))
    assert bundle.get_main_data() is None
    bundle.set_main_data(np.zeros((1, 480), dtype=np.float32))
    main = bundle.get_main_data()
    assert isinstance(main, np.ndarray)
    assert main.shape == (1, 480)

    assert bundle.definition.locked
    assert not definition.locked  # DataBundle keeps a locked copy, the original stays open
    assert DataBundle(definition).definition is bundle.definition  # the copy is cached
    with pytest.raises(RuntimeError, match="locked"):
        bundle.definition.add_entry(DataBundleEntry.create_text_entry("avatar_text"))

    text = DataBundleDefinition()
    text.add_entry(DataBundleEntry.create_text_entry("avatar_text"))
    text_bundle = DataBundle(text)
    text_bundle.set_main_data("hello")
    text_bundle.add_meta("avatar_text_end", False)
    assert text_bundle.get_main_data() == "hello"
    assert text_bundle.get_meta("avatar_text_end") is False
    assert text_bundle.get_meta("speech_id", "none") == "none"
    with pytest.raises(RuntimeError, match="Dimension mismatch"):
        text_bundle.set_main_data(np.zeros((1, 3)))


def test_exception_in_handle_kills_the_pump_thread(make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness()
    thread_errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    handler = mic_handler(fail_on_first=True)
    h.add("Nova", handler)
    h.session.start()
    pump = h.pump_threads()["Nova"]

    h.input_audio.put_nowait((16000, mic_chunk(first=1)))
    assert get(handler.calls.seen).main[0, 0] == 1
    pump.join(timeout=WAIT)
    assert not pump.is_alive()
    assert len(thread_errors) == 1
    assert thread_errors[0].thread is pump
    assert isinstance(thread_errors[0].exc_value, RuntimeError)

    h.input_audio.put_nowait((16000, mic_chunk(first=2)))
    with pytest.raises(queue.Empty):
        handler.calls.seen.get(timeout=0.3)  # nothing restarts the thread: later inputs are never handled
    assert h.session_context.shared_states.active  # the session itself carries on
    h.session.stop()
    assert len(handler.calls.destroyed) == 1


def test_returning_a_type_array_tuple_kills_the_pump_thread(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = make_harness()
    thread_errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", thread_errors.append)
    handler = mic_handler(result=(ChatDataType.AVATAR_AUDIO, np.zeros((1, 240), dtype=np.float32)))
    h.add("Nova", handler)
    h.session.start()
    pump = h.pump_threads()["Nova"]
    h.input_audio.put_nowait((16000, mic_chunk()))
    get(handler.calls.seen)
    pump.join(timeout=WAIT)
    assert not pump.is_alive()
    assert isinstance(thread_errors[0].exc_value, ValueError)  # the returned tuple is iterated item by item
    assert "Unsupported handler output type" in str(thread_errors[0].exc_value)
    assert h.output_audio.empty()


def test_stop_joins_without_timeout_then_destroys_contexts_and_drains_queues(make_harness: MakeHarness) -> None:
    h = make_harness()
    handler = mic_handler(block_seconds=0.5)
    context = h.add("Nova", handler)
    sink = avatar_sink()
    sink_context = h.add("Client", sink)
    h.session.start()
    threads = [*h.pump_threads().values()]
    assert h.session.input_pump_thread is not None
    threads.append(h.session.input_pump_thread)
    assert all(t.is_alive() and not t.daemon for t in threads)

    h.input_audio.put_nowait((16000, mic_chunk()))
    get(handler.calls.seen)  # handle() is now blocked for 0.5 s
    h.output_audio.put_nowait("left over")
    started = time.monotonic()
    h.session.stop()
    assert time.monotonic() - started >= 0.3  # stop() waited for the blocked handle() to return

    assert not any(t.is_alive() for t in threads)
    assert not h.session_context.shared_states.active
    assert handler.calls.destroyed == [context]
    assert sink.calls.destroyed == [sink_context]
    assert h.session.handlers == {}
    assert h.output_audio.empty()
