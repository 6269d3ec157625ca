"""The Nova Sonic side of novabridge: runs in the worker process (Python >= 3.12, ``novabridge[sonic]``)."""
