"""Evaluation arithmetic in plain numpy: F1 scores, balanced accuracy, recall per label, calibration error.

Kept free of scikit-learn so the same numbers can be computed wherever predictions land; the tests check
these functions against scikit-learn on random inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def f1_per_class(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """F1 of each class in ``classes`` (0 where the class is neither predicted nor present)."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    out = []
    for c in classes:
        tp = np.sum((y_true == c) & (y_pred == c))
        fp = np.sum((y_true != c) & (y_pred == c))
        fn = np.sum((y_true == c) & (y_pred != c))
        denom = 2 * tp + fp + fn
        out.append(0.0 if denom == 0 else 2 * tp / denom)
    return np.asarray(out, dtype=np.float64)


def binary_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Macro-F1 over Normal/Attack, F1 of the attack class and balanced accuracy."""
    f1 = f1_per_class(y_true, y_pred, [0, 1])
    return {
        "macro_f1": float(f1.mean()),
        "attack_f1": float(f1[1]),
        "balanced_accuracy": balanced_accuracy(y_true, y_pred),
    }


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean recall over the classes present in y_true."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    recalls = [np.mean(y_pred[y_true == c] == c) for c in np.unique(y_true)]
    return float(np.mean(recalls)) if recalls else 0.0


def family_macro_f1(
    y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str], min_support: int = 20
) -> dict[str, object]:
    """Macro-F1 over the families with at least ``min_support`` true flows; the others listed, not averaged.

    ``y_true`` holds family indices (-1 = not an attack of a known family; those rows are ignored).
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    keep = y_true >= 0
    y_true, y_pred = y_true[keep], y_pred[keep]
    support = {names[i]: int(np.sum(y_true == i)) for i in range(len(names))}
    included = [i for i in range(len(names)) if support[names[i]] >= min_support]
    f1 = f1_per_class(y_true, y_pred, range(len(names)))
    return {
        "macro_f1": float(np.mean(f1[included])) if included else float("nan"),
        "per_family_f1": {names[i]: float(f1[i]) for i in range(len(names)) if support[names[i]] > 0},
        "support": {k: v for k, v in support.items() if v > 0},
        "excluded_low_support": [names[i] for i in range(len(names)) if 0 < support[names[i]] < min_support],
    }


def recall_per_label(labels: Sequence[str], y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, dict]:
    """For each raw label: flows, and the share predicted with the right binary verdict."""
    labels = np.asarray(labels)
    out: dict[str, dict] = {}
    for lab in sorted(set(labels.tolist())):
        sel = labels == lab
        out[lab] = {"flows": int(sel.sum()), "recall": float(np.mean(y_pred[sel] == y_true[sel]))}
    return out


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15
) -> tuple[float, list[dict[str, float]]]:
    """ECE of the predicted class's confidence over equal-width bins, and the reliability table."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    table = []
    n = max(len(confidence), 1)
    for b in range(n_bins):
        sel = which == b
        if not sel.any():
            continue
        conf, acc = float(confidence[sel].mean()), float(correct[sel].mean())
        ece += sel.sum() / n * abs(conf - acc)
        table.append({"low": float(edges[b]), "high": float(edges[b + 1]), "flows": int(sel.sum()),
                      "confidence": conf, "accuracy": acc})
    return float(ece), table
