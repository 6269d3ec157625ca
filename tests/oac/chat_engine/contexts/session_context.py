"""State shared by all handlers of one session: I/O queues, flags, input definitions, the session clock."""

import time
from dataclasses import dataclass

from chat_engine._standin_logger import logger
from chat_engine.data_models.chat_engine_config_data import EngineChannelType
from chat_engine.data_models.runtime_data.data_bundle import DataBundleDefinition, DataBundleEntry, VariableSize
from chat_engine.data_models.session_info_data import IOQueueType, SessionInfoData


@dataclass
class SharedStates:
    """``active`` runs the pump threads; ``enable_vad`` is the half-duplex gate SileroVAD honours."""

    active: bool = False
    enable_vad: bool = True


class SessionContext:
    """What handlers see of a session."""

    def __init__(
        self,
        session_info: SessionInfoData,
        input_queues: dict[EngineChannelType, IOQueueType],
        output_queues: dict[EngineChannelType, IOQueueType],
    ) -> None:
        self.session_info = session_info
        self.input_queues = input_queues
        self.output_queues = output_queues
        self.shared_states = SharedStates()
        self.input_definitions: dict[EngineChannelType, DataBundleDefinition] = {}
        self.input_start_time: float = -1.0

    def get_input_audio_definition(
        self, sample_rate: int, channel_num: int = 1, entry_name: str = "mic_audio"
    ) -> DataBundleDefinition:
        """The (cached, locked) definition of raw input audio; the first call fixes its sample rate."""
        definition = self.input_definitions.get(EngineChannelType.AUDIO, None)
        if definition is None:
            definition = DataBundleDefinition()
            definition.add_entry(DataBundleEntry.create_audio_entry(entry_name, channel_num, sample_rate))
            definition.lockdown()
            self.input_definitions[EngineChannelType.AUDIO] = definition
        return definition

    def get_input_video_definition(
        self,
        frame_shape: list[int],
        frame_rate: int,
        entry_name: str = "camera_video",
        allow_shape_change: bool = False,
    ) -> DataBundleDefinition:
        """The cached definition of input video frames; rebuilt on a new frame shape if allowed."""
        data_shape: list[int | VariableSize] = [1, *frame_shape]
        definition = self.input_definitions.get(EngineChannelType.VIDEO, None)
        if allow_shape_change and definition is not None:
            main_entry = definition.get_main_entry()
            defined_shape = list(main_entry.shape) if main_entry is not None else []
            if defined_shape != data_shape:
                logger.warning(f"Video definition updated, orign shape={defined_shape}, new shape={data_shape}")
                definition = None
        if definition is None:
            definition = DataBundleDefinition()
            definition.add_entry(DataBundleEntry.create_framed_entry(entry_name, data_shape, 0, frame_rate))
            definition.lockdown()
            self.input_definitions[EngineChannelType.VIDEO] = definition
        return definition

    def get_input_text_definition(self, entry_name: str = "human_text") -> DataBundleDefinition:
        """The cached definition of input text."""
        definition = self.input_definitions.get(EngineChannelType.TEXT, None)
        if definition is None:
            definition = DataBundleDefinition()
            definition.add_entry(DataBundleEntry.create_text_entry(entry_name))
            definition.lockdown()
            self.input_definitions[EngineChannelType.TEXT] = definition
        return definition

    def cleanup(self) -> None:
        """Drain every input and output queue."""
        for data_queue in [*self.input_queues.values(), *self.output_queues.values()]:
            while not data_queue.empty():
                data_queue.get_nowait()

    def set_input_start(self) -> None:
        """Start the session clock (once)."""
        if self.input_start_time < 0:
            self.input_start_time = time.monotonic()

    def get_timestamp(self) -> tuple[int, int]:
        """(ticks since start, ticks per second); (-1, 0) before the clock starts."""
        now = time.monotonic()
        if self.input_start_time < 0:
            return -1, 0
        base = self.session_info.timestamp_base
        return round((now - self.input_start_time) * base), base
