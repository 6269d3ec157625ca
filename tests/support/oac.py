"""Where OpenAvatarChat's engine is: the OAC tests run the handler inside it."""

import os
from pathlib import Path

from support.interpreters import ROOT

OAC_ROOT = Path(os.environ.get("NOVABRIDGE_OAC_ROOT") or ROOT.parent / "shared" / "third_party" / "openavatarchat")
"""An OpenAvatarChat checkout (upstream, unmodified): the OAC tests run the handler inside its real engine."""


def oac_src() -> Path:
    """OpenAvatarChat's ``src`` (where ``chat_engine`` lives), for ``sys.path``; a clear error if it is missing."""
    src = OAC_ROOT / "src"
    if not (src / "chat_engine" / "core" / "chat_session.py").is_file():
        raise FileNotFoundError(
            f"OpenAvatarChat's engine is not at {src}: the OAC tests run the handler inside it. Put an "
            "OpenAvatarChat checkout at ../shared/third_party/openavatarchat (from the project root) or point "
            "NOVABRIDGE_OAC_ROOT at one."
        )
    return src
