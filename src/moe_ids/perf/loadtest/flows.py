"""Real CIC-IDS2017 flows for the load generator, and the batches built from them.

The load must look like production traffic to the server: real feature distributions (so the imputation,
clipping and both experts do their real work), a realistic label mix, and missing values injected at a
known rate. ``flows_sample.csv.gz`` next to this module is a label-stratified extract of the project's
bundled corrected-release sample (see ``SAMPLE.md`` for its provenance and citation), so a client-only
install or a remote Locust worker needs nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from moe_ids.core.schema import N_FEATURES

SAMPLE_FILE = Path(__file__).with_name("flows_sample.csv.gz")
SAMPLE_ROWS = 2048
DATA_ENV = "MOE_IDS_LOADTEST_DATA"  # override: any CSV that moe_ids.data.loading.load_flows reads


def sample_path() -> Path:
    """The flows file the users read: ``$MOE_IDS_LOADTEST_DATA`` or the bundled sample."""
    return Path(os.environ.get(DATA_ENV) or SAMPLE_FILE)


def load_feature_matrix(path: Path | None = None) -> np.ndarray:
    """Feature matrix [n, N_FEATURES] float32 in schema order (NaN where the file has no value)."""
    from moe_ids.data.loading import load_flows

    table = load_flows(path or sample_path())
    if len(table) == 0:
        raise ValueError(f"{path or sample_path()}: no flows")
    matrix = table.features.to_numpy(np.float32)
    if matrix.shape[1] != N_FEATURES:
        raise ValueError(f"flows matrix has {matrix.shape[1]} columns, the model needs {N_FEATURES}")
    return matrix


def make_batch(flows: np.ndarray, batch: int, missing: float, rng: np.random.Generator) -> np.ndarray:
    """``batch`` flows drawn at random, each feature independently set to NaN with probability ``missing``."""
    rows = flows[rng.integers(0, len(flows), size=batch)].copy()
    if missing > 0:
        rows[rng.random(rows.shape) < missing] = np.nan
    return np.ascontiguousarray(rows, dtype=np.float32)


def extract_sample(source: Path, out: Path = SAMPLE_FILE, rows: int = SAMPLE_ROWS, seed: int = 2017) -> int:
    """Write a label-stratified extract of ``source`` (feature columns + Label, original column names).

    Every label keeps at least a few rows, so rare attacks (Heartbleed, SQL injection) reach the server too.
    """
    import pandas as pd

    from moe_ids.core.schema import normalize_name, resolve_columns

    frame = pd.read_csv(source, low_memory=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    label_col = next(c for c in frame.columns if normalize_name(c) == "label")
    mapping, _ = resolve_columns([c for c in frame.columns if c != label_col])
    keep = [*mapping, label_col]
    rng = np.random.default_rng(seed)
    share = rows / len(frame)
    parts = []
    for _, group in frame.groupby(label_col, sort=True):
        n = min(len(group), max(4, round(len(group) * share)))
        parts.append(group.iloc[np.sort(rng.choice(len(group), size=n, replace=False))])
    sample = pd.concat(parts).sort_index()[keep]
    sample.to_csv(out, index=False, compression={"method": "gzip", "mtime": 0})
    return len(sample)


if __name__ == "__main__":
    from moe_ids.data.loading import default_training_csv

    print(f"wrote {extract_sample(default_training_csv())} flows to {SAMPLE_FILE}")
