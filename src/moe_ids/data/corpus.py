"""The default training corpus and its deterministic train/validation/test split.

The corpus joins the corrected-release sample (16 labels) with the original extraction's files (heads of day
files, a stratified sample of MachineLearningCVE and attack slices of TrafficLabelling), so the model sees both
CICFlowMeter versions' renderings of attacks and normal traffic, each converted by its extractor profile into the
model's semantics. Each row keeps its source file and extraction for per-source and leave-one-out reports.
The split is a pure function of the data and a seed: evaluation recomputes it to score exactly the held-out
flows that training never saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from moe_ids.core.labels import attempted_mask
from moe_ids.data.loading import bundled_data_dir, load_flows

DEFAULT_SOURCES: tuple[str, ...] = (
    "cicids2017-improved/flows.csv.gz",
    "cicids2017-original/orig_Friday-DDos_head9998.csv.gz",
    "cicids2017-original/orig_Tuesday_head4998_binarylabel.csv.gz",
    "cicids2017-original/orig_Wednesday_head200.csv.gz",
    "cicids2017-original/machinelearningcve_stratified12k.csv.gz",
    "cicids2017-original/trafficlabelling_attack_slices.csv.gz",
)
SPLIT_FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


@dataclass
class Corpus:
    """Raw features and labels of all sources, row-aligned."""

    features: np.ndarray  # [n, N_FEATURES] float64, NaN = missing
    binary: np.ndarray
    family: np.ndarray
    labels: np.ndarray  # cleaned raw labels (str)
    source: np.ndarray  # file name of each row (str)
    data_hash: str
    extraction: np.ndarray  # extractor profile of each row's file (str), see moe_ids.data.extractors
    attempted_left_out: dict[str, int] = field(default_factory=dict)  # per file: "- Attempted" rows not loaded

    def subset(self, idx: np.ndarray) -> Corpus:
        return Corpus(self.features[idx], self.binary[idx], self.family[idx], self.labels[idx],
                      self.source[idx], self.data_hash, self.extraction[idx])


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_corpus(paths: list[Path] | None = None) -> Corpus:
    """Load and concatenate labelled CSVs (the bundled default sources when none are given). Rows labelled as
    attempted attacks (``labels.attempted_mask``) are not loaded; their count per file is kept."""
    if paths is None:
        root = bundled_data_dir()
        paths = [root / rel for rel in DEFAULT_SOURCES]
    feats, binary, family, labels, source, extraction, hashes = [], [], [], [], [], [], []
    attempted: dict[str, int] = {}
    for path in paths:
        table = load_flows(path)
        if table.binary is None:
            raise ValueError(f"{path}: no Label column; training needs labelled flows")
        file_labels = table.labels.to_numpy(dtype=str)
        keep = ~attempted_mask(file_labels)
        if not keep.all():
            attempted[Path(path).name] = int((~keep).sum())
        feats.append(table.features.to_numpy(np.float64)[keep])
        binary.append(table.binary[keep])
        family.append(table.family[keep])
        labels.append(file_labels[keep])
        source.append(np.full(int(keep.sum()), Path(path).name, dtype=object))
        extraction.append(np.full(int(keep.sum()), table.extractor, dtype=object))
        hashes.append(f"{Path(path).name}:{file_sha256(Path(path))}")
    combined = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return Corpus(np.concatenate(feats), np.concatenate(binary), np.concatenate(family),
                  np.concatenate(labels), np.concatenate(source).astype(str), combined,
                  np.concatenate(extraction).astype(str), attempted)


def split_indices(corpus: Corpus, seed: int) -> dict[str, np.ndarray]:
    """Stratified (by source and label) train/val/test row indices; sorted, disjoint, deterministic."""
    rng = np.random.default_rng(seed)
    strata = pd.Series(corpus.source) + "|" + pd.Series(corpus.labels)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in SPLIT_FRACTIONS}
    for _, rows in sorted(strata.groupby(strata).indices.items()):
        rows = rng.permutation(np.asarray(rows))
        n = len(rows)
        n_test = int(round(n * SPLIT_FRACTIONS["test"]))
        n_val = int(round(n * SPLIT_FRACTIONS["val"]))
        if n >= 3:  # tiny classes still get one flow in each split
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        parts["test"].append(rows[:n_test])
        parts["val"].append(rows[n_test:n_test + n_val])
        parts["train"].append(rows[n_test + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def indices_digest(idx: np.ndarray) -> str:
    return hashlib.sha256(np.asarray(idx, dtype=np.int64).tobytes()).hexdigest()[:16]


class SplitMismatchError(ValueError):
    """The corpus at hand is not the data a model was trained on, so its held-out split cannot be recomputed."""


def model_split(model_dir: Path, paths: list[Path] | None = None) -> tuple[Corpus, dict[str, np.ndarray]]:
    """The corpus a trained model used (the bundled one, or ``paths``) and the model's own train/val/test split,
    checked against what training recorded: the data hash and the test split's digest. The one place that
    re-derives a model's split, for evaluation, export checks, the drift reference, benchmarks and tests."""
    from moe_ids.core import artifacts

    trained_on = artifacts.read_json(Path(model_dir) / artifacts.METADATA)["training_data"]
    corpus = load_corpus(paths)
    split = split_indices(corpus, int(trained_on["split_seed"]))
    where = "the given CSVs" if paths else "the bundled corpus"
    if trained_on.get("sha256") not in (None, corpus.data_hash):
        raise SplitMismatchError(f"{model_dir}: the model was trained on other data than {where} (data hash "
                                 "differs); retrain with `moe-ids train` or pass the training CSVs")
    if trained_on.get("test_indices_digest") not in (None, indices_digest(split["test"])):
        raise SplitMismatchError(f"{model_dir}: the recomputed held-out split of {where} differs from the one used "
                                 "in training")
    return corpus, split
