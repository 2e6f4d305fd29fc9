"""Benchmark: a full backup of a 2 GiB disk holding 1 GiB of data, against `qemu-img
convert` of the same disk (the limit: one plain copy), and an incremental after 1% of
the disk changed, against the full.

    make bench-backup            # root: a one-host testbed (testbed/), qemu-utils

What is timed is the path a backup job takes (hosting/services/backups.py): the
backend's `backup_disk` (libvirt's push-mode backup into a scratch file on the host, a
checkpoint for the next incremental, the file streamed back through a libvirt stream)
into the local store (zstd, two sha256 checksums). The guest is stopped, as in the
system suite, so each backup starts it paused, as Paddock does for a stopped server.
The disk's data is random (it does not compress), so the store's compression is no
help. A component figure: the job's own bookkeeping (a few database writes) is not in
it. Medians of --runs (default 5) and ratios are printed; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
warnings.filterwarnings("ignore", message="No directory at")

import django  # noqa: E402

django.setup()

import libvirt  # noqa: E402
from django.conf import settings  # noqa: E402

from hosting.backends.domain_xml import DomainSpec, domain_xml  # noqa: E402
from hosting.backends.libvirt_backend import LibvirtBackend  # noqa: E402
from hosting.backups.store import LocalStore  # noqa: E402
from testbed import layout  # noqa: E402
from testbed.hosts import up_host  # noqa: E402
from testbed.layout import TestbedHost  # noqa: E402

MIB = 1024**2
GIB = 1024**3
NAME = "paddock-bench-backup"


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def make_disk(path: Path) -> None:
    """A 2 GiB qcow2 (v3) whose first 1 GiB is random data."""
    raw = path.with_suffix(".raw")
    with open(raw, "wb") as fh:
        for _ in range(GIB // (16 * MIB)):
            fh.write(os.urandom(16 * MIB))
        fh.truncate(2 * GIB)
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", "-o", "compat=1.1", str(raw), str(path))
    raw.unlink()


def change(path: Path, share: float, seed: int) -> int:
    """Overwrite `share` of the disk in 1 MiB pieces at random places of its data."""
    rng = random.Random(seed)
    pieces = int(2 * GIB * share / MIB)
    offsets = rng.sample(range(GIB // MIB), pieces)
    commands = []
    for off in offsets:
        commands += ["-c", f"write -P {rng.randrange(1, 255):#x} {off * MIB} {MIB}"]
    sh("qemu-io", "-f", "qcow2", *commands, str(path))
    return pieces * MIB


def timed_backup(backend, store, key: str, checkpoint: str, since: str | None):
    """(seconds, bytes streamed, bytes stored, seconds until streaming began)."""
    marks: dict[str, float] = {}

    def progress(_percent: int, message: str) -> None:
        if message.startswith("Streaming"):
            marks.setdefault("streaming", time.perf_counter())

    with store.put(key) as writer:
        started = time.perf_counter()
        first = {"at": 0.0}

        def sink(chunk: bytes) -> None:
            first["at"] = first["at"] or time.perf_counter()
            writer.write(chunk)

        result = backend.backup_disk(
            NAME, checkpoint=checkpoint, since=since, sink=sink, progress=progress
        )
        stored = writer.close()
        seconds = time.perf_counter() - started
    return seconds, result.streamed_bytes, stored.stored_size, first["at"] - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    tb = TestbedHost(1)
    up_host(tb)
    backend = LibvirtBackend(
        uri=tb.uri, pool=layout.HOST_POOL, pool_path=f"{settings.STORAGE_ROOT}/{layout.HOST_POOL}"
    )
    conn = backend.conn
    pool_dir = tb.dir / "storage" / layout.HOST_POOL  # the pool, seen from here
    disk = pool_dir / backend.disk_volume(NAME)
    try:
        old = conn.lookupByName(NAME)
        if old.isActive():
            old.destroy()
        backend.undefine(NAME, volumes=[disk.name])
    except libvirt.libvirtError:
        pass
    print("Writing a 2 GiB disk with 1 GiB of random data ...", flush=True)
    make_disk(disk)
    backend._pool(create=True).refresh(0)  # type: ignore[union-attr]
    spec = DomainSpec(
        name=NAME,
        uuid="7a1e0b5e-0000-4000-8000-00000000b4c0",
        vcpus=1,
        memory_mib=64,
        disk_volume=disk.name,
        seed_volume=None,
        mac_address="52:54:00:be:0c:01",
        network=layout.GUEST_NETWORK,
        virt_type="qemu",
        memory_hard_limit=False,
        metadata={},
    )
    conn.defineXML(domain_xml(spec, pool=layout.HOST_POOL, console_log_path=""))

    with tempfile.TemporaryDirectory(prefix="paddock-bench-") as tmp:
        store = LocalStore(Path(tmp) / "store")
        convert, full, inc = [], [], []
        for run in range(args.runs):
            target = Path(tmp) / "convert.qcow2"
            started = time.perf_counter()
            sh("qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", str(disk), str(target))
            convert.append(time.perf_counter() - started)
            size = target.stat().st_size
            target.unlink()

            backend.forget_checkpoints(NAME)
            full.append(timed_backup(backend, store, f"full-{run}.qcow2", f"full-{run}", None))
            store.delete(f"full-{run}.qcow2")

            changed = change(disk, 0.01, seed=run)
            inc.append(
                timed_backup(backend, store, f"inc-{run}.qcow2", f"inc-{run}", f"full-{run}")
            )
            store.delete(f"inc-{run}.qcow2")
            print(
                f"run {run + 1}: convert {convert[-1]:.2f} s, full {full[-1][0]:.2f} s, "
                f"incremental {inc[-1][0]:.2f} s ({changed // MIB} MiB changed)",
                flush=True,
            )
    backend.forget_checkpoints(NAME)
    backend.undefine(NAME, volumes=[disk.name])

    med = statistics.median
    data_mib = GIB / MIB
    t_convert, t_full, t_inc = med(convert), med(f[0] for f in full), med(i[0] for i in inc)
    s_full, s_inc = med(f[1] for f in full), med(i[1] for i in inc)
    st_full, st_inc = med(f[2] for f in full), med(i[2] for i in inc)
    print()
    print(f"medians of {args.runs} runs; 2 GiB disk, 1 GiB of random data")
    print(f"  qemu-img convert         {t_convert:6.2f} s  {data_mib / t_convert:7.1f} MiB/s "
          f"(output {size / MIB:.0f} MiB)")  # fmt: skip
    print(f"  full backup              {t_full:6.2f} s  {data_mib / t_full:7.1f} MiB/s "
          f"(streamed {s_full / MIB:.0f} MiB, stored {st_full / MIB:.0f} MiB)")  # fmt: skip
    print(f"  incremental after 1%     {t_inc:6.2f} s  "
          f"(streamed {s_inc / MIB:.1f} MiB, stored {st_inc / MIB:.1f} MiB)")  # fmt: skip
    copy = med(f[3] for f in full)
    print(f"    of which: start, host-side copy to scratch {copy:.2f} s; "
          f"stream + compress + checksums {t_full - copy:.2f} s")  # fmt: skip
    print(f"  full throughput / qemu-img convert: {t_convert / t_full:.2f}x (goal >= 0.9x)")
    print(f"  incremental / full: size {s_inc / s_full:.1%}, time {t_inc / t_full:.1%} "
          "(goal <= 5% each)")  # fmt: skip


if __name__ == "__main__":
    main()
