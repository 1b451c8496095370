"""Per-split analysis data (labels, head-layer activations, logits), cached beside the run.

:class:`SplitData` holds, for a deterministic sample of a split, what every
explanation starts from: dataset indices, image ids, labels, the activations
the head reads (flattened in C, H, W order) and the head's logits. Full-resolution
latents are *not* stored -- for the paper's 128x128 model they would take about
600 MB per 3,000 images -- they are recomputed for the few images a figure needs.

The cache is one ``.npz`` file per split and request (split, sample size, seed,
head, dataset) in ``<run_dir>/analysis_cache/``; it stores the checkpoint
fingerprint (:func:`checkpoint_fingerprint`) it was computed from and is
recomputed and overwritten when the checkpoint changes. Files are written
atomically and read without pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from dubfiv.data import to_unit
from dubfiv.explain.counterfactual import encode
from dubfiv.explain.precision import full_precision
from dubfiv.files import atomic_write
from dubfiv.flow import SequentialFlow
from dubfiv.heads import LinearHead
from dubfiv.rundir import ANALYSIS_CACHE

__all__ = [
    "CACHE_DIRNAME",
    "CACHE_FORMAT",
    "SplitData",
    "checkpoint_fingerprint",
    "compute_split_data",
    "image_ids_of",
    "load_or_compute",
    "sample_indices",
]

CACHE_DIRNAME = str(ANALYSIS_CACHE)
"""The cache folder's name inside a run folder (:data:`dubfiv.rundir.ANALYSIS_CACHE`)."""
CACHE_FORMAT = 1
_MIB = 1 << 20


@dataclasses.dataclass
class SplitData:
    """Analysis data of ``N`` sampled images of one split.

    Attributes:
        split: the split name (``validation`` = treatment, ``test`` = task).
        indices: ``[N]`` int64 dataset indices (ascending).
        image_ids: ``[N]`` scene ids (``parameters.jsonl`` ``id``).
        labels: ``[N]`` float32 labels of the head's attribute (0/1).
        activations: ``[N, F]`` float32 activations at the head's layer, flattened.
        logits: ``[N]`` float32 head logits.
    """

    split: str
    indices: np.ndarray
    image_ids: list[str]
    labels: np.ndarray
    activations: np.ndarray
    logits: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def accuracy(self) -> float:
        """Fraction of images with ``(logit > 0) == label``."""
        return float(np.mean((self.logits > 0) == (self.labels > 0.5)))


def checkpoint_fingerprint(path: str | os.PathLike) -> str:
    """A cheap fingerprint of a (possibly multi-GB) checkpoint file.

    Size, modification time (ns) and the SHA-256 of the first and the last MiB:
    a rewritten checkpoint changes the mtime, and a copied one with other
    weights changes the hashed bytes (the pickle header and the tensor data
    at the end), without reading gigabytes.
    """
    path = Path(path)
    stat = path.stat()
    sha = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as handle:
        sha.update(handle.read(_MIB))
        if stat.st_size > _MIB:
            handle.seek(max(_MIB, stat.st_size - _MIB))
            sha.update(handle.read(_MIB))
    return sha.hexdigest()


def sample_indices(n: int, n_samples: int, seed: int) -> np.ndarray:
    """Ascending dataset indices of a deterministic sample of ``min(n, n_samples)`` items.

    All items if ``n_samples <= 0`` or ``n_samples >= n``; otherwise a subset drawn
    without replacement from ``numpy.random.default_rng(seed)``.
    """
    if n_samples <= 0 or n_samples >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=n_samples, replace=False)).astype(np.int64)


def image_ids_of(dataset: Dataset, indices: Sequence[int]) -> list[str]:
    """Scene ids of ``indices`` (``Two4Two.params[i].id``), or the index as a string."""
    params = getattr(dataset, "params", None)
    if params is None:
        return [str(int(i)) for i in indices]
    return [str(params[int(i)].id) for i in indices]


@torch.no_grad()
def compute_split_data(
    flow: SequentialFlow,
    head: LinearHead,
    dataset: Dataset,
    indices: np.ndarray,
    split: str,
    label_index: int = 0,
    batch_size: int = 32,
    progress: bool = True,
) -> SplitData:
    """Encode the images ``indices`` of ``dataset`` (items ``(uint8 image, labels)``).

    Args:
        flow, head: the model (eval mode); images go to the flow's device and dtype.
        dataset: a split from :func:`dubfiv.data.open_split`.
        indices: dataset indices to encode.
        split: the split's name (stored in the result).
        label_index: which entry of the dataset's label vector is the head's label.
        batch_size: images per forward pass.
        progress: show a tqdm bar.
    """
    param = next(flow.parameters())
    loader = DataLoader(Subset(dataset, [int(i) for i in indices]), batch_size=batch_size,
                        shuffle=False, num_workers=0)
    acts, logits, labels = [], [], []
    for images, batch_labels in tqdm(loader, desc=f"encode {split}", disable=not progress,
                                     leave=False):
        x = to_unit(images).to(device=param.device, dtype=param.dtype)
        with full_precision():
            h, _, logit = encode(flow, head, x)
        acts.append(h.flatten(1).float().cpu().numpy())
        logits.append(logit.float().cpu().numpy())
        labels.append(batch_labels[:, label_index].float().numpy())
    return SplitData(
        split=split,
        indices=np.asarray(indices, dtype=np.int64),
        image_ids=image_ids_of(dataset, indices),
        labels=np.concatenate(labels).astype(np.float32),
        activations=np.concatenate(acts).astype(np.float32),
        logits=np.concatenate(logits).astype(np.float32),
    )


def _cache_path(cache_dir: Path, key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"{key['split']}_{digest}.npz"


def _save(path: Path, data: SplitData, meta: Mapping[str, Any]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, indices=data.indices, image_ids=np.asarray(data.image_ids, dtype=str),
                     labels=data.labels, activations=data.activations, logits=data.logits,
                     meta=np.asarray(json.dumps(dict(meta), sort_keys=True)))

    atomic_write(path, write)


def _load(path: Path, meta: Mapping[str, Any]) -> SplitData | None:
    """The cached data if ``path`` exists, is readable and matches ``meta``; else ``None``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            if json.loads(str(archive["meta"])) != json.loads(json.dumps(dict(meta))):
                return None
            return SplitData(
                split=str(meta["split"]),
                indices=archive["indices"].astype(np.int64),
                image_ids=[str(i) for i in archive["image_ids"]],
                labels=archive["labels"],
                activations=archive["activations"],
                logits=archive["logits"],
            )
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # unreadable or from another format: recompute


def load_or_compute(
    cache_dir: Path | None,
    key: Mapping[str, Any],
    fingerprint: str,
    compute: Callable[[], SplitData],
) -> tuple[SplitData, bool]:
    """The cached :class:`SplitData` for ``key`` if its fingerprint matches, else ``compute()``.

    Args:
        cache_dir: the cache folder (``None``: no caching).
        key: what the data depends on besides the checkpoint (must contain ``split``;
            JSON-serialisable); selects the file.
        fingerprint: :func:`checkpoint_fingerprint` of the checkpoint.
        compute: computes the data on a miss.

    Returns:
        ``(data, reused)``. A cache that cannot be written (read-only run folder)
        is skipped with a warning.
    """
    if cache_dir is None:
        return compute(), False
    meta = {**dict(key), "fingerprint": fingerprint, "format": CACHE_FORMAT}
    path = _cache_path(cache_dir, key)
    cached = _load(path, meta)
    if cached is not None:
        return cached, True
    data = compute()
    try:
        _save(path, data, meta)
    except OSError as error:
        import warnings

        warnings.warn(f"{path}: cannot write the analysis cache ({error}); results are kept "
                      "in memory only", stacklevel=2)
    return data, False
