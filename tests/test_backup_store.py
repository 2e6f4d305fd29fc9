"""The local backup store: compressed objects with checksums, streamed in and out."""

from __future__ import annotations

import os

import pytest

from hosting.backups.store import CorruptObject, LocalStore, StoreError


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def put(store, key: str, data: bytes, chunk: int = 65536):
    with store.put(key) as writer:
        for at in range(0, len(data), chunk):
            writer.write(data[at : at + chunk])
        return writer.close()


def test_round_trip_is_compressed_and_checksummed(store):
    data = os.urandom(300_000) + bytes(5_000_000)  # random bytes, then empty space
    obj = put(store, "1/a/b.qcow2", data)
    assert obj.size == len(data)
    assert obj.stored_size < len(data) // 10  # zeros shrink to almost nothing
    assert b"".join(store.get("1/a/b.qcow2")) == data
    assert store.verify("1/a/b.qcow2") == obj
    assert store.list() == ["1/a/b.qcow2"]
    assert store.list("2/") == []


def test_a_damaged_object_is_caught(store):
    put(store, "1/x.qcow2", os.urandom(200_000))
    path = store.data_path("1/x.qcow2")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptObject):
        store.verify("1/x.qcow2")


def test_an_aborted_write_leaves_nothing(store):
    with pytest.raises(RuntimeError), store.put("1/y.qcow2") as writer:
        writer.write(b"partial")
        raise RuntimeError("the backup failed")
    assert store.list() == []
    assert not any(p.is_file() for p in store.root.rglob("*"))


def test_delete_and_bad_keys(store):
    put(store, "1/z.qcow2", b"data")
    store.delete("1/z.qcow2")
    store.delete("1/z.qcow2")  # a missing one is fine
    assert store.list() == []
    for key in ("", "/etc/passwd", "1/../../x", "a//b"):
        with pytest.raises(StoreError):
            store.put(key)
    with pytest.raises(StoreError):
        store.stat("1/none.qcow2")
