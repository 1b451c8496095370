"""Checkpoint files: atomic writes, and reading ours or the original code's pickles.

Our checkpoints (``models/models.torch``) hold only plain containers, numbers,
strings and tensors, so they load with ``torch.load(weights_only=True)``. The
paper's released checkpoint pickles objects of the original code
(``dubfiv.config.Experiment``, ...); :func:`load_checkpoint` falls back to an
unpickler that maps every class outside a small allow-list of safe modules to a
plain stand-in (:class:`LegacyObject`), so no foreign code is imported or run.
"""

from __future__ import annotations

import os
import pickle
import types
from pathlib import Path
from typing import Any

import torch

from dubfiv.errors import DubfivError
from dubfiv.files import atomic_write

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "LegacyObject",
    "atomic_write",
    "load_checkpoint",
    "save_checkpoint",
]


CHECKPOINT_FORMAT = "dubfiv-run-1"
"""``state["format"]`` of a checkpoint written by ``dubfiv_train`` (one that can be resumed)."""


class CheckpointError(DubfivError, RuntimeError):
    """A checkpoint is missing or unreadable."""


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """``torch.save(state)`` to ``path`` atomically (temporary file, then rename).

    Raises:
        OSError: the write failed (a full disk, a read-only file system); ``filename``
            is ``path``, which is untouched, and the temporary file is removed.
    """
    return atomic_write(path, lambda tmp: _save(state, tmp))


def _save(state: dict[str, Any], tmp: Path) -> None:
    """``torch.save`` through a Python file, so that a failed write is the ``OSError`` it
    is (torch's own writer reports it as a ``RuntimeError`` without the reason)."""
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
    except RuntimeError as error:
        cause = error.__cause__ or error.__context__
        if isinstance(cause, OSError):
            raise cause from None  # the same error, without torch's wrapper
        raise


# --------------------------------------------------------------------------- legacy pickles


class LegacyObject:
    """Stand-in for an object of a class the original code defined.

    Keeps what the pickle stored: constructor arguments in ``_legacy_args`` /
    ``_legacy_kwargs``, the instance state in ``__dict__`` (or
    ``_legacy_state`` if the state is not a dict), and for subclasses of dict or
    list their items (``obj[key]``, ``_legacy_items``, ``_legacy_list``).
    ``_legacy_name`` is the original ``module.Class``.
    """

    _legacy_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> LegacyObject:
        obj = super().__new__(cls)
        obj.__dict__["_legacy_args"] = args
        obj.__dict__["_legacy_kwargs"] = kwargs
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_legacy_args"] = args
        self.__dict__["_legacy_kwargs"] = kwargs

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict | None):
            state, slots = state
            self.__dict__.update(slots or {})
        if isinstance(state, dict):
            self.__dict__.update(state)
        elif state is not None:
            self.__dict__["_legacy_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__.setdefault("_legacy_items", {})[key] = value

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | slice) and "_legacy_list" in self.__dict__:
            return self.__dict__["_legacy_list"][key]
        return self.__dict__.get("_legacy_items", {})[key]

    def append(self, value: Any) -> None:
        self.__dict__.setdefault("_legacy_list", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("_legacy_list", []).extend(values)

    def __repr__(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if not k.startswith("_legacy")}
        return f"<legacy {self._legacy_name} {fields}>"


_STAND_INS: dict[tuple[str, str], type] = {}


def _stand_in(module: str, name: str) -> type:
    key = (module, name)
    if key not in _STAND_INS:
        _STAND_INS[key] = type(
            name.split(".")[-1], (LegacyObject,),
            {"_legacy_name": f"{module}.{name}", "__module__": f"legacy.{module}"},
        )
    return _STAND_INS[key]


_SAFE_BUILTINS = {
    "list", "dict", "set", "frozenset", "tuple", "int", "float", "complex", "str", "bytes",
    "bytearray", "bool", "slice", "range", "object",
}
_SAFE_MODULES = {
    "_codecs": {"encode"},  # bytes in protocol-2 pickles (numpy arrays)
    "collections": {"OrderedDict", "defaultdict", "Counter", "deque"},
    "copyreg": {"_reconstructor"},
    "datetime": {"datetime", "date", "time", "timedelta", "timezone"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath",
                "PureWindowsPath"},
    "numpy": {"ndarray", "dtype"},
    "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "torch": {"Size", "device", "Tensor"},
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
                     "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy",
                     "_rebuild_qtensor", "_rebuild_sparse_tensor"},
    "torch._tensor": {"_rebuild_from_type_v2"},
    "torch.nn.parameter": {"Parameter"},
}


def _is_safe(module: str, name: str) -> bool:
    if module == "builtins":
        return name in _SAFE_BUILTINS
    if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
        return True
    if module == "numpy.dtypes" or (module == "numpy" and name.endswith("DType")):
        return True
    return name in _SAFE_MODULES.get(module, set())


class LegacyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and stands in for the rest."""

    def find_class(self, module: str, name: str) -> Any:
        if _is_safe(module, name):
            return super().find_class(module, name)
        return _stand_in(module, name)


def _legacy_load(file: Any, **kwargs: Any) -> Any:
    return LegacyUnpickler(file, **kwargs).load()


# torch.load reads non-zip (legacy) files with ``pickle_module.load`` and everything
# else with ``pickle_module.Unpickler``: both must go through the allow-list.
legacy_pickle_module = types.SimpleNamespace(
    Unpickler=LegacyUnpickler, load=_legacy_load, __name__="dubfiv_legacy_pickle"
)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict: ours directly, a legacy pickle with stand-ins.

    Raises:
        CheckpointError: the file is missing, unreadable or not a dict; the
            message names the path.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        try:
            state = torch.load(path, map_location=map_location,
                               pickle_module=legacy_pickle_module, weights_only=False)
        except Exception as error:
            raise CheckpointError(f"{path}: cannot read checkpoint: {error}") from error
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path}: cannot read checkpoint ({error}); is the file complete?"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict, got {type(state).__name__}.")
    return state
