"""Concepts: directions in the channels of an intermediate 1x1 convolution's output.

The activations ``A`` ``[N, C, h, w]`` of an ``InvConv1x1`` layer at 8x8 (or 4x4)
resolution are treated as ``N*h*w`` samples of ``C`` channels. Two factorisations
give ``K`` (6-10) concept directions ``d_k`` ``[C]`` and per-position concept maps
``m_k`` ``[N, h, w]`` with ``A ~ mean + sum_k m_k d_k``:

* **PCA** (``method="pca"``): the top ``K`` principal axes of the centred
  samples; maps are the (signed) projections. Each axis is oriented so that its
  scores have non-negative skew, so "expresses the concept most" = largest score.
* **NMF on the signed parts** (``method="nmf"``): the activations are signed, so
  NMF factorises ``[relu(A), relu(-A)]`` ``[M, 2C]`` ``~ W H`` with ``W, H >= 0``
  and the concept direction is ``d = H[:, :C] - H[:, C:]`` (so ``A ~ W d`` exactly
  as ``A = relu(A) - relu(-A)``). We chose this over a signed low-rank fit by
  gradient descent because it keeps NMF's non-negative, additive "presence"
  maps (a concept is present or absent at a position, never "negatively
  present"), it is deterministic given the seed, and scikit-learn solves it
  without hand-written optimisation. Directions are scaled to unit norm
  (the maps absorb the scale).

Importance: for image ``i`` the directional derivative of the logit when the
concept direction is added at every position, ``g_ik = d/de logit(A_i + e d_k 1)``
at ``e = 0``, a Jacobian-vector product through the rest of the network up to
the head (``torch.func.jvp``). A concept's contribution to image ``i``'s logit is
its first-order effect ``c_ik = s_ik g_ik`` with ``s_ik`` the concept map pooled
(averaged) over positions; concepts are ranked by ``|corr_i(c_ik, logit_i)|``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from dubfiv.errors import ParameterError
from dubfiv.explain.precision import full_precision
from dubfiv.flow import LayerInfo, SequentialFlow
from dubfiv.heads import LinearHead

__all__ = [
    "ConceptBasis",
    "ConceptMethod",
    "NoConceptLayerError",
    "collect_activations",
    "concept_derivatives",
    "concept_layer",
    "concept_probe",
    "explained_variance",
    "fit_concepts",
    "random_basis_explained_variance",
    "rank_concepts",
    "signed_parts",
    "to_samples",
]

ConceptMethod = Literal["pca", "nmf"]


class NoConceptLayerError(ParameterError):
    """The network has no 1x1 convolution at the asked resolution before the head's layer."""


def concept_layer(infos: Sequence[LayerInfo], head_layer: int, resolution: int = 8) -> int:
    """Index of the last ``InvConv1x1`` before ``head_layer`` whose output is ``resolution``^2.

    Raises:
        NoConceptLayerError: no such layer (the message lists the resolutions that have one).
    """
    convs = [info for info in infos if info.kind == "InvConv1x1" and info.index < head_layer]
    matching = [info.index for info in convs if info.output_shape[1:] == (resolution, resolution)]
    if not matching:
        sizes = sorted({info.output_shape[1] for info in convs})
        raise NoConceptLayerError(
            f"no 1x1 convolution at {resolution}x{resolution} before the head's layer "
            f"{head_layer}; resolutions available: {sizes}. Pass `resolution` or `layer`."
        )
    return max(matching)


@torch.no_grad()
def collect_activations(
    flow: SequentialFlow, head: LinearHead, layer: int, batches: Iterable[Tensor],
    with_logits: bool = True,
) -> tuple[Tensor, np.ndarray | None]:
    """Activations at ``layer`` and (optionally) logits of images given in batches.

    Args:
        batches: images ``[B, 3, H, W]`` in [0, 1] (moved to the flow's device/dtype).
        with_logits: also run the rest of the network to the head (else only
            layers ``0 .. layer`` run and the logits are ``None``).

    Returns:
        ``(A [N, C, h, w] float32 on the CPU, logits [N] float64 or None)``.
    """
    if not 0 <= layer < head.after_layer:
        raise ParameterError(f"concept `layer` {layer} must come before the head's layer "
                         f"{head.after_layer}")
    param = next(flow.parameters())
    end = head.after_layer + 1 if with_logits else layer + 1
    acts, logits = [], []
    for x in batches:
        out = flow(x.to(param.device, param.dtype), 0, end, capture=(layer,))
        acts.append(out.activations[layer].float().cpu())
        if with_logits:
            logits.append(head(out.h).double().cpu())
    return torch.cat(acts), (torch.cat(logits).numpy() if with_logits else None)


def to_samples(acts: Tensor | np.ndarray) -> np.ndarray:
    """``[N, C, h, w]`` -> ``[N*h*w, C]`` float64 (one row per image position)."""
    array = np.asarray(torch.as_tensor(acts).detach().cpu(), dtype=np.float64)
    n, c, h, w = array.shape
    return array.transpose(0, 2, 3, 1).reshape(n * h * w, c)


def signed_parts(x: np.ndarray) -> np.ndarray:
    """``[M, C]`` -> ``[M, 2C]`` = ``[relu(x), relu(-x)]`` (non-negative, ``x = a - b``)."""
    return np.concatenate([np.maximum(x, 0.0), np.maximum(-x, 0.0)], axis=1)


@dataclasses.dataclass
class ConceptBasis:
    """``K`` concept directions and how to compute concept maps.

    Attributes:
        method: ``"pca"`` or ``"nmf"``.
        directions: ``[K, C]`` unit-norm concept directions (activation space).
        mean: ``[C]`` offset of the reconstruction (PCA: the data mean; NMF: 0).
        components: NMF: ``H`` ``[K, 2C]`` (non-negative, unit-norm rows of
            ``H[:, :C] - H[:, C:]``); PCA: ``directions``.
        model: the fitted scikit-learn estimator.
        scale: ``[K]`` factors applied to the estimator's maps (NMF row scaling,
            PCA sign flips).
        info: fit diagnostics (iterations, explained variance ratio, ...).
    """

    method: str
    directions: np.ndarray
    mean: np.ndarray
    components: np.ndarray
    model: Any
    scale: np.ndarray
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_concepts(self) -> int:
        return len(self.directions)

    def sample_maps(self, samples: np.ndarray) -> np.ndarray:
        """Concept scores ``[M, K]`` of samples ``[M, C]``."""
        if self.method == "pca":
            return (samples - self.mean) @ self.directions.T
        return self.model.transform(signed_parts(samples)) * self.scale[None, :]

    def maps(self, acts: Tensor | np.ndarray) -> np.ndarray:
        """Concept maps ``[N, K, h, w]`` of activations ``[N, C, h, w]``."""
        n, _, h, w = tuple(acts.shape)
        scores = self.sample_maps(to_samples(acts))
        return scores.reshape(n, h, w, -1).transpose(0, 3, 1, 2)

    def reconstruct(self, samples: np.ndarray) -> np.ndarray:
        """``mean + maps @ directions`` ``[M, C]`` for samples ``[M, C]``."""
        return self.mean[None, :] + self.sample_maps(samples) @ self.directions


def fit_concepts(
    acts: Tensor | np.ndarray, method: ConceptMethod = "nmf", n_concepts: int = 8, seed: int = 0,
    max_positions: int = 40_000, max_iter: int = 500,
) -> ConceptBasis:
    """Fit ``n_concepts`` concept directions to activations ``[N, C, h, w]``.

    Args:
        acts: the activations (every position is one sample).
        method: ``"pca"`` or ``"nmf"`` (see the module docstring).
        n_concepts: ``K``, at most ``C``.
        seed: seeds the position subsample and the estimator.
        max_positions: fit on at most this many positions (a seeded subsample).
        max_iter: NMF iterations.
    """
    from sklearn.decomposition import NMF, PCA
    from sklearn.exceptions import ConvergenceWarning

    samples = to_samples(acts)
    c = samples.shape[1]
    if not 1 <= n_concepts <= c:
        raise ParameterError(f"`n_concepts` must be between 1 and the layer's {c} channels, "
                         f"got {n_concepts}")
    rng = np.random.default_rng(seed)
    if len(samples) > max_positions:
        samples = samples[rng.choice(len(samples), size=max_positions, replace=False)]
    if method == "pca":
        model = PCA(n_components=n_concepts, random_state=seed).fit(samples)
        directions = model.components_.astype(np.float64)
        scores = (samples - model.mean_) @ directions.T
        sign = np.where((scores ** 3).sum(0) < 0, -1.0, 1.0)
        directions = directions * sign[:, None]
        return ConceptBasis("pca", directions, model.mean_.astype(np.float64), directions,
                            model, sign, {"explained_variance_ratio":
                                          model.explained_variance_ratio_.tolist()})
    if method != "nmf":
        raise ParameterError(f"unknown concept `method` {method!r}; use 'pca' or 'nmf'")
    model = NMF(n_components=n_concepts, init="nndsvda", max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(signed_parts(samples))
    h = model.components_.astype(np.float64)
    raw = h[:, :c] - h[:, c:]
    norm = np.linalg.norm(raw, axis=1)
    norm = np.where(norm > 0, norm, 1.0)
    return ConceptBasis(
        "nmf", raw / norm[:, None], np.zeros(c), h / norm[:, None], model, norm,
        {"n_iter": int(model.n_iter_),
         "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)})


def explained_variance(samples: np.ndarray, reconstruction: np.ndarray) -> float:
    """``1 - |X - X_hat|^2 / |X - mean(X)|^2`` (1: perfect; 0: as good as the mean)."""
    total = ((samples - samples.mean(0)) ** 2).sum()
    return float(1.0 - ((samples - reconstruction) ** 2).sum() / max(total, 1e-300))


def random_basis_explained_variance(samples: np.ndarray, rank: int, seed: int = 0) -> float:
    """:func:`explained_variance` of the mean plus the projection onto a random
    ``rank``-dimensional subspace: the chance level a fitted basis must beat."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((samples.shape[1], rank)))
    mean = samples.mean(0)
    return explained_variance(samples, mean + (samples - mean) @ q @ q.T)


@torch.no_grad()
def concept_derivatives(
    flow: SequentialFlow, head: LinearHead, layer: int, acts: Tensor,
    directions: np.ndarray | Tensor, batch_size: int = 16, progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and the directional derivatives of the logit along every concept direction.

    ``g[i, k] = d/de head(f(A_i + e * D_k))`` at ``e = 0``, with ``f`` the layers
    ``layer + 1 .. head.after_layer`` and ``D_k`` the direction ``d_k`` ``[C]``
    repeated at every position: ``torch.func.jvp`` vectorised over the ``K``
    directions with ``torch.func.vmap``, ``batch_size`` images at a time, in the
    flow's dtype and on its device.

    Args:
        acts: activations of ``layer`` ``[N, C, h, w]``.
        directions: ``[K, C]``.
        progress: show a progress bar.

    Returns:
        ``(logits [N], g [N, K])`` float64 numpy arrays.
    """
    param = next(flow.parameters())
    device, dtype = param.device, param.dtype
    d = torch.as_tensor(np.asarray(directions), dtype=dtype, device=device)
    k = d.shape[0]

    def logit(a: Tensor) -> Tensor:
        return head(flow(a, layer + 1, head.after_layer + 1).h)

    def along(tangent: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return torch.func.jvp(logit, (a,), (tangent,))

    logits, derivs = [], []
    starts = range(0, acts.shape[0], batch_size)
    for start in tqdm(starts, desc="concept JVPs", disable=not progress, leave=False):
        a = acts[start:start + batch_size].to(device=device, dtype=dtype)
        tangents = d[:, None, :, None, None].expand(k, *a.shape)  # [K, b, C, h, w]
        with full_precision(), warnings.catch_warnings():
            # torch.func's own machinery calls the deprecated torch.jit.script (torch >= 2.10)
            warnings.filterwarnings("ignore", message=".*torch.jit.script.*",
                                    category=FutureWarning)
            out, tan = torch.func.vmap(along, in_dims=(0, None))(tangents, a)  # [K, b] each
        logits.append(out[0].double().cpu())
        derivs.append(tan.T.double().cpu())
    return torch.cat(logits).numpy(), torch.cat(derivs).numpy()


def rank_concepts(
    pooled: np.ndarray, derivatives: np.ndarray, logits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Contributions ``c = pooled * derivatives`` ``[N, K]`` and ``corr(c[:, k], logits)`` ``[K]``.

    A concept whose contribution does not vary gets correlation 0.
    """
    contribution = pooled * derivatives
    c = contribution - contribution.mean(0)
    y = logits - logits.mean()
    denominator = np.sqrt((c ** 2).sum(0) * (y ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(denominator > 0, (c * y[:, None]).sum(0) / denominator, 0.0)
    return contribution, corr


def concept_probe(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    evaluate: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """How well pooled concept scores alone predict the label and the logit.

    Fits on ``train = (scores [N, K], labels [N], logits [N])``: a logistic
    regression of the label, one of the model's decision (``logit > 0``), and a
    linear regression of the logit (all on standardised scores). Reports per
    split (``train`` included, in-sample): ``label_accuracy``,
    ``decision_agreement``, ``logit_r2`` and ``model_accuracy`` (the model's own
    accuracy on those images, for reference).
    """
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, labels, logits = train

    def classifier(target: np.ndarray) -> Any:
        if len(np.unique(target)) < 2:  # one class only: predict it
            from sklearn.dummy import DummyClassifier

            return DummyClassifier(strategy="most_frequent").fit(x, target)
        return make_pipeline(StandardScaler(), LogisticRegression(
            max_iter=2000, random_state=seed)).fit(x, target)

    label_model = classifier(labels > 0.5)
    decision_model = classifier(logits > 0)
    regression = make_pipeline(StandardScaler(), LinearRegression()).fit(x, logits)
    report = {}
    for split, (xs, ys, ls) in {"train": train, **evaluate}.items():
        residual = ((ls - regression.predict(xs)) ** 2).sum()
        total = max(((ls - ls.mean()) ** 2).sum(), 1e-300)
        report[split] = {
            "n": len(ys),
            "label_accuracy": float((label_model.predict(xs) == (ys > 0.5)).mean()),
            "decision_agreement": float((decision_model.predict(xs) == (ls > 0)).mean()),
            "logit_r2": float(1.0 - residual / total),
            "model_accuracy": float(((ls > 0) == (ys > 0.5)).mean()),
        }
    return report
