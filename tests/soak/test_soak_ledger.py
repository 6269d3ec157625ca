"""The soak run's invariants (e2e/soak/ledger.py) and schedule, on recordings whose faults are known."""

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from novabridge.events import AudioOut, Interrupted, Reconnecting, SonicEvent, Stage, ToolCall, Transcript, TurnEnd
from novabridge.sonic.history import History
from novabridge.sonic.wire import HISTORY_LIMIT_BYTES

from e2e.soak import host, ledger, report, resources, run
from e2e.soak.host import AudioFile, SessionLog, SoakSession, Utterance
from e2e.soak.schedule import HOST_CHAOS, KINDS, chaos_schedule

RATE = 16000
_OPEN: list[SessionLog] = []


@pytest.fixture(autouse=True)
def _close_logs() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def noise(seconds: float, seed: int) -> np.ndarray:
    """The host's audio: never a zero sample."""
    rng = np.random.default_rng(seed)
    return (rng.integers(1, 3000, round(seconds * RATE)) * rng.choice([-1, 1], round(seconds * RATE))).astype("<i2")


def fill(seconds: float) -> bytes:
    """The worker's silence fill."""
    return bytes(2 * round(seconds * RATE))


class Recorder:
    """Writes a run's recordings as the emulator does."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def stream(
        self,
        stream_id: int,
        user: bytes,
        answers: list[tuple[str, str, str, int, bytes]] = (),  # type: ignore[assignment]
        outcome: str | None = "completed",
        turns: list[int] | None = None,
    ) -> ledger.StreamAudit:
        """``answers``: (completion id, source, user text, user bytes when decided, audio); ``turns``: the emulator's
        turn index of each (by default its position)."""
        stem = self.directory / f"stream-{stream_id}"
        Path(f"{stem}-user.pcm").write_bytes(user)
        journal, audio = [], b""
        for number, (completion_id, source, text, decided, pcm) in enumerate(answers):
            turn = number if turns is None else turns[number]
            journal.append(
                {
                    "turn": turn,
                    "completion_id": completion_id,
                    "source": source,
                    "user_text": text,
                    "user_bytes": decided,
                }
            )
            if pcm:
                journal.append({"audio": completion_id, "assistant_offset": len(audio)})
            audio += pcm
        Path(f"{stem}-turns.jsonl").write_text("".join(json.dumps(line) + "\n" for line in journal))
        Path(f"{stem}-assistant.pcm").write_bytes(audio)
        if outcome is not None:
            stem.with_suffix(".json").write_text(json.dumps({"outcome": outcome}))
        return ledger.StreamAudit(f"run/stream-{stream_id}", self.directory, stream_id)


def session_with(
    directory: Path,
    audio: np.ndarray,
    utterances: list[Utterance] = (),  # type: ignore[assignment]
) -> SessionLog:
    log = SessionLog(0, directory / "host")
    _OPEN.append(log)
    log.sent.append(audio.tobytes())
    for utterance in utterances:
        log.take_turn(utterance)
    return log


def audit_all(log: SessionLog, audits: list[ledger.StreamAudit], dropped_output: int = 0) -> list[str]:
    for audit in audits:
        audit.advance([log], final=True)
    return ledger.settle(log, audits, dropped_output).violations


def test_audio_in_streams_with_silence_fill_and_a_replay_is_all_delivered(tmp_path: Path) -> None:
    sent = noise(6.0, 1)
    log = session_with(tmp_path, sent)
    record = Recorder(tmp_path)
    cut = 4 * RATE
    first = record.stream(1, fill(0.5) + sent[: cut // 2].tobytes() + fill(0.2) + sent[cut // 2 : cut].tobytes())
    second = record.stream(2, sent[cut - 2 * RATE :].tobytes())  # replays 2 s
    assert audit_all(log, [first, second]) == []
    verdict = ledger.settle(log, [first, second], 0)
    assert verdict.user_delivered == verdict.user_sent == sent.nbytes
    assert [(p.sent, p.length) for p in first.pieces] == [(0, cut)]


def test_audio_growing_in_small_pieces_is_followed_as_it_comes(tmp_path: Path) -> None:
    sent = noise(2.0, 2)
    log = session_with(tmp_path, sent)
    audit = Recorder(tmp_path).stream(1, b"")
    path = tmp_path / "stream-1-user.pcm"
    recorded = b"".join(sent[i : i + 999].tobytes() + fill(0.01) for i in range(0, len(sent), 999))
    for start in range(0, len(recorded), 1001):  # odd sizes: a sample split across two reads
        with path.open("ab") as file:
            file.write(recorded[start : start + 1001])
        audit.advance([log])
    audit.advance([log], final=True)
    assert audit.violations == []
    assert [(p.sent, p.length) for p in audit.pieces] == [(0, len(sent))]


def test_an_ended_streams_audio_is_placed_whole_at_once_and_no_audit_keeps_its_last_read(tmp_path: Path) -> None:
    sent = noise(3.0, 7)
    log = session_with(tmp_path, sent)
    record = Recorder(tmp_path / "run-1")
    two_s, rest = 2 * RATE, ledger.PROBE // 2  # a rest too short to place while its stream may still grow
    record.stream(1, sent[:two_s].tobytes() + sent[two_s + RATE // 2 :][:rest].tobytes())
    record.stream(2, sent[two_s + RATE // 2 :][:rest].tobytes(), outcome=None)  # still open
    audits = run.Audits(cast(run.Emulator, SimpleNamespace(runs=[tmp_path / "run-1"])))
    violations: list[str] = []
    audits.advance(cast(run.Run, SimpleNamespace(violation=violations.append)), [log])
    ended, open_ = audits.by_key["run-1/stream-1"], audits.by_key["run-1/stream-2"]
    assert violations == []
    assert ended.finished
    assert not open_.finished
    assert [(p.sent, p.length) for p in ended.pieces] == [(0, two_s), (two_s + RATE // 2, rest)]
    assert open_.pieces == []
    assert len(open_._pending) == rest
    # Each holds only the samples it has not placed, not the whole read they were cut from.
    assert ended._pending.base is None
    assert open_._pending.base is None


def test_the_sessions_resume_a_history_as_full_as_a_stream_takes_and_all_of_it_is_replayed() -> None:
    history = run.earlier_conversation(7)
    size = sum(len(m.text.encode()) for m in history)
    assert HISTORY_LIMIT_BYTES - 100 < size <= HISTORY_LIMIT_BYTES
    assert [m.role for m in history] == ["USER", "ASSISTANT"] * (len(history) // 2)
    assert History(history).for_config() == history
    assert run.earlier_conversation(7) == history
    assert run.earlier_conversation(8) != history


def test_audio_missing_unreported_is_a_violation_and_reported_is_not(tmp_path: Path) -> None:
    sent = noise(3.0, 3)
    hole = slice(RATE, RATE + 3200)
    recorded = np.concatenate([sent[: hole.start], sent[hole.stop :]]).tobytes()
    log = session_with(tmp_path, sent)
    found = audit_all(log, [Recorder(tmp_path / "a").stream(1, recorded)])
    assert len(found) == 1
    assert found[0].startswith("user audio lost: 6400 bytes never reached the service, 0 reported dropped")
    log.user_dropped_reported = 6400
    assert audit_all(log, [Recorder(tmp_path / "b").stream(1, recorded)]) == []


def test_audio_repeated_reordered_or_invented_is_a_violation(tmp_path: Path) -> None:
    sent = noise(3.0, 4)
    log = session_with(tmp_path, sent)
    repeated = np.concatenate([sent[: 2 * RATE], sent[RATE:]]).tobytes()
    assert "goes back 1.000 s" in " ".join(audit_all(log, [Recorder(tmp_path / "a").stream(1, repeated)]))
    corrupted = sent.copy()
    corrupted[RATE] += 1
    found = audit_all(log, [Recorder(tmp_path / "b").stream(1, corrupted.tobytes())])
    assert any("that no host sent" in v for v in found)
    longer = noise(6.0, 5)
    early = [Recorder(tmp_path / "c").stream(1, longer.tobytes()), Recorder(tmp_path / "c").stream(2, longer.tobytes())]
    found = audit_all(session_with(tmp_path / "longer", longer), early)
    assert "run/stream-2: starts 6.00 s before the previous stream's end (more than a replay)" in found


def answers_setup(tmp_path: Path) -> tuple[SessionLog, Recorder, bytes, list[Utterance]]:
    sent = noise(4.0, 5)
    turns = [Utterance(0, "speech", "one", 0, RATE, 0.0), Utterance(1, "speech", "two", 2 * RATE, 3 * RATE, 10.0)]
    return session_with(tmp_path, sent, turns), Recorder(tmp_path), sent.tobytes(), turns


def test_answers_match_their_turns_and_their_audio(tmp_path: Path) -> None:
    log, record, sent, _ = answers_setup(tmp_path)
    one, two = b"\x01\x02" * 500, b"\x03\x04" * 700
    audit = record.stream(
        1, sent, [("c1", "speech", "", 2 * (RATE + 4000), one), ("c2", "speech", "", 2 * (3 * RATE + 4000), two)]
    )
    log.receive("c1", one)
    log.receive("c2", two[:100])
    log.heard("c1", 1.0)
    log.heard("c2", 11.0)
    log.turn_ended("c1")
    log.interrupted("c2")  # a barge-in: the rest of c2 was dropped and reported
    assert audit_all(log, [audit], dropped_output=len(two) - 100) == []
    unreported = audit_all(log, [audit], dropped_output=0)
    short = len(two) - 100
    assert unreported == [
        f"assistant audio lost: interrupted answers are {short} bytes short at the host, 0 reported dropped"
    ]


def test_answers_short_lost_twice_reordered_late_or_missing_are_violations(tmp_path: Path) -> None:
    log, record, sent, turns = answers_setup(tmp_path)
    pcm = b"\x05\x06" * 400
    after_two, after_one = 2 * (3 * RATE + 4000), 2 * (RATE + 4000)
    audit = record.stream(
        1,
        sent,
        [
            ("c1", "speech", "", after_two, pcm),  # turn 1 first ...
            ("c2", "speech", "", after_one, pcm),  # ... then turn 0: reordered
            ("c3", "speech", "", after_one, pcm),  # turn 0 again, in full
            ("c4", "speech", "", after_one, pcm),  # no TurnEnd on a stream that ended well: lost
        ],
    )
    for completion_id, got in (("c1", pcm[:-2]), ("c2", pcm), ("c3", pcm)):
        log.receive(completion_id, got)
    for completion_id, heard_at in (("c1", 40.0), ("c2", 1.0), ("c3", 2.0)):
        log.turn_ended(completion_id)
        log.heard(completion_id, heard_at)
    found = "\n".join(audit_all(log, [audit]))
    assert f"answer c1 (completed): host got {len(pcm) - 2} bytes, emulator sent {len(pcm)}" in found
    assert "turn 0 answered after turn 1 (reordered)" in found
    assert "turn 0 (speech) answered 2 times in full" in found
    assert f"answer c4 (lost): no TurnEnd, no barge-in and no failure, {len(pcm)} bytes short" in found
    assert "turn 1 answered 30.0 s after it ended" in found
    # On a stream that failed, the last answer was cut: a prefix is all the host can have.
    failed = Recorder(tmp_path / "failed").stream(1, sent, [("c5", "speech", "", after_one, pcm)], outcome=None)
    log.receive("c5", pcm[:10])
    assert not [v for v in audit_all(log, [failed]) if "c5" in v]
    assert ledger.settle(log, [failed], 0).assistant_cut == len(pcm) - 10
    # A turn nobody answered, its audio all delivered.
    silent = Recorder(tmp_path / "silent").stream(1, sent)
    assert "turn 1 (speech 'two') never answered" in "\n".join(audit_all(log, [silent]))
    assert turns[1].text == "two"


def test_the_chaos_schedule_is_seeded_covers_every_kind_and_targets_sessions() -> None:
    schedule = chaos_schedule(7, sessions=4, start_s=10.0, end_s=70.0, mean_gap_s=4.0)
    assert schedule == chaos_schedule(7, sessions=4, start_s=10.0, end_s=70.0, mean_gap_s=4.0)
    assert schedule != chaos_schedule(8, sessions=4, start_s=10.0, end_s=70.0, mean_gap_s=4.0)
    assert set(KINDS) <= {e.kind for e in schedule}
    assert len(schedule) == 15
    times = [e.at_s for e in schedule]
    assert times == sorted(times)
    assert times[0] > 10.0
    assert times[-1] < 70.0
    for event in schedule:
        targeted = event.kind in HOST_CHAOS and event.kind != "emulator-restart"
        assert (event.session is not None) == targeted
        assert event.session is None or 0 <= event.session < 4
        assert (event.spec is None) == (event.kind in HOST_CHAOS)
        assert (2.0 <= event.stop_s <= 5.0) == (event.kind == "worker-stop")
    with pytest.raises(ValueError, match="empty"):
        chaos_schedule(1, sessions=1, start_s=5.0, end_s=5.0, mean_gap_s=1.0)


def test_the_rss_slope_is_a_least_squares_fit_per_ten_minutes() -> None:
    times = [float(t) for t in range(0, 600, 2)]
    rng = np.random.default_rng(0)
    values = [100.0 + 0.01 * t + rng.normal(0, 0.5) for t in times]  # 0.01 MiB/s: 6 MiB per 10 minutes
    assert resources.slope_per_10_min(times, values) == pytest.approx(6.0, abs=0.5)
    assert resources.slope_per_10_min([1.0], [5.0]) == 0.0


def test_the_hosts_slope_by_half_tells_a_leak_from_a_high_water_mark_raised_in_steps() -> None:
    def host_at(t: float, mib: float) -> resources.Sample:
        return resources.Sample(t, 0, 0, 0, 0, int(mib * 1024 * 1024), 0, 0, 0, 0, 0)

    times = [float(t) for t in range(0, 1800, 2)]
    leak = [host_at(t, 100.0 + t / 300) for t in times]  # 2 MiB per 10 minutes throughout
    first, second = report.host_rss_slopes_by_half(leak, warm_s=120.0)
    assert first == pytest.approx(2.0, abs=0.01)
    assert second == pytest.approx(2.0, abs=0.01)
    # Steps at 300, 500, 800 and 1700 s (bursts that set a new high-water mark), fewer as the run goes on.
    steps = [host_at(t, 100.0 + sum(1.0 for at in (300, 500, 800, 1700) if t >= at)) for t in times]
    first, second = report.host_rss_slopes_by_half(steps, warm_s=120.0)
    assert first > 1.0 > second
    assert report.host_rss_slopes_by_half(steps, warm_s=2000.0) == (0.0, 0.0)


def test_rss_is_fitted_process_by_process_from_each_ones_warm_up() -> None:
    # The emulator restarted and a worker replaced after a SIGKILL start over from their own levels: one line through
    # the processes took the steps between them, and a replacement's warm-up, for growth.
    def at(t: float, emulator_pid: int, emulator_mib: float, workers: dict[str, float]) -> resources.Sample:
        mib = 1024 * 1024
        return resources.Sample(
            t, 0, 0, 0, 0, int(200 * mib), 0, int(emulator_mib * mib), 0, 0, 0, emulator_pid,
            {pid: int(rss * mib) for pid, rss in workers.items()},
        )  # fmt: skip

    samples = []
    for t in range(0, 1200, 2):
        # The emulator restarts at 400 s and warms up from 100 MiB to 150 MiB over its first 60 s; flat otherwise.
        emulator = (1, 150.0) if t < 400 else (2, 100.0 + 50.0 * min(1.0, (t - 400) / 60))
        # Worker 11 is killed at 600 s; worker 12 takes its session, warms up over 60 s, then stays flat.
        workers = {"10": 180.0, "11" if t < 600 else "12": 180.0 if t < 600 else 120.0 + min(60.0, t - 600)}
        samples.append(at(float(t), *emulator, workers))
    assert report.rss_slopes(samples, warm_s=120.0) == pytest.approx({"host": 0.0, "worker": 0.0, "emulator": 0.0})
    # Growth within each process is found whatever the steps between them.
    growing = [
        dataclasses.replace(
            s,
            rss_emulator=s.rss_emulator + int(s.t_s * 1024 * 1024 / 600),
            session_workers={pid: rss + int(s.t_s * 2 * 1024 * 1024 / 600) for pid, rss in s.session_workers.items()},
        )
        for s in samples
    ]
    slopes = report.rss_slopes(growing, warm_s=120.0)
    assert slopes["emulator"] == pytest.approx(1.0, abs=0.01)
    assert slopes["worker"] == pytest.approx(2.0, abs=0.01)


def test_a_sample_sees_this_process_its_threads_and_a_memfd() -> None:
    import os

    before = resources.sample(0.0, None)
    fd = os.memfd_create("soak-test")
    try:
        after = resources.sample(1.0, None)
    finally:
        os.close(fd)
    assert after.processes >= 1
    assert after.host_threads >= 1
    assert after.memfds == before.memfds + 1
    assert after.host_fds == before.host_fds + 1
    assert after.rss_host > 10 * 1024 * 1024
    # Split into the heap, mapped code and shared memory, which add up to it (read from one look at /proc).
    kinds = after.host_rss_by_kind
    assert kinds["anon"] > 0
    assert kinds["file"] > 0
    assert kinds["anon"] + kinds["file"] + kinds["shmem"] == pytest.approx(after.rss_host, rel=0.05)


def test_a_tool_result_answered_after_later_turns_answers_the_turn_that_asked(tmp_path: Path) -> None:
    log, record, sent, _ = answers_setup(tmp_path)
    pcm = b"\x09\x0a" * 300
    after_one, after_two = 2 * (RATE + 4000), 2 * (3 * RATE + 4000)
    answers = [
        ("c1", "speech", "", after_one, b""),  # asks for a tool; the user speaks again before its result
        ("c2", "speech", "", after_two, pcm),
        ("c3", "tool", "", after_two, pcm),  # the result came: turn 0 is answered, after turn 1
    ]
    audit = record.stream(1, sent, answers, turns=[0, 1, 0])
    log.interrupted("c1")
    for completion_id, heard_at in (("c2", 11.0), ("c3", 12.0)):
        log.receive(completion_id, pcm)
        log.turn_ended(completion_id)
        log.heard(completion_id, heard_at)
    assert audit_all(log, [audit]) == []
    assert ledger.settle(log, [audit], 0).answered == 2


def test_a_spoken_turn_asked_again_as_text_is_the_same_turn(tmp_path: Path) -> None:
    log, record, sent, _ = answers_setup(tmp_path)
    pcm = b"\x07\x08" * 300
    after_one = 2 * (RATE + 4000)
    cut = record.stream(1, sent[: 2 * (RATE + 8000)], [("c1", "speech", "(speech, 1.0 seconds)", after_one, pcm)], None)
    again = record.stream(2, sent[2 * (RATE + 8000) :], [("c2", "text", "(speech, 1.0 seconds)", 0, pcm)])
    log.receive("c1", pcm[:50])
    log.receive("c2", pcm)
    log.turn_ended("c2")
    found = audit_all(log, [cut, again])
    assert found == ["turn 1 (speech 'two') never answered"]
    assert ledger.settle(log, [cut, again], 0).answered == 1


def test_the_hosts_audio_file_finds_a_probe_sample_aligned_across_its_windows(tmp_path: Path) -> None:
    audio = AudioFile(tmp_path / "sent.pcm")
    audio.WINDOW = 64
    data = bytes(range(1, 200)) * 3
    audio.append(data)
    probe = data[131:141]  # at an odd offset first: the even one is the next repeat
    assert audio.find(probe) == 330  # 131 + 199: the next repeat, at an even offset
    assert audio.read(10, 20) == data[10:20]
    audio.truncate(100)
    assert audio.read(90, 200) == data[90:100]
    assert audio.find(probe) == -1
    audio.close()


def test_an_answer_a_renewal_dropped_is_retired_and_the_next_streams_answers_the_turn(tmp_path: Path) -> None:
    # Text typed as a renewal took over: the old stream began an answer, the session dropped it (the host got none of
    # it) and asked the text again on the next stream, which answered it.
    log, record, sent, turns = answers_setup(tmp_path)
    typed_at = turns[-1].ended_at
    log.take_turn(Utterance(len(turns), "text", "typed", 0, 0, typed_at))
    pcm = b"\x09\x0a" * 200
    renewed = record.stream(1, sent[: 2 * RATE], [("c1", "text", "typed", 0, pcm)])
    following = record.stream(2, sent[2 * RATE :], [("c2", "text", "typed", 0, pcm)])
    log.receive("c2", pcm)
    log.turn_ended("c2")
    log.heard("c2", typed_at + 1.0)
    found = [v for v in audit_all(log, [renewed, following]) if "typed" in v or "c1" in v or "c2" in v]
    assert found == []
    assert ledger.settle(log, [renewed, following], 0).assistant_retired == len(pcm)
    # The same answer on the session's last stream, or with some of it heard, was not dropped by a renewal: lost.
    assert "answer c1 (lost)" in "\n".join(audit_all(log, [renewed]))
    log.receive("c1", pcm[:4])
    assert "answer c1 (lost)" in "\n".join(audit_all(log, [renewed, following]))


class ToolResults:
    """The one `SonicBridge` call a soak session's tool timer makes."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_tool_result(self, tool_use_id: str, result: object) -> None:
        self.sent.append(tool_use_id)


def test_a_session_is_not_idle_while_the_turn_that_cut_its_awaited_one_goes_on(tmp_path: Path) -> None:
    # Found by the short soak run: a replayed sentence heard as two turns, the first cut by the second, cleared the
    # turn awaited; the run ended while the second's answer, waiting on a slow tool, was still to come (3,840 bytes
    # of it never reached the host).
    log = SessionLog(0, tmp_path)
    _OPEN.append(log)
    bridge = ToolResults()
    session = SoakSession(log, bridge, seed=1)  # type: ignore[arg-type]
    session._awaiting = Utterance(0, "speech", "what time", 0, RATE)
    events: list[SonicEvent] = [
        Transcript("USER", "(speech, 0.9 seconds)", Stage.FINAL, "t1"),
        Interrupted("t1"),
        TurnEnd("t1", "INTERRUPTED"),
        Transcript("USER", "(speech, 1.2 seconds)", Stage.FINAL, "t2"),
        ToolCall("u2", "lookup", {}, "t2"),
    ]
    for event in events:
        session._on_event(event)
    assert session._awaiting is None
    assert not session.idle()  # t2 is under way, its tool result is due
    session._timers = [(0.0, *timer[1:]) for timer in session._timers]
    session._run_timers()
    assert bridge.sent == ["u2"]
    assert not session.idle()  # the result went: its answer is due
    session._on_event(AudioOut(bytes(480), 24000, "t2"))
    session._tool_answer_due = 0.0
    assert not session.idle()  # the answer plays
    session._on_event(TurnEnd("t2", "END_TURN"))
    assert session.idle()
    session._on_event(Transcript("USER", "(speech, 1.0 seconds)", Stage.FINAL, "t3"))
    session._on_event(Reconnecting("the stream failed", 1))
    assert session.idle()  # a replaced stream's turns end with it: they are asked again on the next


class SilentBridge(ToolResults):
    """A `SonicBridge` that takes audio and text and says nothing: what a soak session's two threads call."""

    def start(self) -> None:
        pass

    def send_audio(self, frame: np.ndarray) -> None:
        pass

    def send_text(self, text: str) -> None:
        pass

    def poll(self, timeout: float) -> list[SonicEvent]:
        time.sleep(timeout)
        return []

    def close(self) -> None:
        pass


def test_a_wall_clock_that_jumps_ahead_does_not_hurry_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by a 30-minute run: the machine's wall clock jumped about 17 s ahead (the emulator's monotonic clock saw 4 s
    # where the hosts' wall clock saw 21). Every session paced its user by the wall clock, so each turn planned before
    # the jump came due at once, within the endpointing of the turn before: two turns heard as one, one "never
    # answered", one "reordered".
    log = SessionLog(0, tmp_path)
    _OPEN.append(log)
    session = SoakSession(log, SilentBridge(), seed=15)  # type: ignore[arg-type]  # its first turn in 1.95 s
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 60.0)
    session.start()
    try:
        time.sleep(0.5)
        assert log.sent.size > 0  # the user's microphone runs
        assert log.turns_taken == 0
    finally:
        session.finish()
    assert session.crashed is None


def test_the_session_log_journals_the_turns_and_reads_them_back(tmp_path: Path) -> None:
    # The run's per-turn records live in a file, not in the host whose RSS is measured; the ledger reads them back.
    log = SessionLog(3, tmp_path)
    _OPEN.append(log)
    spoken = Utterance(0, "speech", "one", 0)
    log.take_turn(spoken)
    log.take_turn(Utterance(1, "text", "typed", 80, 80, 2.0))
    spoken.end, spoken.ended_at = 160, 3.0
    log.end_turn(spoken)
    log.receive("c1", b"\x01\x02" * 10)
    log.receive("c1", b"\x03\x04" * 10)  # follows on: the same range
    log.receive("c2", b"\x05\x06" * 5)
    log.receive("c1", b"\x07\x08" * 5)  # c1 again after c2's audio: a second range
    log.heard("c1", 4.0)
    log.heard("c1", 9.0)  # only the first counts
    log.turn_ended("c2")
    log.interrupted("c1")
    log.host_interrupted("c2")
    log.recovered(1.5)
    records = log.read()
    assert records.utterances == [
        Utterance(0, "speech", "one", 0, 160, 3.0),
        Utterance(1, "text", "typed", 80, 80, 2.0),
    ]
    assert records.received_chunks == {"c1": [(0, 40), (50, 60)], "c2": [(40, 50)]}
    assert records.received_audio("c1") == b"\x01\x02" * 10 + b"\x03\x04" * 10 + b"\x07\x08" * 5
    assert records.first_audio_at == {"c1": 4.0}
    assert (records.turn_ends, records.interrupted, records.host_interrupts) == ({"c2"}, {"c1"}, {"c2"})
    assert records.recoveries_s == [1.5]
    assert log.turns_taken == 2
    log.close()
    assert log.read().utterances == records.utterances  # the report reads it after the run closed the log


def test_a_turn_end_just_after_the_user_stopped_speaking_does_not_start_a_turn_within_the_endpointing(
    tmp_path: Path,
) -> None:
    # Found by a 30-minute run: a barge-in's speech ended, the end of the turn it cut (asked again after a failure)
    # came at once, and the user spoke again 0.48 s later: within the emulator's 0.6 s endpointing, so both were heard
    # as one turn, and the first counted as never answered.
    log = SessionLog(0, tmp_path)
    _OPEN.append(log)
    session = SoakSession(log, ToolResults(), seed=1)  # type: ignore[arg-type]
    stopped = 1000.0
    session._awaiting = Utterance(0, "speech", "over the answer", 0, RATE, stopped, barge_in=True)
    session._spoke_until = stopped
    session._answered(stopped + 0.01)  # the cut turn's TurnEnd, taken for the answer
    assert session._awaiting is None
    session._next_at = stopped + 0.31  # the soonest `_answered` plans the next turn
    assert not session._turn_due(stopped + 0.5)
    assert session._turn_due(stopped + host.TURN_GAP_S + 1.5)
    assert host.TURN_GAP_S > 0.6  # the run's emulator endpointing


def test_the_hosts_c_heap_counts_memory_held_apart_from_memory_the_allocator_keeps_free() -> None:
    before = resources.heap_bytes()
    held = [bytes(range(256)) * 16 for _ in range(1024)]  # 4 MiB in blocks of 4 KiB, from the C heap
    during = resources.heap_bytes()
    del held
    after = resources.heap_bytes()
    assert during["in_use"] - before["in_use"] >= 4 * 1024 * 1024
    assert during["in_use"] - after["in_use"] >= 4 * 1024 * 1024
    assert resources.sample(0.0, None).host_heap.keys() == {"in_use", "free"}


def test_the_hosts_python_heap_counts_its_objects_and_the_arenas_they_take() -> None:
    before = resources.python_heap_bytes()
    held = [str(n) * 3 for n in range(200_000)]  # small objects: pymalloc's, not the C heap's
    during = resources.python_heap_bytes()
    del held
    after = resources.python_heap_bytes()
    assert during["in_use"] - before["in_use"] >= 200_000 * 48
    assert during["arenas"] - before["arenas"] >= 200_000 * 32  # some fill what the arenas had free
    assert during["in_use"] - after["in_use"] >= 200_000 * 48
    assert during["arenas"] >= during["in_use"]
    assert resources.sample(0.0, None).host_python_heap.keys() == {"arenas", "in_use"}


def test_a_historys_footprint_grows_with_its_text_and_its_messages() -> None:
    history = History()
    history.add("USER", "a" * 1000)
    one = resources.history_bytes(history.for_config())
    history.add("ASSISTANT", "b" * 1000)
    two = resources.history_bytes(history.for_config())
    assert 1000 < one < 1200
    assert two - one > 1000
    assert resources.sample(0.0, None, histories=two).host_histories == two
