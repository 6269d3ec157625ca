"""`novabridge.frames.FrameConverter`: a host's microphone frame checked, resampled and made 16-bit once.

The converter must give exactly what the library's own parts give (`pcm.to_int16` at the service's rate, a
`Resampler` fed the same frames otherwise), so a host that converts its frames itself sends what the bridge would
have sent. Pure computation, no worker: runs on 3.11 and 3.12.
"""

import math
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from novabridge import Resampler, pcm
from novabridge.frames import FrameConverter, ServiceFrame
from support.fuzzing import BOUNDARY_FUZZ

SERVICE_RATE = 16000
HOST_RATES = [24000, 48000]
Sample = Literal["int16", "float32"]
DTYPES: list[Sample] = ["int16", "float32"]

FEW = settings(BOUNDARY_FUZZ, max_examples=30)
"""Each example resamples up to a second of audio twice: fewer examples than the byte-level fuzzing."""


def speech(rate: int, seconds: float, dtype: str, seed: int = 7) -> npt.NDArray[Any]:
    """A voice-like signal (two tones and some noise) at ``rate``, loud enough to use most of the int16 range."""
    t = np.arange(round(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0.0, 0.05, t.size)
    wave = 0.5 * np.sin(2 * math.pi * 220 * t) + 0.3 * np.sin(2 * math.pi * 1900 * t) + noise
    if dtype == "int16":
        return np.round(wave * 32767).astype(np.int16)
    return wave.astype(np.float32)


def frames_of(audio: npt.NDArray[Any], sizes: list[int]) -> list[npt.NDArray[Any]]:
    """``audio`` cut into frames of these sizes (the last takes the rest)."""
    cuts = np.cumsum(sizes)
    return np.split(audio, cuts[cuts < audio.size])


def reference(resampler: Resampler, frame: npt.NDArray[Any]) -> npt.NDArray[np.int16]:
    """What the library's own resampler and conversion give for ``frame``."""
    out = resampler.process(frame)
    return out if out.dtype == np.int16 else pcm.to_int16(out)


def assert_service_frame(frame: ServiceFrame, rate: int = SERVICE_RATE) -> None:
    assert frame.rate == rate
    assert frame.samples.dtype == np.int16
    assert frame.samples.ndim == 1
    assert frame.pcm() == frame.samples.astype("<i2").tobytes()


# ------------------------------------------------------------------------------------------------ at the service's rate


def test_int16_at_the_service_rate_goes_through_unchanged() -> None:
    converter = FrameConverter(SERVICE_RATE)
    audio = speech(SERVICE_RATE, 0.032, "int16")
    frame = converter.convert(audio)
    assert_service_frame(frame)
    assert np.array_equal(frame.samples, audio)
    assert frame.pcm() == audio.astype("<i2").tobytes()
    assert converter.convert(audio.reshape(1, -1)).pcm() == frame.pcm()  # OpenAvatarChat's (1, N)


def test_a_strided_int16_frame_gives_its_samples_in_order() -> None:
    interleaved = np.arange(-400, 400, dtype=np.int16)
    frame = FrameConverter(SERVICE_RATE).convert(interleaved[::2])
    assert frame.pcm() == np.arange(-400, 400, 2, dtype="<i2").tobytes()


def test_float32_at_the_service_rate_is_converted_exactly_as_pcm_to_int16() -> None:
    audio = speech(SERVICE_RATE, 0.032, "float32")
    frame = FrameConverter(SERVICE_RATE).convert(audio)
    assert_service_frame(frame)
    assert np.array_equal(frame.samples, pcm.to_int16(audio))


def test_float32_rounds_to_the_nearest_step_and_clips_beyond_full_scale() -> None:
    step = 1 / 32768
    loud = np.array([1.0, -1.0, 1.5, -3.0, 1e30, -1e30, 0.5, -0.5, 0.0, 1.6 * step, -1.6 * step], np.float32)
    frame = FrameConverter(SERVICE_RATE).convert(loud)
    # Full scale and beyond clip to the int16 extremes; a fraction of a step rounds to the nearest, not towards 0.
    assert frame.samples.tolist() == [32767, -32768, 32767, -32768, 32767, -32768, 16384, -16384, 0, 2, -2]


@given(samples=st.lists(st.floats(-2.0, 2.0, width=32), max_size=200))
@FEW
def test_any_finite_float32_frame_at_the_service_rate_is_pcm_to_int16(samples: list[float]) -> None:
    audio = np.array(samples, np.float32)
    frame = FrameConverter(SERVICE_RATE).convert(audio)
    assert_service_frame(frame)
    assert np.array_equal(frame.samples, pcm.to_int16(audio))


# ------------------------------------------------------------------------------------------------ resampled


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("host_rate", HOST_RATES)
def test_frames_at_a_host_rate_are_what_a_resampler_gives_frame_by_frame(host_rate: int, dtype: Sample) -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=host_rate)
    resampler = Resampler(host_rate, SERVICE_RATE, dtype=dtype)
    audio = speech(host_rate, 1.0, dtype)
    frame_samples = host_rate * 20 // 1000  # 20 ms frames
    produced = 0
    for host_frame in frames_of(audio, [frame_samples] * (audio.size // frame_samples)):
        frame = converter.convert(host_frame)
        assert_service_frame(frame)
        assert np.array_equal(frame.samples, reference(resampler, host_frame))
        produced += frame.samples.size
    assert abs(produced - SERVICE_RATE) <= SERVICE_RATE * 0.002 + 1  # a second in, a second out, less the delay
    assert np.abs(frame.samples).max() > 8000  # the signal came through, not silence


@given(
    host_rate=st.sampled_from(HOST_RATES),
    dtype=st.sampled_from(DTYPES),
    sizes=st.lists(st.integers(0, 1500), min_size=1, max_size=30),
    row=st.booleans(),
)
@FEW
def test_any_framing_gives_what_a_resampler_fed_the_same_frames_gives(
    host_rate: int, dtype: Sample, sizes: list[int], row: bool
) -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=host_rate)
    resampler = Resampler(host_rate, SERVICE_RATE, dtype=dtype)
    audio = speech(host_rate, sum(sizes) / host_rate, dtype)
    for host_frame in frames_of(audio, sizes):
        frame = converter.convert(host_frame.reshape(1, -1) if row else host_frame)
        assert_service_frame(frame)
        assert np.array_equal(frame.samples, reference(resampler, host_frame))


def test_each_rate_and_sample_type_has_its_own_resampler() -> None:
    # A host that mixes them (a second input, a float device after an int one) must not splice one stream's
    # filter state into another's.
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    references = {
        (48000, "int16"): Resampler(48000, SERVICE_RATE, dtype="int16"),
        (48000, "float32"): Resampler(48000, SERVICE_RATE, dtype="float32"),
        (24000, "int16"): Resampler(24000, SERVICE_RATE, dtype="int16"),
        (24000, "float32"): Resampler(24000, SERVICE_RATE, dtype="float32"),
    }
    order = [(48000, "int16"), (24000, "float32"), (48000, "float32"), (24000, "int16")] * 5
    for index, (rate, dtype) in enumerate(order):
        host_frame = speech(rate, 0.02, dtype, seed=index)
        frame = converter.convert(host_frame, rate)
        assert_service_frame(frame)
        assert np.array_equal(frame.samples, reference(references[rate, dtype], host_frame))


def test_a_frame_at_the_service_rate_skips_a_converter_built_for_another_host_rate() -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    audio = speech(SERVICE_RATE, 0.02, "int16")
    assert np.array_equal(converter.convert(audio, SERVICE_RATE).samples, audio)


def test_a_long_frame_converts_whole_in_one_call() -> None:
    audio = speech(48000, 10.0, "float32")
    frame = FrameConverter(SERVICE_RATE, host_rate=48000).convert(audio)
    assert np.array_equal(frame.samples, reference(Resampler(48000, SERVICE_RATE, dtype="float32"), audio))
    assert abs(frame.samples.size - 10 * SERVICE_RATE) <= 40  # 10 s out, less at most the 2 ms delay


def test_loud_float32_at_a_host_rate_clips_after_resampling() -> None:
    loud = (3.0 * np.sin(2 * math.pi * 300 * np.arange(4800) / 48000)).astype(np.float32)
    frame = FrameConverter(SERVICE_RATE, host_rate=48000).convert(loud)
    assert frame.samples.max() == 32767
    assert frame.samples.min() == -32768
    assert np.array_equal(frame.samples, reference(Resampler(48000, SERVICE_RATE, dtype="float32"), loud))


# ------------------------------------------------------------------------------------------------ ServiceFrame


def test_a_service_frame_at_the_service_rate_passes_as_it_is() -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    converted = FrameConverter(SERVICE_RATE).convert(speech(SERVICE_RATE, 0.02, "float32"))
    assert converter.convert(converted) is converted


def test_a_service_frame_at_another_rate_is_resampled_like_an_array_at_that_rate() -> None:
    to_24k = FrameConverter(24000)
    converter = FrameConverter(SERVICE_RATE)
    resampler = Resampler(24000, SERVICE_RATE, dtype="int16")
    for index in range(5):
        at_24k = to_24k.convert(speech(24000, 0.02, "float32", seed=index))
        assert at_24k.rate == 24000
        frame = converter.convert(at_24k)
        assert_service_frame(frame)
        assert np.array_equal(frame.samples, resampler.process(at_24k.samples))


def test_service_frame_pcm_is_little_endian_s16() -> None:
    frame = ServiceFrame(np.array([1, -2, 0x1234], np.int16), SERVICE_RATE)
    assert frame.pcm() == b"\x01\x00\xfe\xff\x34\x12"
    big_endian = ServiceFrame(np.array([1, 0x1234], ">i2"), SERVICE_RATE)
    assert big_endian.pcm() == b"\x01\x00\x34\x12"


# ------------------------------------------------------------------------------------------------ refused


@pytest.mark.parametrize(
    ("audio", "error", "message"),
    [
        ([0, 1, 2], TypeError, "must be a numpy array, not list"),
        (b"\x00\x01", TypeError, "must be a numpy array, not bytes"),
        (np.int16(3), TypeError, "must be a numpy array, not int16"),
        (np.zeros(320, np.float64), TypeError, "must be int16 or float32, got float64"),
        (np.zeros(320, np.int32), TypeError, "must be int16 or float32, got int32"),
        (np.zeros(320, np.uint8), TypeError, "must be int16 or float32, got uint8"),
        (np.zeros(320, ">i2"), TypeError, "must be int16 or float32, got >i2"),
        (np.zeros((2, 320), np.int16), ValueError, r"must be mono, shape \(N,\) or \(1, N\); got \(2, 320\)"),
        (np.zeros((320, 1), np.float32), ValueError, r"must be mono.*got \(320, 1\)"),
        (np.zeros((1, 1, 320), np.int16), ValueError, r"must be mono.*got \(1, 1, 320\)"),
        (np.array(0.5, np.float32), ValueError, r"must be mono.*got \(\)"),
        (np.array([0.1, np.nan, 0.2], np.float32), ValueError, "non-finite samples"),
        (np.array([np.inf], np.float32), ValueError, "non-finite samples"),
        (np.array([[0.0, -np.inf]], np.float32), ValueError, "non-finite samples"),
    ],
)
@pytest.mark.parametrize("host_rate", [SERVICE_RATE, 48000])
def test_a_frame_that_is_not_mono_int16_or_finite_float32_is_refused(
    audio: object, error: type[Exception], message: str, host_rate: int
) -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=host_rate)
    with pytest.raises(error, match=message):
        converter.convert(audio)


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_refused_frame_leaves_the_stream_as_if_it_never_came(dtype: Sample) -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    resampler = Resampler(48000, SERVICE_RATE, dtype=dtype)
    bad: list[object] = [np.zeros((2, 480), dtype), np.zeros(480, np.float64)]
    if dtype == "float32":
        bad.append(np.full(480, np.nan, np.float32))
    for index in range(6):
        host_frame = speech(48000, 0.01, dtype, seed=index)
        with pytest.raises((TypeError, ValueError)):
            converter.convert(bad[index % len(bad)])
        assert np.array_equal(converter.convert(host_frame).samples, reference(resampler, host_frame))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("host_rate", [SERVICE_RATE, *HOST_RATES])
def test_an_empty_frame_gives_an_empty_service_frame_and_leaves_the_stream(host_rate: int, dtype: str) -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=host_rate)
    for empty in (np.zeros(0, dtype), np.zeros((1, 0), dtype)):
        frame = converter.convert(empty)
        assert_service_frame(frame)
        assert frame.samples.size == 0
        assert frame.pcm() == b""
    host_frame = speech(host_rate, 0.02, dtype)
    expected = FrameConverter(SERVICE_RATE, host_rate=host_rate).convert(host_frame)
    assert np.array_equal(converter.convert(host_frame).samples, expected.samples)


@pytest.mark.parametrize("host_rate", [12345, 96000])
def test_a_host_rate_no_resampler_takes_fails_at_construction(host_rate: int) -> None:
    with pytest.raises(ValueError, match=f"unsupported sample rate {host_rate}; supported: \\[8000, "):
        FrameConverter(SERVICE_RATE, host_rate=host_rate)


def test_a_frame_at_a_rate_no_resampler_takes_is_refused_and_the_converter_goes_on() -> None:
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    resampler = Resampler(48000, SERVICE_RATE, dtype="int16")
    first = speech(48000, 0.02, "int16", seed=1)
    assert np.array_equal(converter.convert(first).samples, reference(resampler, first))
    with pytest.raises(ValueError, match="unsupported sample rate 44000"):
        converter.convert(speech(44000, 0.02, "int16"), 44000)
    second = speech(48000, 0.02, "int16", seed=2)
    assert np.array_equal(converter.convert(second).samples, reference(resampler, second))


@pytest.mark.parametrize("rate", [0, -1, -48000, True])
def test_a_rate_that_is_not_a_positive_number_of_hertz_is_refused(rate: int) -> None:
    with pytest.raises(ValueError, match="positive number of hertz"):
        FrameConverter(SERVICE_RATE, host_rate=rate)
    with pytest.raises(ValueError, match="positive number of hertz"):
        FrameConverter(rate)
    converter = FrameConverter(SERVICE_RATE, host_rate=48000)
    with pytest.raises(ValueError, match="positive number of hertz"):
        converter.convert(np.zeros(480, np.int16), rate)


def test_an_empty_frame_at_a_rate_no_resampler_takes_is_refused_as_a_full_one_is() -> None:
    with pytest.raises(ValueError, match="unsupported sample rate 12345"):
        FrameConverter(SERVICE_RATE).convert(np.zeros(0, np.int16), 12345)


@pytest.mark.parametrize(
    "samples",
    [np.full(4, 0.7), np.zeros(4, np.float32), np.zeros((2, 4), np.int16), np.zeros(4, np.int32), [0, 1]],
    ids=["float64", "float32", "2-D", "int32", "list"],
)
def test_a_service_frame_built_by_hand_must_be_what_the_service_takes(samples: Any) -> None:
    with pytest.raises(TypeError, match="1-D int16"):
        ServiceFrame(samples, SERVICE_RATE)
