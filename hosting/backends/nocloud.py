"""A NoCloud seed as an ISO 9660 volume labelled `cidata` (built in Python with pycdlib),
the form a VM reads its seed files in."""

from __future__ import annotations

import io
from collections.abc import Mapping

import pycdlib


def seed_iso(files: Mapping[str, str]) -> bytes:
    """An ISO 9660 image with Joliet and Rock Ridge names, volume label `cidata`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for index, (name, text) in enumerate(sorted(files.items())):
        data = text.encode()
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/FILE{index};1",
            rr_name=name,
            joliet_path=f"/{name}",
        )
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()
