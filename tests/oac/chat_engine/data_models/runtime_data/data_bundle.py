"""Typed multi-entry data containers and their definitions (shapes, time axes, sample rates)."""

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
from numpy.typing import NDArray

from chat_engine.data_models.runtime_data.data_store import DataStore, DataStoreType
from chat_engine.data_models.runtime_data.event_model import EventData
from chat_engine.data_models.runtime_data.time_unit_type import TimeUnitType


@dataclass
class VariableSize:
    """An axis whose size may vary, optionally clamped to [min_size, max_size]."""

    min_size: int | None = None
    max_size: int | None = None
    default: int = 1

    def validate(self, value: int) -> int:
        """Clamp ``value`` to the allowed range."""
        if self.max_size is not None:
            value = min(value, self.max_size)
        if self.min_size is not None:
            value = max(value, self.min_size)
        return value


@dataclass
class DataBundleEntry:
    """One named slot of a bundle: its shape (fixed ints or ``VariableSize``), time axis and rate."""

    name: str
    index: int = -1
    shape: list[int | VariableSize] = field(default_factory=list)
    time_axis: int = -1
    sample_rate: int = 0
    time_unit: TimeUnitType = TimeUnitType.NONE
    channel_axis: int | None = field(default=None)
    channel_names: list[str] | None = field(default=None)

    @staticmethod
    def create_audio_entry(name: str, channel_num: int, sample_rate: int) -> "DataBundleEntry":
        """Audio of shape ``[channel_num, samples]``; axis 1 counts samples at ``sample_rate``."""
        return DataBundleEntry(
            name=name,
            shape=[channel_num, VariableSize()],
            time_axis=1,
            sample_rate=sample_rate,
            time_unit=TimeUnitType.AUDIO_SAMPLE,
        )

    @staticmethod
    def create_framed_entry(
        name: str,
        shape: list[int | VariableSize],
        time_axis: int,
        sample_rate: int = 30,
        channel_axis: int | None = None,
        channel_names: list[str] | None = None,
    ) -> "DataBundleEntry":
        """Frames (video, motion data) at ``sample_rate`` frames per second along ``time_axis``."""
        if channel_names is not None and channel_axis is None:
            raise RuntimeError("Channel axis must be specified, if channel names is provided.")
        return DataBundleEntry(
            name=name,
            shape=shape,
            time_axis=time_axis,
            sample_rate=sample_rate,
            time_unit=TimeUnitType.FRAME,
            channel_axis=channel_axis,
            channel_names=channel_names,
        )

    @staticmethod
    def create_text_entry(name: str) -> "DataBundleEntry":
        """A text (non-temporal) entry."""
        return DataBundleEntry(
            name=name,
            shape=[VariableSize()],
            time_axis=-1,
            sample_rate=-1,
            time_unit=TimeUnitType.NONE,
        )

    def get_time_axis_size(self, shape: Sequence[int]) -> int | None:
        """Length of ``shape`` along the time axis (0 for non-temporal entries)."""
        if self.time_unit == TimeUnitType.NONE:
            return 0
        if not 0 <= self.time_axis < len(shape):
            raise RuntimeError(f"Invalid time axis {self.time_axis} for shape {self.shape}")
        return shape[self.time_axis]

    def calculate_shape(
        self, timed_axis_size: int | None = None, reference_shape: Sequence[int] | None = None
    ) -> list[int]:
        """The concrete shape allowed for data: variable axes taken from ``reference_shape`` (clamped) or defaults."""
        if reference_shape is not None:
            if len(reference_shape) != len(self.shape):
                raise RuntimeError(
                    f"Reference shape size {reference_shape} does not match definition shape {self.shape}"
                )
        elif timed_axis_size is not None and self.time_unit != TimeUnitType.NONE:
            if timed_axis_size < 0:
                raise RuntimeError(f"Invalid time axis size {timed_axis_size}")
            if not 0 <= self.time_axis < len(self.shape):
                raise RuntimeError(f"Invalid time axis {self.time_axis} for shape {self.shape}")
        result: list[int] = []
        for axis, size in enumerate(self.shape):
            if isinstance(size, VariableSize):
                result.append(size.validate(reference_shape[axis]) if reference_shape is not None else size.default)
            else:
                result.append(size)
        if timed_axis_size is not None:
            result[self.time_axis] = timed_axis_size
        return result

    def create_default_data(self, data_type: "np.dtype[Any]") -> NDArray[Any]:
        """An empty uint8 array for text, else zeros of one time step."""
        if self.time_unit == TimeUnitType.NONE:
            return np.zeros([0], dtype=np.uint8)
        return np.zeros(self.calculate_shape(timed_axis_size=1), dtype=data_type)

    def is_temporal_data(self) -> bool:
        """Whether the entry has a time axis."""
        return self.time_unit != TimeUnitType.NONE


@dataclass
class DataBundleDefinition:
    """Ordered set of entries; the first entry added is the main entry. ``lockdown()`` gives a frozen copy."""

    entries: dict[str, DataBundleEntry] = field(default_factory=dict)
    main_entry_name: str | None = None
    _conformed: bool = True
    _locked: bool = False
    _lockdown_copy: Optional["DataBundleDefinition"] = None

    def _mark_dirty(self) -> None:
        self._conformed = False
        self._lockdown_copy = None

    def add_entry(self, entry: DataBundleEntry) -> None:
        """Add an entry; the first one becomes the main entry."""
        if self._locked:
            raise RuntimeError("Cannot add entry to a locked definition")
        if entry.name in self.entries:
            raise RuntimeError(f"Duplicated data name {entry.name}")
        self.entries[entry.name] = entry
        if self.main_entry_name is None:
            self.main_entry_name = entry.name
        self._mark_dirty()

    def find_entry(self, entry_name: str) -> DataBundleEntry | None:
        """The entry of that name, or None."""
        return self.entries.get(entry_name)

    def set_main_entry(self, name: str) -> None:
        """Choose which existing entry is the main one."""
        if self._locked:
            raise RuntimeError("Cannot set main entry to a locked definition")
        if name not in self.entries:
            raise RuntimeError(f"Invalid main entry {name}")
        self.main_entry_name = name
        self._mark_dirty()

    def get_main_entry(self) -> DataBundleEntry | None:
        """The main entry, or None if there is none."""
        if self.main_entry_name is None:
            return None
        return self.entries.get(self.main_entry_name)

    def update(
        self,
        other: Optional["DataBundleDefinition"],
        allow_partial_merge: bool = False,
        force_override: bool = False,
    ) -> None:
        """Merge ``other``'s entries; a clash raises unless partial merge (skip) or override is allowed."""
        if other is None:
            return
        if self._locked:
            raise RuntimeError("Cannot update a locked definition")
        for name, entry in other.entries.items():
            if name in self.entries and not force_override:
                if allow_partial_merge:
                    continue
                raise RuntimeError(f"Duplicated data name {name}")
            self.entries[name] = entry
            self._mark_dirty()

    def conform(self) -> None:
        """Number the entries in insertion order."""
        if self._conformed:
            return
        for position, entry in enumerate(self.entries.values()):
            entry.index = position
        self._conformed = True

    def lockdown(self) -> "DataBundleDefinition":
        """A locked copy (cached until the definition changes); a locked definition returns itself."""
        if self._locked:
            return self
        if self._lockdown_copy is not None:
            return self._lockdown_copy
        self.conform()
        frozen = DataBundleDefinition()
        frozen.entries = {name: copy.copy(entry) for name, entry in self.entries.items()}
        frozen.main_entry_name = self.main_entry_name
        frozen._conformed = True
        frozen._locked = True
        self._lockdown_copy = frozen
        return frozen

    @property
    def locked(self) -> bool:
        """Whether entries can no longer be added or changed."""
        return self._locked

    @property
    def conformed(self) -> bool:
        """Whether entry indices are up to date."""
        return self._conformed


class DataBundle:
    """Data for each entry of a (locked) definition, plus metadata and events."""

    def __init__(self, definition: DataBundleDefinition) -> None:
        self._definition: DataBundleDefinition = definition.lockdown()
        self.metadata: dict[str, Any] = {}
        self.events: list[EventData] = []
        self._data_entries: list[DataBundleEntry] = list(self._definition.entries.values())
        self.data: list[DataStore] = [DataStore(None, DataStoreType.INVALID) for _ in self._data_entries]
        self.start_of_stream: bool = False
        self.end_of_stream: bool = False

    def __str__(self) -> str:
        valid: list[str] = []
        missing: list[str] = []
        for entry, store in zip(self._data_entries, self.data, strict=True):
            if not store.valid:
                missing.append(entry.name)
            elif isinstance(store.data, np.ndarray):
                length = entry.get_time_axis_size(store.data.shape)
                valid.append(f"{entry.name}: length={length} {entry.time_unit.name}")
            elif isinstance(store.data, str):
                valid.append(f"{entry.name}: {store.data}")
            else:
                valid.append(f"{entry.name}: type=[{type(store.data)}] <No Detail>")
        meta = [f"{key}: {value}" for key, value in self.metadata.items()]
        text = "DataBundle: "
        if valid:
            text += f" ValidData=[{', '.join(valid)}];"
        if meta:
            text += f" Meta=[{', '.join(meta)}];"
        if missing:
            text += f" MissingData=[{', '.join(missing)}];"
        return text

    @property
    def definition(self) -> DataBundleDefinition:
        """The locked definition this bundle follows."""
        return self._definition

    def get_definition_entry(self, name: str) -> DataBundleEntry | None:
        """The definition entry of that name, or None."""
        return self._definition.entries.get(name, None)

    def get_main_definition_entry(self) -> DataBundleEntry | None:
        """The definition's main entry (carries ``sample_rate`` etc.)."""
        return self._definition.get_main_entry()

    def get_data_store(self, name: str, read_only: bool = True) -> DataStore:
        """The store of entry ``name``; an unknown name gives a fresh invalid store."""
        entry = self.get_definition_entry(name)
        if entry is None:
            return DataStore(None, DataStoreType.INVALID)
        return self.data[entry.index]

    def set_data_store(self, name: str, data_store: DataStore | None) -> None:
        """Replace the store of entry ``name`` with a valid store; anything else is ignored."""
        if data_store is None or not data_store.valid:
            return
        entry = self.get_definition_entry(name)
        if entry is None:
            return
        self.data[entry.index] = data_store

    def is_base_layer(self) -> bool:
        """Always True."""
        return True

    def set_array_data(self, name: str, entry: DataBundleEntry, data: NDArray[Any]) -> None:
        """Store an array after checking its ndim, fixed axes and a non-empty time axis."""
        timed_axis_size = entry.get_time_axis_size(data.shape)
        if timed_axis_size is None or timed_axis_size <= 0:
            raise RuntimeError(f"Dimension mismatch: {name}: {data.shape} is not valid")
        allowed_shape = entry.calculate_shape(timed_axis_size=timed_axis_size, reference_shape=data.shape)
        if not np.array_equal(data.shape, allowed_shape):
            raise RuntimeError(f"Shape mismatch: Shape of {name} is {data.shape}, not fit defined {allowed_shape}")
        self.get_data_store(name, read_only=False).set_data(data, DataStoreType.LOCAL_MEMORY)

    def set_text_data(self, name: str, _entry: DataBundleEntry, data: str) -> None:
        """Store a string (no checks)."""
        self.get_data_store(name, read_only=False).set_data(data, DataStoreType.LOCAL_MEMORY)

    def set_data(self, name: str, data: NDArray[Any] | str) -> None:
        """Store an array or a string in entry ``name``."""
        entry = self._definition.entries.get(name, None)
        if entry is None:
            raise RuntimeError(f"Unknown data name {name}")
        if isinstance(data, np.ndarray):
            self.set_array_data(name, entry, data)
        elif isinstance(data, str):
            self.set_text_data(name, entry, data)
        else:
            raise RuntimeError(f"Input data type {type(data)} is not supported.")  # noqa: TRY004 - as OAC

    def set_main_data(self, data: NDArray[Any] | str) -> None:
        """Store data in the main entry."""
        main_name = self._definition.main_entry_name
        if main_name is None:
            raise RuntimeError("No main data entry")
        self.set_data(main_name, data)

    def get_data(self, name: str) -> NDArray[Any] | str | None:
        """The data of entry ``name`` (None if unset or unknown)."""
        result: NDArray[Any] | str | None = self.get_data_store(name, read_only=True).get_data()
        return result

    def get_main_data(self) -> NDArray[Any] | str | None:
        """The data of the main entry."""
        main_name = self._definition.main_entry_name
        if main_name is None:
            return None
        return self.get_data(main_name)

    def add_meta(self, name: str, value: Any) -> None:
        """Set a metadata key (e.g. ``speech_id``, ``avatar_speech_end``)."""
        self.metadata[name] = value

    def get_meta(self, name: str, default: Any = None) -> Any:
        """A metadata value, or ``default``."""
        return self.metadata.get(name, default)
