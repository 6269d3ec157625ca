"""The example OAC config and module shim load as OpenAvatarChat's HandlerManager loads them."""

import importlib.util
import inspect
import sys
from pathlib import Path

import yaml
from conftest import ROOT, oac_src

sys.path.insert(0, str(oac_src()))

from chat_engine.common.handler_base import HandlerBase
from chat_engine.data_models.chat_engine_config_data import ChatEngineConfigModel, HandlerBaseConfigModel
from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig

EXAMPLES = ROOT / "examples" / "openavatarchat"


def first_concrete_handler(module: object) -> type[HandlerBase]:
    """What HandlerManager picks: the first non-abstract HandlerBase subclass in inspect.getmembers order."""
    for _, member in inspect.getmembers(module):
        if inspect.isclass(member) and not inspect.isabstract(member) and issubclass(member, HandlerBase):
            return member
    raise AssertionError("no handler class")


def test_the_example_yaml_validates_as_oac_would_read_it() -> None:
    config = yaml.safe_load((EXAMPLES / "chat_with_nova_sonic.yaml").read_text())["default"]["chat_engine"]
    engine = ChatEngineConfigModel.model_validate(config)
    assert engine.handler_configs is not None
    raw = engine.handler_configs["NovaSonic"]
    assert HandlerBaseConfigModel.model_validate(raw).module == "nova_sonic/handler_novasonic"
    settings = NovaSonicConfig.model_validate(raw)
    assert settings.voice == "tiffany"
    assert settings.endpointing == "MEDIUM"
    settings.sonic_config([])  # the session config it makes is valid too


def test_the_shim_and_the_installed_module_both_give_the_nova_sonic_handler() -> None:
    spec = importlib.util.spec_from_file_location("nova_sonic.handler_novasonic", EXAMPLES / "handler_novasonic.py")
    assert spec is not None
    assert spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    assert first_concrete_handler(shim) is HandlerNovaSonic
    installed = importlib.import_module("novabridge.openavatarchat.handler_novasonic")
    assert first_concrete_handler(installed) is HandlerNovaSonic
    # With site-packages on handler_search_path, OAC finds `module: novabridge/openavatarchat/handler_novasonic`.
    assert installed.__file__ is not None
    site = Path(installed.__file__).parents[2]
    assert (site / "novabridge/openavatarchat/handler_novasonic.py").is_file()
    assert HandlerNovaSonic().get_handler_info().config_model is NovaSonicConfig
