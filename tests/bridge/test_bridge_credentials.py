"""A `SonicBridge` whose worker signs with temporary credentials from the SDK's sources, rotated while it talks.

This interpreter is the host (3.11 in one pass, 3.12 in the other); the worker runs the real SDK, whose chain finds a
``credential_process`` in the shared config; the emulator, a subprocess, accepts what the `CredentialSource` issued
(``--credentials-file``), each set until its expiry.
"""

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from novabridge.events import Error, Reconnecting, Stage, Transcript
from novabridge.host.bridge import SonicBridge
from novabridge.host.pool import WorkerPool
from novabridge.sonic import SonicConfig
from support.audio import tone
from support.aws import CredentialSource, without_aws_settings
from support.emulator_process import EmulatorProcess, user_audio_reached
from support.interpreters import python_for

pytestmark = pytest.mark.interpreter_independent

FRAME = 640  # 20 ms at 16 kHz


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[CredentialSource]:
    """The only credentials: the shared config's credential process; new ones every 2 s, each lasting 4 s."""
    without_aws_settings(monkeypatch, tmp_path / "home")
    made = CredentialSource(tmp_path)
    made.configure(Path(os.environ["AWS_CONFIG_FILE"]))
    made.issue(lifetime_s=4.0)
    stop = threading.Event()

    def rotate() -> None:
        while not stop.wait(1.5):
            made.issue(lifetime_s=4.0)

    rotation = threading.Thread(target=rotate, name="credential-rotation")
    rotation.start()
    yield made
    stop.set()
    rotation.join()


def test_the_worker_signs_each_new_stream_with_what_the_source_gives_then(
    source: CredentialSource, tmp_path: Path
) -> None:
    emulator = EmulatorProcess(
        tmp_path / "recordings", "--credentials-file", str(source.issued_file), "--session-limit", "4"
    )
    pool = WorkerPool(python_for("312"), spare=0)  # its worker starts at the claim, with the environment above
    try:
        config = SonicConfig(
            endpoint_uri=emulator.endpoint_uri,
            ca_file=Path(emulator.ca_file),
            renewal_after_s=3.0,
            credentials_refresh_s=2.0,
        )
        sent = np.concatenate([np.concatenate([tone(0.5), np.zeros(24000, np.int16)]) for _ in range(3)])
        events = []
        with SonicBridge(config, worker_python=pool.python, pool=pool) as bridge:
            start = time.monotonic()
            for offset in range(0, len(sent), FRAME):
                bridge.send_audio(sent[offset : offset + FRAME])
                events += bridge.poll()
                time.sleep(max(0.0, start + (offset + FRAME) / 16000 - time.monotonic()))
            deadline = time.monotonic() + 10
            heard = 0
            while heard < 3 and time.monotonic() < deadline:
                events += bridge.poll(timeout=0.1)
                heard = sum(isinstance(e, Transcript) and e.role == "USER" and e.stage is Stage.FINAL for e in events)
        streams = sorted(int(p.stem.split("-")[1]) for p in (tmp_path / "recordings").glob("stream-*.json"))
        recordings = [emulator.recording(number) for number in streams]
    finally:
        pool.close()
        emulator.stop()

    assert heard == 3
    assert not [e for e in events if isinstance(e, Error) and e.fatal]
    assert not [e for e in events if isinstance(e, Reconnecting)]
    # Each stream was signed with the credentials the source gave when it opened, and outlived none of them.
    summaries = [summary for summary, _, _ in recordings]
    assert len(summaries) >= 3
    assert len({s["access_key_id"] for s in summaries}) >= 3
    for summary in summaries:
        assert summary["error"] is None
        assert isinstance(summary["credentials_left_s"], float)
        assert isinstance(summary["duration_s"], float)
        assert summary["duration_s"] < summary["credentials_left_s"]
    # The user's audio reached the service whole and in order across the streams (then silence filled in).
    audio = [user for _, user, _ in recordings]
    assert user_audio_reached(audio, sent.tobytes() + bytes(10**6), replay_limit=3 * 32000) >= sent.nbytes
