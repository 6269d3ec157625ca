# SPDX-License-Identifier: Apache-2.0
"""Conversions between 16-bit PCM and float samples in [-1, 1] (OpenAvatarChat's AVATAR_AUDIO is float32)."""

import numpy as np
import numpy.typing as npt

__all__ = ["to_float32", "to_int16"]

_SCALE = 32768.0


def to_float32(samples: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """Int16 PCM to float32 in [-1, 1), same shape.

    Raises:
        TypeError: `samples` is not an int16 array.
    """
    if not isinstance(samples, np.ndarray) or samples.dtype != np.int16:
        raise TypeError(f"expected an int16 numpy array, got {getattr(samples, 'dtype', type(samples))}")
    return samples.astype(np.float32) / np.float32(_SCALE)


def to_int16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Float samples in [-1, 1] to int16 PCM, same shape; values beyond full scale clip rather than wrap.

    Raises:
        TypeError: `samples` is not a float32 or float64 array.
        ValueError: a sample is NaN or infinite.
    """
    if not isinstance(samples, np.ndarray) or samples.dtype not in (np.float32, np.float64):
        raise TypeError(f"expected a float32 numpy array, got {getattr(samples, 'dtype', type(samples))}")
    finite = np.isfinite(samples)
    if not finite.all():
        raise ValueError(f"sample {int(np.argmin(finite.ravel()))} is not finite")
    return np.clip(np.rint(samples * _SCALE), -32768, 32767).astype(np.int16)
