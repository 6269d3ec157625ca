"""`novabridge openavatarchat install`: set up a user's OpenAvatarChat checkout to talk through Nova Sonic.

It writes the two one-line handler modules OpenAvatarChat loads from ``src/handlers/nova_sonic/`` and a config,
``config/chat_with_nova_sonic.yaml``, from the template shipped in this package, with the worker's Python (and the
emulator or Bedrock) filled in. It never overwrites a file that differs from what it would write unless told to.
Runs on the checkout's own Python (3.11): nothing here imports OpenAvatarChat.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from novabridge.setup_worker import DEFAULT_DIR as DEFAULT_WORKER_DIR

CONFIG = Path("config") / "chat_with_nova_sonic.yaml"
HANDLERS = Path("src") / "handlers" / "nova_sonic"
RUN = f"python src/demo.py --config {CONFIG}"
PAGE = "http://localhost:8282"

SHIMS = {
    "handler_novasonic.py": ("novabridge.openavatarchat.handler_novasonic", ("HandlerNovaSonic", "NovaSonicConfig")),
    "avatar_portrait.py": (
        "novabridge.openavatarchat.avatar_portrait",
        ("HandlerPortraitAvatar", "PortraitAvatarConfig"),
    ),
}
"""File under `HANDLERS` -> the novabridge module it imports and the names it takes (one handler class each:
OpenAvatarChat loads the first concrete handler class of a module)."""

SHIM = '''"""OpenAvatarChat's way in to a novabridge handler; written by `novabridge openavatarchat install`."""

from {module} import {names}

__all__ = [{quoted}]
'''

PACKAGE_INIT = '"""novabridge\'s handlers for OpenAvatarChat; written by `novabridge openavatarchat install`."""\n'


class InstallError(RuntimeError):
    """The checkout cannot be set up as asked; the message says why and what to do."""


@dataclass(frozen=True)
class Planned:
    """One file the command writes, and what happens to it."""

    relative: Path
    """The file, relative to the checkout."""
    path: Path
    text: str
    action: str
    """``write`` (new), ``unchanged`` (already so), ``overwrite`` (differs; with --force) or ``conflict``."""


def check_checkout(oac_dir: Path) -> Path:
    """``oac_dir`` as an absolute path, if it is an OpenAvatarChat checkout (``src/demo.py``, ``src/chat_engine/``)."""
    root = oac_dir.expanduser().absolute()
    if not root.is_dir():
        raise InstallError(f"{oac_dir} is not a folder: pass the OpenAvatarChat checkout (the folder with src/demo.py)")
    missing = [name for name in ("src/demo.py", "src/chat_engine") if not (root / name).exists()]
    if missing:
        raise InstallError(
            f"{root} does not look like an OpenAvatarChat checkout ({' and '.join(missing)} missing): pass the "
            "folder you cloned https://github.com/HumanAIGC-Engineering/OpenAvatarChat into"
        )
    return root


def worker_interpreter(worker_python: str | None) -> Path:
    """The worker Python to name in the config: the one given, else `novabridge setup-worker`'s default."""
    if worker_python is None:
        default = DEFAULT_WORKER_DIR / "bin" / "python"
        if not default.exists():
            raise InstallError(
                f"no worker environment at {DEFAULT_WORKER_DIR}: run `novabridge setup-worker` first (it makes "
                "one), or pass --worker-python with a Python >= 3.12 that has novabridge[sonic]"
            )
        return default
    # absolute(), not resolve(): a virtual environment's python is a symlink that must stay the venv's own.
    given = Path(worker_python).expanduser().absolute()
    if not given.is_file():
        raise InstallError(f"--worker-python {worker_python}: no such file")
    return given


def shim(module: str, names: tuple[str, ...]) -> str:
    """The text of a module that re-exports ``names`` from ``module``."""
    return SHIM.format(module=module, names=", ".join(names), quoted=", ".join(json.dumps(n) for n in names))


def config_text(worker_python: Path, *, emulator: bool) -> str:
    """The YAML template with the worker's Python and the endpoint choice filled in."""
    template = resources.files("novabridge.openavatarchat").joinpath("templates", "chat_with_nova_sonic.yaml")
    values = {"worker_python": json.dumps(str(worker_python)), "emulator": "true" if emulator else "false"}
    text = template.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{" + name + "}}", value)  # a JSON string is a valid YAML double-quoted scalar
    if "{{" in text:
        raise AssertionError("the config template has a placeholder this command does not fill")
    return text


def plan(root: Path, worker_python: Path, *, emulator: bool, force: bool) -> list[Planned]:
    """What `install` would do to each file, without touching any."""
    wanted = {HANDLERS / "__init__.py": PACKAGE_INIT}
    wanted |= {HANDLERS / name: shim(module, names) for name, (module, names) in SHIMS.items()}
    wanted[CONFIG] = config_text(worker_python, emulator=emulator)
    planned = []
    for relative, text in wanted.items():
        path = root / relative
        if not path.exists():
            action = "write"
        elif path.is_file() and path.read_text(encoding="utf-8", errors="replace") == text:
            action = "unchanged"
        else:
            action = "overwrite" if force and path.is_file() else "conflict"
        planned.append(Planned(relative, path, text, action))
    return planned


def install(oac_dir: Path, *, worker_python: str | None, emulator: bool, force: bool) -> list[Planned]:
    """Write the handler modules and the config into the checkout; all of them or, on a conflict, none."""
    root = check_checkout(oac_dir)
    planned = plan(root, worker_interpreter(worker_python), emulator=emulator, force=force)
    conflicts = [item.path for item in planned if item.action == "conflict"]
    if conflicts:
        listed = "\n  ".join(str(path) for path in conflicts)
        raise InstallError(
            f"these files exist and differ from what would be written:\n  {listed}\n"
            "nothing was written; pass --force to replace them (keep a copy of your changes first)"
        )
    for item in planned:
        if item.action in ("write", "overwrite"):
            item.path.parent.mkdir(parents=True, exist_ok=True)
            item.path.write_text(item.text, encoding="utf-8")
    return planned


def main(oac_dir: Path, *, worker_python: str | None, emulator: bool, force: bool) -> int:
    """The command: what was written on stdout, then the commands that come next; errors on stderr."""
    try:
        planned = install(oac_dir, worker_python=worker_python, emulator=emulator, force=force)
    except (InstallError, OSError) as error:
        print(f"novabridge openavatarchat install: {error}", file=sys.stderr)
        return 1
    for item in planned:
        verb = {"write": "wrote", "overwrite": "overwrote", "unchanged": "unchanged"}[item.action]
        print(f"{verb:9} {item.relative}")
    print("\nNext, in this Python environment:")
    if emulator:
        print("  novabridge emulator        # in another terminal, left running: the local Nova Sonic endpoint")
    else:
        print("  # AWS credentials with Bedrock access to Nova Sonic, as for any AWS SDK (or aws_profile in the YAML)")
    print(f"  cd {check_checkout(oac_dir)}")
    print(f"  {RUN}")
    print(f"  # then open {PAGE} in a browser on this machine and allow the microphone")
    return 0
