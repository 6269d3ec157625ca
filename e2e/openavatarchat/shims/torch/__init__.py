"""A stand-in for PyTorch in the OpenAvatarChat test environment only.

OpenAvatarChat's ``src/demo.py`` imports torch for one thing: to wrap ``torch.load`` for model weights. No handler in
the novabridge configuration loads weights, and PyPI's torch is the multi-gigabyte CUDA build, so this module stands
in for it. Anything that does call it fails loudly.
"""


def load(*args: object, **kwargs: object) -> object:
    """Refuse: nothing in this environment may load torch weights."""
    raise RuntimeError("torch is not installed in novabridge's OpenAvatarChat test environment")
