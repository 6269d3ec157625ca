"""The seeded chaos schedule of a soak run: what goes wrong, when, and to which session."""

from __future__ import annotations

import random
from dataclasses import dataclass

from novabridge.emulator.faults import FaultKind

HOST_CHAOS = ("worker-kill", "worker-stop", "host-deaf", "host-burst", "emulator-restart")
"""Faults the run itself causes: SIGKILL of a worker; SIGSTOP for 2-5 s then SIGCONT; a host that stops reading events
for 3 s; a host that sends 3 s of audio at once; the emulator killed and started again on its port and certificate."""

EMULATOR_FAULT_SPECS: dict[str, str] = {
    FaultKind.THROTTLE: "throttle",
    FaultKind.INSTABILITY: "instability:after_s=0.5",
    FaultKind.MODEL_STREAM_ERROR: "model-stream-error:after_chunks=2",
    FaultKind.CORRUPT_FRAME: "corrupt-frame:after_chunks=2",
    FaultKind.RESET: "reset:after_chunks=2",
    FaultKind.RST_531: "rst-531:after_s=1.0",
    FaultKind.EXPIRE: "expire:after_s=0.5",
    FaultKind.SLOW: "slow:delay_s=2.0",
    FaultKind.REJECT_INPUT: "reject-input:after_s=0.5",
    FaultKind.STALL: "stall:after_s=0.5",
}
"""Each emulator fault as armed on the emulator's stdin; the first stream to reach its trigger takes it."""

KINDS = (*EMULATOR_FAULT_SPECS, *HOST_CHAOS)
_WEIGHTS = {kind: 1.0 for kind in KINDS} | {"emulator-restart": 0.25}
"""The emulator's restart cuts every session at once: rarer than the rest in a long run (still at least once)."""


@dataclass(frozen=True)
class ChaosEvent:
    """One fault: ``at_s`` after the run began; ``session`` for the faults that target one, else None."""

    at_s: float
    kind: str
    session: int | None = None
    stop_s: float = 0.0
    """worker-stop: how long the worker stays stopped."""

    @property
    def spec(self) -> str | None:
        """The emulator fault's spec, for the emulator's kinds."""
        return EMULATOR_FAULT_SPECS.get(self.kind)


def chaos_schedule(seed: int, *, sessions: int, start_s: float, end_s: float, mean_gap_s: float) -> list[ChaosEvent]:
    """Faults between ``start_s`` and ``end_s``, every kind at least once, ``mean_gap_s`` apart on average.

    Deterministic in ``seed``: the same run faults the same way.
    """
    if end_s <= start_s:
        raise ValueError("the chaos window is empty")
    rng = random.Random(seed)
    count = max(len(KINDS), round((end_s - start_s) / mean_gap_s))
    kinds = list(KINDS) + rng.choices(KINDS, weights=[_WEIGHTS[k] for k in KINDS], k=count - len(KINDS))
    rng.shuffle(kinds)
    # Evenly spread with jitter, so two faults never land on the same instant and the window is covered.
    gap = (end_s - start_s) / count
    events = []
    for index, kind in enumerate(kinds):
        at_s = start_s + gap * (index + rng.uniform(0.1, 0.9))
        session = rng.randrange(sessions) if kind in HOST_CHAOS and kind != "emulator-restart" else None
        stop_s = rng.uniform(2.0, 5.0) if kind == "worker-stop" else 0.0
        events.append(ChaosEvent(round(at_s, 3), kind, session, round(stop_s, 3)))
    return events
