import asyncio
from pathlib import Path

import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from novabridge.emulator import Emulator
from support import docs_events as ev
from support.emulator_in_process import ClientFactory, EmulatorFactory
from support.sonic_client import SonicTestClient, silence, tone


async def test_one_spoken_turn_is_answered_through_the_sdk(emulator: Emulator, connect: ClientFactory) -> None:
    client = await connect()
    await client.start_conversation()
    await client.stream_audio(tone(0.8) + silence(0.6))
    await client.wait_for_name("completionEnd")
    await client.end()
    assert await client.wait_closed() is None
    assert client.texts("USER") == ["(speech, 0.8 seconds)"]
    recording = emulator.recordings[0]
    assert recording.outcome == "completed"
    assert bytes(recording.user_audio) == tone(0.8) + silence(0.6)
    assert client.audio_out() == bytes(recording.assistant_audio)
    assert recording.model_id == ev.NOVA_2


def test_the_threaded_form_serves_from_its_own_loop() -> None:
    from novabridge.emulator import ThreadedEmulator

    with ThreadedEmulator() as threaded:
        assert threaded.endpoint_uri.startswith("https://127.0.0.1:")
        assert threaded.active_streams == 0
        ca_file = threaded.ca_file
    assert not Path(ca_file).exists()


async def test_a_server_that_keeps_no_recordings_forgets_ended_streams(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator = await make_emulator(keep_recordings=False, record_dir=tmp_path)
    client = SonicTestClient(emulator)
    await client.open()
    try:
        await client.start_conversation()
        await client.stream_audio(tone(0.6) + silence(0.5))
        assert len(emulator.recordings) == 1  # open streams are still there
        await client.wait_for_name("completionEnd")
        await client.end()
        assert await client.wait_closed() is None
    finally:
        await client.close()
    for _ in range(100):
        if not emulator.recordings:
            break
        await asyncio.sleep(0.02)
    assert emulator.recordings == []
    assert (tmp_path / "stream-1.json").is_file()  # what --record-dir asked for is still written
