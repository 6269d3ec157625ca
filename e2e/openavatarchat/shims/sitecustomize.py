"""Loopback-only WebRTC for novabridge's OpenAvatarChat test environment (never installed for users).

aioice, the ICE agent under OpenAvatarChat's WebRTC, gathers host candidates from every interface except loopback.
The end-to-end test runs OAC's server and Chromium in a network namespace of their own where only ``lo`` exists, so
without this ICE would have nothing to offer. Here aioice offers 127.0.0.1 alone, so no test packet can go to any
other address of this machine.

With ``NOVABRIDGE_E2E_THREADS`` set (the test sets it for OAC's server only), the process also lists its Python
threads by name in that file twice a second, so the test can tell a session's threads from the server's pools.
"""

try:
    import aioice.ice
except ImportError:  # pip and other tools of the environment run without it
    pass
else:

    def _loopback_only(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return ["127.0.0.1"] if use_ipv4 else []

    aioice.ice.get_host_addresses = _loopback_only


def _publish_threads(path: str) -> None:
    """Write the names of this process's Python threads to ``path`` twice a second (the test reads them)."""
    import json
    import os
    import threading
    import time

    def publish() -> None:
        while True:
            partial = f"{path}.{os.getpid()}"
            with open(partial, "w") as file:
                json.dump(sorted(thread.name for thread in threading.enumerate()), file)
            os.replace(partial, path)
            time.sleep(0.5)

    threading.Thread(target=publish, name="e2e-thread-list", daemon=True).start()


_threads_file = __import__("os").environ.get("NOVABRIDGE_E2E_THREADS")
if _threads_file:
    _publish_threads(_threads_file)
