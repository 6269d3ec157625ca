"""The bridge's barge-in filter (`novabridge.turns.StaleOutput`) and first-audio clock, on events, without a worker."""

import time

from novabridge.events import AudioOut, Interrupted, SonicEvent, Stage, Transcript, TurnEnd
from novabridge.turns import RECENT_TURNS, TIMING_SAMPLES, FirstAudioClock, StaleOutput, timings, withdraw_audio


def audio(turn: str, size: int = 480) -> AudioOut:
    return AudioOut(bytes(size), 24000, turn)


def same_rate(service_bytes: int) -> int:
    return service_bytes


def test_without_a_barge_in_everything_passes() -> None:
    events: list[SonicEvent] = [
        audio("t1"),
        Transcript("ASSISTANT", "Hi.", Stage.FINAL, "t1"),
        TurnEnd("t1", "END_TURN"),
    ]
    stale = StaleOutput(same_rate)
    assert stale.filter(events) == events
    assert stale.dropped_bytes == 0


def test_an_interruption_withdraws_its_turns_queued_audio_and_drops_what_the_turn_still_sends() -> None:
    stale = StaleOutput(same_rate)
    batch = stale.filter([audio("t1", 100), audio("t1", 200), Interrupted("t1", dropped_bytes=50), audio("t1", 300)])
    assert batch == [Interrupted("t1", dropped_bytes=50 + 100 + 200)]
    assert stale.filter([audio("t1", 400), audio("t2", 10)]) == [audio("t2", 10)]
    assert stale.dropped_bytes == 50 + 100 + 200 + 300 + 400


def test_an_interruption_keeps_other_turns_audio_and_other_events() -> None:
    stale = StaleOutput(same_rate)
    heard = Transcript("USER", "stop", Stage.FINAL, "t2")
    batch = stale.filter([audio("t0", 7), audio("t1", 100), heard, Interrupted("t1")])
    assert batch == [audio("t0", 7), heard, Interrupted("t1", dropped_bytes=100)]


def test_the_services_dropped_bytes_are_converted_to_the_host_rate() -> None:
    stale = StaleOutput(lambda service_bytes: service_bytes * 2 // 3)  # 24 kHz from the service, 16 kHz out
    (interrupted,) = stale.filter([Interrupted("t1", dropped_bytes=960)])
    assert interrupted == Interrupted("t1", dropped_bytes=640)
    assert stale.dropped_bytes == 640


def test_the_hosts_interrupt_cuts_the_queued_audio_and_the_answer_being_played() -> None:
    stale = StaleOutput(same_rate)
    assert stale.filter([audio("t1", 100)]) == [audio("t1", 100)]  # t1 is playing
    kept, dropped = stale.interrupt([audio("t1", 200), TurnEnd("t0", "END_TURN"), audio("t2", 300)])
    assert kept == [TurnEnd("t0", "END_TURN")]
    assert dropped == 500
    assert stale.filter([audio("t1", 1), audio("t2", 2), audio("t3", 3)]) == [audio("t3", 3)]
    assert stale.dropped_bytes == 500 + 1 + 2


def test_the_hosts_interrupt_of_one_answer_keeps_the_next_one_queued_behind_it() -> None:
    # Found by the soak run: a host stopping an answer that had just ended cut the next one, queued unread, whose
    # TurnEnd still came: the host could not tell it had cut it.
    stale = StaleOutput(same_rate)
    assert stale.filter([audio("t1", 100)]) == [audio("t1", 100)]
    queued: list[SonicEvent] = [audio("t1", 200), TurnEnd("t1", "END_TURN"), audio("t2", 300)]
    kept, dropped = stale.interrupt(queued, "t1")
    assert kept == [TurnEnd("t1", "END_TURN"), audio("t2", 300)]
    assert dropped == 200
    assert stale.filter([audio("t1", 1), audio("t2", 2)]) == [audio("t2", 2)]
    assert stale.dropped_bytes == 200 + 1


def test_withdraw_audio_takes_one_turns_audio_out_of_any_queue() -> None:
    queue = [(1, audio("a", 10)), (2, audio("b", 20)), (3, TurnEnd("a", "END_TURN")), (4, audio("a", 30))]
    kept, withdrawn = withdraw_audio(queue, "a", event_of=lambda item: item[1])
    assert kept == [(2, audio("b", 20)), (3, TurnEnd("a", "END_TURN"))]
    assert withdrawn == 40


def test_first_audio_is_timed_from_the_users_final_transcript_once_per_answer() -> None:
    clock = FirstAudioClock()
    clock.audio()  # audio with no question pending: not an answer's first
    assert not clock.samples
    clock.user_final()
    time.sleep(0.02)
    clock.audio()
    clock.audio()  # the same answer's later audio
    assert len(clock.samples) == 1
    assert 0.02 <= clock.samples[0] < 1.0
    clock.user_final()
    clock.cancel()  # the turn ended without audio
    clock.audio()
    assert len(clock.samples) == 1


def test_first_audio_appends_to_the_series_it_is_given() -> None:
    metrics_field = timings()
    metrics_field.append(0.5)
    clock = FirstAudioClock(metrics_field)
    clock.user_final()
    clock.audio()
    assert clock.samples is metrics_field
    assert len(metrics_field) == 2


def test_first_audio_keeps_the_newest_timings_only() -> None:
    # A bridge answers turns for days: one float per turn kept for ever grows the host without bound.
    clock = FirstAudioClock()
    for _ in range(TIMING_SAMPLES + 5):
        clock.user_final()
        clock.audio()
    assert len(clock.samples) == TIMING_SAMPLES


def test_the_cut_turns_are_remembered_for_the_recent_turns_only() -> None:
    # A turn id per barge-in kept for the bridge's life grew the host with every interrupted answer.
    stale = StaleOutput(lambda n: n)
    for n in range(3 * RECENT_TURNS):
        stale.filter([audio(f"turn-{n}"), Interrupted(f"turn-{n}", 0)])
    assert len(stale._cut) == RECENT_TURNS
    newest = f"turn-{3 * RECENT_TURNS - 1}"
    assert stale.filter([audio(newest), audio("new")]) == [audio("new")], "a recent cut turn's audio is still dropped"
