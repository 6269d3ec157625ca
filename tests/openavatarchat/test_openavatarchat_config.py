"""`novabridge openavatarchat install` sets up a copy of an OpenAvatarChat checkout, and what it writes loads as
OpenAvatarChat's config loader and HandlerManager read it: each module found on the search path, the first concrete
handler class of each, each handler's settings validated by its own config model."""

import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from support.interpreters import python_for
from support.oac import OAC_ROOT, oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from novabridge import SonicBridge
from novabridge.emulator import published
from novabridge.emulator.process import EmulatorProcess
from novabridge.events import TurnEnd
from novabridge.exceptions import EmulatorNotRunning
from novabridge.openavatarchat.avatar_portrait import HandlerPortraitAvatar, PortraitAvatarConfig
from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig
from novabridge.sonic import SonicConfig
from pydantic import ValidationError
from service.service_data_models.service_config_data import ServiceConfigData

with warnings.catch_warnings():
    # Upstream writes `"\/"` in a string there: an invalid escape, warned about whenever the file is compiled.
    warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
    warnings.filterwarnings("ignore", "invalid escape sequence", SyntaxWarning)
    from chat_engine.core.handler_manager import HandlerManager

WRITTEN = [
    "src/handlers/nova_sonic/__init__.py",
    "src/handlers/nova_sonic/handler_novasonic.py",
    "src/handlers/nova_sonic/avatar_portrait.py",
    "config/chat_with_nova_sonic.yaml",
]
CONFIG = "config/chat_with_nova_sonic.yaml"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of an unmodified OpenAvatarChat checkout, as a user's would be."""
    copy = tmp_path / "OpenAvatarChat"
    shutil.copytree(OAC_ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def oac_install(
    *args: str, command: str = "openavatarchat", home: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home)} if home is not None else None
    return subprocess.run(
        [sys.executable, "-m", "novabridge", command, "install", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def engine_settings(checkout: Path) -> dict[str, Any]:
    settings = yaml.safe_load((checkout / CONFIG).read_text())["default"]
    assert isinstance(settings, dict)
    return settings


class Engine:
    """What HandlerManager keeps a weak reference to (OAC's ChatEngine)."""


@pytest.fixture
def clean_imports() -> Iterator[None]:
    """sys.path and the checkout's `nova_sonic` package as they were: HandlerManager adds both."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in [name for name in sys.modules if name == "nova_sonic" or name.startswith("nova_sonic.")]:
        del sys.modules[name]


def test_install_writes_the_handler_modules_and_a_config_then_says_what_to_run(checkout: Path) -> None:
    before = files_of(checkout)
    result = oac_install(str(checkout), "--worker-python", python_for("312"))
    assert result.returncode == 0, result.stderr
    after = files_of(checkout)
    assert sorted(set(after) - set(before)) == sorted(WRITTEN)
    assert all(after[name] == content for name, content in before.items())  # nothing of the user's was touched
    for name in WRITTEN:
        assert f"wrote     {name}" in result.stdout
    assert f"cd {checkout}\n" in result.stdout
    assert "python src/demo.py --config config/chat_with_nova_sonic.yaml" in result.stdout
    assert "http://localhost:8282" in result.stdout
    nova = engine_settings(checkout)["chat_engine"]["handler_configs"]["NovaSonic"]
    assert nova["worker_python"] == python_for("312")
    assert nova["emulator"] is False


def test_the_installed_config_loads_as_openavatarchat_reads_it(checkout: Path, clean_imports: None) -> None:
    assert oac_install(str(checkout), "--worker-python", python_for("312")).returncode == 0
    settings = engine_settings(checkout)
    # The sections as OAC's config loader validates them. The service: loopback over plain HTTP, no certificate.
    service = ServiceConfigData.model_validate(settings["service"])
    assert (service.host, service.port, service.cert_file, service.cert_key) == ("127.0.0.1", 8282, None, None)
    engine_config = ChatEngineConfigModel.model_validate(settings["chat_engine"])
    assert engine_config.handler_configs is not None
    assert set(engine_config.handler_configs) == {"RtcClient", "NovaSonic", "PortraitAvatar"}  # no LiteAvatar
    assert engine_config.handler_search_path == ["src/handlers"]
    for raw in engine_config.handler_configs.values():
        module = HandlerBaseConfigModel.model_validate(raw).module
        assert (checkout / "src" / "handlers" / f"{module}.py").is_file(), module  # where HandlerManager looks
    # OAC's HandlerManager on the copy: it resolves a relative search path against the checkout it was imported
    # from, so this one is named absolutely. RtcClient's module needs OAC's WebRTC stack, not installed here.
    ours = {name: raw for name, raw in engine_config.handler_configs.items() if name != "RtcClient"}
    search_path = [str(checkout / "src" / "handlers")]
    engine = Engine()
    manager = HandlerManager(engine)
    manager.initialize(engine_config.model_copy(update={"handler_search_path": search_path, "handler_configs": ours}))
    shims = {module: (imported.__file__, chosen) for module, (imported, chosen) in manager.handler_modules.items()}
    assert shims == {
        "nova_sonic/handler_novasonic": (
            str(checkout / "src/handlers/nova_sonic/handler_novasonic.py"),
            HandlerNovaSonic,
        ),
        "nova_sonic/avatar_portrait": (
            str(checkout / "src/handlers/nova_sonic/avatar_portrait.py"),
            HandlerPortraitAvatar,
        ),
    }
    nova = manager.handler_registries["NovaSonic"].handler_config
    assert isinstance(nova, NovaSonicConfig)
    assert (nova.voice, nova.endpointing, nova.worker_python) == ("tiffany", "MEDIUM", python_for("312"))
    assert nova.sonic_config([]).endpoint_uri is None  # the session config it makes is valid too: Bedrock
    avatar = manager.handler_registries["PortraitAvatar"].handler_config
    assert isinstance(avatar, PortraitAvatarConfig)
    assert (avatar.fps, avatar.width, avatar.height, avatar.portrait) == (30, 384, 384, None)
    assert avatar.audio_lead_ms == nova.pacing_lead_ms


def test_reinstalling_changes_nothing_and_a_changed_file_needs_force(checkout: Path) -> None:
    args = (str(checkout), "--worker-python", python_for("312"))
    assert oac_install(*args).returncode == 0
    fresh = files_of(checkout)
    again = oac_install(*args, command="oac")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("unchanged ") == len(WRITTEN)
    config = checkout / CONFIG
    edited = config.read_text().replace('voice: "tiffany"', 'voice: "matthew"')
    config.write_text(edited)
    # Another choice of endpoint would rewrite the config the user edited: refused, and nothing written.
    refused = oac_install(*args, "--emulator")
    assert refused.returncode == 1
    assert str(config) in refused.stderr
    assert "--force" in refused.stderr
    assert config.read_text() == edited
    forced = oac_install(*args, "--emulator", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"overwrote {CONFIG}" in forced.stdout
    assert "novabridge emulator" in forced.stdout
    nova = engine_settings(checkout)["chat_engine"]["handler_configs"]["NovaSonic"]
    assert (nova["voice"], nova["emulator"]) == ("tiffany", True)
    after = files_of(checkout)
    assert all(after[name] == fresh[name] for name in WRITTEN if name != CONFIG)


def test_a_folder_that_is_not_an_openavatarchat_checkout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "demo.py").write_text("")
    result = oac_install(str(tmp_path), "--worker-python", python_for("312"))
    assert result.returncode == 1
    assert "does not look like an OpenAvatarChat checkout (src/chat_engine missing)" in result.stderr
    assert sorted(files_of(tmp_path)) == ["src/demo.py"]
    missing = oac_install(str(tmp_path / "nowhere"), "--worker-python", python_for("312"))
    assert missing.returncode == 1
    assert "is not a folder" in missing.stderr


def test_the_worker_defaults_to_setup_workers_environment_and_its_absence_is_explained(
    checkout: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    refused = oac_install(str(checkout), home=home)
    assert refused.returncode == 1
    assert "run `novabridge setup-worker` first" in refused.stderr
    assert not (checkout / CONFIG).exists()
    # What `novabridge setup-worker` leaves: a venv whose python is a symlink, named as it is (not resolved).
    worker = home / ".novabridge" / "worker" / "bin" / "python"
    worker.parent.mkdir(parents=True)
    worker.symlink_to(python_for("312"))
    result = oac_install(str(checkout), home=home)
    assert result.returncode == 0, result.stderr
    assert engine_settings(checkout)["chat_engine"]["handler_configs"]["NovaSonic"]["worker_python"] == str(worker)
    assert oac_install(str(checkout), "--worker-python", str(tmp_path / "no-python")).returncode == 1


def test_an_emulator_config_follows_the_emulator_the_user_runs(checkout: Path, tmp_path: Path) -> None:
    assert oac_install(str(checkout), "--worker-python", python_for("312"), "--emulator").returncode == 0
    raw = engine_settings(checkout)["chat_engine"]["handler_configs"]["NovaSonic"]
    state = tmp_path / "state"
    nova = NovaSonicConfig.model_validate({**raw, "emulator_state_dir": str(state)})
    with pytest.raises(EmulatorNotRunning, match=f"start `novabridge emulator --state-dir {state}`"):
        nova.sonic_config([])
    # `novabridge emulator` from this environment (on 3.11 it runs itself on the worker's Python).
    args = ["--worker-python", python_for("312"), "--endpointing", "0.3", "--think", "0.05", "--speed", "20"]
    emulator = EmulatorProcess(sys.executable, args, state_dir=state)
    try:
        session = nova.sonic_config([])
        assert session.endpoint_uri == emulator.endpoint_uri
        assert str(session.ca_file) == emulator.ca_file
        assert session.aws_access_key_id is not None  # the emulator's stand-in keys
        with SonicBridge(session, worker_python=nova.worker_python) as bridge:
            bridge.send_audio(np.zeros(16000, np.int16))
            bridge.send_text("Are you there?")
            deadline = time.monotonic() + 30
            while not any(isinstance(event, TurnEnd) for event in bridge.poll(timeout=0.1)):
                assert time.monotonic() < deadline, "no answer through the published endpoint"
    finally:
        emulator.stop()
    with pytest.raises(EmulatorNotRunning, match="no emulator is running"):
        nova.sonic_config([])
    with pytest.raises(ValueError, match="emulator: true finds"):
        NovaSonicConfig.model_validate({**raw, "endpoint_uri": "https://127.0.0.1:1"})


def test_an_emulator_that_died_without_cleaning_up_is_reported(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = "import sys; from pathlib import Path; from novabridge.emulator import published; "
    script += "published.publish(Path(sys.argv[1]), 'https://127.0.0.1:1', sys.argv[2])"
    subprocess.run([sys.executable, "-c", script, str(state), str(tmp_path / "ca.pem")], check=True, timeout=30)
    with pytest.raises(EmulatorNotRunning, match=r"\(pid \d+\) is no longer running"):
        published.find(state)
    (state / published.STATE_FILE).write_text("{not json")
    with pytest.raises(EmulatorNotRunning, match="cannot be read"):
        published.find(state)


def test_the_handlers_session_settings_take_the_sessions_defaults_and_bounds() -> None:
    handler = NovaSonicConfig()
    session = handler.sonic_config([])
    defaults = SonicConfig()
    assert (session.model_id, session.voice, session.system_prompt) == (
        defaults.model_id,
        defaults.voice,
        defaults.system_prompt,
    )
    assert session.inference == defaults.inference
    assert session.renewal_after_s == defaults.renewal_after_s
    assert session.retry == defaults.retry
    # A value the session would refuse fails as the YAML loads, naming the setting.
    for setting, value in [
        ("temperature", 1.5),
        ("max_tokens", 0),
        ("renewal_after_s", 500.0),
        ("model_id", "amazon nova"),
        ("system_prompt", ""),
        ("reconnect_attempts", -1),
    ]:
        with pytest.raises(ValidationError, match=setting):
            NovaSonicConfig(**{setting: value})
    # A model id novabridge does not know is taken (with a warning), as the session takes it.
    assert NovaSonicConfig(model_id="amazon.nova-3-sonic").sonic_config([]).model_id == "amazon.nova-3-sonic"
