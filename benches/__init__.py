# SPDX-License-Identifier: Apache-2.0
"""Benchmarks of the shared-memory ring (a package, so its `conftest` does not collide with `tests/conftest.py`)."""
