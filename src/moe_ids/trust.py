"""Calibration of the trust score (``moe_ids.model.TrustScore``): class-conditional Gaussians on the experts'
embeddings of training flows, and the distance quantiles of held-out flows that turn a distance into a p-value.

Why a p-value: an analyst reads ``trust 0.3`` as "30% of the flows the model was checked on looked less
familiar than this one", and ``out_of_distribution`` (trust below ``alpha``) flags ``alpha`` of in-distribution
traffic by construction - the false-alarm rate is a stated number, not a tuning accident. The arithmetic lives
here in numpy (``trust_from_knots`` mirrors the graph's) so it can be tested without torch.
"""

from __future__ import annotations

import numpy as np

DEFAULT_ALPHA = 0.01  # stated false-alarm rate of out_of_distribution on in-distribution flows
SHRINKAGE = 0.05  # share of the mean variance added to the covariance's diagonal (stable inverse)


def class_index(binary: np.ndarray, family: np.ndarray) -> np.ndarray:
    """0 for Normal, 1 + family for attacks; -1 for attacks without a known family (left out of the means)."""
    return np.where(binary == 0, 0, np.where(family >= 0, family + 1, -1)).astype(np.int64)


def fit_gaussians(embeddings: np.ndarray, classes: np.ndarray, n_classes: int,
                  shrinkage: float = SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(whitening [D, D], whitened centers [C, D]) so that ``||h @ W - c_k||^2`` is the Mahalanobis distance of
    ``h`` to class k under the pooled within-class covariance. Classes without rows get the overall mean."""
    h = np.asarray(embeddings, dtype=np.float64)
    dim = h.shape[1]
    overall = h.mean(axis=0)
    means = np.tile(overall, (n_classes, 1))
    centred = []
    for k in range(n_classes):
        rows = h[classes == k]
        if len(rows):
            means[k] = rows.mean(axis=0)
            centred.append(rows - means[k])
    resid = np.concatenate(centred) if centred else h - overall
    cov = resid.T @ resid / max(len(resid) - 1, 1)
    cov += shrinkage * max(float(np.trace(cov)) / dim, 1e-12) * np.eye(dim)
    whitening = np.linalg.cholesky(np.linalg.inv(cov))  # P = L L^T, so (h - m) P (h - m)^T = ||(h - m) L||^2
    return whitening, means @ whitening


def min_distance(embeddings: np.ndarray, whitening: np.ndarray, centers: np.ndarray) -> np.ndarray:
    z = np.asarray(embeddings, dtype=np.float64) @ whitening
    return ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).min(axis=1)


def quantile_knots(distances: np.ndarray, knots: int) -> np.ndarray:
    """``knots + 1`` strictly increasing distance quantiles at levels 0, 1/knots, ..., 1."""
    q = np.quantile(np.asarray(distances, dtype=np.float64), np.linspace(0.0, 1.0, knots + 1))
    q = np.maximum.accumulate(q)
    step = max(float(q[-1] - q[0]), 1.0) * 1e-7
    return q + step * np.arange(len(q))  # ties would divide by zero in the interpolation


def trust_from_knots(distances: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """1 - the interpolated empirical CDF of the calibration distances: the graph's arithmetic in numpy."""
    d = np.asarray(distances, dtype=np.float64)[:, None]
    lo, hi = knots[None, :-1], knots[None, 1:]
    return 1.0 - np.clip((d - lo) / (hi - lo), 0.0, 1.0).mean(axis=1)
