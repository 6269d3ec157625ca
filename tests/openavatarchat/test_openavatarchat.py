"""The OpenAvatarChat handler inside OAC's real engine (an upstream checkout's ``ChatSession``, data bundles and pump
threads), with this interpreter as OAC's Python (3.11 in one pass, 3.12 in the other), a 3.12 worker per session, and
the emulator as a subprocess."""

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.audio import tone
from support.emulator_process import EmulatorProcess
from support.oac import oac_src
from support.oac_engine import Session, audio_of, ends
from support.oac_engine import make_handler as make_handler  # noqa: PLC0414 - a fixture, found by its name

sys.path.insert(0, str(oac_src()))

from chat_engine.common.handler_base import HandlerDataInfo
from chat_engine.data_models.chat_data.chat_data_model import ChatData
from chat_engine.data_models.chat_data_type import ChatDataType
from chat_engine.data_models.runtime_data.data_bundle import DataBundle, DataBundleDefinition, DataBundleEntry
from novabridge.emulator.voice import synthesize


def test_a_conversation_produces_oac_bundles_and_markers(emulator: EmulatorProcess, make_handler: Any) -> None:
    handler = make_handler(emulator)
    session = Session(handler, "oac-1")
    try:
        # The user waits for each answer to play out (speaking over it would be a barge-in).
        session.speak(np.concatenate([tone(0.6), np.zeros(16000 * 2, np.int16)]))
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        session.speak(np.concatenate([tone(0.5, 300), np.zeros(16000 * 2, np.int16)]))
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 2))
        session.collect(ends(ChatDataType.AVATAR_TEXT, 2))
        bridge = session.nova.bridge
        assert bridge is not None
        pid = bridge.metrics().worker_pid
        started = time.monotonic()
        handler.destroy_context(session.nova)  # what OAC's stop() calls after joining the pumps
        assert time.monotonic() - started < 1.0
        assert session.nova.thread is not None
        assert not session.nova.thread.is_alive()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    finally:
        took = session.stop()
    assert took < 1.5
    audio = audio_of(seen)
    speech_ids = list(dict.fromkeys(sid for sid, _, _ in audio))
    assert len(speech_ids) == 2  # one speech_id per answer
    recording, _, assistant = emulator.recording(1)
    turns = recording["turns"]
    assert isinstance(turns, list)
    for sid, turn in zip(speech_ids, turns, strict=True):
        chunks = [(a, end) for s, a, end in audio if s == sid]
        assert all(a.dtype == np.float32 and a.ndim == 2 and a.shape[0] == 1 for a, _ in chunks)
        marker, is_end = chunks[-1]
        assert is_end  # the end marker: zeros((1, 240))
        assert marker.shape == (1, 240)
        assert not marker.any()
        assert sum(end for _, end in chunks) == 1
        voiced = np.concatenate([a[0] for a, end in chunks if not end])
        assert np.abs(voiced).max() <= 1.0
        assert len(voiced) * 2 == turn["assistant_audio_bytes"]  # every sample the service sent, at 24 kHz
    first = np.concatenate([a[0] for s, a, end in audio if s == speech_ids[0] and not end])
    expected = np.frombuffer(assistant[: len(first) * 2], dtype="<i2").astype(np.float32) / 32768
    assert np.allclose(first, expected, atol=1e-4)
    humans = [s.data.get_main_data() for s in seen if s.type == ChatDataType.HUMAN_TEXT and s.data is not None]
    assert humans[:2] == ["(speech, 0.6 seconds)", ""]
    texts = [s for s in seen if s.type == ChatDataType.AVATAR_TEXT and s.data is not None]
    assert "answer 1" in "".join(str(t.data.get_main_data()) for t in texts if t.data is not None)
    assert all(t.data is not None and t.data.get_meta("speech_id") in speech_ids for t in texts)
    # The avatar got the entry it expects: 24 kHz audio.
    entry = next(s for s in seen if s.type == ChatDataType.AVATAR_AUDIO).data
    assert entry is not None
    main_entry = entry.get_main_definition_entry()
    assert main_entry is not None
    assert main_entry.sample_rate == 24000


def test_a_barge_in_leaves_at_most_the_pacing_lead_of_stale_audio(
    slow_emulator: EmulatorProcess, make_handler: Any
) -> None:
    handler = make_handler(slow_emulator, pacing_lead_ms=100)
    session = Session(handler, "oac-barge")
    try:
        session.speak(np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), speed=1.0)
        session.collect(lambda seen: len(audio_of(seen)) >= 20)  # the answer plays
        session.speak(np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), speed=1.0)
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
    finally:
        session.stop()
    stamps = [(t, item) for t, item in session.audio_out.stamps if item.data is not None]
    first_sid = stamps[0][1].data.get_meta("speech_id")
    answer = [
        (t, item.data.get_main_data(), item.data.get_meta("avatar_speech_end"))
        for t, item in stamps
        if item.data.get_meta("speech_id") == first_sid
    ]
    started, end_at = answer[0][0], next(t for t, _, end in answer if end)
    submitted_s = sum(a.shape[1] for _, a, end in answer if not end) / 24000
    played_s = end_at - started
    stale_s = submitted_s - played_s
    recording, _, _ = slow_emulator.recording(1)
    assert recording["turns"][0]["interrupted"]  # type: ignore[index]
    # Audio handed to the avatar but not yet played when the answer was cut: at most the lead and a slice.
    assert stale_s <= 0.1 + 0.02 + 0.03, (submitted_s, played_s)
    assert submitted_s < 6.0  # far less than the whole answer


def test_an_interrupted_answer_shows_only_the_words_it_spoke(tmp_path: Path, make_handler: Any) -> None:
    # The emulator sends each sentence's text ahead of its audio, and the audio at 4x real time: when the user cuts
    # in a second into the answer, the words of several sentences have arrived that the avatar never says.
    sentence = "One two three four."
    scenario = tmp_path / "short.json"
    scenario.write_text(json.dumps({"turns": [{"assistant": f"{sentence} " * 12}]}))
    emulator = EmulatorProcess(tmp_path / "recordings", "--scenario", str(scenario), "--speed", "4")
    try:
        handler = make_handler(emulator)
        session = Session(handler, "oac-words")
        try:
            session.speak(np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), speed=1.0)
            session.collect(lambda seen: len(audio_of(seen)) >= 50)  # a second of the answer handed over
            session.speak(np.concatenate([tone(0.6), np.zeros(8000, np.int16)]), speed=1.0)
            session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
            session.collect(ends(ChatDataType.AVATAR_TEXT, 1))
        finally:
            session.stop()
        recording, _, _ = emulator.recording(1)
    finally:
        emulator.stop()
    turn = recording["turns"][0]  # type: ignore[index]
    assert turn["interrupted"]
    first = audio_of(session.seen)[0][0]
    handed_s = sum(a.shape[1] for sid, a, end in audio_of(session.seen) if not end and sid == first) / 24000
    sentence_s = len(synthesize(sentence, voice="matthew", rate=24000)) / 2 / 24000
    texts = [
        s.data
        for s in session.seen
        if s.type == ChatDataType.AVATAR_TEXT and s.data is not None and s.data.get_meta("speech_id") == first
    ]
    shown = "".join(str(t.get_main_data()) for t in texts)
    assert 1 <= shown.count(sentence) <= math.ceil(handed_s / sentence_s), (shown, handed_s, sentence_s)
    assert texts[-1].get_meta("avatar_text_end")  # and the answer's text is ended all the same


def test_typed_text_is_answered(emulator: EmulatorProcess, make_handler: Any) -> None:
    session = Session(make_handler(emulator), "oac-text")
    try:
        session.speak(np.zeros(16000, np.int16))
        session.text.put((None, "What time is it?"))  # as OAC's client delivers typed chat
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
    finally:
        session.stop()
    assert audio_of(seen)[-1][2]
    recording, _, _ = emulator.recording(1)
    inputs = [e["event"] for e in recording["input_events"]]  # type: ignore[attr-defined]
    assert any(e.get("textInput", {}).get("content") == "What time is it?" for e in inputs)


def _audio_definition(rate: int) -> DataBundleDefinition:
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_audio_entry("mic_audio", 1, rate))
    return definition


def _text_definition() -> DataBundleDefinition:
    definition = DataBundleDefinition()
    definition.add_entry(DataBundleEntry.create_text_entry("human_text"))
    return definition


def test_two_concurrent_sessions_never_cross(emulator: EmulatorProcess, make_handler: Any) -> None:
    handler = make_handler(emulator, spare_workers=2)
    sessions = [Session(handler, "oac-a"), Session(handler, "oac-b")]
    pids: list[int | None] = []
    try:
        speakers = [
            threading.Thread(target=s.speak, args=(np.concatenate([tone(d), np.zeros(16000 * 4, np.int16)]),))
            for s, d in zip(sessions, (0.6, 1.2), strict=True)
        ]
        for t in speakers:
            t.start()
        for t in speakers:
            t.join()
        seen = [s.collect(ends(ChatDataType.AVATAR_AUDIO, 1)) for s in sessions]
        for s in sessions:
            assert s.nova.bridge is not None
            pids.append(s.nova.bridge.metrics().worker_pid)
    finally:
        for s in sessions:
            s.stop()
    assert None not in pids
    assert pids[0] != pids[1]  # a worker process each
    humans = [[d.data.get_main_data() for d in s if d.type == ChatDataType.HUMAN_TEXT and d.data] for s in seen]
    assert humans[0][0] == "(speech, 0.6 seconds)"
    assert humans[1][0] == "(speech, 1.2 seconds)"
    # Each session has its own stream: the one that heard its user, and whose answer it played, sample for sample.
    streams = {}
    for stream_id in (1, 2):
        recording, _, assistant = emulator.recording(stream_id)
        turns = recording["turns"]
        assert isinstance(turns, list)
        assert len(turns) == 1
        streams[turns[0]["user_text"]] = assistant
    assert streams.keys() == {"(speech, 0.6 seconds)", "(speech, 1.2 seconds)"}
    assert streams["(speech, 0.6 seconds)"] != streams["(speech, 1.2 seconds)"]  # so a crossing would show
    for session_seen, heard in zip(seen, humans, strict=True):
        audio = audio_of(session_seen)
        assert len({sid for sid, _, _ in audio}) == 1
        voiced = np.concatenate([a[0] for _, a, end in audio if not end])
        assistant = streams[heard[0]]
        assert len(voiced) * 2 == len(assistant)
        expected = np.frombuffer(assistant, dtype="<i2").astype(np.float32) / 32768
        assert np.allclose(voiced, expected, atol=1e-4)


def test_a_killed_worker_is_replaced_and_the_session_goes_on(emulator: EmulatorProcess, make_handler: Any) -> None:
    session = Session(make_handler(emulator), "oac-kill")
    try:
        session.speak(np.concatenate([tone(0.6), np.zeros(16000 * 2, np.int16)]))
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        bridge = session.nova.bridge
        assert bridge is not None
        pid = bridge.metrics().worker_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        session.speak(np.concatenate([tone(0.5, 300), np.zeros(16000 * 4, np.int16)]))
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 2))
        assert bridge.metrics().restarts == 1
    finally:
        session.stop()
    humans = [d.data.get_main_data() for d in seen if d.type == ChatDataType.HUMAN_TEXT and d.data]
    assert "(speech, 0.5 seconds)" in humans
    recording, _, _ = emulator.recording(2)
    history = [e["event"]["textInput"]["content"] for e in recording["input_events"] if "textInput" in e["event"]]  # type: ignore[attr-defined]
    assert "(speech, 0.6 seconds)" in history


def test_malformed_inputs_never_kill_the_pump_thread(emulator: EmulatorProcess, make_handler: Any) -> None:
    session = Session(make_handler(emulator), "oac-bad")
    try:
        pump = session.session.handlers["NovaSonic"].pump_thread
        assert pump is not None
        context = session.nova
        handler = session.session.handlers["NovaSonic"].env.handler
        definitions: dict[ChatDataType, HandlerDataInfo] = {}
        text_bundle = DataBundle(_text_definition())
        text_bundle.set_main_data("not audio")
        odd_rate = DataBundle(_audio_definition(12345))
        odd_rate.set_main_data(np.zeros((1, 960), np.int16))
        for data in (text_bundle, None, odd_rate):  # a string for audio, no bundle, an unsupported rate
            handler.handle(context, ChatData(type=ChatDataType.MIC_AUDIO, data=data), definitions)
        assert context.dropped_inputs == 3
        # Through the engine's own pump: wrong dtype, non-finite samples.
        session.mic.put((16000, np.zeros((1, 960), np.float64)))
        session.mic.put((16000, np.full((1, 960), np.nan, np.float32)))
        deadline = time.monotonic() + 5
        while context.dropped_inputs < 5:
            assert time.monotonic() < deadline, context.dropped_inputs
            time.sleep(0.05)
        assert pump.is_alive()
        session.speak(np.concatenate([tone(0.6), np.zeros(16000 * 4, np.int16)]))
        seen = session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        assert pump.is_alive()
    finally:
        took = session.stop()
    assert took < 1.5
    assert any(d.type == ChatDataType.AVATAR_AUDIO for d in seen)


@pytest.fixture
def short_lived_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """Streams that live 5 s, as if the 8-minute limit came quickly."""
    process = EmulatorProcess(tmp_path / "recordings", "--session-limit", "5")
    yield process
    process.stop()


def test_a_session_outlives_the_stream_limit(short_lived_emulator: EmulatorProcess, make_handler: Any) -> None:
    session = Session(make_handler(short_lived_emulator, renewal_after_s=2.0), "oac-renew")
    try:
        for turn in range(1, 4):
            session.speak(np.concatenate([tone(0.4 + 0.2 * turn), np.zeros(16000 * 2, np.int16)]))
            session.collect(ends(ChatDataType.AVATAR_AUDIO, turn), timeout=40)
    finally:
        session.stop()
    humans = [d.data.get_main_data() for d in session.seen if d.type == ChatDataType.HUMAN_TEXT and d.data]
    assert [h for h in humans if h] == ["(speech, 0.6 seconds)", "(speech, 0.8 seconds)", "(speech, 1.0 seconds)"]
    assert len({sid for sid, _, _ in audio_of(session.seen)}) == 3
    # The conversation moved to new streams before the limit; none of them hit it.
    first, _, _ = short_lived_emulator.recording(1)
    second, _, _ = short_lived_emulator.recording(2)
    assert first["error"] is None
    assert first["outcome"] in ("completed", "client-closed")
    assert second["user_audio_bytes"]


@pytest.fixture
def strict_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An endpoint that checks SigV4 against other credentials than the handler's."""
    process = EmulatorProcess(tmp_path / "recordings", "--credentials", "AKIDOTHER:other-secret")
    yield process
    process.stop()


def test_a_session_that_cannot_connect_is_logged_and_oac_goes_on(
    strict_emulator: EmulatorProcess, make_handler: Any, oac_log: list[tuple[str, str]]
) -> None:
    session = Session(make_handler(strict_emulator), "oac-denied")
    try:
        pump = session.session.handlers["NovaSonic"].pump_thread
        assert pump is not None
        session.speak(np.zeros(16000, np.int16))
        deadline = time.monotonic() + 30
        while not (session.nova.bridge is not None and session.nova.bridge.closed):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        session.speak(np.zeros(16000, np.int16))  # OAC keeps sending; the handler drops it quietly
        time.sleep(0.2)
        assert pump.is_alive()
        assert session.nova.dropped_inputs > 0
    finally:
        took = session.stop()
    assert took < 1.5
    errors = [message for level, message in oac_log if level == "ERROR"]
    assert any("oac-denied" in message for message in errors), errors


def test_idle_audio_keeps_the_stream_going_and_the_trace_stamps_each_hop(
    emulator: EmulatorProcess, make_handler: Any, tmp_path: Path
) -> None:
    trace_file = tmp_path / "trace.jsonl"
    handler = make_handler(emulator, idle_audio=True, trace_file=str(trace_file))
    session = Session(handler, "oac-idle")
    try:
        session.speak(np.concatenate([tone(0.6), np.zeros(16000 * 2, np.int16)]), speed=1.0)
        session.collect(ends(ChatDataType.AVATAR_AUDIO, 1))
        time.sleep(1.0)  # after the answer: silence goes on
    finally:
        session.stop()
    stamps = [(t, item) for t, item in session.audio_out.stamps if item.data is not None]
    # From the first bundle on, what was handed over always covers the time elapsed: never a gap in the stream.
    # A gap where silence and answer meet would last as long as the avatar waited; the bound leaves room for a
    # late wake-up of the output thread, which a full CI run on two busy cores once saw at 159 ms.
    start = stamps[0][0]
    handed_s = 0.0
    for at, item in stamps:
        late_s = at - start - handed_s
        assert late_s <= 0.3, f"the stream stopped for {late_s * 1000:.0f} ms, {handed_s:.2f} s in"
        handed_s += item.data.get_main_data().shape[1] / 24000
    end_marker = next(at for at, item in stamps if item.data.get_meta("avatar_speech_end"))
    assert stamps[-1][0] - end_marker > 0.8  # and it went on after the answer
    silence = [item for _, item in stamps if item.data.get_meta("speech_id") == ""]
    assert len(silence) > 40  # over a second of 20 ms silences around the answer
    assert all(not item.data.get_main_data().any() for item in silence)
    # The answer itself is untouched by the silence around it: every sample the service sent, in one speech_id.
    voiced = [
        item for _, item in stamps if item.data.get_meta("speech_id") and not item.data.get_meta("avatar_speech_end")
    ]
    _, _, assistant = emulator.recording(1)
    got = np.concatenate([item.data.get_main_data()[0] for item in voiced])
    assert np.allclose(got, np.frombuffer(assistant, dtype="<i2").astype(np.float32) / 32768, atol=1e-4)
    lines = [json.loads(line) for line in trace_file.read_text().splitlines()]
    events = [line["event"] for line in lines]
    assert {"mic", "answer_audio", "avatar_audio"} <= set(events)
    assert events.index("answer_audio") < events.index("avatar_audio")
    mics = [line for line in lines if line["event"] == "mic"]
    assert sum(line["n"] for line in mics) >= 16000 * 2.6 * 0.9  # the chunks OAC delivered, all stamped
    assert all(line["session"] == "oac-idle" for line in lines)
    assert max(line["rms"] for line in mics) > 0.05 > min(line["rms"] for line in mics)
