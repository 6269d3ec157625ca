"""The emulator's tests: an emulator on the test's loop (overriding the subprocess `emulator` of tests/conftest.py)."""

from support.emulator_in_process import connect, emulator, make_emulator

__all__ = ["connect", "emulator", "make_emulator"]
