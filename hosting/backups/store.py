"""The backup store: where backup images live, behind one small interface.

An object is a byte stream under a key (`<customer>/<server>/<backup>.qcow2`). `put`
streams it in (a writer: `write(chunk)`, then `close()` returns what was stored), `get`
streams it out, checking its checksums as it goes, `verify` re-reads it whole, `list` and
`delete` do what they say. Every object is stored compressed (zstd) and carries two
sha256 checksums: of the bytes stored (catches a damaged file without decompressing
anything) and of the content (catches a damage the decompressor does not notice).

`LocalStore` keeps objects in a directory (local disk or an NFS mount): the compressed
object `<key>.zst` and its metadata `<key>.json`, each written under a temporary name
and renamed when complete, so that a crash never leaves a half object under its name.
`get_store()` is the store of the settings (BACKUP_STORE).
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

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


class _LocalWriter(ObjectWriter):
    def __init__(self, store: LocalStore, key: str):
        self.store, self.key = store, key
        self.path = store.data_path(key)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + f".part-{os.getpid()}")
        self.file = open(self.tmp, "wb")  # noqa: SIM115 (closed by close() or abort())
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
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        obj = StoredObject(
            key=self.key,
            size=self.size,
            sha256=self.content_hash.hexdigest(),
            stored_size=self.stored_size,
            stored_sha256=self.stored_hash.hexdigest(),
        )
        meta = self.store.meta_path(self.key)
        meta_tmp = meta.with_name(meta.name + ".part")
        meta_tmp.write_text(json.dumps(obj.as_dict()))
        os.replace(self.tmp, self.path)
        os.replace(meta_tmp, meta)
        return obj

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.tmp.unlink(missing_ok=True)


class LocalStore(BackupStore):
    """A directory (local or NFS) of compressed objects with checksums."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def data_path(self, key: str) -> Path:
        return self.root / (_check_key(key) + ".zst")

    def meta_path(self, key: str) -> Path:
        return self.root / (_check_key(key) + ".json")

    def put(self, key: str) -> ObjectWriter:
        return _LocalWriter(self, key)

    def stat(self, key: str) -> StoredObject:
        try:
            return StoredObject(**json.loads(self.meta_path(key).read_text()))
        except FileNotFoundError:
            raise StoreError(f"No object {key} in the store.") from None

    def get(self, key: str) -> Iterator[bytes]:
        meta = self.stat(key)
        stored_hash, content_hash = hashlib.sha256(), hashlib.sha256()
        decompressor = zstandard.ZstdDecompressor().decompressobj()
        try:
            with open(self.data_path(key), "rb") as fh:
                while block := fh.read(CHUNK):
                    stored_hash.update(block)
                    try:
                        data = decompressor.decompress(block)
                    except zstandard.ZstdError as exc:
                        raise CorruptObject(f"Object {key} does not decompress: {exc}") from exc
                    if data:
                        content_hash.update(data)
                        yield data
        except FileNotFoundError:
            raise StoreError(f"No object {key} in the store.") from None
        if stored_hash.hexdigest() != meta.stored_sha256:
            raise CorruptObject(f"Object {key}: the stored bytes do not match their checksum.")
        if content_hash.hexdigest() != meta.sha256:
            raise CorruptObject(f"Object {key}: the content does not match its checksum.")

    def list(self, prefix: str = "") -> list[str]:
        if not self.root.exists():
            return []
        keys = [
            str(p.relative_to(self.root))[: -len(".json")]
            for p in self.root.rglob("*.json")
            if not p.name.endswith(".part")
        ]
        return sorted(k for k in keys if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.data_path(key).unlink(missing_ok=True)
        self.meta_path(key).unlink(missing_ok=True)


def get_store() -> BackupStore:
    return LocalStore(settings.BACKUP_STORE)
