"""Model outputs as results people read: one ``Prediction`` per flow or a DataFrame per batch, and ``analyze``.

Column names derive from the label sets the server publishes (``prob_normal``, ``gating_tabular``,
``prob_DoS`` ...), so they follow the deployed model rather than a list typed into the client.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from moe_ids.core import contract

from .model_info import ModelInfo

ATTACK = contract.BINARY_LABELS[1]
TRUST_COLUMN = "trust"
OOD_COLUMN = "out_of_distribution"


@dataclass(frozen=True)
class Prediction:
    """The verdict on one flow: label, confidence, class and family probabilities, and the experts' weights."""

    prediction: str  # 'Normal' or 'Attack'
    confidence: float  # probability of the predicted label
    probabilities: dict[str, float]  # {'Normal': p, 'Attack': p}
    gating: dict[str, float]  # {'Tabular Expert': w, 'Temporal Expert': w}, sums to 1
    family: str | None = None  # most likely attack family when the verdict is Attack
    family_probabilities: dict[str, float] = field(default_factory=dict)  # given that the flow is an attack
    model_version: str | None = None
    # how familiar the flow is, in [0, 1]: the share of held-out training flows that looked less familiar;
    # None when the deployed model has no trust score
    trust: float | None = None
    out_of_distribution: bool | None = None  # trust below the model's calibrated false-alarm rate

    @property
    def is_attack(self) -> bool:
        return self.prediction == ATTACK

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probability_column(label: str) -> str:
    return f"prob_{label.lower()}"


def gating_column(expert: str) -> str:
    return f"gating_{expert.split()[0].lower()}"


def family_column(family: str) -> str:
    return f"prob_{family}"


def result_columns(info: ModelInfo) -> list[str]:
    """Columns of ``predict_batch`` results, in order."""
    cols = ["prediction", "confidence"]
    cols += [probability_column(lab) for lab in info.binary_labels]
    cols += [gating_column(e) for e in info.experts]
    if info.families:
        cols += ["family"] + [family_column(f) for f in info.families]
    if contract.TRUST in info.outputs:
        cols += [TRUST_COLUMN, OOD_COLUMN]
    return cols


def result_data(outputs: Mapping[str, np.ndarray], info: ModelInfo) -> dict[str, np.ndarray]:
    """The results columns (``result_columns``' names) as arrays, from the raw output tensors of one or more
    concatenated responses: the one place where tensors become verdicts, for frames and messages alike."""
    probs = np.asarray(outputs[contract.PROBABILITIES], dtype=np.float64)
    gating = np.asarray(outputs[contract.GATING], dtype=np.float64)
    labels = np.asarray(info.binary_labels, dtype=object)
    if contract.PREDICTED_CLASS in outputs:
        predicted = np.asarray(outputs[contract.PREDICTED_CLASS]).reshape(-1).astype(np.int64)
    else:
        predicted = probs.argmax(axis=1)
    if contract.CONFIDENCE in outputs:
        confidence = np.asarray(outputs[contract.CONFIDENCE], dtype=np.float64).reshape(-1)
    else:
        confidence = probs[np.arange(len(probs)), predicted]
    data: dict[str, Any] = {"prediction": labels[predicted], "confidence": confidence}
    for j, lab in enumerate(info.binary_labels):
        data[probability_column(lab)] = probs[:, j]
    for j, expert in enumerate(info.experts):
        data[gating_column(expert)] = gating[:, j]
    if info.families and contract.FAMILY_PROBABILITIES in outputs:
        fam = np.asarray(outputs[contract.FAMILY_PROBABILITIES], dtype=np.float64)
        names = np.asarray(info.families, dtype=object)[fam.argmax(axis=1)]
        data["family"] = np.where(labels[predicted] == ATTACK, names, None)
        for j, fam_name in enumerate(info.families):
            data[family_column(fam_name)] = fam[:, j]
    if contract.TRUST in outputs:
        data[TRUST_COLUMN] = np.asarray(outputs[contract.TRUST], dtype=np.float64).reshape(-1)
        if contract.OUT_OF_DISTRIBUTION in outputs:
            data[OOD_COLUMN] = np.asarray(outputs[contract.OUT_OF_DISTRIBUTION], dtype=bool).reshape(-1)
    return data


def outputs_to_frame(outputs: Mapping[str, np.ndarray], info: ModelInfo, index: pd.Index | None = None) -> pd.DataFrame:
    """A results frame from the raw output tensors of one or more concatenated responses."""
    data = result_data(outputs, info)
    return pd.DataFrame(data, index=index if index is not None else pd.RangeIndex(len(data["confidence"])))


def row_to_prediction(row: Mapping[str, Any], info: ModelInfo) -> Prediction:
    """One row of a results frame as a Prediction."""
    family = row.get("family")
    return Prediction(
        prediction=str(row["prediction"]),
        confidence=float(row["confidence"]),
        probabilities={lab: float(row[probability_column(lab)]) for lab in info.binary_labels},
        gating={e: float(row[gating_column(e)]) for e in info.experts},
        family=None if family is None or (isinstance(family, float) and math.isnan(family)) else str(family),
        family_probabilities={f: float(row[family_column(f)]) for f in info.families},
        model_version=info.version,
        trust=float(row[TRUST_COLUMN]) if TRUST_COLUMN in row else None,
        out_of_distribution=bool(row[OOD_COLUMN]) if OOD_COLUMN in row else None,
    )


def prediction_dicts(results: pd.DataFrame | Mapping[str, np.ndarray], info: ModelInfo) -> list[dict[str, Any]]:
    """``[row_to_prediction(row).to_dict() for row in results]`` built column-wise: the same fields and values at
    a fraction of the cost, for services that turn every verdict into a message (the streaming scorer).
    ``results`` is a ``predict_batch`` frame or the columns ``result_data`` makes of raw outputs (no frame on
    the way: building one costs more than the dicts)."""
    n = len(results["confidence"])

    def column(name: str) -> list[Any]:
        return np.asarray(results[name]).tolist()

    def table(names: Sequence[str], col: Callable[[str], str]) -> list[dict[str, float]]:
        if not names:
            return [{} for _ in range(n)]
        values = np.column_stack([np.asarray(results[col(x)], dtype=np.float64) for x in names]).tolist()
        return [dict(zip(names, row)) for row in values]

    families = [None if f is None or (isinstance(f, float) and math.isnan(f)) else str(f)
                for f in (column("family") if "family" in results else [None] * n)]
    trust = column(TRUST_COLUMN) if TRUST_COLUMN in results else [None] * n
    ood = [bool(v) for v in column(OOD_COLUMN)] if OOD_COLUMN in results else [None] * n
    return [
        {"prediction": str(pred), "confidence": float(conf), "probabilities": probs, "gating": gating,
         "family": fam, "family_probabilities": fam_probs, "model_version": info.version,
         "trust": None if t is None else float(t), "out_of_distribution": o}
        for pred, conf, probs, gating, fam, fam_probs, t, o in zip(
            column("prediction"), column("confidence"), table(info.binary_labels, probability_column),
            table(info.experts, gating_column), families, table(info.families, family_column), trust, ood)
    ]


def analyze(result: Prediction | Mapping[str, Any] | pd.Series) -> dict[str, Any]:
    """Which expert drove a verdict, how evenly the two shared it (balance 1 = equal, 0 = one expert alone),
    and a one-line reading of it for an analyst."""
    if isinstance(result, Prediction):
        gating, verdict, confidence, family = result.gating, result.prediction, result.confidence, result.family
        trust, ood = result.trust, result.out_of_distribution
    else:
        row = dict(result)
        gating = {e: float(row[gating_column(e)]) for e in contract.OUTPUT_LABELS[contract.GATING]
                  if gating_column(e) in row}
        verdict, confidence = str(row["prediction"]), float(row["confidence"])
        family = row.get("family")
        family = None if family is None or (isinstance(family, float) and math.isnan(family)) else str(family)
        trust = float(row[TRUST_COLUMN]) if TRUST_COLUMN in row else None
        ood = bool(row[OOD_COLUMN]) if OOD_COLUMN in row else None
    if len(gating) < 2:
        raise ValueError("analyze() needs the gating weights of both experts")
    ranked = sorted(gating.items(), key=lambda kv: kv[1], reverse=True)
    (top, top_w), (other, other_w) = ranked[0], ranked[1]
    total = sum(gating.values()) or 1.0
    balance = max(0.0, min(1.0, 1.0 - abs(top_w - other_w) / total))
    what = f"{verdict}" + (f" ({family})" if family and verdict == ATTACK else "") + f" at {confidence:.0%} confidence"
    if balance >= 0.8:
        how = f"both experts weighed in about equally ({top} {top_w:.0%}, {other} {other_w:.0%})"
    else:
        focus = ("packet sizes, counts, flags and windows" if top.startswith("Tabular")
                 else "durations, inter-arrival times and rates")
        how = f"driven mainly by the {top} ({top_w:.0%}): {focus} decided"
    familiar = ""
    if ood:
        familiar = (f" The flow is unlike the traffic the model was trained and checked on (trust {trust:.3f}): "
                    "the verdict is a guess about unfamiliar traffic.")
    elif trust is not None:
        familiar = f" The flow resembles the training traffic (trust {trust:.2f})."
    return {
        "prediction": verdict,
        "confidence": confidence,
        "dominant_expert": top,
        "dominant_weight": top_w,
        "balance": balance,
        "trust": trust,
        "out_of_distribution": ood,
        "interpretation": f"{what}; {how}.{familiar}",
    }
