"""Hypothesis settings shared by the property tests."""

from hypothesis import HealthCheck, settings

BOUNDARY_FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Property tests where bytes enter (the output parser, the builders, the emulator's decoder): the same examples on
every run, so CI is reproducible and quick; nothing written into the repository; no deadline on a loaded machine."""
