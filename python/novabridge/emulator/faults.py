"""Faults injected on demand: the failures peers met in production, made reproducible.

A fault waits in the emulator's plan until a stream reaches its trigger point, then fires there, ``count`` times
in all. Connection faults fire at connect; timed faults are claimed by the first stream to see them (a new stream
at once, an open one within 50 ms) and fire ``after_s`` later; mid-turn faults fire at an assistant audio chunk.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, fields, replace
from enum import StrEnum


class FaultKind(StrEnum):
    """What goes wrong."""

    THROTTLE = "throttle"
    """HTTP 429 ThrottlingException at connect."""
    INSTABILITY = "instability"
    """ValidationException "System instability detected..." ``after_s`` after a stream claims it."""
    MODEL_STREAM_ERROR = "model-stream-error"
    """modelStreamErrorException in the middle of the assistant's audio."""
    CORRUPT_FRAME = "corrupt-frame"
    """The response is cut inside a frame mid-turn; the client's decoder raises InvalidEventBytes."""
    RESET = "reset"
    """The connection is severed mid-turn, without an event."""
    RST_531 = "rst-531"
    """ValidationException InternalErrorCode=531 once the user has been silent for ``after_s``."""
    EXPIRE = "expire"
    """modelTimeoutException ``after_s`` after a stream claims it, as at the end of the 8-minute lifetime."""
    SLOW = "slow"
    """Responses start ``delay_s`` later than usual and stream at real time instead of faster."""
    REJECT_INPUT = "reject-input"
    """ValidationException "Invalid input request" for the first input event ``after_s`` after a stream claims it,
    as the service answers an input it will not take."""
    STALL = "stall"
    """``after_s`` after a stream claims it, the server stops reading its request until the stream ends: the HTTP/2
    flow-control window fills and the client's sends block, as when a peer stops taking audio without a word. It
    stalls the whole connection, as a peer that stops reading its socket does."""


CONNECT_FAULTS = frozenset({FaultKind.THROTTLE})
STREAM_FAULTS = frozenset(
    {
        FaultKind.INSTABILITY,
        FaultKind.RST_531,
        FaultKind.EXPIRE,
        FaultKind.SLOW,
        FaultKind.REJECT_INPUT,
        FaultKind.STALL,
    }
)
MID_TURN_FAULTS = frozenset({FaultKind.MODEL_STREAM_ERROR, FaultKind.CORRUPT_FRAME, FaultKind.RESET})


@dataclass(frozen=True)
class Fault:
    """One fault and its parameters."""

    kind: FaultKind
    count: int = 1
    """How many times it fires (streams for connect and timed faults, turns for mid-turn faults)."""
    after_s: float = 0.5
    """Timed faults: seconds after a stream claims it (rst-531: seconds of user silence)."""
    after_chunks: int = 2
    """Mid-turn faults: fire before this audio chunk of a turn (0 is before the first)."""
    delay_s: float = 2.0
    """slow: extra time before the first audio of each turn."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", FaultKind(self.kind))
        times_ok = all(math.isfinite(t) and t >= 0 for t in (self.after_s, self.delay_s))
        if self.count < 1 or self.after_chunks < 0 or not times_ok:
            raise ValueError(f"fault {self.kind}: count must be >= 1, times finite and >= 0, chunk counts >= 0")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """Read ``KIND[:name=value,...]``, e.g. ``model-stream-error:after_chunks=3,count=2``."""
        kind, _, params = spec.partition(":")
        try:
            fault_kind = FaultKind(kind.strip())
        except ValueError:
            known = ", ".join(k.value for k in FaultKind)
            raise ValueError(f"unknown fault {kind!r}; known: {known}") from None
        types = {f.name: f.type for f in fields(cls) if f.name != "kind"}
        values: dict[str, float | int] = {}
        for item in filter(None, (p.strip() for p in params.split(","))):
            name, eq, value = item.partition("=")
            if not eq or name not in types:
                raise ValueError(f"fault parameter {item!r}: expected one of {', '.join(types)} as name=value")
            try:
                values[name] = int(value) if types[name] == "int" else float(value)
            except ValueError:
                raise ValueError(f"fault parameter {item!r}: {value!r} is not a number") from None
        return cls(fault_kind, **values)  # type: ignore[arg-type]


class FaultPlan:
    """The pending faults; safe to add to from any thread while streams take from it on the loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[Fault] = []

    def add(self, fault: Fault) -> None:
        """Arm a fault."""
        with self._lock:
            self._pending.append(fault)

    def clear(self) -> None:
        """Disarm everything not yet fired."""
        with self._lock:
            self._pending.clear()

    def pending(self) -> list[Fault]:
        """The faults still armed."""
        with self._lock:
            return list(self._pending)

    def take(self, kinds: frozenset[FaultKind], *, chunk: int | None = None) -> Fault | None:
        """Fire the first armed fault of ``kinds`` (mid-turn faults only once ``chunk`` reaches their point)."""
        with self._lock:
            for index, fault in enumerate(self._pending):
                if fault.kind not in kinds or (chunk is not None and chunk < fault.after_chunks):
                    continue
                if fault.count == 1:
                    del self._pending[index]
                else:
                    self._pending[index] = replace(fault, count=fault.count - 1)
                return fault
        return None
