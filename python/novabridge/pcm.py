# SPDX-License-Identifier: Apache-2.0
"""Conversions between 16-bit PCM and float samples in [-1, 1] (OpenAvatarChat's AVATAR_AUDIO is float32)."""

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["mono", "to_float32", "to_int16"]

_SCALE = 32768.0


def mono(audio: object) -> npt.NDArray[Any]:
    """A host's audio frame as a 1-D view: int16 or float32, shape (N,) or OpenAvatarChat's (1, N), all finite.

    Raises:
        TypeError: not a numpy array, or neither int16 nor float32.
        ValueError: not mono, or a float sample is NaN or infinite.
    """
    if not isinstance(audio, np.ndarray):
        raise TypeError(f"audio must be a numpy array, not {type(audio).__name__}")
    array: npt.NDArray[Any] = audio
    if array.dtype not in (np.int16, np.float32):
        raise TypeError(f"audio must be int16 or float32, got {array.dtype}")
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 1:
        raise ValueError(f"audio must be mono, shape (N,) or (1, N); got {array.shape}")
    if array.dtype == np.float32 and not np.isfinite(array).all():
        raise ValueError("audio has non-finite samples (NaN or infinity)")
    return array


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
