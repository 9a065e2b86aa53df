"""The drift reference: quantile bins of the training split's observed values, per feature.

Training writes it into the artifact directory (``drift_reference.json``), because it is a statistic of the
training data like the preprocessing statistics, and the repository generator copies it beside the model that
computes the population stability index at serving time (``moe_ids.triton.backends.monitoring``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moe_ids.core.schema import FEATURE_NAMES, N_FEATURES

DRIFT_REFERENCE_FILE = "drift_reference.json"
DEFAULT_DRIFT_BINS = 10


@dataclass
class DriftReference:
    """Quantile bins of the training split's observed values, per feature, and the share of values in each.

    ``edges[f]`` are the interior bin edges of feature ``f`` in raw units; bin ``k`` holds values ``v`` with
    ``edges[k-1] < v <= edges[k]`` (the first and last bins are open). Features with a point mass (most CIC
    counters are zero for most flows) get fewer, unique edges rather than empty duplicate bins.
    """

    feature_names: list[str]
    edges: list[list[float]]
    proportions: list[list[float]]
    source: dict[str, Any] = field(default_factory=dict)

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> DriftReference:
        data = json.loads(Path(path).read_text())
        ref = cls(**data)
        unknown = [name for name in ref.feature_names if name not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"{path}: drift reference names features this code does not know: {unknown[:5]}")
        for name, e, p in zip(ref.feature_names, ref.edges, ref.proportions, strict=True):
            if len(p) != len(e) + 1:
                raise ValueError(f"{path}: feature {name!r}: {len(e)} edges need {len(e) + 1} proportions")
        return ref

    @property
    def indices(self) -> np.ndarray:
        return np.asarray([FEATURE_NAMES.index(name) for name in self.feature_names], dtype=np.int64)


def build_drift_reference(features: np.ndarray, feature_names: Sequence[str] | None = None,
                          bins: int = DEFAULT_DRIFT_BINS, source: dict[str, Any] | None = None) -> DriftReference:
    """Reference bins from raw [n, N_FEATURES] training features (NaN/inf = missing, left out of the bins)."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != N_FEATURES:
        raise ValueError(f"features: expected shape [n, {N_FEATURES}], got {list(x.shape)}")
    names = list(feature_names) if feature_names is not None else list(FEATURE_NAMES)
    unknown = [n for n in names if n not in FEATURE_NAMES]
    if unknown:
        raise ValueError(f"feature_names: unknown features {unknown}")
    quantiles = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    edges, proportions = [], []
    for name in names:
        column = x[:, FEATURE_NAMES.index(name)]
        column = column[np.isfinite(column)]
        if column.size == 0:
            edges.append([])
            proportions.append([1.0])
            continue
        e = np.unique(np.quantile(column, quantiles, method="inverted_cdf"))
        counts = np.bincount(np.searchsorted(e, column, side="left"), minlength=e.size + 1)
        edges.append([float(v) for v in e])
        proportions.append([float(v) for v in counts / counts.sum()])
    return DriftReference(names, edges, proportions, dict(source or {}, bins=bins, flows=int(x.shape[0])))
