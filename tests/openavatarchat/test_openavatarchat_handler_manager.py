"""The handler through OpenAvatarChat's own HandlerManager (an upstream checkout's), as OAC's start-up and shutdown
drive it: the module found on the handler search path, the class picked from it, the settings validated by its config
model, then load() and, at shutdown, destroy()."""

import os
import sys
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.interpreters import python_for
from support.oac import oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel
from novabridge.openavatarchat import handler_novasonic
from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig

with warnings.catch_warnings():
    # Upstream writes `"\/"` in a string there: an invalid escape, warned about whenever the file is compiled.
    warnings.filterwarnings("ignore", "invalid escape sequence", DeprecationWarning)
    warnings.filterwarnings("ignore", "invalid escape sequence", SyntaxWarning)
    from chat_engine.core.handler_manager import HandlerManager

MODULE = "novabridge/openavatarchat/handler_novasonic"
"""The installed handler, as a YAML names it when site-packages is on ``handler_search_path``."""
SITE_PACKAGES = Path(handler_novasonic.__file__).parents[2]


class Engine:
    """What HandlerManager and each handler keep a weak reference to (OAC's ChatEngine)."""


@pytest.fixture
def engine() -> Iterator[Engine]:
    """The engine, held for the test (HandlerManager's reference is weak); sys.path as it was afterwards."""
    path = list(sys.path)
    yield Engine()
    sys.path[:] = path  # HandlerManager appends each search path to sys.path


def initialize(engine: Engine, **settings: Any) -> tuple[HandlerManager, ChatEngineConfigModel]:
    """HandlerManager.initialize, as ChatEngine.initialize calls it, on a YAML's ``chat_engine`` section."""
    engine_config = ChatEngineConfigModel.model_validate(
        {
            "concurrent_limit": 3,
            "handler_search_path": [str(SITE_PACKAGES)],
            "handler_configs": {
                "NovaSonic": {"module": MODULE, "voice": "tiffany", "endpointing": "MEDIUM", **settings},
                "Disabled": {"module": "no/such/module", "enabled": False},
            },
        }
    )
    manager = HandlerManager(engine)
    manager.initialize(engine_config)
    return manager, engine_config


def test_handler_manager_finds_the_installed_handler_and_validates_its_settings(engine: Engine) -> None:
    manager, _ = initialize(engine)
    imported, handler_class = manager.handler_modules[MODULE]
    assert imported is handler_novasonic
    assert handler_class is HandlerNovaSonic  # the first concrete HandlerBase subclass in the module
    assert manager.handler_registries.keys() == {"NovaSonic"}  # a disabled entry is never imported
    registry = manager.handler_registries["NovaSonic"]
    assert isinstance(registry.handler, HandlerNovaSonic)
    assert registry.base_info is not None
    assert registry.base_info.name == "NovaSonic"  # the YAML key
    config = registry.handler_config
    assert isinstance(config, NovaSonicConfig)
    assert (config.module, config.voice, config.endpointing) == (MODULE, "tiffany", "MEDIUM")
    assert config.concurrent_limit == 3  # the engine-wide limit, set over the handler's default
    assert registry.handler.handler_root == str(SITE_PACKAGES / "novabridge" / "openavatarchat")
    assert isinstance(registry.handler.engine, weakref.ref)
    assert registry.handler.engine() is engine
    assert [r.handler for r in manager.get_enabled_handler_registries()] == [registry.handler]


def test_handler_manager_refuses_settings_the_config_model_rejects(engine: Engine) -> None:
    with pytest.raises(ValueError, match="endpointing"):  # pydantic's ValidationError, through OAC untouched
        initialize(engine, endpointing="SOMETIMES")


def test_start_up_loads_the_handler_and_shutdown_stops_its_warm_workers(engine: Engine) -> None:
    speech_prompt = "If the input audio contains Hindi, transcribe it in Latin script."
    manager, engine_config = initialize(
        engine, worker_python=python_for("312"), spare_workers=2, speech_prompt=speech_prompt
    )
    manager.load_handlers(engine_config)  # what ChatEngine.initialize does next (here without a web app)
    handler = manager.handler_registries["NovaSonic"].handler
    assert isinstance(handler, HandlerNovaSonic)
    assert handler.sonic_config is not None
    assert (handler.sonic_config.voice, handler.sonic_config.endpointing) == ("tiffany", "MEDIUM")
    assert handler.sonic_config.speech_prompt == speech_prompt
    assert handler.pool is not None
    try:
        assert handler.pool.wait_warm(60) == 2
        pids = handler.pool.spare_pids()
        assert len(pids) == 2
    finally:
        manager.destroy()  # ChatEngine.shutdown
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
