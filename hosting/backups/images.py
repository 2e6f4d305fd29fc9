"""Rebuild a disk image from a backup chain (a full backup and its incrementals).

A full backup is a standalone qcow2 image of the disk; an incremental is a qcow2 image
holding only the clusters written since its parent (the others are unallocated). Put on
top of one another (`qemu-img rebase -u`: each incremental backed by its parent) they
read as the disk at the last link; `qemu-img convert` flattens that into one image, the
disk that is uploaded to the host.
"""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .store import BackupStore, StoreError


def run(*args: str) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, check=True)
    except FileNotFoundError as exc:
        raise StoreError(f"{args[0]} is not installed (package qemu-utils).") from exc
    except subprocess.CalledProcessError as exc:
        raise StoreError(f"{' '.join(args[:2])} failed: {exc.stderr.strip()}") from exc
    return done.stdout


def fetch(store: BackupStore, key: str, path: Path, progress: Callable[[int], None]) -> None:
    """Copy an object out of the store into `path` (its checksums checked on the way)."""
    chunks: Iterator[bytes] = store.get(key)
    with open(path, "wb") as fh:
        for chunk in chunks:
            fh.write(chunk)
            progress(len(chunk))


def assemble(
    store: BackupStore,
    keys: Iterable[str],
    workdir: Path,
    progress: Callable[[int], None] = lambda _n: None,
    format: str = "qcow2",
) -> Path:
    """The disk at the last of `keys` (a chain, the full backup first), as one qcow2; or,
    for a disk that is not qcow2 (a container's root file system as a tar), the one
    full backup as it was stored."""
    workdir.mkdir(parents=True, exist_ok=True)
    if format != "qcow2":
        keys = list(keys)
        if len(keys) != 1:
            raise StoreError(f"A {format} backup is a full one; a chain cannot be restored.")
        path = workdir / f"restored.{format}"
        fetch(store, keys[0], path, progress)
        return path
    files = []
    for index, key in enumerate(keys):
        path = workdir / f"link-{index}.qcow2"
        fetch(store, key, path, progress)
        files.append(path)
    if not files:
        raise StoreError("An empty backup chain cannot be restored.")
    for parent, child in itertools.pairwise(files):
        run("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", str(parent), "-F", "qcow2", str(child))
    flat = workdir / "restored.qcow2"
    run(
        "qemu-img", "convert", "-f", "qcow2", "-O", "qcow2", "-o", "compat=1.1",
        str(files[-1]), str(flat),
    )  # fmt: skip
    for path in files:
        path.unlink()
    return flat
