"""`make check-aarch64`: the aarch64 wheel installed on an arm64 Debian and run there, under qemu-user.

There is no aarch64 machine here. The wheel (`make wheel-aarch64`: Debian's rustc-web with its arm64 standard library,
linked by zig against glibc 2.26) is unpacked, with its dependencies' aarch64 wheels as pip resolves them for that
platform, into a directory beside an arm64 Debian 12 root (debootstrap, unpacked only). That root's own Python 3.11
then runs the check below through ``qemu-aarch64-static``: the extension loads, a ring carries records from a forked
writer to its reader in order, and the resampler's output matches the x86_64 build's.

qemu runs the guest's threads on the host's, so x86_64's stronger memory ordering hides weak-ordering faults: the
ring's orderings are checked for every architecture by the loom models (`make test-loom`), not by this run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import novabridge
import numpy as np

CHECK = """
import json, os, platform, sys
import numpy
import novabridge
from novabridge import RecordKind, Resampler, Ring

ring = Ring.create(1 << 16, name="aarch64")
child = os.fork()
if child == 0:  # the writer: the ring attached from its descriptors, as a worker attaches it
    writer = Ring.attach(*ring.fds())
    for n in range(2000):
        writer.write(RecordKind.AUDIO, n.to_bytes(4, "little") * 40, timeout=5.0)
    os._exit(0)
seen = []
while len(seen) < 2000:
    record = ring.read(timeout=10.0)
    assert record is not None, f"the ring stalled after {len(seen)} records"
    seen.append(int.from_bytes(record.payload[:4], "little"))
os.waitpid(child, 0)
ring.close()
tone = (numpy.sin(numpy.arange(3200) * 0.05) * 12000).astype(numpy.int16)
out = Resampler(16000, 24000).process(tone)
print(json.dumps({
    "machine": platform.machine(),
    "python": list(sys.version_info[:2]),
    "extension": novabridge._novabridge.__file__,
    "in_order": seen == list(range(2000)),
    "resampled": out.tolist(),
}))
"""


def main(argv: list[str] | None = None) -> int:
    """Install, run and compare; the exit status is 1 if anything differs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, required=True, help="the aarch64 wheel")
    parser.add_argument("--root", type=Path, required=True, help="an arm64 Debian root with python3.11")
    parser.add_argument("--site", type=Path, required=True, help="where to install the wheel and its dependencies")
    args = parser.parse_args(argv)
    root, site = args.root.resolve(), args.site.resolve()  # the check runs in the site folder
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade",
         "--target", str(site), "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11",
         "--platform", "manylinux_2_26_aarch64", "--platform", "manylinux2014_aarch64", str(args.wheel)],
        check=True,
    )  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "LANG": "C.UTF-8"}
    run = subprocess.run(
        ["qemu-aarch64-static", "-L", str(root), str(root / "usr/bin/python3.11"), "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=site,  # not the repository: its python/ must not be what imports
        check=False,
    )
    if run.returncode != 0:
        print(f"the check exited with {run.returncode}:\n{run.stdout}{run.stderr}", file=sys.stderr)
        return 1
    found = json.loads(run.stdout)
    tone = (np.sin(np.arange(3200) * 0.05) * 12000).astype(np.int16)
    here = novabridge.Resampler(16000, 24000).process(tone)
    there = np.asarray(found["resampled"], np.int16)
    differs = int(np.abs(here.astype(np.int32) - there).max()) if len(here) == len(there) else None
    failures = [
        *([] if found["machine"] == "aarch64" else [f"ran on {found['machine']}, not aarch64"]),
        *([] if found["python"] == [3, 11] else [f"ran Python {found['python']}"]),
        *([] if Path(found["extension"]).is_relative_to(site) else ["the extension came from elsewhere"]),
        *([] if found["in_order"] else ["the ring's records arrived out of order"]),
        *([] if differs is not None and differs <= 1 else [f"resampled audio differs from x86_64's ({differs})"]),
    ]
    summary = {k: v for k, v in found.items() if k != "resampled"} | {"resampled_max_difference": differs}
    print(json.dumps(summary | {"failures": failures}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
