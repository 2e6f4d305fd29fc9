"""Refreshing a pool while libvirt builds or fills one of its volumes (two migrations
copying disks into one target pool, as an evacuation runs them): libvirt refuses with
"has asynchronous jobs running"; the refresh waits for it instead of failing the move.
Seen on the real testbed (tests/system/test_balancing.py); libvirt's test driver has no
asynchronous pool jobs, so a pool here stands in with libvirt's own error."""

from __future__ import annotations

import libvirt
import pytest

from hosting.backends.libvirt_volumes import refresh


class LibvirtSays(libvirt.libvirtError):
    def __init__(self, message: str):
        Exception.__init__(self, message)
        self.err = None


class Pool:
    """Answers refresh() with the given errors first, then refreshes."""

    def __init__(self, *errors: str):
        self.errors = list(errors)
        self.calls = 0

    def refresh(self, flags: int) -> int:
        self.calls += 1
        if self.errors:
            raise LibvirtSays(self.errors.pop(0))
        return 0


BUSY = "internal error: pool 'paddock' has asynchronous jobs running."


def test_a_busy_pool_is_refreshed_once_its_jobs_are_done():
    pool = Pool(BUSY, BUSY)
    refresh(pool, wait=5)  # type: ignore[arg-type]
    assert pool.calls == 3


def test_other_errors_and_a_pool_busy_too_long_are_raised():
    with pytest.raises(libvirt.libvirtError, match="not active"):
        refresh(Pool("storage pool 'paddock' is not active"), wait=5)  # type: ignore[arg-type]
    busy = Pool(*[BUSY] * 100)
    with pytest.raises(libvirt.libvirtError, match="asynchronous jobs"):
        refresh(busy, wait=0.5)  # type: ignore[arg-type]
    assert 2 <= busy.calls < 10


def test_a_reader_that_may_go_on_stale_does_so_only_for_a_busy_pool():
    # a console read: after its short wait on a busy pool, it reads what libvirt last knew
    busy = Pool(*[BUSY] * 100)
    refresh(busy, wait=0.3, stale_ok=True)  # type: ignore[arg-type]
    assert busy.calls >= 2
    # any other error is still raised
    with pytest.raises(libvirt.libvirtError, match="not active"):
        refresh(Pool("storage pool 'paddock' is not active"), wait=5, stale_ok=True)  # type: ignore[arg-type]
