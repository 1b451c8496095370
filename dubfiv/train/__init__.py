"""Training of the invertible network and its heads (``dubfiv_train``).

Public API::

    train(config, output_base_dir, device=..., amp=..., ...) -> run directory
    resume(run_dir, device=..., ...) -> run directory
    Trainer, FlowWithHeads, make_optimizer
    save_checkpoint, load_checkpoint, atomic_write, LegacyObject
    TrainingError, NonFiniteLossError, InverseCheckError, CheckpointError,
    RunLockedError, CheckpointWriteError, WrongCheckpointError, TrainingStopped
    CHECKPOINT, EXPERIMENT, LOG (paths inside a run directory)
"""

from dubfiv.checkpoint import (
    CheckpointError,
    LegacyObject,
    atomic_write,
    load_checkpoint,
    save_checkpoint,
)
from dubfiv.rundir import CHECKPOINT, EXPERIMENT, LOG
from dubfiv.train.api import resume, train
from dubfiv.train.errors import (
    CheckpointWriteError,
    InverseCheckError,
    NonFiniteLossError,
    RunLockedError,
    TrainingError,
    TrainingStopped,
    WrongCheckpointError,
)
from dubfiv.train.model import FlowWithHeads, build_model, make_optimizer
from dubfiv.train.trainer import Trainer

__all__ = [
    "CHECKPOINT",
    "EXPERIMENT",
    "LOG",
    "CheckpointError",
    "CheckpointWriteError",
    "FlowWithHeads",
    "InverseCheckError",
    "LegacyObject",
    "NonFiniteLossError",
    "RunLockedError",
    "Trainer",
    "TrainingError",
    "TrainingStopped",
    "WrongCheckpointError",
    "atomic_write",
    "build_model",
    "load_checkpoint",
    "make_optimizer",
    "resume",
    "save_checkpoint",
    "train",
]
