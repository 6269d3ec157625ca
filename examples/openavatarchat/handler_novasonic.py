"""OpenAvatarChat's way in to novabridge, one import.

Copy to src/handlers/nova_sonic/handler_novasonic.py (with an empty __init__.py beside it) and name
``module: nova_sonic/handler_novasonic`` in the YAML.
"""

from novabridge.openavatarchat.handler_novasonic import HandlerNovaSonic, NovaSonicConfig

__all__ = ["HandlerNovaSonic", "NovaSonicConfig"]
