"""The wheel with its `sonic` and `emulator` extras, in a fresh Python 3.12 venv: the console script serves, and a
SonicSession from that venv converses with it over the real SDK."""

import json
import os
import select
import signal
import subprocess
from pathlib import Path

import pytest
from support.wheel import base_python, built_wheel

pytestmark = pytest.mark.interpreter_independent

SESSION_SCRIPT = """
import asyncio, json, sys
import numpy as np
from novabridge.sonic import SonicConfig, SonicSession
from novabridge.events import Transcript, TurnEnd

async def main():
    endpoint, ca = sys.argv[1], sys.argv[2]
    config = SonicConfig(endpoint_uri=endpoint, ca_file=ca, aws_access_key_id="k", aws_secret_access_key="s")
    texts = []
    async with SonicSession(config) as session:
        t = np.arange(16000 * 6 // 10) / 16000
        speech = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2").tobytes() + bytes(32000 * 4)
        for offset in range(0, len(speech), 640):
            await session.send_audio(speech[offset:offset + 640])
            await asyncio.sleep(0.005)
        async for event in session.events():
            if isinstance(event, Transcript):
                texts.append([event.role, event.text])
            if isinstance(event, TurnEnd):
                break
    print(json.dumps(texts))

asyncio.run(main())
"""


@pytest.mark.timeout(240)
def test_wheel_extras_serve_and_converse_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = built_wheel()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    venv = tmp_path / "venv"
    subprocess.run([base_python("312"), "-m", "venv", str(venv)], check=True, capture_output=True, timeout=60, env=env)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--disable-pip-version-check", f"{wheel}[sonic,emulator]"],
        check=False,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    emulator = subprocess.Popen(
        [str(venv / "bin" / "novabridge"), "emulator", "--endpointing", "fast", "--think", "0.05", "--speed", "20"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=str(tmp_path),
    )
    try:
        assert emulator.stdout is not None
        ready, _, _ = select.select([emulator.stdout], [], [], 30)
        assert ready, "the emulator printed no ready line"
        info = json.loads(emulator.stdout.readline())
        assert info["endpoint_uri"].startswith("https://127.0.0.1:")
        run = subprocess.run(
            [str(python), "-c", SESSION_SCRIPT, info["endpoint_uri"], info["ca_file"]],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=str(tmp_path),
        )
        assert run.returncode == 0, run.stderr
        texts = json.loads(run.stdout)
        assert texts[0] == ["USER", "(speech, 0.6 seconds)"]
        assert ["ASSISTANT", "This is answer 1."] in texts
    finally:
        emulator.send_signal(signal.SIGTERM)
        try:
            status = emulator.wait(timeout=10)
        finally:
            emulator.kill()
            emulator.communicate()
    assert status == 0
