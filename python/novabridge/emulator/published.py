"""Where a running ``novabridge emulator`` tells clients in other processes its endpoint and CA.

The emulator picks a free port and makes a fresh CA on every start, so neither can be written into a client's
configuration in advance. Once it is ready, the command writes both to ``endpoint.json`` in its state folder
(``~/.novabridge/emulator`` unless ``--state-dir`` says otherwise) and removes the file when it stops. A client,
such as OpenAvatarChat's handler with ``emulator: true``, reads the file each time it connects, so it follows an
emulator that was restarted. Importable on any Python: none of the emulator's own dependencies are needed here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from novabridge.exceptions import EmulatorNotRunning

DEFAULT_STATE_DIR = Path.home() / ".novabridge" / "emulator"
STATE_FILE = "endpoint.json"


@dataclass(frozen=True)
class PublishedEmulator:
    """What a running emulator published: how to reach it and which CA to trust."""

    endpoint_uri: str
    ca_file: Path
    pid: int
    """The emulator's process, checked to be alive when the file is read."""


def state_file(state_dir: Path | None = None) -> Path:
    """The file an emulator publishes in ``state_dir`` (None: `DEFAULT_STATE_DIR`)."""
    return (state_dir or DEFAULT_STATE_DIR).expanduser() / STATE_FILE


def publish(state_dir: Path | None, endpoint_uri: str, ca_file: str) -> Path:
    """Write this process's endpoint and CA to the state file (replacing any earlier one); returns the file."""
    path = state_file(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{STATE_FILE}.{os.getpid()}")
    partial.write_text(json.dumps({"endpoint_uri": endpoint_uri, "ca_file": ca_file, "pid": os.getpid()}) + "\n")
    os.replace(partial, path)  # a reader sees the old file or the new one, never half of one
    return path


def withdraw(state_dir: Path | None) -> None:
    """Remove the state file if this process wrote it; an emulator started since keeps its own."""
    path = state_file(state_dir)
    try:
        owner = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if owner == os.getpid():
        path.unlink(missing_ok=True)


def find(state_dir: Path | None = None) -> PublishedEmulator:
    """The emulator running now as published in ``state_dir``.

    Raises:
        EmulatorNotRunning: nothing is published there, the file is damaged, or its emulator has exited. The
            message says how to start one.
    """
    path = state_file(state_dir)
    start = "novabridge emulator" if state_dir is None else f"novabridge emulator --state-dir {state_dir}"
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise EmulatorNotRunning(f"no emulator is running ({path} does not exist): start `{start}`") from None
    except (OSError, ValueError) as error:
        raise EmulatorNotRunning(f"{path} cannot be read ({error}): restart `{start}`") from None
    try:
        published = PublishedEmulator(str(raw["endpoint_uri"]), Path(raw["ca_file"]), int(raw["pid"]))
    except (KeyError, TypeError, ValueError) as error:
        raise EmulatorNotRunning(f"{path} is not an emulator's state file ({error!r}): restart `{start}`") from None
    if not _alive(published.pid):
        raise EmulatorNotRunning(
            f"the emulator that wrote {path} (pid {published.pid}) is no longer running: start `{start}`"
        )
    return published


def _alive(pid: int) -> bool:
    if pid <= 0:  # kill(0) or kill(-1) would ask about whole process groups
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, but alive
        return True
    return True
