"""Nova Sonic as OpenAvatarChat's voice: the handler is `novabridge.openavatarchat.handler_novasonic`.

That module imports OpenAvatarChat's ``chat_engine``, so it loads only where an OpenAvatarChat checkout's ``src`` is
on the path (OpenAvatarChat itself, or the tests); this package itself imports anywhere. See
docs/openavatarchat.md for the YAML.
"""
