"""The emulator as a subprocess (`novabridge emulator` on the 3.12 interpreter), and the accounting of what its
streams heard."""

import json
import time
from pathlib import Path

from novabridge.emulator import process as emulator_process

from support.interpreters import python_for


class EmulatorProcess(emulator_process.EmulatorProcess):
    """`novabridge emulator` on the 3.12 interpreter, fast timing, recording each stream to ``record_dir``."""

    def __init__(self, record_dir: Path, *args: str) -> None:
        self.record_dir = record_dir
        timing = ["--endpointing", "0.3", "--think", "0.05", "--speed", "20"]
        super().__init__(python_for("312"), [*timing, "--record-dir", str(record_dir), *args])

    def recording(self, stream_id: int, timeout: float = 10.0) -> tuple[dict[str, object], bytes, bytes]:
        path = self.record_dir / f"stream-{stream_id}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert time.monotonic() < deadline, f"no recording of stream {stream_id}"
            time.sleep(0.05)
        time.sleep(0.1)
        user = (self.record_dir / f"stream-{stream_id}-user.pcm").read_bytes()
        assistant = (self.record_dir / f"stream-{stream_id}-assistant.pcm").read_bytes()
        return json.loads(path.read_text()), user, assistant


def user_audio_reached(streams: list[bytes], sent: bytes, replay_limit: int) -> int:
    """How far into ``sent`` the user audio of successive streams reached, each continuing where the last stopped.

    A stream may first repeat up to ``replay_limit`` bytes its predecessor had (a replay); anything else, a gap or
    a reordering, fails.
    """
    position = 0
    for number, audio in enumerate(streams, start=1):
        for overlap in range(min(len(audio), replay_limit, position), -1, -2):
            if (
                audio[:overlap] == sent[position - overlap : position]
                and audio[overlap:] == sent[position : position + len(audio) - overlap]
            ):
                break
        else:
            raise AssertionError(f"stream {number} is not a continuation at byte {position}")
        position += len(audio) - overlap
    return position
