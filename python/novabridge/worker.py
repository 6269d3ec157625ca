"""The worker process: one `SonicSession`, joined to the host by two shared-memory rings.

``python -m novabridge.worker UPLINK_FDS DOWNLINK_FDS`` (three descriptors each, passed with ``pass_fds``) reads
its `SonicConfig` as JSON on stdin (so credentials never appear in argv or the environment), then:

- uplink (host -> worker): AUDIO records are s16le PCM at ``config.input_rate``; EVENT records are JSON commands
  ``{"op": "text", "text": ...}`` and ``{"op": "tool_result", "tool_use_id": ..., "result": ...}``.
- downlink (worker -> host): AUDIO records carry assistant PCM at ``config.output_rate`` with the turn's ordinal in
  ``flags``; EVENT records carry the other typed events as JSON (`novabridge.protocol.event_to_json`).

The worker exits when the uplink closes (the host is done or gone) or the session ends fatally.
"""

from __future__ import annotations

import asyncio
import json
import sys

from novabridge import protocol
from novabridge._novabridge import Ring
from novabridge.exceptions import RingClosed
from novabridge.ring import RecordKind, aread
from novabridge.sonic.config import SonicConfig
from novabridge.sonic.session import SonicSession


async def _uplink(uplink: Ring, session: SonicSession) -> None:
    while True:
        try:
            record = await aread(uplink)
        except RingClosed:
            return
        if record.kind == RecordKind.AUDIO:
            await session.send_audio(record.payload)
        elif record.kind == RecordKind.EVENT:
            command = json.loads(record.payload)
            if command.get("op") == "text":
                await session.send_text(command["text"])
            elif command.get("op") == "tool_result":
                await session.send_tool_result(command["tool_use_id"], command["result"])


async def _downlink(downlink: Ring, session: SonicSession) -> None:
    turns: dict[str, int] = {}
    async for event in session.events():
        if isinstance(event, protocol.AudioOut):
            ordinal = turns.get(event.turn_id)
            if ordinal is None:
                ordinal = turns[event.turn_id] = (len(turns) + 1) & 0xFFFF
                announce = {"type": "AudioTurn", "turn_id": event.turn_id, "ordinal": ordinal, "rate": event.rate}
                _write(downlink, RecordKind.EVENT, json.dumps(announce).encode())
            _write(downlink, RecordKind.AUDIO, event.pcm, flags=ordinal)
        else:
            _write(downlink, RecordKind.EVENT, protocol.event_to_json(event))


def _write(ring: Ring, kind: int, payload: bytes, *, flags: int = 0) -> None:
    # The host drains the downlink continuously; a full ring means the host stalled, so wait for it (bounded).
    ring.write(kind, payload, flags=flags, timeout=5.0)


async def serve(uplink: Ring, downlink: Ring, config: SonicConfig) -> None:
    """Run one session between the rings until the host closes the uplink or the session ends."""
    async with SonicSession(config) as session:
        _write(downlink, RecordKind.CONTROL, b'{"ready": true}')
        up = asyncio.create_task(_uplink(uplink, session))
        down = asyncio.create_task(_downlink(downlink, session))
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        up.cancel()
    await down
    downlink.close()


def main() -> None:
    """Entry point: ``python -m novabridge.worker U1 U2 U3 D1 D2 D3`` with the config on stdin."""
    fds = [int(arg) for arg in sys.argv[1:7]]
    uplink, downlink = Ring.attach(*fds[:3]), Ring.attach(*fds[3:])
    config = SonicConfig.model_validate_json(sys.stdin.read())
    asyncio.run(serve(uplink, downlink, config))


if __name__ == "__main__":
    main()
