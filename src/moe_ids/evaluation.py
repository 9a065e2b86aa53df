"""Evaluation of a trained model on held-out real flows, side by side with a gradient-boosted-tree baseline.

Which flows count as held out: for a file that is one of the training sources (recognised by its SHA-256), only
its rows in the test split (recomputed from the split seed in metadata.json) are scored; any other labelled
CSV is scored whole. The baseline (scikit-learn ``HistGradientBoostingClassifier``, which handles NaN natively) is
trained on exactly the MoE's training split, so the comparison is like for like. The missing-feature tolerance
curve removes the given fraction of features at random per flow (the same draws for both models).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moe_ids import artifacts
from moe_ids.corpus import Corpus, file_sha256, indices_digest, load_corpus, split_indices
from moe_ids.data import load_flows
from moe_ids.labels import FAMILIES
from moe_ids.metrics import binary_report, expected_calibration_error, family_macro_f1, recall_per_label
from moe_ids.preprocessing import Preprocessor

DEFAULT_MISSING = (0.0, 0.25, 0.5, 0.75)
MIN_FAMILY_SUPPORT = 20


@dataclass
class EvalSet:
    """The flows to score and where they came from."""

    data: Corpus
    description: str


def held_out_set(model_dir: Path, data: Path | None) -> tuple[EvalSet, Corpus, np.ndarray]:
    """The evaluation flows, the training corpus and its training-split indices (for the baseline)."""
    meta = artifacts.read_json(Path(model_dir) / artifacts.METADATA)
    corpus = load_corpus()
    split = split_indices(corpus, meta["training_data"]["split_seed"])
    if corpus.data_hash != meta["training_data"]["sha256"]:
        raise ValueError("the bundled training data differs from the data this model was trained on "
                         "(hash mismatch); retrain with `moe-ids train`")
    if indices_digest(split["test"]) != meta["training_data"]["test_indices_digest"]:
        raise ValueError("the recomputed held-out split differs from the one used in training")
    if data is None:
        test = corpus.subset(split["test"])
        return EvalSet(test, f"held-out test split of the training corpus ({len(test.binary)} flows)"), \
            corpus, split["train"]
    data = Path(data)
    sources = {Path(s).name for s in meta["training_data"]["sources"]}
    if data.name in sources and _is_training_file(data, corpus):
        rows = split["test"][corpus.source[split["test"]] == data.name]
        sub = corpus.subset(rows)
        return EvalSet(sub, f"held-out rows of training source {data.name} ({len(rows)} flows)"), \
            corpus, split["train"]
    table = load_flows(data)
    if table.binary is None:
        raise ValueError(f"{data}: no Label column; evaluation needs labelled flows")
    ext = Corpus(table.features.to_numpy(np.float64), table.binary, table.family,
                 table.labels.to_numpy(dtype=str), np.full(len(table), data.name), file_sha256(data))
    return EvalSet(ext, f"{data.name}, not used in training ({len(table)} flows)"), corpus, split["train"]


def _is_training_file(path: Path, corpus: Corpus) -> bool:
    from moe_ids.corpus import DEFAULT_SOURCES
    from moe_ids.data import bundled_data_dir

    for rel in DEFAULT_SOURCES:
        bundled = bundled_data_dir() / rel
        if bundled.name == path.name and bundled.exists():
            return file_sha256(bundled) == file_sha256(path)
    return False


def _drop(x: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    from moe_ids.training import drop_features

    if fraction <= 0:
        return x
    return drop_features(x, fraction, np.random.default_rng(seed))


def _report(y_bin: np.ndarray, y_fam: np.ndarray, labels: np.ndarray, p_attack: np.ndarray,
            fam_pred: np.ndarray) -> dict:
    pred = (p_attack >= 0.5).astype(np.int64)
    confidence = np.where(pred == 1, p_attack, 1 - p_attack)
    ece, table = expected_calibration_error(confidence, pred == y_bin)
    attack_rows = y_bin == 1
    fam = family_macro_f1(y_fam[attack_rows], fam_pred[attack_rows], FAMILIES, MIN_FAMILY_SUPPORT)
    return {
        "binary": binary_report(y_bin, pred),
        "family": fam,
        "per_label_recall": recall_per_label(labels, y_bin, pred),
        "calibration": {"ece": ece, "reliability": table},
    }


class Baseline:
    """Gradient-boosted trees on raw features (NaN native): the reference an MoE must beat to be worth it."""

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.binary = HistGradientBoostingClassifier(random_state=seed, max_iter=200)
        self.family = HistGradientBoostingClassifier(random_state=seed, max_iter=200)

    def fit(self, corpus: Corpus) -> Baseline:
        self.binary.fit(corpus.features, corpus.binary)
        fam_rows = corpus.family >= 0
        self.family.fit(corpus.features[fam_rows], corpus.family[fam_rows])
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.binary.predict_proba(x)[:, 1], self.family.predict(x)


def evaluate(model_dir: Path, data: Path | None = None, missing: tuple[float, ...] = DEFAULT_MISSING,
             seed: int = 2017, with_baseline: bool = True) -> dict:
    """The full report: per missing fraction, the MoE's and the baseline's figures."""
    from moe_ids.training import predict_numpy

    model_dir = Path(model_dir)
    eval_set, corpus, train_idx = held_out_set(model_dir, data)
    model = artifacts.load_model(model_dir)
    pre = Preprocessor(artifacts.load_stats(model_dir))
    baseline = Baseline(seed).fit(corpus.subset(train_idx)) if with_baseline else None
    d = eval_set.data
    result: dict = {"model_dir": str(model_dir), "evaluated_on": eval_set.description, "flows": int(len(d.binary)),
                    "missing": [], "baseline": {"name": "HistGradientBoostingClassifier", "missing": []}}
    for i, frac in enumerate(missing):
        x = _drop(d.features, frac, seed + i)
        out = predict_numpy(model, pre, x)
        entry = {"fraction": frac, **_report(d.binary, d.family, d.labels, out["probabilities"][:, 1],
                                             out["family"].argmax(1))}
        entry["gating_mean"] = {"tabular": float(out["gating"][:, 0].mean()),
                                "temporal": float(out["gating"][:, 1].mean())}
        result["missing"].append(entry)
        if baseline is not None:
            p_attack, fam = baseline.predict(x)
            result["baseline"]["missing"].append({"fraction": frac, **_report(d.binary, d.family, d.labels,
                                                                               p_attack, fam)})
    if baseline is None:
        result.pop("baseline")
    return result


def format_report(result: dict) -> str:
    """The side-by-side table a person reads."""
    lines = [f"Evaluated on {result['evaluated_on']}", ""]
    header = f"{'missing':>8} | {'MoE macroF1':>11} {'attackF1':>8} {'balAcc':>7} {'familyF1':>8} {'ECE':>6}"
    has_base = "baseline" in result
    if has_base:
        header += f" | {'GBT macroF1':>11} {'attackF1':>8} {'familyF1':>8}"
    lines += [header, "-" * len(header)]
    for i, e in enumerate(result["missing"]):
        row = (f"{e['fraction']:>8.2f} | {e['binary']['macro_f1']:>11.4f} {e['binary']['attack_f1']:>8.4f} "
               f"{e['binary']['balanced_accuracy']:>7.4f} {e['family']['macro_f1']:>8.4f} "
               f"{e['calibration']['ece']:>6.4f}")
        if has_base:
            b = result["baseline"]["missing"][i]
            row += (f" | {b['binary']['macro_f1']:>11.4f} {b['binary']['attack_f1']:>8.4f} "
                    f"{b['family']['macro_f1']:>8.4f}")
        lines.append(row)
    full = result["missing"][0]
    lines += ["", "Per-label recall (all features):"]
    for lab, r in full["per_label_recall"].items():
        lines.append(f"  {lab:<28} {r['recall']:.4f}  ({r['flows']} flows)")
    excluded = full["family"]["excluded_low_support"]
    if excluded:
        lines.append(f"Families with fewer than {MIN_FAMILY_SUPPORT} flows (listed, not in the macro): "
                     + ", ".join(f"{k} ({full['family']['support'][k]})" for k in excluded))
    return "\n".join(lines)


def plot_report(result: dict, path: Path) -> None:
    """Reliability diagram (all features) and the missing-feature tolerance curve, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    table = result["missing"][0]["calibration"]["reliability"]
    ax1.plot([0.5, 1], [0.5, 1], "k--", lw=1, label="perfect calibration")
    ax1.plot([t["confidence"] for t in table], [t["accuracy"] for t in table], "-", color="tab:blue", lw=1)
    ax1.scatter([t["confidence"] for t in table], [t["accuracy"] for t in table],
                s=[12 + 20 * np.log10(t["flows"]) for t in table], color="tab:blue", zorder=3, label="MoE")
    for t in table:  # sparse low-confidence bins swing; the counts say how much each point weighs
        ax1.annotate(f"n={t['flows']}", (t["confidence"], t["accuracy"]), textcoords="offset points",
                     xytext=(4, -10), fontsize=7)
    ece = result["missing"][0]["calibration"]["ece"]
    ax1.set(xlabel="confidence", ylabel="accuracy", title=f"Reliability (ECE {ece:.4f})")
    ax1.legend()
    fr = [e["fraction"] for e in result["missing"]]
    ax2.plot(fr, [e["binary"]["macro_f1"] for e in result["missing"]], "o-", label="MoE")
    if "baseline" in result:
        ax2.plot(fr, [e["binary"]["macro_f1"] for e in result["baseline"]["missing"]], "s--", label="GBT baseline")
    ax2.set(xlabel="fraction of features missing", ylabel="binary macro-F1", title="Missing-feature tolerance")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
