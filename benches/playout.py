# SPDX-License-Identifier: Apache-2.0
"""A model of the player at the host's end, to count underruns of the assistant's audio.

Each turn's assistant audio plays in real time from its first chunk's arrival at the host. A chunk that arrives
more than `TOLERANCE_S` (20 ms) after its play position is an underrun; the player stalls there and resumes with
that chunk, so one stall counts once. With the emulator at ``--speed 1`` chunks leave it at exactly the 80 ms
playout cadence, so this is a 20 ms jitter allowance end to end. The same player fed each chunk at the SDK's
hand-over in the worker (`upstream_playout`: arrival minus the bridge's downlink latency for that chunk) tells
stalls that arose before the bridge's hop from those the hop added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

TOLERANCE_S: Final = 0.020
"""How late a chunk may arrive after its play position before it counts as an underrun."""

Chunk = tuple[str, float, float]
"""One assistant chunk as the host saw it: (turn id, arrival, seconds of audio)."""


class Playout:
    """Plays each turn's assistant audio in real time from its first chunk's arrival, and counts the stalls."""

    def __init__(self, tolerance_s: float = TOLERANCE_S) -> None:
        self.tolerance_s = tolerance_s
        self._turns: dict[str, tuple[float, float]] = {}
        """turn id -> (when its audio started playing, seconds of it handed to the player so far)."""
        self.chunks = 0
        self.underruns = 0
        self.worst_late_s = 0.0
        """The latest any chunk arrived relative to its play position (0 if none was late)."""

    def chunk(self, turn_id: str, arrival: float, seconds: float) -> None:
        self.chunks += 1
        anchor, played = self._turns.get(turn_id, (arrival, 0.0))
        late = arrival - (anchor + played)
        self.worst_late_s = max(self.worst_late_s, late)
        if late > self.tolerance_s:
            self.underruns += 1
            anchor = arrival - played  # the player ran dry, and resumes with this chunk
        self._turns[turn_id] = (anchor, played + seconds)

    @property
    def turns(self) -> int:
        return len(self._turns)


def upstream_playout(chunks: Sequence[Chunk], downlink_s: Sequence[float], tolerance_s: float) -> Playout | None:
    """The same playout, with each chunk at the time the SDK handed it to the worker's session (its arrival at the
    host minus the bridge's downlink latency for it): what a player could do before the bridge's hop. None when the
    samples do not line up with the chunks (the bridge keeps one per audio record, in order)."""
    if len(downlink_s) < len(chunks):
        return None
    playout = Playout(tolerance_s)
    for (turn_id, arrival, seconds), latency in zip(chunks, downlink_s, strict=False):
        playout.chunk(turn_id, arrival - latency, seconds)
    return playout
