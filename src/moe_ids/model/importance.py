"""Permutation importance per feature and per expert group, and the "only K features" question.

Importance is the drop in binary macro-F1 and the rise in log-loss when one feature (or a whole expert group)
is shuffled across flows, averaged over a few repeats. Log-loss resolves differences that F1 near 1.0 cannot.
The top-K analysis then keeps only the K most important features and sends the rest as missing — what a sensor
that extracts K features would get from the served model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moe_ids.core import artifacts
from moe_ids.core.preprocessing import Preprocessor
from moe_ids.core.schema import FEATURE_NAMES, FEATURES, GROUP_NAMES, N_FEATURES
from moe_ids.model.metrics import binary_report

DEFAULT_K = (5, 10, 15, 20, 30, 45)


def _log_loss(y: np.ndarray, p_attack: np.ndarray) -> float:
    p = np.clip(np.where(y == 1, p_attack, 1 - p_attack), 1e-7, 1.0)
    return float(-np.mean(np.log(p)))


def feature_importance(model_dir: Path, data: Path | None = None, repeats: int = 3, seed: int = 0,
                       ks: tuple[int, ...] = DEFAULT_K) -> dict:
    """Per-feature and per-group importance, and the F1 kept with only the top-K features."""
    from moe_ids.model.evaluation import held_out_set
    from moe_ids.model.prediction import predict_numpy

    eval_set, _, _ = held_out_set(Path(model_dir), data)
    d = eval_set.data
    model = artifacts.load_model(Path(model_dir))
    pre = Preprocessor(artifacts.load_stats(Path(model_dir)))
    rng = np.random.default_rng(seed)

    def score(x: np.ndarray) -> tuple[float, float]:
        p = predict_numpy(model, pre, x)["probabilities"][:, 1]
        return binary_report(d.binary, (p >= 0.5).astype(np.int64))["macro_f1"], _log_loss(d.binary, p)

    base_f1, base_ll = score(d.features)

    def permuted_drop(columns: list[int]) -> tuple[float, float]:
        f1s, lls = [], []
        for _ in range(repeats):
            x = d.features.copy()
            perm = rng.permutation(len(x))
            x[:, columns] = x[perm][:, columns]
            f1, ll = score(x)
            f1s.append(base_f1 - f1)
            lls.append(ll - base_ll)
        return float(np.mean(f1s)), float(np.mean(lls))

    per_feature = []
    for i, name in enumerate(FEATURE_NAMES):
        f1_drop, ll_rise = permuted_drop([i])
        per_feature.append({"feature": name, "group": FEATURES[i].group, "f1_drop": f1_drop,
                            "log_loss_rise": ll_rise})
    per_feature.sort(key=lambda r: (r["log_loss_rise"], r["f1_drop"]), reverse=True)

    per_group = {}
    for g in GROUP_NAMES:
        cols = [i for i, f in enumerate(FEATURES) if f.group == g]
        f1_drop, ll_rise = permuted_drop(cols)
        per_group[g] = {"features": len(cols), "f1_drop": f1_drop, "log_loss_rise": ll_rise}

    ranking = [FEATURE_NAMES.index(r["feature"]) for r in per_feature]
    top_k = []
    for k in sorted(set(min(k, N_FEATURES) for k in ks)):
        x = np.full_like(d.features, np.nan)
        keep = ranking[:k]
        x[:, keep] = d.features[:, keep]
        f1, _ = score(x)
        top_k.append({"k": k, "macro_f1": f1, "features": [FEATURE_NAMES[i] for i in keep]})
    return {"evaluated_on": eval_set.description, "baseline_macro_f1": base_f1, "baseline_log_loss": base_ll,
            "features": per_feature, "groups": per_group, "top_k": top_k}


def format_importance(result: dict, top: int = 20) -> str:
    lines = [f"Permutation importance on {result['evaluated_on']}",
             f"(all features: macro-F1 {result['baseline_macro_f1']:.4f}, log-loss {result['baseline_log_loss']:.4f})",
             "", f"{'feature':<30} {'group':<9} {'F1 drop':>8} {'logloss +':>9}"]
    for r in result["features"][:top]:
        lines.append(f"{r['feature']:<30} {r['group']:<9} {r['f1_drop']:>8.4f} {r['log_loss_rise']:>9.4f}")
    lines += ["", "Per expert group (whole group shuffled):"]
    for g, r in result["groups"].items():
        lines.append(f"  {g:<9} {r['features']:>3} features  F1 drop {r['f1_drop']:.4f}  "
                     f"log-loss +{r['log_loss_rise']:.4f}")
    lines += ["", "If only K features can be collected (the rest sent as missing):"]
    for r in result["top_k"]:
        lines.append(f"  K={r['k']:<3} macro-F1 {r['macro_f1']:.4f}   first: {', '.join(r['features'][:5])}"
                     + (" ..." if r["k"] > 5 else ""))
    return "\n".join(lines)
