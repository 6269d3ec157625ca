"""OpenAvatarChat fixtures."""

from collections.abc import Iterator

import pytest
from loguru import logger


@pytest.fixture
def oac_log() -> Iterator[list[tuple[str, str]]]:
    """What is logged through loguru, OAC's logger (and so the OAC handler's), as (level name, message)."""
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda message: lines.append((message.record["level"].name, message.record["message"])))
    yield lines
    logger.remove(sink)
