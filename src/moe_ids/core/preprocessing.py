"""Imputation, scaling and splitting of raw flow features: the one implementation training and serving share.

Raw CICFlowMeter features span ten orders of magnitude (bytes/s next to flag counts), so each feature goes
through a signed ``log1p``, is standardised with the training set's statistics and clipped, which keeps absurd
magnitudes from saturating the network. Missing values (NaN, or ±Infinity, which CICFlowMeter writes for rates
of zero-duration flows) are imputed in raw units by zero, the training mean or the training median — chosen
per row — and flagged in a mask the model sees, so it can discount imputed values.

Numpy only: this module runs inside Triton's Python backend and in the client without torch.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from moe_ids.core.schema import FEATURE_NAMES, N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES

STRATEGIES: tuple[str, ...] = ("zero", "mean", "median")
DEFAULT_STRATEGY = "median"
DEFAULT_CLIP = 8.0


class PreprocessingError(ValueError):
    """Input that cannot be preprocessed; the message names the field and the problem."""


@dataclass
class PreprocessingStats:
    """Per-feature statistics of the training data, in feature-schema order."""

    feature_names: list[str]
    mean: list[float]  # raw units, for mean imputation
    median: list[float]  # raw units, for median imputation
    center: list[float]  # mean of signed-log1p values
    scale: list[float]  # std of signed-log1p values (>= 1e-6)
    minimum: list[float]  # raw training range, for out-of-range monitoring
    maximum: list[float]
    clip: float = DEFAULT_CLIP
    transform: str = "signed_log1p"
    default_strategy: str = DEFAULT_STRATEGY

    @classmethod
    def fit(cls, features: np.ndarray, clip: float = DEFAULT_CLIP) -> PreprocessingStats:
        """Statistics over the observed (finite) values of each column of a raw [n, N_FEATURES] array."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise PreprocessingError(f"FEATURES: expected shape [n, {N_FEATURES}], got {list(x.shape)}")
        x = np.where(np.isfinite(x), x, np.nan)
        logged = signed_log1p(x)

        def col(fn, arr: np.ndarray) -> list[float]:
            # a column no training flow observed (a feature no source's extractor delivers) gets neutral 0s
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                out = fn(arr, axis=0)
            return [float(v) if np.isfinite(v) else 0.0 for v in out]

        scale = [max(s, 1e-6) for s in col(np.nanstd, logged)]
        return cls(
            feature_names=list(FEATURE_NAMES),
            mean=col(np.nanmean, x),
            median=col(np.nanmedian, x),
            center=col(np.nanmean, logged),
            scale=scale,
            minimum=col(np.nanmin, x),
            maximum=col(np.nanmax, x),
            clip=clip,
        )

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def from_json(cls, path: str | Path) -> PreprocessingStats:
        data = json.loads(Path(path).read_text())
        stats = cls(**data)
        if tuple(stats.feature_names) != FEATURE_NAMES:
            raise PreprocessingError(
                "preprocessing statistics were written for a different feature schema "
                f"({len(stats.feature_names)} features) than this code's ({N_FEATURES})"
            )
        return stats


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


class Preprocessor:
    """Compiled form of the statistics: fill tables and affine terms as float32 arrays for fast batches."""

    def __init__(self, stats: PreprocessingStats) -> None:
        self.stats = stats
        zeros = np.zeros(N_FEATURES)
        # Row k of the fill table holds the raw fill values of STRATEGIES[k].
        self.fill_table = np.stack([zeros, np.asarray(stats.mean), np.asarray(stats.median)]).astype(np.float32)
        self.center = np.asarray(stats.center, dtype=np.float32)
        self.inv_scale = (1.0 / np.asarray(stats.scale, dtype=np.float64)).astype(np.float32)
        self.clip = np.float32(stats.clip)
        self.tabular_idx = np.asarray(TABULAR_INDICES)
        self.temporal_idx = np.asarray(TEMPORAL_INDICES)
        self.default_code = strategy_code(stats.default_strategy)

    def transform(
        self, features: np.ndarray, strategy: np.ndarray | int | str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Raw [n, N] features -> (tabular, temporal, missing mask), all float32.

        ``strategy`` is one name or code for all rows, or an [n] array of codes (one per row), so a batch
        that Triton assembled from requests with different strategies is still one vectorised pass.
        """
        x = validate_features(features)
        missing = ~np.isfinite(x)
        codes = self._codes(strategy, x.shape[0])
        if missing.any():
            if np.ndim(codes) == 0:
                fill = np.broadcast_to(self.fill_table[int(codes)], x.shape)
            else:
                fill = self.fill_table[codes]
            x = np.where(missing, fill, x)
        z = (np.sign(x) * np.log1p(np.abs(x)) - self.center) * self.inv_scale
        np.clip(z, -self.clip, self.clip, out=z)
        z = z.astype(np.float32, copy=False)
        return z[:, self.tabular_idx], z[:, self.temporal_idx], missing.astype(np.float32)

    def _codes(self, strategy: np.ndarray | int | str | None, n: int) -> np.ndarray | int:
        if strategy is None:
            return self.default_code
        if isinstance(strategy, str):
            return strategy_code(strategy)
        if isinstance(strategy, (int, np.integer)):
            return int(strategy)
        codes = np.asarray(strategy).reshape(-1)
        if codes.shape[0] != n:
            raise PreprocessingError(f"IMPUTATION: expected {n} strategy codes, got {codes.shape[0]}")
        return codes.astype(np.int64)


def strategy_code(name: str | bytes) -> int:
    """Index of an imputation strategy; a clear error for anything else."""
    if isinstance(name, bytes):
        name = name.decode("utf-8", errors="replace")
    key = str(name).strip().lower()
    if key in ("", "default"):
        key = DEFAULT_STRATEGY
    if key not in STRATEGIES:
        raise PreprocessingError(
            f"IMPUTATION: unknown imputation strategy {name!r}; expected one of {', '.join(STRATEGIES)}"
        )
    return STRATEGIES.index(key)


def validate_features(features: np.ndarray) -> np.ndarray:
    """The array as float32 [n, N_FEATURES]; a PreprocessingError naming the problem otherwise."""
    x = np.asarray(features)
    if x.dtype.kind not in "fiu":
        raise PreprocessingError(f"FEATURES: expected FP32 numbers, got dtype {x.dtype}")
    if x.ndim != 2:
        raise PreprocessingError(f"FEATURES: expected a 2-D tensor [batch, {N_FEATURES}], got rank {x.ndim}")
    if x.shape[1] != N_FEATURES:
        raise PreprocessingError(f"FEATURES: expected {N_FEATURES} features per flow, got {x.shape[1]}")
    if x.shape[0] == 0:
        raise PreprocessingError("FEATURES: empty batch (0 flows)")
    return x.astype(np.float32, copy=False)
