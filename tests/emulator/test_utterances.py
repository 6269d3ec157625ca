"""`find_utterances`: the ends of speech in a whole recording, which the demo's latencies are counted from."""

import numpy as np
import pytest
from novabridge.emulator.vad import (
    QUIETEST_SPEECH_DBFS,
    EnergyVad,
    SpeechEnded,
    Utterance,
    find_utterances,
    noise_floor_threshold_dbfs,
)

RATE = 16000
FRAME_S = 0.01  # the detector's resolution: starts and ends fall on 10 ms frames


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def voice(seconds: float, level: float = 0.2) -> np.ndarray:
    """A vowel-like sound: a 150 Hz fundamental and two harmonics."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = np.sin(2 * np.pi * 150 * t) + 0.5 * np.sin(2 * np.pi * 300 * t) + 0.25 * np.sin(2 * np.pi * 450 * t)
    return np.round(wave / 1.75 * level * 32767).astype(np.int16)


def noise(seconds: float, dbfs: float, seed: int = 7) -> np.ndarray:
    rms = 32768 * 10 ** (dbfs / 20)
    samples = np.random.default_rng(seed).normal(0.0, rms, round(seconds * RATE))
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def spans(utterances: list[Utterance]) -> list[tuple[float, float]]:
    return [(round(u.start_s, 3), round(u.end_s, 3)) for u in utterances]


def test_digital_silence_has_no_speech() -> None:
    assert find_utterances(silence(5.0), RATE) == []


def test_an_empty_recording_has_no_speech() -> None:
    assert find_utterances(np.zeros(0, np.int16), RATE) == []


@pytest.mark.parametrize("dbfs", [-70.0, -45.0, -30.0, -15.0])
def test_steady_noise_alone_is_not_speech_at_any_level(dbfs: float) -> None:
    assert find_utterances(noise(6.0, dbfs), RATE) == []


def test_two_utterances_in_silence_start_and_end_where_the_voice_does() -> None:
    audio = np.concatenate([silence(0.5), voice(1.2), silence(1.0), voice(0.8), silence(0.7)])
    assert spans(find_utterances(audio, RATE)) == [(0.5, 1.7), (2.7, 3.5)]


def test_two_utterances_in_noise_are_found_over_its_floor() -> None:
    quiet = np.concatenate([silence(0.5), voice(1.2), silence(1.0), voice(0.8), silence(0.7)])
    audio = (quiet.astype(np.int32) + noise(len(quiet) / RATE, -50.0)).astype(np.int16)
    found = find_utterances(audio, RATE)
    assert len(found) == 2
    for utterance, (start, end) in zip(found, [(0.5, 1.7), (2.7, 3.5)], strict=True):
        assert abs(utterance.start_s - start) <= 2 * FRAME_S
        assert abs(utterance.end_s - end) <= 2 * FRAME_S


def test_the_threshold_follows_the_noise_floor_and_never_goes_below_the_quietest_speech() -> None:
    assert noise_floor_threshold_dbfs(silence(2.0), RATE) == QUIETEST_SPEECH_DBFS
    assert noise_floor_threshold_dbfs(noise(2.0, -80.0), RATE) == QUIETEST_SPEECH_DBFS
    floor = noise_floor_threshold_dbfs(noise(2.0, -40.0), RATE)
    assert -32.0 < floor < -28.0  # 10 dB over a -40 dBFS floor


def test_quiet_speech_under_loud_noise_is_missed_rather_than_invented() -> None:
    # Speech 5 dB over the noise is below the margin: nothing found, not the whole recording as one utterance.
    loud = noise(4.0, -25.0)
    audio = loud.astype(np.int32)
    audio[RATE : 2 * RATE] += voice(1.0, level=0.12)[:RATE]
    assert find_utterances(np.clip(audio, -32768, 32767).astype(np.int16), RATE) == []


def test_a_pause_shorter_than_the_hangover_does_not_split_an_utterance() -> None:
    audio = np.concatenate([voice(0.5), silence(0.25), voice(0.5), silence(1.0)])
    assert spans(find_utterances(audio, RATE, hangover_s=0.3)) == [(0.0, 1.25)]
    assert spans(find_utterances(audio, RATE, hangover_s=0.2)) == [(0.0, 0.5), (0.75, 1.25)]


def test_clicks_shorter_than_the_onset_are_not_speech() -> None:
    click = np.concatenate([voice(0.03, level=0.9), silence(0.5)])
    assert find_utterances(np.concatenate([click] * 5), RATE, onset_s=0.06) == []


def test_speech_running_to_the_end_of_the_recording_ends_there() -> None:
    audio = np.concatenate([silence(0.4), voice(1.0)])
    assert spans(find_utterances(audio, RATE)) == [(0.4, 1.4)]


def test_speech_from_the_first_sample_is_found() -> None:
    # A trimmed recording: the floor comes from the whole of it, not from its first frames.
    audio = np.concatenate([voice(1.0), silence(1.0), voice(0.5), silence(0.5)])
    assert spans(find_utterances(audio, RATE)) == [(0.0, 1.0), (2.0, 2.5)]


def test_float_samples_give_the_same_utterances_as_int16() -> None:
    audio = np.concatenate([silence(0.3), voice(0.6), silence(0.8), voice(0.4), silence(0.5)])
    as_float = (audio.astype(np.float32) / 32768).reshape(1, -1)  # OpenAvatarChat's (1, N) float32
    assert find_utterances(as_float, RATE) == find_utterances(audio, RATE)


@pytest.mark.parametrize("rate", [8000, 22050, 48000])
def test_times_are_in_seconds_at_any_rate(rate: int) -> None:
    t = np.arange(rate) / rate
    tone = np.round(np.sin(2 * np.pi * 200 * t) * 6000).astype(np.int16)
    audio = np.concatenate([np.zeros(rate // 2, np.int16), tone, np.zeros(rate, np.int16)])
    (utterance,) = find_utterances(audio, rate)
    assert utterance.start_s == pytest.approx(0.5, abs=FRAME_S)
    assert utterance.end_s == pytest.approx(1.5, abs=FRAME_S)


def test_the_demos_synthetic_user_is_three_utterances_ending_at_its_last_voiced_samples() -> None:
    from novabridge.demo import DEMO_TURNS, demo_user_audio

    audio = demo_user_audio()
    found = find_utterances(audio, 16000)
    assert len(found) == len(DEMO_TURNS)
    voiced = np.flatnonzero(audio)
    for utterance in found:
        inside = voiced[(voiced >= utterance.start_s * 16000) & (voiced < utterance.end_s * 16000 + 160)]
        # The utterance ends on a 10 ms frame boundary next to its last voiced sample.
        assert abs((inside[-1] + 1) / 16000 - utterance.end_s) < 0.02


@pytest.mark.parametrize(
    ("samples", "rate", "kwargs", "error"),
    [
        (np.zeros(10, np.int32), RATE, {}, TypeError),
        ([0, 1, 2], RATE, {}, TypeError),
        (np.zeros((2, 10), np.int16), RATE, {}, ValueError),
        (np.full(10, np.nan, np.float32), RATE, {}, ValueError),
        (np.zeros(10, np.int16), 0, {}, ValueError),
        (np.zeros(10, np.int16), 16000.0, {}, ValueError),
        (np.zeros(10, np.int16), RATE, {"hangover_s": 0.0}, ValueError),
        (np.zeros(10, np.int16), RATE, {"onset_s": -1.0}, ValueError),
    ],
)
def test_bad_input_is_a_clear_error(samples: object, rate: object, kwargs: dict[str, float], error: type) -> None:
    with pytest.raises(error):
        find_utterances(samples, rate, **kwargs)  # type: ignore[arg-type]


def test_finish_ends_an_open_utterance_where_its_voice_ended() -> None:
    vad = EnergyVad(RATE, pause_s=0.5)
    vad.feed(np.concatenate([voice(0.4), silence(0.2)]).tobytes())
    assert vad.in_speech
    (ended,) = vad.finish()
    assert isinstance(ended, SpeechEnded)
    assert ended.at_s == pytest.approx(0.4)
    assert not vad.in_speech
    assert vad.finish() == []
