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
import pandas as pd

from moe_ids.core import artifacts
from moe_ids.core.labels import FAMILIES, attempted_mask, encode
from moe_ids.core.preprocessing import Preprocessor
from moe_ids.data import extractors
from moe_ids.data.corpus import Corpus, file_sha256, load_corpus, model_split, split_indices
from moe_ids.data.extractors import AUTO
from moe_ids.data.loading import load_flows
from moe_ids.data.tables import read_header
from moe_ids.model.metrics import binary_report, expected_calibration_error, family_macro_f1, recall_per_label

DEFAULT_MISSING = (0.0, 0.25, 0.5, 0.75)
MIN_FAMILY_SUPPORT = 20


@dataclass
class EvalSet:
    """The flows to score and where they came from."""

    data: Corpus
    description: str
    attempted: Corpus | None = None  # flows labelled '- Attempted', kept out of ``data`` (labels.attempted_mask)


def held_out_set(model_dir: Path, data: Path | None, extractor: str | None = None,
                 label: str | None = None) -> tuple[EvalSet, Corpus, np.ndarray]:
    """The evaluation flows, the training corpus and its training-split indices (for the baseline); ``label``
    labels every flow of ``data`` (a capture of one attack tool, a file without labels), replacing its own."""
    meta = artifacts.read_json(Path(model_dir) / artifacts.METADATA)
    corpus, split = model_split(model_dir)
    if label is not None and data is None:
        raise ValueError("--label labels the flows of --data; the held-out split has labels of its own")
    if data is None:
        test = corpus.subset(split["test"])
        return EvalSet(test, f"held-out test split of the training corpus ({len(test.binary)} flows)"), \
            corpus, split["train"]
    data = Path(data)
    sources = {Path(s).name for s in meta["training_data"]["sources"]}
    if label is None and data.name in sources and _is_training_file(data, corpus):
        rows = split["test"][corpus.source[split["test"]] == data.name]
        sub = corpus.subset(rows)
        return EvalSet(sub, f"held-out rows of training source {data.name} ({len(rows)} flows)"), \
            corpus, split["train"]
    return _attempted_apart(_external_set(data, extractor, label)), corpus, split["train"]


def _attempted_apart(eval_set: EvalSet) -> EvalSet:
    """The set without its attempted attacks, which go to ``attempted``: neither Normal nor Attack, they are
    in no figure (the training corpus leaves them out too)."""
    attempted = attempted_mask(eval_set.data.labels)
    if not attempted.any():
        return eval_set
    if attempted.all():
        raise ValueError(f"{eval_set.description}: every flow is labelled '- Attempted' (an attack that delivered "
                         "nothing); there is nothing to score as Normal or Attack")
    return EvalSet(eval_set.data.subset(np.where(~attempted)[0]),
                   eval_set.description + f"; its {int(attempted.sum())} flows labelled '- Attempted' are "
                                          "left out of the figures",
                   eval_set.data.subset(np.where(attempted)[0]))


def _external_set(data: Path, extractor: str | None, label: str | None) -> EvalSet:
    """A labelled file that is not a training source, scored whole."""
    from moe_ids.client.flow_files import file_kind

    kind = file_kind(data, extractor)
    if kind is not None:
        return _sensor_set(data, kind, label)
    table = load_flows(data, extractor=extractor)
    labels, binary, family = table.labels, table.binary, table.family
    if label is not None:
        labels, binary, family = encode(pd.Series([label] * len(table), dtype=object))
    if binary is None:
        raise ValueError(f"{data}: no Label column; evaluation needs labelled flows (or --label)")
    ext = Corpus(table.features.to_numpy(np.float64), binary, family,
                 labels.to_numpy(dtype=str), np.full(len(table), data.name), file_sha256(data),
                 np.full(len(table), table.extractor))
    description = f"{data.name}, not used in training ({len(table)} flows, extractor {table.extractor})"
    if extractor in (None, AUTO) and (note := extractors.detection_note(read_header(data))):
        description += f"\n  {note}"
    return EvalSet(ext, description)


def _sensor_set(path: Path, kind: str, label: str | None = None) -> EvalSet:
    """A sensor log or capture read as ``moe-ids score`` reads it, labelled by ``label`` or by its own label
    fields (a Zeek conn.log with ``label`` / ``detailed-label``, as IoT-23 publishes them); records without a
    label are left out and counted."""
    from moe_ids.client.flow_files import read_flow_file
    from moe_ids.core.schema import FEATURE_NAMES

    features, labels = [], []
    for _, chunk_features, chunk_labels in read_flow_file(path, kind):
        if label is not None:
            chunk_labels = pd.Series([label] * len(chunk_features), dtype=object)
        if chunk_labels is None:
            raise ValueError(f"{path}: a {kind} file without a label field; evaluation needs labelled flows "
                             "(or --label, for a capture of one attack tool)")
        features.append(chunk_features.reindex(columns=list(FEATURE_NAMES)).to_numpy(np.float64))
        labels.append(chunk_labels.reset_index(drop=True))
    if not features:
        raise ValueError(f"{path}: no flow records")
    x, raw = np.concatenate(features), pd.concat(labels, ignore_index=True)
    labelled = raw.notna().to_numpy()
    if not labelled.any():
        raise ValueError(f"{path}: no record carries a label; evaluation needs labelled flows")
    cleaned, binary, family = encode(raw[labelled].reset_index(drop=True))
    n = int(labelled.sum())
    unlabelled = "" if labelled.all() else f", {int((~labelled).sum())} unlabelled records left out"
    return EvalSet(Corpus(x[labelled], binary, family, cleaned.to_numpy(dtype=str), np.full(n, path.name),
                          file_sha256(path), np.full(n, kind)),
                   f"{path.name}, not used in training ({n} flows, extractor {kind}{unlabelled})")


def _is_training_file(path: Path, corpus: Corpus) -> bool:
    from moe_ids.data.corpus import DEFAULT_SOURCES
    from moe_ids.data.loading import bundled_data_dir

    for rel in DEFAULT_SOURCES:
        bundled = bundled_data_dir() / rel
        if bundled.name == path.name and bundled.exists():
            return file_sha256(bundled) == file_sha256(path)
    return False


def _drop(x: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    from moe_ids.model.prediction import drop_features

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
        # features no training flow observed (a left-out extraction's only source of them) carry nothing
        self.columns = np.flatnonzero(np.isfinite(corpus.features).any(axis=0))
        x = corpus.features[:, self.columns]
        self.binary.fit(x, corpus.binary)
        fam_rows = corpus.family >= 0
        self.family.fit(x[fam_rows], corpus.family[fam_rows])
        return self

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x[:, self.columns]
        return self.binary.predict_proba(x)[:, 1], self.family.predict(x)


def evaluate(model_dir: Path, data: Path | None = None, missing: tuple[float, ...] = DEFAULT_MISSING,
             seed: int = 2017, with_baseline: bool = True, extractor: str | None = None,
             withhold: tuple[str, ...] = (), label: str | None = None) -> dict:
    """The full report: per missing fraction, the MoE's and the baseline's figures; with every feature present,
    the same per extraction and per source file, with the trust columns."""
    from moe_ids.model.prediction import predict_numpy

    model_dir = Path(model_dir)
    eval_set, corpus, train_idx = held_out_set(model_dir, data, extractor, label)
    model = artifacts.load_model(model_dir)
    pre = Preprocessor(artifacts.load_stats(model_dir))
    baseline = Baseline(seed).fit(corpus.subset(train_idx)) if with_baseline else None
    d = eval_set.data
    if withhold:  # scored as a client that withholds them sends them: missing, for both models
        from moe_ids.client.features import withhold_columns
        from moe_ids.core.schema import FEATURE_NAMES

        for part in (d, eval_set.attempted):
            if part is not None:
                part.features = withhold_columns(part.features, FEATURE_NAMES, withhold)
    attempted_report = attempted_flows(eval_set.attempted, model, pre) if eval_set.attempted is not None else None
    result: dict = {"model_dir": str(model_dir), "evaluated_on": eval_set.description, "flows": int(len(d.binary)),
                    "withheld": list(withhold),
                    "missing": [], "baseline": {"name": "HistGradientBoostingClassifier", "missing": []}}
    for i, frac in enumerate(missing):
        x = _drop(d.features, frac, seed + i)
        out = predict_numpy(model, pre, x)
        entry = {"fraction": frac, **_report(d.binary, d.family, d.labels, out["probabilities"][:, 1],
                                             out["family"].argmax(1))}
        entry["gating_mean"] = {"tabular": float(out["gating"][:, 0].mean()),
                                "temporal": float(out["gating"][:, 1].mean())}
        entry["trust"] = trust_report(d.binary, out["probabilities"][:, 1], out["ood"], out["host_flagged"])
        entry["extraction_macro_f1"] = {ex: g["macro_f1"] for ex, g in
                                        grouped_report(d, d.extraction, out, None).items() if g["macro_f1"] is not None}
        result["missing"].append(entry)
        base_p = None
        if baseline is not None:
            base_p, fam = baseline.predict(x)
            result["baseline"]["missing"].append({"fraction": frac, **_report(d.binary, d.family, d.labels,
                                                                               base_p, fam)})
        if i == 0:
            result["by_extraction"] = grouped_report(d, d.extraction, out, base_p)
            result["by_source"] = grouped_report(d, d.source, out, base_p)
    if baseline is None:
        result.pop("baseline")
    if attempted_report is not None:
        result["attempted"] = attempted_report
    return result


def attempted_flows(d: Corpus, model, pre: Preprocessor) -> dict:
    """What the model says of flows labelled as attempted attacks, kept out of every other figure: such a flow
    is the attack tool's, but carried nothing of the attack, so calling it Attack or Normal is neither right
    nor wrong. The share called Attack (and flagged out-of-distribution) per label says how the model treats
    them."""
    from moe_ids.model.prediction import predict_numpy

    out = predict_numpy(model, pre, d.features)
    attack = out["probabilities"][:, 1] >= 0.5
    ood = np.asarray(out["ood"], dtype=bool)
    by_label = {label: {"flows": int((d.labels == label).sum()),
                        "called_attack": float(attack[d.labels == label].mean()),
                        "out_of_distribution": float(ood[d.labels == label].mean())}
                for label in sorted(set(d.labels.tolist()))}
    return {"flows": int(len(d.labels)), "called_attack": float(attack.mean()),
            "out_of_distribution": float(ood.mean()), "by_label": by_label}


def trust_report(y_bin: np.ndarray, p_attack: np.ndarray, ood: np.ndarray,
                 host_flagged: np.ndarray | None = None) -> dict:
    """Share flagged out-of-distribution (and of it, by the host view: verdicts that rest on the hosts' TCP
    parameters, the sign of another network's flows), figures of the trusted flows, and how many attacks were
    caught either way (detected, or at least flagged as unfamiliar)."""
    pred = (p_attack >= 0.5).astype(np.int64)
    trusted = ~np.asarray(ood, dtype=bool)
    attacks = y_bin == 1
    both = len(np.unique(y_bin[trusted])) == 2  # a macro-F1 over one class means nothing
    return {
        "out_of_distribution_share": float(np.mean(~trusted)) if len(trusted) else 0.0,
        "trusted_flows": int(trusted.sum()),
        "trusted_macro_f1": binary_report(y_bin[trusted], pred[trusted])["macro_f1"] if both else None,
        "trusted_accuracy": float(np.mean(pred[trusted] == y_bin[trusted])) if trusted.any() else None,
        "attacks_detected_or_flagged": float(((pred == 1) | ~trusted)[attacks].mean()) if attacks.any() else None,
        "host_view_share": float(np.mean(host_flagged)) if host_flagged is not None and len(trusted) else None,
    }


def grouped_report(d: Corpus, groups: np.ndarray, out: dict[str, np.ndarray],
                   baseline_p: np.ndarray | None) -> dict[str, dict]:
    """Per group (extraction or source file): accuracy, binary macro-F1 (None where one class is absent),
    per-family recall, the trust columns and the baseline's macro-F1."""
    p_attack = out["probabilities"][:, 1]
    pred = (p_attack >= 0.5).astype(np.int64)
    fam_pred = out["family"].argmax(1)
    report: dict[str, dict] = {}
    for g in sorted(set(groups.tolist())):
        rows = groups == g
        y = d.binary[rows]
        both = len(np.unique(y)) == 2
        recall = {}
        for k, name in enumerate(FAMILIES):
            fam_rows = rows & (d.binary == 1) & (d.family == k)
            if fam_rows.any():
                recall[name] = {"flows": int(fam_rows.sum()), "attack_recall": float(pred[fam_rows].mean()),
                                "family_recall": float(np.mean(fam_pred[fam_rows] == k))}
        entry = {"flows": int(rows.sum()), "attacks": int(y.sum()),
                 "accuracy": float(np.mean(pred[rows] == y)),
                 "macro_f1": binary_report(y, pred[rows])["macro_f1"] if both else None,
                 "families": recall, **trust_report(y, p_attack[rows], out["ood"][rows], out["host_flagged"][rows])}
        if baseline_p is not None:
            base = (baseline_p[rows] >= 0.5).astype(np.int64)
            entry["baseline_accuracy"] = float(np.mean(base == y))
            entry["baseline_macro_f1"] = binary_report(y, base)["macro_f1"] if both else None
        report[g] = entry
    return report


def leave_one_out(extraction: str, seed: int = 2017, epochs: int | None = None, log=print) -> dict:
    """Train a fresh model (and the baseline) without one extraction's flows and score that extraction's
    held-out flows: how the detector does on an extractor it has never seen."""
    import tempfile

    from moe_ids.model.prediction import predict_numpy
    from moe_ids.model.training import TrainConfig, train

    cfg = TrainConfig(exclude_extractions=(extraction,))
    if epochs is not None:
        cfg.epochs = epochs
    with tempfile.TemporaryDirectory(prefix="moe-ids-loo-") as work:
        meta = train(Path(work), cfg, log=lambda _msg: None)
        model = artifacts.load_model(Path(work))
        pre = Preprocessor(artifacts.load_stats(Path(work)))
    corpus = load_corpus()
    split = split_indices(corpus, cfg.seed)
    test = corpus.subset(split["test"][corpus.extraction[split["test"]] == extraction])
    train_rows = split["train"][corpus.extraction[split["train"]] != extraction]
    if not len(test.binary):
        raise ValueError(f"leave-one-out: no held-out flows of extraction {extraction!r} in the corpus")
    out = predict_numpy(model, pre, test.features)
    base_p, _ = Baseline(seed).fit(corpus.subset(train_rows)).predict(test.features)
    report = grouped_report(test, test.extraction, out, base_p)[extraction]
    log(f"leave-one-out {extraction}: trained on {meta['training_data']['split_sizes']['train']} flows of the "
        f"other extractions in {meta['training_seconds']} s")
    return {"left_out": extraction, "trained_on_flows": int(len(train_rows)), "best_epoch": meta["best_epoch"],
            **report}


def format_groups(title: str, groups: dict[str, dict]) -> list[str]:
    header = (f"{'':<42} {'flows':>6} {'acc':>6} {'macroF1':>7} {'OOD':>6} {'host':>6} {'trustF1':>7} "
              f"{'caught':>6} | {'GBT acc':>7} {'GBT F1':>7}")
    lines = ["", title, header]

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    for name, g in groups.items():
        lines.append(f"{name[:42]:<42} {g['flows']:>6} {num(g['accuracy']):>6} {num(g['macro_f1']):>7} "
                     f"{g['out_of_distribution_share']:>6.3f} {num(g.get('host_view_share')):>6} "
                     f"{num(g['trusted_macro_f1']):>7} "
                     f"{num(g['attacks_detected_or_flagged']):>6} | {num(g.get('baseline_accuracy')):>7} "
                     f"{num(g.get('baseline_macro_f1')):>7}")
        for fam, r in g["families"].items():
            if r["flows"] >= MIN_FAMILY_SUPPORT:
                lines.append(f"    {fam:<38} {r['flows']:>6} attack recall {r['attack_recall']:.4f}, "
                             f"family recall {r['family_recall']:.4f}")
    return lines


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
    lines += ["", "MoE macro-F1 per extraction:"]
    for e in result["missing"]:
        lines.append(f"  missing {e['fraction']:.2f}: " + ", ".join(
            f"{ex} {f1:.4f}" for ex, f1 in e.get("extraction_macro_f1", {}).items()))
    lines += ["", "Trust: share flagged out-of-distribution, macro-F1 of the trusted flows"]
    for e in result["missing"]:
        t = e["trust"]
        f1 = "-" if t["trusted_macro_f1"] is None else f"{t['trusted_macro_f1']:.4f}"
        lines.append(f"  missing {e['fraction']:.2f}: out-of-distribution {t['out_of_distribution_share']:.4f}, "
                     f"trusted macro-F1 {f1} ({t['trusted_flows']} flows)")
    lines += ["", "(host: share flagged by the trust score's host view, whose verdict rests on the hosts' TCP "
              "parameters; a large share says the flows are another network's: try --withhold-host-features. "
              "caught: share of attacks detected or flagged out-of-distribution; macroF1 '-' where the group "
              "holds one class)"]
    lines += format_groups("Per extraction (all features):", result.get("by_extraction", {}))
    lines += format_groups("Per source file (all features):", result.get("by_source", {}))
    for loo in result.get("leave_one_out", []):
        lines += format_groups(f"Leave-one-extraction-out: trained without {loo['left_out']} "
                               f"({loo['trained_on_flows']} training flows), tested on it:", {loo["left_out"]: loo})
    full = result["missing"][0]
    lines += ["", "Per-label recall (all features):"]
    for lab, r in full["per_label_recall"].items():
        lines.append(f"  {lab:<28} {r['recall']:.4f}  ({r['flows']} flows)")
    excluded = full["family"]["excluded_low_support"]
    if excluded:
        lines.append(f"Families with fewer than {MIN_FAMILY_SUPPORT} flows (listed, not in the macro): "
                     + ", ".join(f"{k} ({full['family']['support'][k]})" for k in excluded))
    attempted = result.get("attempted")
    if attempted:
        lines += ["", f"Attempted attacks, in no figure above ({attempted['flows']} flows labelled '- Attempted': "
                      "the attack tool's flows that delivered nothing): "
                      f"called Attack {attempted['called_attack']:.4f}, "
                      f"out-of-distribution {attempted['out_of_distribution']:.4f}"]
        for lab, r in attempted["by_label"].items():
            lines.append(f"  {lab:<40} called Attack {r['called_attack']:.4f}, out-of-distribution "
                         f"{r['out_of_distribution']:.4f}  ({r['flows']} flows)")
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
