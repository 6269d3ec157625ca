# SPDX-License-Identifier: Apache-2.0
"""A host's microphone frames on their way to the service: checked, resampled and made 16-bit once.

A host frame is int16, or float32 in [-1, 1], shape (N,) or OpenAvatarChat's (1, N), at the host's rate. The
service takes s16le mono at ``SonicConfig.input_rate``. `FrameConverter` does that conversion and gives a
`ServiceFrame`, which `SonicBridge.send_audio` takes as it is: a host that needs the converted audio itself (the
OpenAvatarChat handler feeds its voice detector with it) converts once and hands the result on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from novabridge import pcm
from novabridge._novabridge import Resampler

__all__ = ["FrameConverter", "ServiceFrame"]


@dataclass(frozen=True, slots=True)
class ServiceFrame:
    """Mono int16 samples at ``rate``, checked: what the service takes."""

    samples: npt.NDArray[np.int16]
    rate: int

    def __post_init__(self) -> None:
        # Built by hand it is sent as it is: a frame that is not what the service takes fails here, not on the wire.
        samples = self.samples
        if not isinstance(samples, np.ndarray) or samples.dtype.str[1:] != "i2" or samples.ndim != 1:  # either order
            raise TypeError("a ServiceFrame holds a 1-D int16 array (FrameConverter.convert makes one from any frame)")
        _check_rate(self.rate)

    def pcm(self) -> bytes:
        """The samples as s16le bytes."""
        return np.ascontiguousarray(self.samples, dtype="<i2").tobytes()


def _check_rate(rate: int) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"a sample rate is a positive number of hertz, not {rate!r}")


class FrameConverter:
    """Host frames at any rate to `ServiceFrame`s at ``to_rate``; one resampler per input rate and sample type.

    Not thread-safe: a resampler carries samples from one frame to the next, so frames go through in order.
    """

    def __init__(self, to_rate: int, *, host_rate: int | None = None) -> None:
        """A converter to ``to_rate``, for frames at ``host_rate`` unless told otherwise.

        The resamplers from ``host_rate`` are built now, so a rate they do not take fails here, not at a frame.
        """
        _check_rate(to_rate)
        self.to_rate = to_rate
        self.host_rate = host_rate if host_rate is not None else to_rate
        _check_rate(self.host_rate)
        self._resamplers: dict[tuple[int, str], Resampler] = {}
        for dtype in ("int16", "float32"):
            self._resampler(self.host_rate, dtype)

    def _resampler(self, rate: int, dtype: Literal["int16", "float32"]) -> Resampler | None:
        if rate == self.to_rate:
            return None
        resampler = self._resamplers.get((rate, dtype))
        if resampler is None:
            resampler = self._resamplers[rate, dtype] = Resampler(rate, self.to_rate, dtype=dtype)
        return resampler

    def convert(self, audio: object, rate: int | None = None) -> ServiceFrame:
        """``audio`` at ``rate`` (default ``host_rate``) as int16 at ``to_rate``.

        A `ServiceFrame` at ``to_rate`` passes as it is. The result may be empty: a resampler holds a few samples
        for the next frame.

        Raises:
            TypeError, ValueError: not a mono int16 or float32 array, or non-finite samples (`pcm.mono`).
            ValueError: a rate that is not a positive number of hertz, or one the resampler does not take.
        """
        if isinstance(audio, ServiceFrame):
            if audio.rate == self.to_rate:
                return audio
            rate = audio.rate
            audio = audio.samples
        samples: npt.NDArray[Any] = pcm.mono(audio)
        rate = self.host_rate if rate is None else rate
        _check_rate(rate)
        resampler = self._resampler(rate, "int16" if samples.dtype == np.int16 else "float32")
        if samples.size == 0:
            return ServiceFrame(samples.astype(np.int16), self.to_rate)
        if resampler is not None:
            samples = resampler.process(samples)
        if samples.dtype != np.int16:
            samples = pcm.to_int16(samples)
        return ServiceFrame(samples, self.to_rate)
