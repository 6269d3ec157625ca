"""SonicBridge across processes: this interpreter as the host (3.11 in one pass, 3.12 in the other), a 3.12 worker,
the emulator as a 3.12 subprocess, over the real SDK, HTTP/2 and TLS."""

import os
import re
import signal
import subprocess
import sys
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from novabridge import Resampler, link, pcm
from novabridge.events import AudioOut, Error, Interrupted, Reconnecting, SonicEvent, ToolCall, Transcript, TurnEnd
from novabridge.exceptions import WORKER_FAILED, InvalidInput, RecordTooLarge
from novabridge.host.bridge import LATENCY_SAMPLES, MAX_RESTARTS_UNREADY, BridgeError, Latency, SonicBridge, _LatencyLog
from novabridge.host.pool import WorkerPool
from novabridge.sonic import SonicConfig
from novabridge.turns import RECENT_TURNS
from support.audio import tone
from support.emulator_process import EmulatorProcess, user_audio_reached
from support.interpreters import python_for, this_version

FRAME = 320  # 20 ms at 16 kHz
CLOSE_WITHIN_S = 1.0 + 0.2
"""`close()` waits at most a second for the worker (docs/bridge.md), then a SIGKILL and the reaping take a moment."""


def converse(bridge: SonicBridge, audio: np.ndarray, turns: int, timeout: float = 20.0) -> list[SonicEvent]:
    """Stream ``audio`` at about 4x real time in 20 ms frames of OAC's shape, collecting events until ``turns``
    `TurnEnd` events came."""
    return until(bridge, feed(bridge, audio), lambda events: turns_ended(events) >= turns, timeout)


def feed(bridge: SonicBridge, audio: np.ndarray) -> list[SonicEvent]:
    """Stream ``audio`` at about 4x real time in 20 ms frames of OAC's shape; the events that came meanwhile."""
    events: list[SonicEvent] = []
    for offset in range(0, len(audio), FRAME):
        bridge.send_audio(audio[offset : offset + FRAME].reshape(1, -1))
        time.sleep(0.005)
        events += bridge.poll()
    return events


def until(
    bridge: SonicBridge, events: list[SonicEvent], done: Callable[[list[SonicEvent]], bool], timeout: float
) -> list[SonicEvent]:
    """``events`` and those that follow, until ``done`` says they are enough."""
    deadline = time.monotonic() + timeout
    while not done(events):
        assert time.monotonic() < deadline, [e for e in events if not isinstance(e, AudioOut)]
        events += bridge.poll(timeout=0.1)
    return events


def turns_ended(events: list[SonicEvent]) -> int:
    return sum(isinstance(e, TurnEnd) for e in events)


def without_fill(user_pcm: bytes) -> bytes:
    """A stream's recorded user audio without the session's silence fill: the tests send no zero sample."""
    samples = np.frombuffer(user_pcm, np.int16)
    return bytes(samples[samples != 0])


def test_a_conversation_through_the_worker_accounts_for_every_byte(emulator: EmulatorProcess) -> None:
    sent = np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16), tone(0.5, 300), np.zeros(16000 * 4, np.int16)])
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        events = converse(bridge, sent, turns=2)
    summary, user, assistant = emulator.recording(1)
    assert summary["outcome"] == "completed"
    # Everything sent arrived once and in order; after it, only the session's silence keep-alive.
    assert user[: sent.nbytes] == sent.tobytes()
    assert user[sent.nbytes :] == bytes(len(user) - sent.nbytes)
    received = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    assert received == assistant
    assert {e.rate for e in events if isinstance(e, AudioOut)} == {24000}
    users = [e.text for e in events if isinstance(e, Transcript) and e.role == "USER"]
    assert users == ["(speech, 0.6 seconds)", "(speech, 0.5 seconds)"]


def test_worker_killed_mid_conversation_is_replaced_and_the_conversation_resumes(emulator: EmulatorProcess) -> None:
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        pid = bridge.metrics().worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        events: list[SonicEvent] = []
        deadline = time.monotonic() + 30
        while not any(isinstance(e, Reconnecting) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.2)
        assert bridge.metrics().restarts == 1
        later = converse(bridge, np.concatenate([tone(0.5, 300), np.zeros(16000 * 4, np.int16)]), turns=1)
        assert any(isinstance(e, Transcript) and e.role == "ASSISTANT" for e in later)
    summary, _, _ = emulator.recording(2)
    history = [
        e["event"]["textInput"]["content"]
        for e in summary["input_events"]  # type: ignore[attr-defined]
        if "textInput" in e["event"]
    ]
    # The new worker's stream started from the transcript the host kept.
    assert "(speech, 0.6 seconds)" in history
    assert any("This is answer 1" in text for text in history)


def test_a_typed_turn_whose_worker_dies_is_asked_again_by_the_replacement(emulator: EmulatorProcess) -> None:
    # Found by the soak run: the replacement heard the spoken turn in progress (replayed) but not a typed one.
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        bridge.send_text("What can you do?")
        events = until(bridge, [], lambda got: any(isinstance(e, AudioOut) for e in got), timeout=20)
        pid = bridge.metrics().worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        events = until(bridge, events, lambda got: any(isinstance(e, TurnEnd) for e in got), timeout=30)
        assert bridge.metrics().restarts == 1
        assert ("USER", "What can you do?") in [(m.role, m.text) for m in bridge.history]
    summary, _, _ = emulator.recording(2)
    turns: list[dict[str, Any]] = summary["turns"]  # type: ignore[assignment]
    assert [(t["source"], t["user_text"]) for t in turns] == [("text", "What can you do?")]
    assert turns[0]["answer"]
    assert not turns[0]["interrupted"]


def test_text_typed_after_speech_held_for_a_replacement_is_heard_after_that_speech(emulator: EmulatorProcess) -> None:
    # The session's defect that a soak run found (a typed turn heard before the speech queued ahead of it) in the
    # bridge: the replacement was asked the typed turns first, then given the audio held while the worker was dead.
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        kill_worker_and_wait_for_its_exit(bridge)
        speech = np.concatenate([tone(0.6), np.zeros(16000 * 3 // 2, np.int16)])
        for offset in range(0, len(speech), FRAME):
            bridge.send_audio(speech[offset : offset + FRAME])
        bridge.send_text("And you?")
        events = converse(bridge, np.zeros(16000 * 6, np.int16), turns=2, timeout=30)
    assert bridge.metrics().restarts == 1
    assert [e for e in events if isinstance(e, Error)] == []
    summary, _, _ = emulator.recording(2)
    turns: list[dict[str, Any]] = summary["turns"]  # type: ignore[assignment]
    assert [(t["source"], t["user_text"]) for t in turns] == [("speech", "(speech, 0.6 seconds)"), ("text", "And you?")]


def test_a_spoken_turn_whose_worker_dies_long_after_it_is_asked_again_by_the_replacement(tmp_path: Path) -> None:
    # Found by the soak run: the replacement got the last 3 s of audio, but the question, answered after a slow
    # tool, was further back, and a history is not answered. It is asked again as text (Nova 2).
    scenario = tmp_path / "scenario.json"
    scenario.write_text('{"turns": [{"assistant": "It says {result[v]}.", "tool": {"name": "lookup"}}]}')
    emulator = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario), "--speed", "1")
    config = emulator.config(tools=[{"name": "lookup", "description": "Look it up."}])
    silence = np.zeros(FRAME, np.int16)
    try:
        with SonicBridge(config, worker_python=python_for("312")) as bridge:
            events = feed(bridge, tone(0.6))
            tool_calls = 0
            killed = False
            deadline = time.monotonic() + 40
            while not any(isinstance(e, TurnEnd) and e.stop_reason == "END_TURN" for e in events):
                assert time.monotonic() < deadline, [e for e in events if not isinstance(e, AudioOut)]
                bridge.send_audio(silence)
                time.sleep(0.005)
                for event in bridge.poll():
                    events.append(event)
                    if isinstance(event, ToolCall):
                        tool_calls += 1
                        # 4 s of audio after the question before its answer: more than the 3 s replayed.
                        events += feed(bridge, np.zeros(4 * 16000, np.int16))
                        bridge.send_tool_result(event.tool_use_id, {"v": tool_calls})
                    elif isinstance(event, AudioOut) and not killed:
                        pid = bridge.metrics().worker_pid
                        assert pid is not None
                        os.kill(pid, signal.SIGKILL)
                        killed = True
            assert bridge.metrics().restarts == 1
        summary, _, _ = emulator.recording(2)
    finally:
        emulator.stop()
    turns: list[dict[str, Any]] = summary["turns"]  # type: ignore[assignment]
    assert [(t["source"], t["user_text"], t["answer"]) for t in turns] == [
        ("text", "(speech, 0.6 seconds)", "It says 2.")
    ]


def test_host_rate_and_float_input_are_resampled_for_the_service(emulator: EmulatorProcess) -> None:
    t = np.arange(48000) / 48000
    speech = (np.sin(2 * np.pi * 220 * t) * 0.25).astype(np.float32)
    audio = np.concatenate([speech[: 48000 * 6 // 10], np.zeros(48000 * 4, np.float32)])
    with SonicBridge(emulator.config(), worker_python=python_for("312"), host_rate=48000, out_rate=16000) as bridge:
        events: list[SonicEvent] = []
        for offset in range(0, len(audio), 960):
            bridge.send_audio(audio[offset : offset + 960])
            time.sleep(0.005)
            events += bridge.poll()
        deadline = time.monotonic() + 20
        while not any(isinstance(e, TurnEnd) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.1)
    _, user, assistant = emulator.recording(1)
    # 48 kHz float in, 16 kHz int16 to the service: the very samples the library's resampler and conversion give
    # (a streaming resampler's output does not depend on how its input was cut), then only the keep-alive's silence.
    to_service = pcm.to_int16(Resampler(48000, 16000, dtype="float32").process(audio)).astype("<i2").tobytes()
    assert len(to_service) == len(audio) // 3 * 2  # one 16 kHz sample for every three, as bytes
    assert user[: len(to_service)] == to_service
    assert user[len(to_service) :] == bytes(len(user) - len(to_service))
    # 24 kHz from the service, 16 kHz to the host: the same check the other way.
    out = b"".join(e.pcm for e in events if isinstance(e, AudioOut))
    to_host = Resampler(24000, 16000).process(np.frombuffer(assistant, "<i2")).astype("<i2").tobytes()
    assert out == to_host
    assert {e.rate for e in events if isinstance(e, AudioOut)} == {16000}


def test_bad_input_raises_typed_errors_and_keeps_the_bridge_working(emulator: EmulatorProcess) -> None:
    bridge = SonicBridge(emulator.config(), worker_python=python_for("312"))
    with pytest.raises(BridgeError, match="not started"):
        bridge.send_audio(np.zeros(320, np.int16))
    with bridge:
        with pytest.raises(TypeError, match="int16 or float32"):
            bridge.send_audio(np.zeros(320, np.float64))
        with pytest.raises(TypeError, match="numpy array"):
            bridge.send_audio(b"\x00\x00")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="mono"):
            bridge.send_audio(np.zeros((2, 320), np.int16))
        with pytest.raises(ValueError, match=r"finite|NaN"):
            bridge.send_audio(np.full(320, np.nan, np.float32))
        with pytest.raises(ValueError, match="non-empty"):
            bridge.send_text("")
        events = converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        assert any(isinstance(e, TurnEnd) for e in events)
        started = time.monotonic()
    assert time.monotonic() - started < CLOSE_WITHIN_S
    with pytest.raises(BridgeError, match="closed"):
        bridge.poll()


def test_close_under_load_is_bounded_and_leaves_no_process(emulator: EmulatorProcess) -> None:
    bridge = SonicBridge(emulator.config(), worker_python=python_for("312"))
    bridge.start()
    pid = bridge.metrics().worker_pid
    assert pid is not None
    for offset in range(0, 16000 * 2, FRAME):
        bridge.send_audio(tone(2.0)[offset : offset + FRAME])
    started = time.monotonic()
    bridge.close()
    assert time.monotonic() - started < CLOSE_WITHIN_S
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    bridge.close()  # idempotent


def test_a_host_older_than_312_must_name_a_worker_python(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setattr(sys, "version_info", (3, 11, 7, "final", 0))
    with pytest.raises(BridgeError, match=r"Python >= 3\.12"):
        SonicBridge(SonicConfig(aws_access_key_id="a", aws_secret_access_key="b"))


def test_start_takes_a_warm_worker_and_audio_sent_before_ready_is_not_lost(emulator: EmulatorProcess) -> None:
    pool = WorkerPool(python_for("312"), spare=1)
    try:
        assert pool.wait_warm(60) == 1
        warm = pool.spare_pids()
        bridge = SonicBridge(emulator.config(), worker_python=python_for("312"), pool=pool)
        started = time.monotonic()
        bridge.start(wait=False)
        took = time.monotonic() - started
        with bridge:
            assert bridge.metrics().worker_pid in warm  # no process was started for this session
            assert took < 0.5, took
            sent = np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)])
            events = converse(bridge, sent, turns=1)
            assert bridge.ready
        assert pool.wait_warm(60) == 1  # the pool made a new spare
        assert pool.spare_pids().isdisjoint(warm)
    finally:
        pool.close()
    _summary, user, _ = emulator.recording(1)
    assert user[: sent.nbytes] == sent.tobytes()
    assert [e.text for e in events if isinstance(e, Transcript) and e.role == "USER"] == ["(speech, 0.6 seconds)"]


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, read from /proc independently of the library."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_metrics_report_hop_latency_each_way_first_audio_and_worker_cpu(emulator: EmulatorProcess) -> None:
    before_start = time.monotonic()
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        started = time.monotonic()
        pid = bridge.metrics().worker_pid
        assert pid is not None
        cpu_at_start = _cpu_seconds(pid)
        events = converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        time.sleep(0.6)  # the worker reports its uplink timings twice a second
        bridge.poll(timeout=0.1)
        metrics = bridge.metrics()
        measured = time.monotonic()
        cpu_total = _cpu_seconds(pid)
    audio = [e for e in events if isinstance(e, AudioOut)]
    assert len(metrics.downlink.samples_s) == metrics.downlink.taken == len(audio)
    assert metrics.uplink.taken == len(metrics.uplink.samples_s)
    # 4.6 s of audio in 32 ms frames: one timing per frame of the caller's audio (silence fill is not timed).
    assert len(metrics.uplink.samples_s) >= 4.6 / 0.032 - 2
    for latency in (metrics.uplink, metrics.downlink):
        assert latency.p50_s is not None
        assert latency.p99_s is not None
        assert min(latency.samples_s) > 0
        assert latency.p50_s <= latency.p99_s <= max(latency.samples_s)
        # Typically a hop takes well under a millisecond; one 32 ms frame is the most a real-time link can afford.
        assert latency.p50_s < 0.032
    assert len(metrics.first_audio_s) == 1
    assert 0.0 < metrics.first_audio_s[0] < 5.0
    # The worker's CPU since it took the session, as /proc tells it: at least what it used while the test watched,
    # at most all it used; the percentage is over the wall time since it took the session.
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert cpu_total - cpu_at_start - tick <= metrics.worker_cpu_s <= cpu_total + tick
    assert metrics.worker_cpu_s > 0
    wall_most, wall_least = measured - before_start, measured - started
    assert 100 * metrics.worker_cpu_s / wall_most <= metrics.worker_cpu_percent
    assert metrics.worker_cpu_percent <= 100 * metrics.worker_cpu_s / wall_least
    assert 0 <= metrics.uplink_fill < 1
    assert 0 <= metrics.downlink_fill < 1


def test_latency_since_gives_the_samples_of_an_interval_while_they_are_kept() -> None:
    earlier = Latency((0.1, 0.2), taken=2)
    later = Latency((0.2, 0.3, 0.4, 0.5), taken=5)  # one sample no longer kept
    assert later.since(earlier) == Latency((0.3, 0.4, 0.5), taken=3)
    assert later.since(later) == Latency((), taken=0)
    assert later.since(Latency((), taken=0)) == Latency((0.2, 0.3, 0.4, 0.5), taken=4), "only what is kept"


def test_a_latency_log_keeps_the_newest_samples_in_memory_it_took_when_it_was_made() -> None:
    # Found by the soak run: a deque of float objects grew a bridge by 1.3 MB over its first ten minutes.
    log = _LatencyLog()
    log.add([0.5, 0.25])
    assert log.latency() == Latency((0.5, 0.25), taken=2)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for start in range(0, LATENCY_SAMPLES + 1000, 16):  # in batches, as the worker reports its uplink timings
            log.add([float(n) for n in range(start, start + 16)])
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, f"filling the window kept {grown} bytes"
    latency = log.latency()
    end = (LATENCY_SAMPLES + 1000 + 15) // 16 * 16
    assert latency.taken == 2 + end
    assert latency.samples_s == tuple(float(n) for n in range(end - LATENCY_SAMPLES, end)), "the newest, in order"


def test_a_latency_log_takes_a_batch_larger_than_its_window() -> None:
    log = _LatencyLog(size=4)
    log.add([1.0, 2.0, 3.0])
    log.add([4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    assert log.latency() == Latency((6.0, 7.0, 8.0, 9.0), taken=9)
    log.add([10.0])
    assert log.latency() == Latency((7.0, 8.0, 9.0, 10.0), taken=10)


def test_a_bridge_keeps_the_names_of_recent_turns_only() -> None:
    # A name per turn kept for as long as the bridge lived (up to the 65,536 ordinals) grew the host with every turn.
    bridge = SonicBridge(SonicConfig(aws_access_key_id="a", aws_secret_access_key="b"), worker_python=sys.executable)
    for ordinal in range(1, 3 * RECENT_TURNS):
        bridge._control(link.TurnStart(ordinal, f"turn-{ordinal}"))
    assert len(bridge._turns) == RECENT_TURNS
    assert bridge._turns[3 * RECENT_TURNS - 1] == f"turn-{3 * RECENT_TURNS - 1}"
    bridge._control(link.TurnStart(3 * RECENT_TURNS - 2, "used again"))  # ordinals wrap: the newest all the same
    bridge._control(link.TurnStart(3 * RECENT_TURNS, "next"))
    assert bridge._turns[3 * RECENT_TURNS - 2] == "used again"
    bridge.close()


def stream_realtime(bridge: SonicBridge, audio: np.ndarray, events: list[SonicEvent], *, read: bool = True) -> None:
    started = time.monotonic()
    for index, offset in enumerate(range(0, len(audio), FRAME)):
        bridge.send_audio(audio[offset : offset + FRAME])
        time.sleep(max(0.0, started + (index + 1) * FRAME / 16000 - time.monotonic()))
        if read:
            events += bridge.poll()


def test_a_barge_in_drops_the_queued_answer_and_accounts_for_every_byte(slow_emulator: EmulatorProcess) -> None:
    events: list[SonicEvent] = []
    with SonicBridge(slow_emulator.config(), worker_python=python_for("312")) as bridge:
        stream_realtime(bridge, np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), events)
        deadline = time.monotonic() + 20
        while sum(isinstance(e, AudioOut) for e in events) < 3:
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.05)
        # The host stops reading while the user barges in: the answer piles up in the downlink.
        stream_realtime(bridge, np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), events, read=False)
        deadline = time.monotonic() + 20
        while not any(isinstance(e, Interrupted) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.05)
        events += bridge.poll(timeout=0.5)
        dropped_total = bridge.metrics().dropped_output_bytes
    summary, _, _ = slow_emulator.recording(1)
    turns = summary["turns"]
    assert isinstance(turns, list)
    assert turns[0]["interrupted"]
    (interrupted,) = [e for e in events if isinstance(e, Interrupted)]
    answer = [e for e in events if isinstance(e, AudioOut) and e.turn_id == interrupted.turn_id]
    # Nothing of the interrupted answer reaches the host after the barge-in.
    assert events.index(answer[-1]) < events.index(interrupted)
    assert interrupted.dropped_bytes > 0
    assert interrupted.dropped_bytes == dropped_total
    assert sum(len(a.pcm) for a in answer) + interrupted.dropped_bytes == turns[0]["assistant_audio_bytes"]


def test_interrupt_drops_queued_audio_and_the_rest_of_the_answer(slow_emulator: EmulatorProcess) -> None:
    events: list[SonicEvent] = []
    with SonicBridge(slow_emulator.config(), worker_python=python_for("312")) as bridge:
        stream_realtime(bridge, np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), events)
        deadline = time.monotonic() + 20
        while not any(isinstance(e, AudioOut) for e in events):
            assert time.monotonic() < deadline
            events += bridge.poll(timeout=0.05)
        time.sleep(0.5)
        dropped_now = bridge.interrupt()
        assert dropped_now > 0
        later: list[SonicEvent] = []
        stream_realtime(bridge, np.zeros(16000, np.int16), later)
        # The service goes on sending the answer until its end: all of it is to be dropped, counted once it is here.
        while not any(isinstance(e, TurnEnd) for e in later):
            assert time.monotonic() < deadline
            later += bridge.poll(timeout=0.05)
        dropped_total = bridge.metrics().dropped_output_bytes
    assert not [e for e in later if isinstance(e, AudioOut)]
    summary, _, _ = slow_emulator.recording(1)
    turns = summary["turns"]
    assert isinstance(turns, list)
    received = sum(len(e.pcm) for e in events if isinstance(e, AudioOut))
    assert dropped_total >= dropped_now
    # Everything the service sent of the answer was either handed out before interrupt() or dropped.
    assert received + dropped_total == turns[0]["assistant_audio_bytes"]


async def test_events_can_be_awaited_with_async_for(emulator: EmulatorProcess) -> None:
    import asyncio

    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        received: list[SonicEvent] = []

        async def consume() -> None:
            async for event in bridge:
                received.append(event)
                if isinstance(event, TurnEnd):
                    return

        consumer = asyncio.create_task(consume())
        audio = np.concatenate([tone(0.6), np.zeros(16000 * 2, np.int16)])
        for offset in range(0, len(audio), FRAME):
            bridge.send_audio(audio[offset : offset + FRAME])
            await asyncio.sleep(0.005)
        await asyncio.wait_for(consumer, 20)
    kinds = {type(e) for e in received}
    assert {Transcript, AudioOut, TurnEnd} <= kinds


def test_worker_killed_mid_utterance_replays_the_turn_in_progress(emulator: EmulatorProcess) -> None:
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        first_half, second_half = tone(0.6)[:4800], tone(0.6)[4800:]
        for offset in range(0, len(first_half), FRAME):
            bridge.send_audio(first_half[offset : offset + FRAME])
        time.sleep(0.3)
        pid = bridge.metrics().worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        events = converse(bridge, np.concatenate([second_half, np.zeros(16000 * 4, np.int16)]), turns=1)
    assert any(isinstance(e, Reconnecting) for e in events)
    assert [e for e in events if isinstance(e, Error)] == []  # nothing unread was lost
    # The new stream heard the whole utterance: the replayed first half, then the rest.
    assert [e.text for e in events if isinstance(e, Transcript) and e.role == "USER"] == ["(speech, 0.6 seconds)"]
    _, user, _ = emulator.recording(2)
    assert user.startswith(first_half.tobytes() + second_half.tobytes())


def test_bad_tool_results_and_configs_raise_typed_errors(emulator: EmulatorProcess) -> None:
    with pytest.raises(TypeError, match="SonicConfig"):
        SonicBridge({"voice": "matthew"}, worker_python=python_for("312"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rate"):
        SonicBridge(emulator.config(), worker_python=python_for("312"), host_rate=12345)
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        with pytest.raises(InvalidInput, match="tool_use_id"):
            bridge.send_tool_result("", {})
        with pytest.raises(InvalidInput, match="not strict JSON"):
            bridge.send_tool_result("id", object())
        with pytest.raises(BridgeError, match="already started"):
            bridge.start()
        with pytest.raises(TypeError, match="turn_id must be a string"):
            bridge.interrupt(7)  # type: ignore[arg-type]
        events = converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]), turns=1)
        assert any(isinstance(e, TurnEnd) for e in events)


def test_calls_the_service_would_reject_are_refused_on_the_host_and_lose_nothing(emulator: EmulatorProcess) -> None:
    first = np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)])
    second = np.concatenate([tone(0.5, 300), np.zeros(16000 * 4, np.int16)])
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        events = feed(bridge, first)
        with pytest.raises(InvalidInput, match=r"not valid UTF-8: .*'\\ud800' at index 3"):
            bridge.send_text("hi \ud800 there")
        with pytest.raises(InvalidInput, match="10240 bytes of UTF-8, over the 1024 bytes Nova Sonic takes"):
            bridge.send_text("x" * 10240)
        with pytest.raises(InvalidInput, match="not strict JSON"):
            bridge.send_tool_result("t1", float("nan"))
        with pytest.raises(InvalidInput, match="not strict JSON"):
            bridge.send_tool_result("t1", {"when": object()})
        with pytest.raises(InvalidInput, match="at most 1000000 bytes per input event") as too_large:
            bridge.send_tool_result("t1", {"rows": "x" * 2_000_000})
        assert not isinstance(too_large.value, RecordTooLarge)
        bridge.send_tool_result("nope", {"temp": 20})  # only the session knows that nothing asked for it
        events = until(bridge, events + feed(bridge, second), lambda events: turns_ended(events) >= 2, 20.0)
        bridge_errors = [e for e in events if isinstance(e, Error)]
    assert bridge_errors == [
        Error("ToolResultDropped", "the result for tool use 'nope' was not sent: the service never asked for it", False)
    ]
    assert [e.stop_reason for e in events if isinstance(e, TurnEnd)] == ["END_TURN", "END_TURN"]
    summary, user, _ = emulator.recording(1)
    assert (summary["outcome"], summary["error"]) == ("completed", None)
    names = [next(iter(e["event"])) for e in summary["input_events"]]  # type: ignore[attr-defined]
    assert "toolResult" not in names
    assert names.count("textInput") == 1  # the system prompt alone
    sent = first.tobytes() + second.tobytes()
    assert user == sent + bytes(len(user) - len(sent))  # every frame once and in order, then the keep-alive
    assert not (emulator.record_dir / "stream-2.json").exists()


def last_utterance_answered(events: list[SonicEvent]) -> bool:
    asked = [e.turn_id for e in events if isinstance(e, Transcript) and e.text == "(speech, 0.4 seconds)"]
    return bool(asked) and any(isinstance(e, TurnEnd) and e.turn_id == asked[-1] for e in events)


@pytest.fixture
def rejecting_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Refuses the first input 2.5 s into the first stream, which has worked by then (output, or 2 s open)."""
    process = EmulatorProcess(tmp_path / "recordings", "--fault", "reject-input:after_s=2.5")
    yield process
    process.stop()


def test_an_input_the_service_rejects_mid_stream_resumes_the_conversation(
    rejecting_emulator: EmulatorProcess,
) -> None:
    emulator = rejecting_emulator
    pause = np.zeros(16000 * 4, np.int16)
    # About 1.3 s each at the pace of `feed`: the refusal comes in the second or third utterance.
    sent = np.concatenate([tone(0.6), pause, tone(0.5, 300), pause, tone(0.4, 260), pause])
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        # A turn cut by the refusal has no TurnEnd (the Reconnecting ends it): wait for the last utterance's.
        events = until(bridge, feed(bridge, sent), last_utterance_answered, 20.0)
        restarts = bridge.metrics().restarts
    errors = [e for e in events if isinstance(e, Error)]
    assert len(errors) == 1
    assert (errors[0].kind, errors[0].fatal) == ("ValidationException", False)
    assert "rejected an input mid-stream: Invalid input request" in errors[0].message
    assert sum(isinstance(e, Reconnecting) for e in events) == 1
    assert restarts == 0  # the worker's session recovered by itself
    users = [e.text for e in events if isinstance(e, Transcript) and e.role == "USER"]
    # The new stream first hears the user's audio since the last completed turn again (at most 3 s), as after any
    # reconnection, so what it transcribes first may repeat part of what the old stream heard.
    assert users[0] == "(speech, 0.6 seconds)"
    assert "(speech, 0.5 seconds)" in users
    assert users[-1] == "(speech, 0.4 seconds)"
    old, old_user, _ = emulator.recording(1)
    new, new_user, _ = emulator.recording(2)
    assert str(old["error"][2]).startswith("fault reject-input: ")  # type: ignore[index]
    assert (new["outcome"], new["error"]) == ("completed", None)
    assert new["turns"]  # the conversation went on, on the new stream
    history = [e["event"]["textInput"]["content"] for e in new["input_events"] if "textInput" in e["event"]]  # type: ignore[attr-defined]
    assert "(speech, 0.6 seconds)" in history
    # Every frame reached a stream once and in order; the new one first heard the turn in progress again.
    audio = sent.tobytes()
    reached = user_audio_reached([old_user, new_user], audio + bytes(len(new_user)), replay_limit=3 * 32000)
    assert reached >= len(audio)


def test_a_bridge_and_its_pool_leave_no_process_fd_or_thread_behind(emulator: EmulatorProcess) -> None:
    import threading

    fds_before = set(os.listdir("/proc/self/fd"))
    threads_before = {t.ident for t in threading.enumerate()}
    pool = WorkerPool(python_for("312"), spare=1)
    bridge = SonicBridge(emulator.config(), worker_python=python_for("312"), pool=pool)
    bridge.start()
    converse(bridge, np.concatenate([tone(0.6), np.zeros(16000 * 2, np.int16)]), turns=1)
    pids = {bridge.metrics().worker_pid, *pool.spare_pids()}
    pool.wait_warm(60)
    pids |= pool.spare_pids()
    bridge.close()
    pool.close()
    deadline = time.monotonic() + 10
    while {t.ident for t in threading.enumerate()} - threads_before or set(os.listdir("/proc/self/fd")) - fds_before:
        assert time.monotonic() < deadline, (set(os.listdir("/proc/self/fd")) - fds_before, threading.enumerate())
        time.sleep(0.05)
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _children() -> set[int]:
    """This process's child processes (each thread's: the pool's threads spawn its workers)."""
    return {int(pid) for task in Path("/proc/self/task").iterdir() for pid in (task / "children").read_text().split()}


def test_a_pool_closed_while_its_spares_start_leaves_no_thread_or_process_at_once() -> None:
    # `novabridge doctor` closed its pool a moment after starting a spare and exited; the thread still waiting for
    # the spare, in the ring's native code, once crashed the exiting interpreter (SIGSEGV).
    import threading

    threads_before = set(threading.enumerate())
    children_before = _children()
    pool = WorkerPool(python_for("312"), spare=2)
    pool.warm_up()
    time.sleep(0.2)  # the workers are spawned and importing the SDK, which takes a second or more
    starters = set(threading.enumerate()) - threads_before
    assert len(starters) == 2, starters
    children = _children() - children_before
    assert len(children) == 2, children
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 2.0
    assert set(threading.enumerate()) - threads_before == set()
    for pid in children:
        assert _gone(pid), pid
    assert pool.error is None  # killing the spares it was starting is not a failure to report


HOST_SCRIPT = """
import sys, time
from novabridge import SonicBridge, SonicConfig
bridge = SonicBridge(SonicConfig.model_validate_json(sys.stdin.read()), worker_python=sys.argv[1])
bridge.start()
print(bridge.metrics().worker_pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited; only its reaping is left
    except FileNotFoundError:
        return True


def test_a_worker_exits_when_its_host_dies_even_with_the_connection_dead(emulator: EmulatorProcess) -> None:
    from novabridge.host.pool import config_json

    host = subprocess.Popen(
        [python_for(this_version()), "-c", HOST_SCRIPT, python_for("312")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdin is not None
        assert host.stdout is not None
        host.stdin.write(config_json(emulator.config()).decode())
        host.stdin.close()
        worker = int(host.stdout.readline())
        emulator.process.kill()  # the connection dies under the worker's session
        emulator.process.wait()
        host.kill()  # and then its host
        host.wait()
        deadline = time.monotonic() + 15
        while not _gone(worker):
            assert time.monotonic() < deadline, "the worker outlived its host"
            time.sleep(0.1)
    finally:
        host.kill()
        host.wait()
        if host.stdout is not None:
            host.stdout.close()


def kill_worker_and_wait_for_its_exit(bridge: SonicBridge) -> None:
    """SIGKILL the bridge's worker and wait until the bridge can see it dead; the bridge is not polled meanwhile."""
    pid = bridge.metrics().worker_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _exited(pid):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _exited(child: int) -> bool:
    """The child process has exited, every thread of it, so its parent can reap it (which this leaves to the bridge).

    /proc shows a killed process's main thread as a zombie while its other threads are still dying; until they are
    gone the process is not waitable, and the bridge, which checks with Popen.poll(), cannot know it died.
    """
    return os.waitid(os.P_PID, child, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def test_audio_sent_while_the_worker_was_dead_beyond_what_is_held_is_reported_dropped(
    emulator: EmulatorProcess,
) -> None:
    # docs/bridge.md: audio that could not be replayed is reported in an Error ("AudioDropped"). The bridge holds
    # up to HELD_LIMIT_S (30 s) of audio sent while the worker was dead; 31 s are sent before the host polls.
    held_s, sent_s = 30, 31
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        kill_worker_and_wait_for_its_exit(bridge)
        for offset in range(0, 16000 * sent_s, FRAME):
            bridge.send_audio(np.full(FRAME, offset // FRAME % 100 + 1, np.int16))
        events = until(bridge, [], lambda got: any(isinstance(e, Reconnecting) for e in got), timeout=30)
    dropped = [e for e in events if isinstance(e, Error) and e.kind == "AudioDropped"]
    assert len(dropped) == 1, events
    assert not dropped[0].fatal
    match = re.fullmatch(
        r"(\d+) bytes of user audio sent before the worker died never reached the service "
        r"\(the replacement was given the (\d+) bytes after them\)",
        dropped[0].message,
    )
    assert match is not None, dropped[0].message
    lost, replayed = int(match[1]), int(match[2])
    # None reached the dead worker's session: the replacement got the newest 30 s, the second before them is lost.
    assert (lost, replayed) == (2 * 16000 * (sent_s - held_s), 2 * 16000 * held_s)


def test_audio_a_reconnecting_worker_held_goes_to_its_replacement_when_it_dies(tmp_path: Path) -> None:
    # Found by the soak run: a worker killed while its session reconnected took the audio its session held (more
    # than the 3 s of the turn the bridge replays) with it, and nothing reported it. The bridge now keeps all the
    # audio the worker has not reported sent. No sample is zero, so the session's silence fill can be told apart.
    certs = tmp_path / "certs"
    first = EmulatorProcess(tmp_path / "run-1", "--certs-dir", str(certs))
    port = str(urllib.parse.urlsplit(first.endpoint_uri).port)
    second: EmulatorProcess | None = None
    sent = np.random.default_rng(1).integers(1, 101, 16000 * 8, dtype=np.int16)  # quieter than speech
    chunks = [sent[offset : offset + FRAME] for offset in range(0, len(sent), FRAME)]
    try:
        with SonicBridge(first.config(connect_timeout_s=30.0), worker_python=python_for("312")) as bridge:
            events = feed(bridge, np.concatenate(chunks[:50]))  # 1 s, sent and reported settled
            events = until(bridge, events, lambda _: bridge._settled_at == 2 * 16000, timeout=10)
            first.process.kill()
            first.stop()
            events += feed(bridge, np.concatenate(chunks[50:]))  # 7 s the session holds while it reconnects
            worker = bridge._worker
            assert worker is not None
            until(bridge, events, lambda _: worker.uplink.stats().bytes_read == worker.uplink.stats().bytes_written, 10)
            os.kill(worker.pid, signal.SIGKILL)
            second = EmulatorProcess(tmp_path / "run-2", "--certs-dir", str(certs), "--port", port)
            events = until(bridge, events, lambda got: any(isinstance(e, Reconnecting) for e in got), timeout=30)
            events = until(bridge, events, lambda _: bridge.ready, timeout=30)
            events += feed(bridge, np.ones(FRAME * 10, np.int16))  # a marker of the end
        assert [e for e in events if isinstance(e, Error) and e.kind == "AudioDropped"] == []
        second.recording(1)  # its stream has ended
    finally:
        first.stop()
        if second is not None:
            second.stop()
    heard = [without_fill((tmp_path / run / "stream-1-user.pcm").read_bytes()) for run in ("run-1", "run-2")]
    expected = sent.tobytes() + np.ones(FRAME * 10, np.int16).tobytes()
    assert user_audio_reached(heard, expected, replay_limit=2 * 16000 * 4) == len(expected)


@pytest.mark.parametrize("burst_frames", [3, 125])  # 96 ms, under SETTLED_REPORT_S; 4 s
def test_a_replacement_hears_no_more_of_the_turn_than_the_replay_window(
    emulator: EmulatorProcess, burst_frames: int
) -> None:
    # Found by the soak run: a replacement worker heard 3.58 s again, then 3.65 s. The dead worker had sent audio
    # after its last settlement report: 0.58 s on top of the turn's 3 s, the bridge's replay counted from that
    # report; then 3.65 s of a reconnection's backlog, sent in one burst. The bridge now trims the replay when it
    # restarts too (the short burst, under SETTLED_REPORT_S), and the worker reports a burst as it sends it.
    sent = np.random.default_rng(2).integers(1, 101, 16000 * 10, dtype=np.int16)  # quieter than speech: no turn ends
    session_frame = emulator.config().frame_ms * 16  # the session keeps a shorter rest back: the burst is whole frames
    before = 16000 * 4
    burst_end = before + session_frame * (1 + burst_frames)
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        events = feed(bridge, sent[:before])
        events = until(bridge, events, lambda _: bridge._settled_at == 2 * before, timeout=10)
        # Just after a report (they come every STATS_INTERVAL_S), the burst, and the worker killed before the next.
        bridge.send_audio(sent[before : before + session_frame])
        events = until(bridge, events, lambda _: bridge._settled_at > 2 * before, timeout=10)
        bridge.send_audio(sent[before + session_frame : burst_end])
        worker = bridge._worker
        assert worker is not None
        recording = emulator.record_dir / "stream-1-user.pcm"
        while np.count_nonzero(np.fromfile(recording, np.int16)) < burst_end:  # the service heard it all
            time.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
        events = until(bridge, events, lambda _: bridge.ready and bridge._worker is not worker, timeout=30)
        events += feed(bridge, sent[burst_end:])
        time.sleep(0.5)
    assert [e for e in events if isinstance(e, Error)] == []
    heard = [without_fill(emulator.recording(stream)[1]) for stream in (1, 2)]
    assert len(heard[0]) == 2 * burst_end  # the case in question: the dead worker's stream heard all sent to it
    assert user_audio_reached(heard, sent.tobytes(), replay_limit=2 * 16000 * 3) == sent.nbytes


def test_a_replacement_is_given_again_the_last_second_its_predecessor_reported_sent(emulator: EmulatorProcess) -> None:
    # Found by the soak run, three times in eight one-minute runs: 0.3-0.5 s of a burst a worker had reported sent
    # never reached the service, and its replacement, given the audio from that report on, never heard it. The
    # turn's audio did not cover it: an answer had just ended. The replacement now hears the last second again.
    rng = np.random.default_rng(3)
    sent = np.concatenate([tone(0.6), rng.integers(1, 101, 16000 * 4, dtype=np.int16)])
    sent[sent == 0] = 1  # no sample the session's silence fill could be taken for
    later = rng.integers(1, 101, 16000, dtype=np.int16)
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        events = converse(bridge, sent, turns=1)
        events = until(bridge, events, lambda _: bridge._settled_at == sent.nbytes, timeout=10)
        assert len(bridge._unanswered.audio) < 2 * 16000  # answered: the turn's audio held is less than the second
        worker = bridge._worker
        assert worker is not None
        os.kill(worker.pid, signal.SIGKILL)
        events = until(bridge, events, lambda _: bridge.ready and bridge._worker is not worker, timeout=30)
        events += feed(bridge, later)
        time.sleep(0.5)
    assert [e for e in events if isinstance(e, Error)] == []
    heard = [without_fill(emulator.recording(stream)[1]) for stream in (1, 2)]
    assert heard[0] == sent.tobytes()
    assert heard[1] == sent[-16000:].tobytes() + later.tobytes()


def test_workers_that_keep_dying_before_their_session_is_up_end_it_with_a_fatal_error(
    emulator: EmulatorProcess,
) -> None:
    # docs/bridge.md: workers that keep dying before their session is up end it with a fatal Error. With the
    # endpoint gone, no replacement gets its session up; each is killed as soon as it has taken the session.
    with SonicBridge(emulator.config(), worker_python=python_for("312")) as bridge:
        emulator.stop()
        events: list[SonicEvent] = []
        killed = 0
        while not any(isinstance(e, Error) and e.fatal for e in events):
            assert killed <= MAX_RESTARTS_UNREADY + 1, events
            pid = bridge.metrics().worker_pid
            assert pid is not None
            assert bridge.ready == (killed == 0)
            os.kill(pid, signal.SIGKILL)
            killed += 1
            # The session reports its own reconnections to the stopped endpoint too: count the bridge's restarts.
            deadline = time.monotonic() + 30
            while bridge.metrics().restarts < killed and not any(isinstance(e, Error) and e.fatal for e in events):
                assert time.monotonic() < deadline, events
                events += bridge.poll(timeout=0.1)
        assert bridge.closed
    # The worker that had its session up, then MAX_RESTARTS_UNREADY replacements, each replaced; the next ends it.
    assert killed == MAX_RESTARTS_UNREADY + 2, events
    restarts = [e.attempt for e in events if isinstance(e, Reconnecting) and e.reason.startswith("worker exited")]
    assert restarts == list(range(1, MAX_RESTARTS_UNREADY + 2))
    fatal = events[-1]
    assert isinstance(fatal, Error)
    assert (fatal.kind, fatal.fatal) == (WORKER_FAILED, True)
    assert "workers keep exiting before the session is up" in fatal.message
