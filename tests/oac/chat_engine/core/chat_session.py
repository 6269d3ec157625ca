"""One chat session: per-handler input queues and pump threads, the input pump, and data routing.

Behaviour follows OAC's ``ChatSession``: handlers are prepared in order, ``start()`` wires submitters and starts
non-daemon pump threads that poll every 30 ms, an exception in ``handle()`` ends that handler's pump thread for
the rest of the session, and ``stop()`` joins every thread without a timeout.
"""

import asyncio
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar
from uuid import uuid4

import numpy as np
from numpy.typing import NDArray

from chat_engine._standin_logger import logger
from chat_engine.common.engine_channel_type import EngineChannelType
from chat_engine.common.handler_base import ChatDataConsumeMode, HandlerBase, HandlerBaseInfo, HandlerDataInfo
from chat_engine.contexts.handler_context import HandlerContext, HandlerResultType
from chat_engine.contexts.session_context import SessionContext
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from chat_engine.data_models.chat_signal import ChatSignal
from chat_engine.data_models.chat_signal_type import ChatSignalSourceType, ChatSignalType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle
from chat_engine.data_models.session_info_data import IOQueueType

SinkMap = dict[ChatDataType, list["DataSink"]]
OutputMap = dict[tuple[str | None, ChatDataType], "DataSink"]


@dataclass
class HandlerEnv:
    """A handler as prepared for this session."""

    handler_info: HandlerBaseInfo
    handler: HandlerBase
    config: HandlerBaseConfigModel
    context: HandlerContext | None = None
    input_queue: "queue.Queue[ChatData] | None" = None
    output_info: dict[ChatDataType, HandlerDataInfo] | None = None


@dataclass
class HandlerRecord:
    """A prepared handler and its pump thread."""

    env: HandlerEnv
    pump_thread: threading.Thread | None = None


@dataclass
class DataSource:
    """A session input queue and the data types its items become."""

    owner: str | None = ""
    source_queue: IOQueueType | None = None
    target_types: list[ChatDataType] | None = None


@dataclass
class DataSink:
    """A consumer queue of one data type: a handler's input queue, or an engine output queue (owner "")."""

    owner: str | None = ""
    sink_queue: IOQueueType | None = None
    consume_info: HandlerDataInfo | None = None


class ChatDataSubmitter:
    """What ``HandlerContext.submit_data`` calls: packs the result and routes it, on the caller's thread."""

    def __init__(
        self,
        handler_name: str | None,
        output_info: dict[ChatDataType, HandlerDataInfo] | None,
        session_context: SessionContext,
        sinks: SinkMap,
        outputs: OutputMap,
    ) -> None:
        self.handler_name = handler_name
        self.output_info = output_info
        self.session_context = session_context
        self.sinks = sinks
        self.outputs = outputs

    def submit(self, data: HandlerResultType) -> None:
        """Pack and distribute one handler result."""
        ChatSession.submit_data(
            data, self.handler_name, self.output_info, self.session_context, self.sinks, self.outputs
        )


class ChatSession:
    """Wires the handlers of one session together."""

    input_type_mapping: ClassVar[dict[EngineChannelType, list[ChatDataType]]] = {
        EngineChannelType.VIDEO: [ChatDataType.CAMERA_VIDEO],
        EngineChannelType.AUDIO: [ChatDataType.MIC_AUDIO],
        EngineChannelType.TEXT: [ChatDataType.HUMAN_TEXT],
    }

    def __init__(self, session_context: SessionContext, engine_config: ChatEngineConfigModel) -> None:
        self.session_context = session_context
        self.data_sinks: SinkMap = {}
        self.inputs: list[DataSource] = []
        self.outputs: OutputMap = {}
        self.handlers: dict[str | None, HandlerRecord] = {}
        self.input_pump_thread: threading.Thread | None = None

        for channel_type, input_queue in session_context.input_queues.items():
            target_types = self.input_type_mapping.get(channel_type, None)
            if target_types is None:
                logger.warning(f"Channel type of {channel_type} is not supported, ignored.")
                continue
            self.inputs.append(DataSource(owner="", source_queue=input_queue, target_types=target_types))

        for output_type, output_info in engine_config.outputs.items():
            channel_type = output_info.type.channel_type
            if channel_type not in session_context.output_queues:
                logger.warning(
                    f"Channel type of {channel_type} not found in engine outputs, "
                    f"configured output {output_info} will be ignored."
                )
                continue
            if isinstance(output_info.handler, list):
                handler_names: list[str | None] = list(output_info.handler)
            else:
                handler_names = [output_info.handler]
            for handler_name in handler_names:
                output_key = (handler_name, output_info.type)
                if output_key in self.outputs:
                    logger.warning(f"Duplicate output {output_key} to {output_type} found, ignored.")
                    continue
                self.outputs[output_key] = DataSink(
                    owner="",
                    sink_queue=session_context.output_queues[channel_type],
                    consume_info=HandlerDataInfo(type=output_info.type),
                )

    @classmethod
    def packet_audio_data(
        cls, session_context: SessionContext, audio_data: tuple[int, NDArray[Any]], _target_type: ChatDataType
    ) -> DataBundle:
        """``(sample_rate, array)`` -> bundle of shape (1, N) on the session's input audio definition."""
        sample_rate, audio_array = audio_data
        bundle = DataBundle(session_context.get_input_audio_definition(sample_rate, 1))
        bundle.set_main_data(audio_array.squeeze()[np.newaxis, ...])
        return bundle

    @classmethod
    def packet_video_data(
        cls, session_context: SessionContext, video_data: tuple[int, NDArray[Any]], _target_type: ChatDataType
    ) -> DataBundle:
        """``(frame_rate, image)`` -> bundle of shape (1, H, W, C)."""
        frame_rate, image = video_data
        image = image.squeeze()
        definition = session_context.get_input_video_definition(list(image.shape), frame_rate, allow_shape_change=True)
        bundle = DataBundle(definition)
        bundle.set_main_data(image[np.newaxis, ...])
        return bundle

    @classmethod
    def packet_text_data(
        cls, session_context: SessionContext, text_data: tuple[Any, str], _target_type: ChatDataType
    ) -> DataBundle:
        """``(anything, text)`` -> one complete HUMAN_TEXT bundle with a fresh ``speech_id``."""
        _, text = text_data
        bundle = DataBundle(session_context.get_input_text_definition())
        bundle.set_main_data(text)
        bundle.add_meta("speech_id", str(uuid4()))
        bundle.add_meta("human_text_end", True)
        return bundle

    @classmethod
    def packet_input_data(
        cls, session_context: SessionContext, input_data: tuple[Any, ...], target_type: ChatDataType
    ) -> ChatData | None:
        """An input-queue item (optionally with a third element, its timestamp) -> ``ChatData``."""
        chat_data = ChatData(type=target_type)
        timestamp = None
        if len(input_data) > 2:
            timestamp = input_data[2]
            input_data = input_data[:2]
        bundle: DataBundle | None = None
        channel_type = target_type.channel_type
        if channel_type == EngineChannelType.AUDIO:
            bundle = cls.packet_audio_data(session_context, (input_data[0], input_data[1]), target_type)
        elif channel_type == EngineChannelType.VIDEO:
            bundle = cls.packet_video_data(session_context, (input_data[0], input_data[1]), target_type)
        elif channel_type == EngineChannelType.TEXT:
            bundle = cls.packet_text_data(session_context, (input_data[0], input_data[1]), target_type)
        if bundle is None:
            logger.warning(f"Unsupported target type {target_type}")
            return None
        chat_data.data = bundle
        if timestamp is not None:
            chat_data.timestamp = timestamp
        return chat_data

    @classmethod
    def inputs_pumper(
        cls, session_context: SessionContext, inputs: list[DataSource], sinks: SinkMap, outputs: OutputMap
    ) -> None:
        """Session input thread: poll every input queue, sleep 30 ms when all are empty, route what arrives."""
        shared_states = session_context.shared_states
        while shared_states.active:
            received: list[tuple[DataSource, Any]] = []
            timestamp = session_context.get_timestamp()
            for source in inputs:
                assert source.source_queue is not None
                try:
                    received.append((source, source.source_queue.get_nowait()))
                except (queue.Empty, asyncio.QueueEmpty):
                    continue
            if not received:
                time.sleep(0.03)
                continue
            for source, item in received:
                for target_type in source.target_types or []:
                    chat_data = cls.packet_input_data(session_context, item, target_type)
                    if chat_data is None:
                        continue
                    if not chat_data.is_timestamp_valid():
                        chat_data.timestamp = timestamp
                    chat_data.source = source.owner
                    cls.distribute_data(chat_data, sinks, outputs)

    @classmethod
    def _packet_chat_data(
        cls,
        handler_name: str | None,
        output_info: dict[ChatDataType, HandlerDataInfo],
        session_context: SessionContext,
        data: HandlerResultType | None,
    ) -> ChatData | None:
        """One handler result -> ``ChatData`` stamped with the producer's name (and the time if unset)."""
        if data is None:
            return None
        timestamp = session_context.get_timestamp()
        single_output = next(iter(output_info)) if len(output_info) == 1 else None
        if isinstance(data, ChatData):
            chat_data = data
        elif isinstance(data, DataBundle):
            if single_output is None:
                raise ValueError("Bare DataBundle is supported only if handler outputs single chat data type.")
            chat_data = ChatData(data=data, type=single_output, timestamp=timestamp)
        elif isinstance(data, tuple) and len(data) == 2:
            chat_data_type, raw_data = data
            if not isinstance(chat_data_type, ChatDataType) or not isinstance(raw_data, np.ndarray):
                raise ValueError(f"Unsupported handler output type {type(data)}")  # noqa: TRY004 - as OAC
            if chat_data_type not in output_info:
                raise ValueError(f"Handler output type {chat_data_type} is not configured in outputs declaration.")
            definition = output_info[chat_data_type].definition
            if definition is None:  # OAC fails here too (on None.lockdown())
                raise ValueError(f"Handler output type {chat_data_type} has no definition.")
            bundle = DataBundle(definition=definition)
            bundle.set_main_data(raw_data)
            chat_data = ChatData(data=bundle, type=chat_data_type, timestamp=timestamp)
        else:
            raise ValueError(f"Unsupported handler output type {type(data)}")
        if not chat_data.is_timestamp_valid():
            chat_data.timestamp = timestamp
        chat_data.source = handler_name
        return chat_data

    @classmethod
    def distribute_data(cls, data: ChatData, sinks: SinkMap, outputs: OutputMap) -> None:
        """Engine output first, then sinks of the type in priority order, skipping the producer; ONCE stops."""
        output_sink = outputs.get((data.source, data.type), None)
        if output_sink is not None:
            assert output_sink.sink_queue is not None
            output_sink.sink_queue.put_nowait(data)
        for sink in sinks.get(data.type, []):
            if sink.owner == data.source:
                continue
            assert sink.sink_queue is not None
            assert sink.consume_info is not None
            sink.sink_queue.put_nowait(data)
            if sink.consume_info.input_consume_mode == ChatDataConsumeMode.ONCE:
                break

    @classmethod
    def submit_data(
        cls,
        data: HandlerResultType,
        handler_name: str | None,
        output_info: dict[ChatDataType, HandlerDataInfo] | None,
        session_context: SessionContext,
        sinks: SinkMap,
        outputs: OutputMap,
    ) -> None:
        """Pack and distribute one result (the path of ``HandlerContext.submit_data``)."""
        # OAC passes output_info as is; it is None only for a handler that was never prepared.
        chat_data = cls._packet_chat_data(handler_name, output_info or {}, session_context, data)
        if chat_data is not None:
            cls.distribute_data(chat_data, sinks, outputs)

    @classmethod
    def handler_pumper(
        cls, session_context: SessionContext, handler_env: HandlerEnv, sinks: SinkMap, outputs: OutputMap
    ) -> None:
        """A handler's pump thread: poll its input queue (30 ms sleep when empty), call ``handle()``, route results.

        Nothing here catches exceptions: one raised by ``handle()`` (or by packing its results) ends the thread.
        """
        shared_states = session_context.shared_states
        input_queue = handler_env.input_queue
        handler = handler_env.handler
        output_info = handler_env.output_info
        if output_info is None:
            output_info = {}
        assert input_queue is not None
        assert handler_env.context is not None
        while shared_states.active:
            try:
                input_data = input_queue.get_nowait()
            except (queue.Empty, asyncio.QueueEmpty):
                time.sleep(0.03)
                continue
            result = handler.handle(handler_env.context, input_data, output_info)
            results: Iterable[Any] = result if isinstance(result, Iterable) else [result]
            for handler_output in results:
                chat_data = cls._packet_chat_data(
                    handler_env.handler_info.name, output_info, session_context, handler_output
                )
                if chat_data is None:
                    continue
                cls.distribute_data(chat_data, sinks, outputs)

    def prepare_handler(
        self, handler: HandlerBase, handler_info: HandlerBaseInfo, handler_config: HandlerBaseConfigModel
    ) -> HandlerEnv:
        """create_context, set ``context.owner``, get_handler_detail, one input queue and one sink per input type."""
        handler_env = HandlerEnv(handler_info=handler_info, handler=handler, config=handler_config)
        context = handler.create_context(self.session_context, handler_env.config)
        handler_env.context = context
        context.owner = handler_info.name
        handler_env.input_queue = queue.Queue()
        io_detail = handler.get_handler_detail(self.session_context, context)
        for input_type, input_info in io_detail.inputs.items():
            self.data_sinks.setdefault(input_type, []).append(
                DataSink(owner=handler_info.name, sink_queue=handler_env.input_queue, consume_info=input_info)
            )
        handler_env.output_info = io_detail.outputs
        self.handlers[handler_info.name] = HandlerRecord(env=handler_env)
        return handler_env

    def sort_sinks(self) -> None:
        """Order each type's sinks by ``HandlerDataInfo`` (input_priority, then type)."""
        for sink_list in self.data_sinks.values():
            sink_list.sort(key=_sink_order)

    def start(self) -> None:
        """Set the submitters, call ``start_context`` and start the pump threads, then the clock."""
        if self.session_context.shared_states.active:
            return
        self.session_context.shared_states.active = True
        self.sort_sinks()
        for handler_name, record in self.handlers.items():
            env = record.env
            assert env.context is not None
            env.context.data_submitter = ChatDataSubmitter(
                handler_name, env.output_info, self.session_context, self.data_sinks, self.outputs
            )
            env.handler.start_context(self.session_context, env.context)
            record.pump_thread = threading.Thread(
                target=self.handler_pumper, args=(self.session_context, env, self.data_sinks, self.outputs)
            )
            record.pump_thread.start()
        self.input_pump_thread = threading.Thread(
            target=self.inputs_pumper, args=(self.session_context, self.inputs, self.data_sinks, self.outputs)
        )
        self.input_pump_thread.start()
        self.session_context.set_input_start()

    def stop(self) -> None:
        """Clear ``active``, join the threads (no timeout), destroy the contexts, drain the session queues."""
        self.session_context.shared_states.active = False
        if self.input_pump_thread:
            self.input_pump_thread.join()
            self.input_pump_thread = None
        for record in self.handlers.values():
            if record.pump_thread:
                record.pump_thread.join()
                record.pump_thread = None
            assert record.env.context is not None
            record.env.handler.destroy_context(record.env.context)
        self.handlers.clear()
        self.session_context.cleanup()
        logger.info("chat session stopped")

    def get_timestamp(self) -> tuple[int, int]:
        """The session clock."""
        return self.session_context.get_timestamp()

    def emit_signal(self, signal: ChatSignal) -> None:
        """Only END from the client does anything: it re-enables VAD."""
        if signal.source_type == ChatSignalSourceType.CLIENT and signal.type == ChatSignalType.END:
            self.session_context.shared_states.enable_vad = True


def _sink_order(sink: DataSink) -> HandlerDataInfo:
    assert sink.consume_info is not None
    return sink.consume_info
