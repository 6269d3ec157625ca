"""The worker process: one `SonicSession`, joined to the host by two shared-memory rings.

``python -m novabridge.worker UPLINK_FDS DOWNLINK_FDS`` (three descriptors each, passed with ``pass_fds``; the pool
runs it through `novabridge.host.pool.BOOTSTRAP`, which first checks the Python and the modules it needs) imports
the SDK, attaches the rings and announces itself warm; then it waits for its `SonicConfig` as JSON on stdin (so
credentials never appear in argv or the environment, and a pool can start workers before it knows their
sessions). EOF on stdin without a config (the pool was shut down, or the host died) ends it quietly.

The records that cross the rings (user audio and commands up; assistant audio, the session's events and the
worker's control records down) are `novabridge.link`'s.

The worker exits when the uplink closes (the host is done or gone) or the session ends fatally.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from novabridge import link
from novabridge._novabridge import Ring
from novabridge.events import AudioOut, Error, Reconnecting, Renewed
from novabridge.exceptions import LinkError, RingClosed, RingFull
from novabridge.memory import TRIM_AFTER_S, release_freed_memory
from novabridge.ring import aread
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.errors import classify
from novabridge.sonic.session import SonicSession
from novabridge.turns import forget_oldest
from novabridge.worker.uplink_clock import UplinkClock

STATS_INTERVAL_S = 0.5
SETTLED_REPORT_S = 0.25
"""Audio sent since the last report that brings the next one forward. What a worker killed between two reports had
sent is given to its replacement again: after a burst (a reconnection's backlog), half a second could be seconds."""
SHUTDOWN_LIMIT_S = 3.0
"""Closing the session (polite end, receive tasks, transport) may take this long before the worker exits anyway."""
HOST_STALL_LIMIT_S = 5.0
"""A downlink that stays full this long means the host stopped reading: the session ends rather than grow."""


class _Downlink:
    """Writes to the host without ever blocking the loop: a full ring is waited out asynchronously."""

    def __init__(self, ring: Ring) -> None:
        self.ring = ring

    async def write(self, record: link.DownlinkRecord) -> None:
        kind, payload, flags = record.encode()
        deadline = time.monotonic() + HOST_STALL_LIMIT_S
        while True:
            try:
                self.ring.write(kind, payload, flags=flags, timeout=0.0)
                return
            except RingFull:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.002)


async def _uplink(uplink: Ring, downlink: _Downlink, session: SonicSession, clock: UplinkClock) -> None:
    while True:
        try:
            record = await aread(uplink)
        except RingClosed:
            return
        try:
            message = link.decode_uplink(record)
            if isinstance(message, link.UserAudio):
                await session.send_audio(message.pcm)
                clock.received(session.audio_bytes_accepted, record.t_ns)
            elif isinstance(message, link.TextCommand):
                await session.send_text(message.text)
            else:
                await session.send_tool_result(message.tool_use_id, message.result)
        except (LinkError, ValueError, TypeError) as error:  # a bad record or command is reported; the session goes on
            failure = Error("BadCommand", f"{type(error).__name__}: {error}", False)
            await downlink.write(link.SessionEvent(failure))


async def _downlink(downlink: _Downlink, session: SonicSession) -> None:
    turns: dict[str, int] = {}  # the recent turns' ordinals (RECENT_TURNS): audio of an older turn no longer comes
    started = 0
    async for event, received_ns in session.timed_events():
        if isinstance(event, AudioOut):
            ordinal = turns.get(event.turn_id)
            if ordinal is None:
                started += 1
                ordinal = turns[event.turn_id] = started % link.TURN_ORDINALS
                forget_oldest(turns)
                await downlink.write(link.TurnStart(ordinal, event.turn_id))
            await downlink.write(link.AssistantAudio(received_ns, ordinal, event.pcm))
        else:
            if isinstance(event, (Renewed, Reconnecting)):  # a stream was replaced: its memory is freed soon
                asyncio.get_running_loop().call_later(TRIM_AFTER_S, release_freed_memory)
            await downlink.write(link.SessionEvent(event))


class _Reports:
    """When the host learns how far the session has sent its audio (`link.UplinkTimings`).

    Every `STATS_INTERVAL_S`, or as soon as `SETTLED_REPORT_S` more has gone.
    """

    def __init__(self, clock: UplinkClock, input_rate: int) -> None:
        self.clock = clock
        self.reported = 0
        self.due = asyncio.Event()
        self._report_bytes = int(SETTLED_REPORT_S * input_rate) * 2

    def audio_sent(self, through: int, sent_ns: int) -> None:
        """The session's ``on_audio_sent``."""
        self.clock.sent(through, sent_ns)
        if through - self.reported >= self._report_bytes:
            self.due.set()


async def _stats(downlink: _Downlink, session: SonicSession, reports: _Reports) -> None:
    clock = reports.clock
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reports.due.wait(), STATS_INTERVAL_S)
        reports.due.clear()
        if clock.samples or session.audio_bytes_settled != reports.reported:
            reports.reported = session.audio_bytes_settled
            samples, clock.samples = clock.samples, []
            await downlink.write(link.UplinkTimings(tuple(samples), reports.reported))


async def serve(uplink: Ring, downlink_ring: Ring, config: SonicConfig) -> int:
    """Run one session between the rings until the host closes the uplink or the session ends; the exit status."""
    downlink = _Downlink(downlink_ring)
    clock = UplinkClock()
    reports = _Reports(clock, config.input_rate)
    session = SonicSession(config, on_audio_sent=reports.audio_sent)
    try:
        await session.start()
    except Exception as error:  # noqa: BLE001 - reported to the host as the session's fatal error
        failure = classify(error, config)
        await downlink.write(link.SessionEvent(Error(failure.kind, failure.message, True)))
        await _close(session)
        downlink_ring.close()
        return 1
    try:
        await downlink.write(link.Ready())
        up = asyncio.create_task(_uplink(uplink, downlink, session, clock))
        down = asyncio.create_task(_downlink(downlink, session))
        stats = asyncio.create_task(_stats(downlink, session, reports))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
        stats.cancel()
    finally:
        await _close(session)
    # What the session still had for the host goes out, unless the host is gone too.
    with contextlib.suppress(TimeoutError, RingClosed, RingFull):
        await asyncio.wait_for(down, SHUTDOWN_LIMIT_S)
    with contextlib.suppress(RingClosed, RingFull):
        await downlink.write(link.UplinkTimings(tuple(clock.samples), session.audio_bytes_settled))
    downlink_ring.close()
    return 0


async def _close(session: SonicSession) -> None:
    """Close the session, within a bound: the worker must exit even if the connection died under it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SHUTDOWN_LIMIT_S):
            await session.close()


def main() -> None:
    """Entry point: ``python -m novabridge.worker U1 U2 U3 D1 D2 D3``, then the config on stdin."""
    fds = [int(arg) for arg in sys.argv[1:7]]
    uplink, downlink = Ring.attach(*fds[:3]), Ring.attach(*fds[3:])
    link.write(downlink, link.Warm(), timeout=1.0)
    text = sys.stdin.read()
    if not text.strip():
        return  # released by the pool unused
    config = link.decode_config(text)
    sys.exit(asyncio.run(serve(uplink, downlink, config)))


if __name__ == "__main__":
    main()
