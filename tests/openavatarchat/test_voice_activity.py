"""The host's voice-activity detector on synthetic signals: voiced sounds with speech-like envelopes, noise at several
levels, hum, clicks, silence, fed whole and in chunks of random sizes."""

import time

import numpy as np
import numpy.typing as npt
import pytest
from novabridge.voice_activity import VoiceDetector, VoiceEnded, VoiceEvent, VoiceStarted, last_voice_end

RATE = 16000


def dbfs(level: float) -> float:
    """The amplitude (of float samples in [-1, 1]) whose RMS is ``level`` dBFS, for a sine."""
    return float(np.sqrt(2) * 10 ** (level / 20))


def voiced(seconds: float, level_dbfs: float, f0: float = 140.0, attack_s: float = 0.02) -> npt.NDArray[np.float64]:
    """A vowel-like sound: a fundamental and falling harmonics with a raised-cosine attack and release."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, 8))
    wave = wave / np.sqrt(np.mean(wave**2)) * 10 ** (level_dbfs / 20)
    ramp = min(len(t) // 2, round(attack_s * RATE))
    envelope = np.ones(len(t))
    envelope[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope[len(t) - ramp :] = envelope[:ramp][::-1]
    return np.asarray(wave * envelope)


def speech(seconds: float, level_dbfs: float, seed: int = 0) -> npt.NDArray[np.float64]:
    """Syllables of 120-300 ms at varying pitch and level, with 30-90 ms gaps: what a sentence's envelope does."""
    rng = np.random.default_rng(seed)
    pieces: list[npt.NDArray[np.float64]] = []
    total = 0
    while total < seconds * RATE:
        syllable = voiced(rng.uniform(0.12, 0.3), level_dbfs + rng.uniform(-4, 2), f0=rng.uniform(110, 220))
        gap = np.zeros(round(rng.uniform(0.03, 0.09) * RATE))
        pieces += [syllable, gap]
        total += len(syllable) + len(gap)
    return np.concatenate(pieces)[: round(seconds * RATE)]


def noise(seconds: float, level_dbfs: float, seed: int = 1) -> npt.NDArray[np.float64]:
    return np.random.default_rng(seed).normal(0.0, 10 ** (level_dbfs / 20), round(seconds * RATE))


def hum(seconds: float, level_dbfs: float, mains_hz: float = 50.0) -> npt.NDArray[np.float64]:
    """Mains hum: the fundamental and its odd harmonics, steady."""
    t = np.arange(round(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * mains_hz * k * t) / k for k in (1, 3, 5, 7))
    return np.asarray(wave / np.sqrt(np.mean(wave**2)) * 10 ** (level_dbfs / 20))


def at(signal: npt.NDArray[np.float64], start_s: float, seconds: float) -> npt.NDArray[np.float64]:
    """``signal`` placed at ``start_s`` in ``seconds`` of digital silence."""
    out = np.zeros(round(seconds * RATE))
    begin = round(start_s * RATE)
    out[begin : begin + len(signal)] = signal[: len(out) - begin]
    return out


def as_int16(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(signal * 32768), -32768, 32767).astype(np.int16)


def run(signal: npt.NDArray[np.float64], chunk: int | None = 960, seed: int = 2, **settings: float) -> list[VoiceEvent]:
    """The events of ``signal`` (as int16) fed in chunks of ``chunk`` samples, or of random sizes if None."""
    detector = VoiceDetector(RATE, **settings)
    audio = as_int16(signal)
    rng = np.random.default_rng(seed)
    events: list[VoiceEvent] = []
    offset = 0
    while offset < len(audio):
        size = chunk if chunk is not None else int(rng.integers(1, 2000))
        events += detector.feed(audio[offset : offset + size])
        offset += size
    return events


def onsets(events: list[VoiceEvent]) -> list[VoiceStarted]:
    return [e for e in events if isinstance(e, VoiceStarted)]


def test_silence_and_low_noise_never_start_voice() -> None:
    assert run(np.zeros(RATE * 5)) == []
    for level in (-80.0, -65.0, -50.0, -40.0, -30.0, -20.0):  # a quiet room to a loud fan, present from the start
        assert run(noise(8.0, level, seed=int(-level))) == [], level


def test_a_steady_hum_is_the_floor() -> None:
    for level, mains in ((-40.0, 50.0), (-25.0, 60.0), (-12.0, 50.0)):
        assert run(hum(8.0, level, mains)) == [], (level, mains)
    # A hum that starts mid-stream sounds like an onset, once; as it stays steady it becomes the floor.
    late = at(hum(9.0, -25.0, 60.0), 1.0, 10.0) + noise(10.0, -70.0)
    events = run(late)
    assert [type(e) for e in events] == [VoiceStarted, VoiceEnded]
    assert events[0].at_s == pytest.approx(1.0, abs=0.02)
    assert events[1].detected_at_s < 1.0 + 4.0


@pytest.mark.parametrize("level", [-45.0, -35.0, -25.0, -15.0])
@pytest.mark.parametrize("background", ["silence", "noise", "hum"])
def test_a_voice_onset_is_reported_within_60_ms(level: float, background: str) -> None:
    start = 2.0 + 0.0037  # not on a frame boundary
    bed = {
        "silence": np.zeros(4 * RATE),
        "noise": noise(4.0, -62.0),
        "hum": hum(4.0, -50.0),
    }[background]
    events = run(bed + at(speech(1.5, level, seed=int(-level)), start, 4.0))
    found = onsets(events)
    assert len(found) == 1, events
    assert start - 0.01 <= found[0].at_s <= start + 0.03
    assert found[0].detected_at_s - start <= 0.06  # the detector's own delay, from the true onset
    ended = [e for e in events if isinstance(e, VoiceEnded)]
    assert len(ended) == 1  # the gaps between syllables are bridged by the hangover
    assert ended[0].at_s == pytest.approx(start + 1.5, abs=0.03)
    assert ended[0].detected_at_s - ended[0].at_s == pytest.approx(0.2, abs=0.011)


def test_voice_under_the_minimum_level_or_too_close_to_the_floor_is_not_voice() -> None:
    assert onsets(run(at(speech(1.0, -62.0), 1.0, 3.0))) == []  # under min_level_dbfs (-55)
    # 8 dB over a noise floor of -40 dBFS: under the 12 dB threshold, then over a lowered threshold.
    quiet = noise(3.0, -40.0) + at(speech(1.0, -32.0, seed=3), 1.0, 3.0)
    assert onsets(run(quiet)) == []
    assert len(onsets(run(quiet, threshold_db=6.0))) == 1


def test_clicks() -> None:
    # A 30 ms click or cough-like burst is reported, and ends with only that much voice.
    burst = np.random.default_rng(4).normal(0, 0.2, round(0.03 * RATE)) * np.hanning(round(0.03 * RATE)) ** 0.25
    events = run(noise(3.0, -65.0) + at(burst, 1.0, 3.0))
    assert [type(e) for e in events] == [VoiceStarted, VoiceEnded]
    started, ended = events
    assert isinstance(started, VoiceStarted)
    assert isinstance(ended, VoiceEnded)
    assert started.at_s == pytest.approx(1.0, abs=0.011)
    assert ended.voiced_s <= 0.05
    # A 3 ms tick fills a frame at most: not an onset by default, one with a single-frame onset.
    tick = at(np.full(48, 0.5), 1.2345, 3.0)
    assert run(tick) == []
    assert len(onsets(run(tick, onset_s=0.01))) == 1


def test_events_do_not_depend_on_the_chunking_or_the_sample_type() -> None:
    signal = noise(6.0, -55.0) + at(speech(1.2, -25.0), 1.0, 6.0) + at(speech(0.8, -30.0, seed=9), 3.5, 6.0)
    reference = run(signal, chunk=None)
    assert len(onsets(reference)) == 2
    for chunk, seed in ((960, 0), (512, 0), (1, 0), (None, 5), (None, 6), (len(signal), 0)):
        if chunk == 1:
            assert run(signal[: 3 * RATE], chunk=1) == [e for e in reference if e.detected_at_s <= 3.0]
            continue
        assert run(signal, chunk=chunk, seed=seed) == reference, chunk
    detector = VoiceDetector(RATE)
    floats = as_int16(signal).astype(np.float32) / 32768
    as_float = detector.feed(floats[: 2 * RATE].reshape(1, -1)) + detector.feed(floats[2 * RATE :])
    assert as_float == reference


def test_position_floor_and_state() -> None:
    detector = VoiceDetector(RATE)
    assert detector.noise_floor_dbfs == np.inf
    assert detector.feed(np.zeros(100, np.int16)) == []
    assert detector.position_s == 0.0  # a partial frame waits
    detector.feed(as_int16(noise(1.0, -50.0))[:-100])
    assert detector.position_s == pytest.approx(1.0)
    assert -56.0 < detector.noise_floor_dbfs < -49.0  # under the noise level: its quietest frames
    events = detector.feed(as_int16(voiced(0.1, -20.0)))
    assert len(onsets(events)) == 1
    assert detector.in_voice


def test_bad_input_is_a_typed_error_and_changes_nothing() -> None:
    detector = VoiceDetector(RATE)
    detector.feed(np.zeros(150, np.int16))
    for bad, error in (
        (np.zeros(960, np.float64), TypeError),
        ([0] * 960, TypeError),
        (np.zeros((2, 960), np.int16), ValueError),
        (np.full(960, np.nan, np.float32), ValueError),
    ):
        with pytest.raises(error):
            detector.feed(bad)  # type: ignore[arg-type]
    assert detector.position_s == 0.0
    detector.feed(np.zeros(10, np.int16))
    assert detector.position_s == 0.01  # the 150 held samples were kept
    for settings in (
        {"rate": 0},
        {"rate": 16000.0},
        {"threshold_db": 0.0},
        {"min_level_dbfs": 0.0},
        {"onset_s": 0.0},
        {"hangover_s": -0.1},
    ):
        with pytest.raises(ValueError, match=next(iter(settings))):
            VoiceDetector(**settings)


def test_a_60_ms_frame_costs_microseconds() -> None:
    detector = VoiceDetector(RATE)
    audio = as_int16(noise(30.0, -50.0) + at(speech(20.0, -25.0), 5.0, 30.0))
    frames = audio.reshape(-1, 960)
    started = time.perf_counter()
    for frame in frames:
        detector.feed(frame.reshape(1, -1))
    per_frame_us = (time.perf_counter() - started) / len(frames) * 1e6
    print(f"voice detector: {per_frame_us:.1f} µs per 60 ms frame")
    assert per_frame_us < 1000  # generous: what matters is that it is far under the 60 ms it analyses


def pcm16(signal: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.asarray(np.round(np.clip(signal, -1, 1) * 32767), np.int16)


@pytest.mark.parametrize("noise_dbfs", [-200.0, -70.0, -50.0])
def test_the_last_voice_end_is_the_end_of_the_sentence_a_pause_follows_not_a_syllable_gap_or_a_later_voice(
    noise_dbfs: float,
) -> None:
    # The stretch a session keeps when a turn begins: the end of what the user said (from its first sample, where a
    # streaming detector would take it for the noise floor), the endpointing pause, and the start of what they say
    # next, still without a pause after it.
    said = np.concatenate([speech(1.0, -25.0, seed=3), voiced(0.25, -25.0)])  # ends with a whole syllable
    audio = np.concatenate([said, np.zeros(round(0.6 * RATE)), speech(0.4, -25.0, seed=4)])
    audio = audio + noise(len(audio) / RATE, noise_dbfs)
    end = last_voice_end(pcm16(audio), RATE)
    assert end is not None
    assert abs(end - len(said)) <= 0.02 * RATE, (end / RATE, len(said) / RATE)  # the syllable's release is quiet


def test_the_last_voice_end_of_a_stretch_without_voice_is_its_start_and_of_one_without_a_pause_unknown() -> None:
    assert last_voice_end(pcm16(noise(2.0, -60.0)), RATE) == 0
    assert last_voice_end(np.zeros(0, np.int16), RATE) == 0
    # Voice to the end, its syllable gaps shorter than the pause that ends a voice: where did it end?
    assert last_voice_end(pcm16(speech(2.0, -25.0) + noise(2.0, -60.0)), RATE) is None
    # A shorter pause than asked for does not end the voice; a longer one does.
    audio = pcm16(np.concatenate([voiced(0.5, -20.0), np.zeros(round(0.15 * RATE)), voiced(0.2, -20.0)]))
    assert last_voice_end(audio, RATE, min_pause_s=0.2) is None
    assert last_voice_end(audio, RATE, min_pause_s=0.1) == pytest.approx(0.5 * RATE, abs=160)
