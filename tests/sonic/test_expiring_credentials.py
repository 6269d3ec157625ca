"""Temporary credentials that expire during a conversation: each new stream signs with fresh ones.

The session gives no keys; the SDK's chain finds a ``credential_process`` in the shared config, which prints what a
`CredentialSource` issued last, and the emulator accepts exactly what it issued, each until its expiry. A stream
lives 4 s (Nova Sonic's 8 minutes compressed 120-fold, so 10 s are a 20-minute conversation), and the credentials
expire far more often than real ones would: each set lasts 3.5 s, and the next is issued 2 s before it expires (EC2
makes an instance role's next credentials available at least 5 minutes ahead).
"""

import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "aws_sdk_bedrock_runtime", reason="the session and the emulator run on the Nova Sonic SDK (Python 3.12)"
)

from novabridge.emulator import Emulator
from novabridge.events import Error, Reconnecting, Renewed, SonicEvent, Stage, Transcript, TurnEnd
from novabridge.exceptions import CredentialsError, session_error
from novabridge.sonic import SonicConfig, SonicSession
from novabridge.sonic.config import RetryPolicy
from support.aws import CredentialSource, without_aws_settings
from support.emulator_in_process import EmulatorFactory
from support.emulator_process import user_audio_reached
from support.session_driver import Collector, stream, utterance
from support.sonic_client import silence, tone


async def rotate(source: CredentialSource, every_s: float, lifetime_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        source.issue(lifetime_s)


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CredentialSource:
    """No credentials but those of the source: the shared config's default profile runs its credential process."""
    without_aws_settings(monkeypatch, tmp_path / "home")
    made = CredentialSource(tmp_path)
    made.configure(Path(os.environ["AWS_CONFIG_FILE"]))
    return made


async def emulator_of(make_emulator: EmulatorFactory, source: CredentialSource, **options: Any) -> Emulator:
    return await make_emulator(options={"credentials": None, "credentials_file": source.issued_file, **options})


def user_final(event: SonicEvent) -> bool:
    return isinstance(event, Transcript) and event.role == "USER" and event.stage is Stage.FINAL


def config_for(emulator: Emulator, **settings: Any) -> SonicConfig:
    """A session with no keys of its own: the SDK's sources give them."""
    return SonicConfig(endpoint_uri=emulator.endpoint_uri, ca_file=Path(emulator.ca_file), **settings)


async def test_a_conversation_outlives_its_credentials_on_fresh_ones_and_loses_nothing(
    make_emulator: EmulatorFactory, source: CredentialSource
) -> None:
    source.issue(lifetime_s=3.5)
    emulator = await emulator_of(make_emulator, source, session_limit_s=4.0)
    rotation = asyncio.create_task(rotate(source, every_s=1.5, lifetime_s=3.5))
    # Renewed 2 s into a stream, or 1.5 s before its credentials expire: a connection takes up to a second here.
    session = SonicSession(config_for(emulator, renewal_after_s=2.0, credentials_refresh_s=1.5))
    started = time.time()
    try:
        await session.start()
        events = Collector(session)
        rng = np.random.default_rng(11)
        utterances = 9
        sent = b"".join(
            tone(float(rng.uniform(0.4, 0.8)), hz=float(rng.uniform(150, 300))) + silence(float(rng.uniform(3.5, 4.5)))
            for _ in range(utterances)
        )
        await stream(session, sent, speed=4.0)  # 40 s of audio in 10 s: 20 minutes of conversation
        # The last utterance's transcript may come well after its audio is sent, from a stream a renewal opens on a
        # loaded machine: closing 0.2 s after the audio, one CI run saw 8 of 9. A lost one never comes (counted below).
        with contextlib.suppress(TimeoutError):
            await events.wait_for(user_final, count=utterances, timeout=15)
    finally:
        await session.close()
        rotation.cancel()
    await events.finished()
    ended = time.time()

    assert not [e for e in events.of(Error) if e.fatal], events.of(Error)
    assert not events.of(Reconnecting), "every stream was replaced before its lifetime or its credentials ran out"
    assert len(events.of(Renewed)) == session.metrics.renewals
    assert session.metrics.credential_renewals >= 2
    assert emulator.rejected == [], "no request was signed with credentials past their expiry"
    recordings = emulator.recordings
    assert [r.outcome for r in recordings] == ["completed"] * len(recordings)
    assert all(r.error is None for r in recordings)
    # Each stream signed with credentials that outlived it, and the conversation went through several sets of them.
    for recording in recordings:
        assert recording.credentials_left_s is not None
        assert recording.closed_at is not None
        assert recording.closed_at - recording.opened_at < recording.credentials_left_s, recording.stream_id
    keys = [r.access_key_id for r in recordings]
    assert len(set(keys)) >= 4, keys
    assert sum(started < source.expiry(key) < ended for key in set(keys) if key is not None) >= 3
    # Every byte of the user's audio reached the service, in order, across the streams (a replay may repeat some).
    tail = session.metrics.silence_frames * 1024
    received = [bytes(r.user_audio) for r in recordings]
    assert user_audio_reached(received, sent + bytes(tail), replay_limit=3 * 32000) == len(sent) + tail
    # Each utterance was heard once: none lost at a handover, none heard twice from a replay.
    assert len([e for e in events.events if user_final(e)]) == utterances


async def test_credentials_nobody_renews_end_the_session_after_the_retry_policy(
    make_emulator: EmulatorFactory, source: CredentialSource
) -> None:
    source.issue(lifetime_s=2.0)
    emulator = await emulator_of(make_emulator, source, session_limit_s=6.0)
    retry = RetryPolicy(max_attempts=3, initial_backoff_s=0.1, max_backoff_s=0.4)
    session = SonicSession(config_for(emulator, renewal_after_s=3.0, credentials_refresh_s=1.5, retry=retry))
    await session.start()
    events = Collector(session)
    started = time.monotonic()
    feeding = asyncio.create_task(stream(session, utterance(pause=8.0), speed=1.0))
    try:
        await events.finished(timeout=15.0)
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)  # it meets the closed session, or is cancelled
        await session.close()
    took = time.monotonic() - started

    # The stream went on while its credentials held; the renewal found nothing fresher to move to, and once they had
    # expired a new stream was tried as often as the policy allows, then the session ended with the cause. Nothing
    # was signed with the expired credentials (the SDK refuses to).
    fatal = [e for e in events.of(Error) if e.fatal]
    assert len(fatal) == 1
    assert fatal[0].kind == "ExpiredCredentials"
    assert "gave up after 3 attempts" in fatal[0].message
    assert "Fix: get fresh ones" in fatal[0].message
    assert isinstance(session_error(fatal[0].kind, fatal[0].message), CredentialsError)
    assert emulator.rejected == []
    assert len(emulator.recordings) == 1
    assert session.metrics.credential_renewals == 0
    assert 3.0 <= took < 8.0


async def test_a_reconnection_refused_for_expired_credentials_succeeds_once_they_are_rotated(
    make_emulator: EmulatorFactory, source: CredentialSource
) -> None:
    source.issue(lifetime_s=1.0)
    emulator = await emulator_of(make_emulator, source)
    retry = RetryPolicy(max_attempts=4, initial_backoff_s=0.2, max_backoff_s=0.4)
    session = SonicSession(config_for(emulator, retry=retry))
    await session.start()
    events = Collector(session)

    await asyncio.sleep(max(0.0, source.expiry(source.issued[0]["AccessKeyId"]) - time.time()))
    emulator.inject("instability", after_s=0.0)  # the stream fails after its credentials expired
    try:
        feeding = asyncio.create_task(stream(session, utterance(pause=1.5)))
        # The first attempt fails (the source still gives the expired credentials); then they are rotated.
        await events.wait_for(lambda e: isinstance(e, Reconnecting) and e.attempt == 2)
        source.issue(lifetime_s=600.0)
        await feeding
        await events.wait_for(lambda e: isinstance(e, TurnEnd) and e.stop_reason == "END_TURN", timeout=15.0)
    finally:
        await session.close()

    assert "ExpiredCredentials" in events.of(Reconnecting)[1].reason
    assert not [e for e in events.of(Error) if e.fatal]
    assert session.metrics.reconnects == 1
    assert [r.access_key_id for r in emulator.recordings] == [d["AccessKeyId"] for d in source.issued]
