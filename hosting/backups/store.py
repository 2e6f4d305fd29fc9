"""The backup store: where backup images live, behind one small interface.

An object is a byte stream under a key (`<customer>/<server>/<backup>.qcow2`). `put`
streams it in (a writer: `write(chunk)`, then `close()` returns what was stored), `get`
streams it out, checking its checksums as it goes, `verify` re-reads it whole, `list` and
`delete` do what they say. Every object is stored compressed (zstd) and carries two
sha256 checksums: of the bytes stored (catches a damaged file without decompressing
anything) and of the content (catches a damage the decompressor does not notice).

A `FileStore` keeps objects as files under a root: the compressed object `<key>.zst`
and its metadata `<key>.json`, each written under a temporary name and renamed when
complete, so that a crash never leaves a half object under its name. `LocalStore` is a
directory (local disk or an NFS mount), `SFTPStore` (sftp_store.py) one on an SSH server.
Writes are pipelined: compression and checksums run in a thread of their own while the
producer (a stream from a host) goes on. `get_store()` is the store of the settings
(BACKUP_STORE).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import zstandard
from django.conf import settings

CHUNK = 1024 * 1024


class StoreError(Exception):
    """The store cannot do what was asked (missing object, I/O error)."""


class CorruptObject(StoreError):
    """An object's bytes do not match its checksums."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int  # content bytes (uncompressed)
    sha256: str  # of the content
    stored_size: int  # bytes in the store (compressed)
    stored_sha256: str  # of the stored bytes

    def as_dict(self) -> dict:
        return asdict(self)


class ObjectWriter(ABC):
    """Receives an object's content chunk by chunk; `close()` commits it."""

    @abstractmethod
    def write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def close(self) -> StoredObject: ...

    @abstractmethod
    def abort(self) -> None:
        """Drop what was written (a failed backup leaves nothing)."""

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()


class BackupStore(ABC):
    @abstractmethod
    def put(self, key: str) -> ObjectWriter: ...

    @abstractmethod
    def get(self, key: str) -> Iterator[bytes]:
        """The object's content; raises CorruptObject (at the end at the latest) when a
        checksum does not match."""

    @abstractmethod
    def stat(self, key: str) -> StoredObject: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine."""

    def verify(self, key: str) -> StoredObject:
        """Re-read the object whole and check both checksums; raises CorruptObject."""
        for _chunk in self.get(key):
            pass
        return self.stat(key)


def _check_key(key: str) -> str:
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"Invalid object key {key!r}.")
    return key


class _FileWriter(ObjectWriter):
    """Compresses and checksums an object into a FileStore: the data under a temporary
    name, renamed with its metadata when complete."""

    def __init__(self, store: FileStore, key: str):
        self.store, self.key = store, key
        self.path = store.data_path(key)
        self.tmp = f"{self.path}.part-{os.getpid()}"
        store.makedirs(self.path.rsplit("/", 1)[0])
        self.file = store.open(self.tmp, "wb")
        self.stored_hash = hashlib.sha256()
        self.content_hash = hashlib.sha256()
        self.size = 0
        self.stored_size = 0
        self.compressor = zstandard.ZstdCompressor(
            level=settings.BACKUP_COMPRESSION_LEVEL, threads=-1
        ).compressobj()

    def _emit(self, data: bytes) -> None:
        if data:
            self.stored_hash.update(data)
            self.stored_size += len(data)
            self.file.write(data)

    def write(self, chunk: bytes) -> None:
        self.content_hash.update(chunk)
        self.size += len(chunk)
        self._emit(self.compressor.compress(chunk))

    def close(self) -> StoredObject:
        self._emit(self.compressor.flush())
        self.store.sync(self.file)
        self.file.close()
        obj = StoredObject(
            key=self.key,
            size=self.size,
            sha256=self.content_hash.hexdigest(),
            stored_size=self.stored_size,
            stored_sha256=self.stored_hash.hexdigest(),
        )
        meta = self.store.meta_path(self.key)
        with self.store.open(meta + ".part", "wb") as fh:
            fh.write(json.dumps(obj.as_dict()).encode())
        self.store.replace(self.tmp, self.path)
        self.store.replace(meta + ".part", meta)
        return obj

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.store.remove(self.tmp)


class PipelinedWriter(ObjectWriter):
    """Hands chunks to another writer in a thread of its own, so that the producer (a
    stream from a host) and the compression and hashing run at the same time; at most
    `depth` chunks wait in between. Errors of the inner writer surface at the next
    write or at close."""

    _END = object()

    def __init__(self, inner: ObjectWriter, depth: int = 8):
        self.inner = inner
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._drain, name="store-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            chunk = self.queue.get()
            if chunk is self._END:
                return
            if self.error is None:
                try:
                    self.inner.write(chunk)
                except BaseException as exc:  # reported to the producer
                    self.error = exc

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def write(self, chunk: bytes) -> None:
        self._check()
        self.queue.put(chunk)

    def _finish(self) -> None:
        if self.thread.is_alive():
            self.queue.put(self._END)
            self.thread.join()

    def close(self) -> StoredObject:
        self._finish()
        self._check()
        return self.inner.close()

    def abort(self) -> None:
        self._finish()
        self.inner.abort()


class FileStore(BackupStore):
    """A store of files under a root directory: `<key>.zst` (the compressed object) and
    `<key>.json` (its sizes and checksums). Subclasses supply the file operations."""

    root: str

    # --- file operations (paths are strings with "/" separators) --------------------
    @abstractmethod
    def open(self, path: str, mode: str) -> IO[bytes]: ...

    @abstractmethod
    def replace(self, source: str, target: str) -> None: ...

    @abstractmethod
    def remove(self, path: str) -> None:
        """Remove a file; a missing one is fine."""

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    @abstractmethod
    def walk_files(self) -> Iterator[str]:
        """Every file under the root, relative to it."""

    def sync(self, fh: IO[bytes]) -> None:
        fh.flush()

    # --- the store --------------------------------------------------------------------
    def data_path(self, key: str) -> str:
        return f"{self.root}/{_check_key(key)}.zst"

    def meta_path(self, key: str) -> str:
        return f"{self.root}/{_check_key(key)}.json"

    def put(self, key: str) -> ObjectWriter:
        return PipelinedWriter(_FileWriter(self, key))

    def stat(self, key: str) -> StoredObject:
        try:
            with self.open(self.meta_path(key), "rb") as fh:
                return StoredObject(**json.loads(fh.read()))
        except FileNotFoundError:
            raise StoreError(f"No object {key} in the store.") from None

    def get(self, key: str) -> Iterator[bytes]:
        meta = self.stat(key)
        stored_hash, content_hash = hashlib.sha256(), hashlib.sha256()
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        try:
            fh = self.open(self.data_path(key), "rb")
        except FileNotFoundError:
            raise StoreError(f"No object {key} in the store.") from None
        with fh:
            while block := fh.read(CHUNK):
                stored_hash.update(block)
                try:
                    data = decompressor.decompress(block)
                except zstandard.ZstdError as exc:
                    raise CorruptObject(f"Object {key} does not decompress: {exc}") from exc
                if data:
                    content_hash.update(data)
                    yield data
        if stored_hash.hexdigest() != meta.stored_sha256:
            raise CorruptObject(f"Object {key}: the stored bytes do not match their checksum.")
        if content_hash.hexdigest() != meta.sha256:
            raise CorruptObject(f"Object {key}: the content does not match its checksum.")

    def list(self, prefix: str = "") -> list[str]:
        keys = [p[: -len(".json")] for p in self.walk_files() if p.endswith(".json")]
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.remove(self.data_path(key))
        self.remove(self.meta_path(key))


class LocalStore(FileStore):
    """A directory on this machine (local disk or an NFS mount)."""

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/") or "/"

    def open(self, path: str, mode: str) -> IO[bytes]:
        return open(path, mode)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove(self, path: str) -> None:
        Path(path).unlink(missing_ok=True)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)

    def sync(self, fh: IO[bytes]) -> None:
        fh.flush()
        os.fsync(fh.fileno())

    def walk_files(self) -> Iterator[str]:
        root = Path(self.root)
        if root.exists():
            for p in root.rglob("*"):
                if p.is_file():
                    yield str(p.relative_to(root))


def get_store() -> BackupStore:
    """The store of the settings: BACKUP_STORE, a directory or an sftp:// URL
    (hosting/backups/sftp_store.py)."""
    location = str(settings.BACKUP_STORE)
    if location.startswith("sftp://"):
        from .sftp_store import SFTPStore

        return SFTPStore.from_url(location, key_file=settings.BACKUP_STORE_SSH_KEY or None)
    return LocalStore(location)
