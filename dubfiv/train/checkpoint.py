"""Checkpoint files now live in :mod:`dubfiv.checkpoint` (loading a run must not import
the trainer); the names stay importable from here."""

from dubfiv.checkpoint import (
    CheckpointError,
    LegacyObject,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)

__all__ = ["CheckpointError", "LegacyObject", "atomic_write", "load_checkpoint",
           "save_checkpoint"]
