"""A guest's power state as every backend reports it."""

from __future__ import annotations

from enum import StrEnum


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    PAUSED = "paused"
    CRASHED = "crashed"
    MISSING = "missing"
    OTHER = "other"
