"""The image store (settings.IMAGE_STORE): where an image's `source` file is, and whether
Paddock may read it. Checked when an image is saved and again by the worker at use."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from django.conf import settings


class UnsafeImageSource(ValueError):
    """An image source that is not a regular file inside the image store."""


def store_root() -> Path:
    return Path(settings.IMAGE_STORE).resolve()


def resolve_source(source: str) -> Path:
    """The file an image source names, or UnsafeImageSource.

    A path relative to the store (an absolute one only when it lies in the store), with no
    `..`, no symbolic link on the way, naming a regular file (not a device, FIFO or
    directory) that exists.
    """
    if not source or "\x00" in source or not source.isprintable():
        raise UnsafeImageSource("Name a file in the image store.")
    root = store_root()
    path = PurePosixPath(source)
    if path.is_absolute():
        try:
            path = PurePosixPath(os.path.normpath(source)).relative_to(root)
        except ValueError:
            raise UnsafeImageSource(
                "The image file must be inside the image store; give its path relative "
                "to the store."
            ) from None
    if any(part == ".." for part in PurePosixPath(source).parts) or not path.parts:
        raise UnsafeImageSource("The image path may not contain '..'.")
    current = root
    for part in path.parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            raise UnsafeImageSource(f"There is no file {path} in the image store.") from None
        if stat.S_ISLNK(mode):
            raise UnsafeImageSource("The image path may not go through a symbolic link.")
    if not stat.S_ISREG(mode):
        raise UnsafeImageSource(f"{path} in the image store is not a regular file.")
    if root not in current.resolve().parents:
        raise UnsafeImageSource("The image file must be inside the image store.")
    return current


def source_path(image) -> str | None:
    """The file the worker uploads for `image` (None when it has no file), checked again
    at use: a file changed into a link or a device since the image was saved is refused."""
    from .backends.errors import ImageNotAvailable

    if not image.source:
        return None
    try:
        return str(resolve_source(image.source))
    except UnsafeImageSource as exc:
        raise ImageNotAvailable(f"Image {image.name}: {exc}") from exc
