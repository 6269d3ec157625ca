"""The OpenAvatarChat handler after its session ends with a fatal error, inside OAC's real engine: a cause that can
pass (the endpoint down) is retried until the session is back and answers; one that cannot (a model the endpoint does
not offer) is one ERROR line and nothing more."""

import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.audio import tone
from support.emulator_process import EmulatorProcess
from support.oac import oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.data_models.chat_data_type import ChatDataType
from novabridge.exceptions import recoverable
from novabridge.sonic.models import NOVA_SONIC_V1
from support.oac_engine import Session, ends
from support.oac_engine import make_handler as make_handler  # noqa: PLC0414 - a fixture, shared by its name

Log = list[tuple[str, str]]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def lines(log: Log, level: str, session: str, *words: str) -> list[str]:
    return [m for lv, m in log if lv == level and f"session {session}" in m and all(w in m for w in words)]


def utterance(seconds: float) -> np.ndarray:
    return np.concatenate([tone(seconds), np.zeros(16000 * 2, np.int16)])


def test_a_session_comes_back_with_its_endpoint_and_answers(tmp_path: Path, make_handler: Any, oac_log: Log) -> None:
    certs = tmp_path / "certs"  # kept, so the restarted emulator is trusted with the same ca_file
    first = EmulatorProcess(tmp_path / "before", "--certs-dir", str(certs))
    port = urllib.parse.urlsplit(first.endpoint_uri).port
    assert port is not None
    second: EmulatorProcess | None = None
    session = Session(make_handler(first, reconnect_attempts=2), "oac-back")
    try:
        session.speak(utterance(0.6))
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        first.stop()
        # The session's own two reconnections give up; the handler starts a new session 1 s later, 2 s after that, ...
        wait_until(lambda: bool(lines(oac_log, "WARNING", "oac-back", "a new session in")), 40, "no retry")
        session.speak(np.zeros(8000, np.int16))  # dropped while no session runs
        assert session.nova.dropped_inputs > 0
        second = EmulatorProcess(tmp_path / "after", "--certs-dir", str(certs), "--port", str(port))
        assert (second.endpoint_uri, second.ca_file) == (first.endpoint_uri, first.ca_file)
        wait_until(lambda: any("oac-back is back" in m for _, m in oac_log), 40, "the session did not come back")
        session.speak(utterance(0.8))
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 2), timeout=30)
    finally:
        session.stop()
        if second is not None:
            second.stop()
    humans = [d.data.get_main_data() for d in seen if d.type == ChatDataType.HUMAN_TEXT and d.data]
    assert [h for h in humans if h] == ["(speech, 0.6 seconds)", "(speech, 0.8 seconds)"]
    # One WARNING per attempt, each naming a cause that can pass; never an ERROR.
    retries = lines(oac_log, "WARNING", "oac-back", "a new session in")
    assert 1 <= len(retries) <= 3, retries
    assert all(recoverable(line.split(": ")[1]) for line in retries), retries
    assert "EndpointUnreachable" in retries[0]
    assert not [m for level, m in oac_log if level == "ERROR"]
    # The new session was given the conversation so far.
    assert second is not None
    recording, _, _ = second.recording(1)
    history = [e["event"]["textInput"]["content"] for e in recording["input_events"] if "textInput" in e["event"]]  # type: ignore[attr-defined]
    assert "(speech, 0.6 seconds)" in history


@pytest.fixture
def nova_v1_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An endpoint that offers Nova Sonic v1 only: the handler's Nova 2 is an invalid model identifier there."""
    process = EmulatorProcess(tmp_path / "recordings", "--models", NOVA_SONIC_V1)
    yield process
    process.stop()


def test_a_model_the_endpoint_does_not_offer_is_one_error_and_no_retry(
    nova_v1_emulator: EmulatorProcess, make_handler: Any, oac_log: Log
) -> None:
    session = Session(make_handler(nova_v1_emulator), "oac-model")
    try:
        thread = session.nova.thread
        assert thread is not None
        thread.join(15)
        assert not thread.is_alive(), "the session's thread ended: nothing more is tried"
        session.speak(np.zeros(8000, np.int16))  # OAC keeps sending; the handler drops it quietly
        assert session.nova.dropped_inputs > 0
        pump = session.session.handlers["NovaSonic"].pump_thread
        assert pump is not None
        assert pump.is_alive()
    finally:
        session.stop()
    errors = lines(oac_log, "ERROR", "oac-model")
    assert len(errors) == 1, errors
    assert "ValidationException" in errors[0]
    assert "The provided model identifier is invalid." in errors[0]
    assert "not retried" in errors[0]
    assert not lines(oac_log, "WARNING", "oac-model")
