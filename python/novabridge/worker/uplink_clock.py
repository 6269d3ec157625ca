# SPDX-License-Identifier: Apache-2.0
"""The worker's timing of the uplink hop, from the host's write of a record to the SDK's send of its last byte."""

from __future__ import annotations

import collections

__all__ = ["UplinkClock"]


class UplinkClock:
    """Pairs the host's write time of each audio record with the SDK send that carried its last byte."""

    def __init__(self) -> None:
        self._pending: collections.deque[tuple[int, int]] = collections.deque()
        """(end offset in the session's accepted audio, host write time) per record not yet sent."""
        self.samples: list[float] = []

    def received(self, end_offset: int, written_ns: int) -> None:
        """A record written at ``written_ns`` was accepted by the session, up to byte ``end_offset``."""
        self._pending.append((end_offset, written_ns))

    def sent(self, through: int, sent_ns: int) -> None:
        """The session's ``on_audio_sent``: audio up to byte ``through`` left through the SDK at ``sent_ns``."""
        # The frame could leave only once its last byte (offset through - 1) had arrived: that byte's record dates
        # the hop. Records that ended earlier in the frame are settled with it.
        pending = self._pending
        while pending and pending[0][0] < through:
            pending.popleft()
        if not pending:
            return
        written_ns = pending[0][1]
        if pending[0][0] == through:
            pending.popleft()
        self.samples.append((sent_ns - written_ns) / 1e9)
