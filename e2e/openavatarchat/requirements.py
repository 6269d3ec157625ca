"""Print the requirements of an OpenAvatarChat checkout's own environment, as pip installs them here.

OAC pins its dependencies in its ``pyproject.toml`` and installs them with uv from sources this machine cannot
reach. This reads those pins and changes only what cannot be installed here, each for a stated reason
(docs/openavatarchat.md, "In OpenAvatarChat's own server and page", lists them too):
- torch, torchvision, torchaudio: PyPI's build is the multi-gigabyte CUDA one, and ``src/demo.py`` imports torch only
  to wrap ``torch.load``; ``shims/torch`` stands in for it.
- fastrtc: OAC pins a fork's wheel inside its checkout's submodule (0.0.28.dev0), which is not published; PyPI's
  0.0.28 is its base and is installed separately with ``--no-deps`` (its own pins conflict with OAC's).
- huggingface_hub<1: gradio 5.9.1, OAC's pin, imports ``HfFolder``, which huggingface_hub 1.0 removed.

Usage: python requirements.py OAC_DIR
"""

import sys
import tomllib
from pathlib import Path

REPLACED = {"torch", "torchvision", "torchaudio", "fastrtc"}
ADDED = ["huggingface_hub<1"]


def requirement_name(requirement: str) -> str:
    """The project name of a PEP 508 requirement, normalised."""
    for separator in "[<>=!~; ":
        requirement = requirement.split(separator, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def main() -> int:
    """Print one requirement a line."""
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    pyproject = Path(sys.argv[1]) / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    for requirement in dependencies:
        if requirement_name(requirement) not in REPLACED:
            print(requirement)
    for requirement in ADDED:
        print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())
