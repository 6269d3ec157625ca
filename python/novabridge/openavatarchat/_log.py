"""The log of novabridge's OpenAvatarChat handlers.

OAC's loguru logger where OAC provides it, so our lines land in its log; the standard library's otherwise. Messages
are preformatted, which both accept.
"""

from __future__ import annotations

import logging
from typing import Any

logger: Any
try:
    from loguru import logger
except ImportError:  # a trimmed install
    logger = logging.getLogger("novabridge.openavatarchat")
