"""Running a trained model on raw flows in PyTorch: the path evaluation, importance, the export checks and the
trust calibration share with training, so each scores flows exactly as training saw them (same preprocessing,
same tensors), and none of them needs the training loop.
"""

from __future__ import annotations

import numpy as np
import torch

from moe_ids.core.preprocessing import Preprocessor
from moe_ids.model.network import MixtureOfExperts


def drop_features(x: np.ndarray, fraction: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of raw features with ``fraction`` of each row's features set to NaN (missing) at random.

    ``fraction`` may be one number or one per row; exactly round(fraction * N) features go per row.
    """
    n, width = x.shape
    frac = np.broadcast_to(np.asarray(fraction, dtype=np.float64), (n,))
    k = np.rint(frac * width).astype(np.int64)
    order = np.argsort(rng.random((n, width)), axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(width)[None, :].repeat(n, 0), axis=1)
    out = x.copy()
    out[ranks < k[:, None]] = np.nan
    return out


def to_tensors(pre: Preprocessor, x: np.ndarray, codes: np.ndarray | int | None = None) -> tuple[torch.Tensor, ...]:
    tab, tmp, mask = pre.transform(x, codes)
    return torch.from_numpy(tab), torch.from_numpy(tmp), torch.from_numpy(mask)


@torch.no_grad()
def predict_numpy(model: MixtureOfExperts, pre: Preprocessor, x: np.ndarray,
                  strategy: str | None = None, batch: int = 4096) -> dict[str, np.ndarray]:
    """Probabilities, gating, family probabilities, trust and flag of raw features through the torch model (as
    its ``forward`` gives them), the probabilities without the hosts' TCP parameters and which flows the trust
    score's host view flagged."""
    model.eval()
    keys = ("probabilities", "gating", "family", "trust", "ood", "host_free", "host_flagged")
    outs: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    for start in range(0, len(x), batch):
        out = model.outputs(*to_tensors(pre, x[start:start + batch], strategy))
        for k in keys:
            value = out[k].numpy()
            outs[k].append(value[:, 0] if k in ("trust", "ood") else value)
    return {k: np.concatenate(v) for k, v in outs.items()}


@torch.no_grad()
def embeddings(model: MixtureOfExperts, pre: Preprocessor, x: np.ndarray, batch: int = 4096) -> np.ndarray:
    model.eval()
    return np.concatenate([model.embedding(*to_tensors(pre, x[s:s + batch])).numpy()
                           for s in range(0, len(x), batch)])


def input_view(pre: Preprocessor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The trust score's input view of raw flows (scaled values, missing mask), in the column order the graph
    builds it (tabular, then temporal)."""
    tab, tmp, mask = pre.transform(x)
    grouped_mask = np.concatenate([mask[:, pre.tabular_idx], mask[:, pre.temporal_idx]], axis=1)
    return np.concatenate([tab, tmp], axis=1).astype(np.float64), grouped_mask
