"""A stateful comparison of a 4 KiB ring (written and read through one handle) with a deque model."""

import random
from collections import deque
from dataclasses import dataclass

import novabridge as nb
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from support.ring_peers import framed_len

CAPACITY = 4096
MAX_PAYLOAD = CAPACITY // 2 - nb.RECORD_HEADER_LEN
KINDS = st.integers(min_value=0, max_value=3) | st.integers(min_value=0, max_value=65535)
# Sizes from the whole range (hypothesis's own binaries stay small, and the ring would never wrap).
SIZES = st.one_of(
    st.integers(0, 64),
    st.integers(0, MAX_PAYLOAD),
    st.sampled_from([MAX_PAYLOAD, MAX_PAYLOAD - 1, MAX_PAYLOAD - 7, 1000, 1016, 2000]),
)


@dataclass
class Queued:
    seq: int
    kind: int
    flags: int
    payload: bytes
    # Where the record ends in the ring (a monotonic byte counter), or None once a filtered skip moved it
    # out of the ring into the handle (it is still delivered, in order, but no longer takes ring space).
    end: int | None


class RingModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ring = nb.Ring.create(CAPACITY, name="model")
        self.model: deque[Queued] = deque()
        self.next_seq = 0
        self.written = 0
        self.bytes_written = 0
        self.skipped = 0
        # The ring's indices, mirrored: the producer's tail and the consumer's head, as byte counters.
        self.tail = 0
        self.head = 0

    def _needed(self, framed: int) -> int:
        """Bytes a record of `framed` bytes takes at the tail, counting the wasted end when it must wrap."""
        to_end = CAPACITY - self.tail % CAPACITY
        return framed if framed <= to_end else to_end + framed

    @rule(kind=KINDS, flags=st.integers(0, 65535), size=SIZES, seed=st.integers(0, 2**32 - 1))
    def write(self, kind: int, flags: int, size: int, seed: int) -> None:
        payload = random.Random(seed).randbytes(size)
        framed = framed_len(len(payload))
        needed = self._needed(framed)
        used = self.tail - self.head
        total_framed = sum(framed_len(len(q.payload)) for q in self.model if q.end is not None)
        try:
            seq = self.ring.write(kind, payload, flags=flags)
        except nb.RingFull:
            # Really full: the queued records (plus at most one wasted end) leave too little room.
            assert used + needed > CAPACITY, f"RingFull with {used} of {CAPACITY} bytes used, {needed} needed"
            # The queued framed records explain the use, up to the ends wasted by wraps (less than one
            # record each, and at most one wrap since the head last passed the end).
            assert total_framed <= used < total_framed + CAPACITY // 2
            return
        assert used + needed <= CAPACITY, f"wrote {needed} bytes with {used} of {CAPACITY} used"
        assert seq == self.next_seq
        self.next_seq += 1
        self.written += 1
        self.bytes_written += len(payload)
        self.tail += needed
        self.model.append(Queued(seq, kind, flags, payload, self.tail))

    def _check_read(self, record: nb.Record | None) -> None:
        if not self.model:
            assert record is None
            return
        assert record is not None
        expected = self.model.popleft()
        assert (record.seq, record.kind, record.flags, record.payload) == (
            expected.seq,
            expected.kind,
            expected.flags,
            expected.payload,
        )
        if expected.end is not None:
            self.head = expected.end

    @rule()
    def read_nowait(self) -> None:
        self._check_read(self.ring.read_nowait())

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def read_with_timeout(self) -> None:
        self._check_read(self.ring.read(timeout=0.5))

    @rule(kind=st.none() | KINDS)
    def skip(self, kind: int | None) -> None:
        dropped = self.ring.skip(kind)
        kept = deque(q for q in self.model if kind is not None and q.kind != kind)
        assert dropped == len(self.model) - len(kept)
        self.model = kept
        self.skipped += dropped
        # A skip consumes the whole ring; the records it keeps wait in the handle, outside the ring.
        for q in self.model:
            q.end = None
        self.head = self.tail

    @invariant()
    def counters_match(self) -> None:
        stats = self.ring.stats()
        assert stats.records_written == self.written
        assert stats.bytes_written == self.bytes_written
        assert stats.records_skipped == self.skipped
        assert stats.fill_bytes == self.tail - self.head
        assert 0 <= stats.fill_bytes <= CAPACITY

    def teardown(self) -> None:
        self.ring.close()


RingModel.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestRingModel = RingModel.TestCase
