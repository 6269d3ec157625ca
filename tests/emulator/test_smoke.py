import asyncio
import hashlib
import json
from collections.abc import Callable
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


async def one_answered_turn(emulator: Emulator, audio: bytes, *, while_open: Callable[[], None]) -> None:
    """A stream that speaks ``audio`` and ends once it is answered; ``while_open`` runs before it ends."""
    client = SonicTestClient(emulator)
    await client.open()
    try:
        await client.start_conversation()
        await client.stream_audio(audio)
        await client.wait_for_name("completionEnd")
        while_open()
        await client.end()
        assert await client.wait_closed() is None
    finally:
        await client.close()


async def test_a_server_that_keeps_no_recordings_holds_no_audio_and_writes_it_all(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    # The CLI's emulator held every open stream's audio in memory (megabytes a stream by its end) besides writing it
    # to --record-dir: in a soak run its RSS rose and fell by tens of MiB with the streams' ages.
    emulator = await make_emulator(keep_recordings=False, record_dir=tmp_path)
    user = tone(0.6) + silence(0.5)

    def nothing_held() -> None:
        [recording] = emulator.recordings
        assert (recording.user_audio, recording.assistant_audio) == (bytearray(), bytearray())
        assert [turn.assistant_audio for turn in recording.turns] == [bytearray()]

    await one_answered_turn(emulator, user, while_open=nothing_held)
    summary = json.loads((tmp_path / "stream-1.json").read_text())
    recorded_user = (tmp_path / "stream-1-user.pcm").read_bytes()
    recorded_assistant = (tmp_path / "stream-1-assistant.pcm").read_bytes()
    assert recorded_user.startswith(user)
    assert len(recorded_assistant) > 0
    assert summary["user_audio_bytes"] == len(recorded_user)
    assert summary["user_audio_sha256"] == hashlib.sha256(recorded_user).hexdigest()
    assert summary["assistant_audio_bytes"] == len(recorded_assistant)
    assert summary["assistant_audio_sha256"] == hashlib.sha256(recorded_assistant).hexdigest()
    assert [turn["assistant_audio_bytes"] for turn in summary["turns"]] == [len(recorded_assistant)]


async def test_a_server_that_keeps_no_recordings_forgets_ended_streams(
    make_emulator: EmulatorFactory, tmp_path: Path
) -> None:
    emulator = await make_emulator(keep_recordings=False, record_dir=tmp_path)

    def still_there() -> None:
        assert len(emulator.recordings) == 1  # open streams are still there

    await one_answered_turn(emulator, tone(0.6) + silence(0.5), while_open=still_there)
    for _ in range(100):
        if not emulator.recordings:
            break
        await asyncio.sleep(0.02)
    assert emulator.recordings == []
    assert (tmp_path / "stream-1.json").is_file()  # what --record-dir asked for is still written
