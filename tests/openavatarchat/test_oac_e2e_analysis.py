"""The arithmetic of `make oac-e2e` (e2e/openavatarchat/analysis.py) on signals whose answers are known."""

import numpy as np
import pytest

from e2e.openavatarchat import analysis

RATE = 16000


def burst(seconds: float, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(round(seconds * RATE)) * amplitude * 32767 / 3).clip(-32767, 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), np.int16)


def test_voice_segments_find_each_utterance_and_bridge_short_pauses() -> None:
    audio = np.concatenate([silence(1), burst(0.5), silence(0.1), burst(0.4), silence(1), burst(0.3), silence(0.5)])
    segments = analysis.voice_segments(audio, RATE)
    assert len(segments) == 2  # the 0.1 s pause does not split the first utterance
    assert segments[0].start_s == pytest.approx(1.0, abs=0.011)
    assert segments[0].end_s == pytest.approx(2.0, abs=0.011)
    assert segments[1].start_s == pytest.approx(3.0, abs=0.011)
    assert segments[1].end_s == pytest.approx(3.3, abs=0.011)
    assert analysis.voice_segments(silence(2), RATE) == []


@pytest.mark.parametrize("started_s", [-0.7, 0.0, 2.35])
def test_align_finds_a_known_envelope_in_an_irregularly_sampled_series(started_s: float) -> None:
    audio = np.concatenate([silence(0.5), burst(0.4), silence(0.7), burst(1.1, seed=1), silence(0.6)])
    reference = analysis.envelope(audio, RATE)
    # The page samples every ~10 ms with jitter, starting at page time 12.0 s; the audio's t=0 is at 12 + started_s.
    rng = np.random.default_rng(3)
    times = 12.0 + np.cumsum(rng.uniform(0.008, 0.013, 700))
    index = np.clip(((times - 12.0 - started_s) / analysis.HOP_S).astype(int), 0, len(reference) - 1)
    inside = (times - 12.0 - started_s >= 0) & (times - 12.0 - started_s < len(reference) * analysis.HOP_S)
    values = np.where(inside, reference[index], 0.0)
    offset, correlation = analysis.align(reference, times, values, max_lag_s=4)
    assert offset == pytest.approx(12.0 + started_s, abs=0.02)
    assert correlation > 0.95


def test_align_reports_a_poor_match_for_a_different_sound() -> None:
    reference = analysis.envelope(np.concatenate([silence(0.5), burst(0.4), silence(1.5)]), RATE)
    times = np.arange(300) * analysis.HOP_S
    values = np.where((times > 1.0) & (times < 2.5), 0.2, 0.0)  # one long sound, not one short one
    _, correlation = analysis.align(reference, times, values, max_lag_s=1)
    assert correlation < 0.8


def test_heard_segments_count_only_what_the_page_played() -> None:
    rows = [(t * 0.01, 0.2 if 100 <= t < 150 or 300 <= t < 320 else 0.0, 1 if t < 250 else 0) for t in range(400)]
    segments = analysis.heard_segments(rows)
    assert [(round(s.start_s, 2), round(s.end_s, 2)) for s in segments] == [(1.0, 1.5)]  # paused at 2.5 s


def test_first_after_and_quiet_after() -> None:
    segments = [analysis.Segment(1.0, 2.0), analysis.Segment(3.0, 4.5)]
    assert analysis.first_after(segments, 2.5) == segments[1]
    assert analysis.first_after(segments, 5.0) is None
    assert analysis.quiet_after(segments, 3.2) == 4.5  # playing then: quiet when that stretch ends
    assert analysis.quiet_after(segments, 2.5) == 2.5  # already quiet
    assert analysis.quiet_after([], 2.5) is None  # nothing was ever played


def test_locate_finds_an_utterance_through_noise_and_rejects_another() -> None:
    utterance = burst(0.5, seed=7)
    rng = np.random.default_rng(8)
    haystack = np.concatenate([silence(1.3), utterance, silence(0.8)]).astype(np.float64)
    haystack += rng.standard_normal(len(haystack)) * 300  # a lossy codec's error, about -20 dB
    at, score = analysis.locate(utterance, haystack.astype(np.int16), RATE)
    assert at == round(1.3 * RATE)
    assert score > 0.9
    _, other = analysis.locate(burst(0.5, seed=9), haystack.astype(np.int16), RATE)
    assert other < 0.2
    assert analysis.locate(utterance, silence(0.1), RATE) == (0, 0.0)  # shorter than the needle


def test_percentile() -> None:
    assert analysis.percentile([], 50) is None
    assert analysis.percentile([1.0, 2.0, 3.0], 50) == 2.0
