"""Training the MoE: deterministic on any machine (``numerics``), class-weighted, robust to missing features.

Robustness to absent features is learnt, not hoped for: each training row loses a random fraction of its
features (none for some rows, up to 90% for others) and is imputed with a randomly chosen strategy, through
the very ``Preprocessor`` that serving uses. Validation scores the model at 0%, 50% and 75% missing, and the
best epoch on their mean is kept (``patience`` stale epochs end training early; by default the whole schedule
runs).
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import time
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

from moe_ids.core import artifacts, drift
from moe_ids.core.labels import FAMILIES
from moe_ids.core.preprocessing import STRATEGIES, PreprocessingStats, Preprocessor
from moe_ids.core.schema import FEATURE_NAMES, N_FEATURES
from moe_ids.data.corpus import Corpus, indices_digest, load_corpus, split_indices
from moe_ids.data.extractors import ACTIVE_IDLE, PROFILES, TIMES
from moe_ids.model import numerics
from moe_ids.model import trust as trust_mod
from moe_ids.model.metrics import binary_report
from moe_ids.model.network import MixtureOfExperts, MoEConfig
from moe_ids.model.prediction import drop_features, embeddings, input_view, predict_numpy, to_tensors

MODEL_VERSION = "1.5.0"  # 1.4: trust 0 below MIN_OBSERVED observed features; 1.5: trained on pinned kernels
VALIDATION_MISSING = (0.0, 0.5, 0.75)


@dataclass
class TrainConfig:
    seed: int = 7
    epochs: int = 80
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    # the whole cosine schedule, best validation epoch kept: stopping after 15 stale epochs cut off its
    # low-learning-rate end (seed 7: stopped at epoch 37 with validation 0.9831; the full schedule reaches 0.9871)
    patience: int = 80
    clean_fraction: float = 0.25  # rows trained with every feature present
    max_missing: float = 0.9
    aux_weight: float = 0.3
    family_weight: float = 0.5
    balance_weight: float = 0.01
    threads: int = 2
    label_balance_power: float = 0.0  # >0 weights rows by (n/count(label))^power; 0.5 cost 0.003-0.008 F1
    extractor_fraction: float = 0.3  # rows that lose what a random other extractor cannot deliver
    # rows whose times are stretched (rates shrunk) by a log-uniform factor, for other networks' round trips;
    # (0.25, 1000) cost 0.001 held-out F1 on both extractions and detected no more of the pcap flows
    time_scale_fraction: float = 0.25
    time_scale_range: tuple[float, float] = (0.5, 2.0)
    trust_alpha: float = trust_mod.DEFAULT_ALPHA
    host_alpha: float = trust_mod.HOST_ALPHA  # share of validation flows the trust score's host view flags
    exclude_extractions: tuple[str, ...] = ()  # leave-one-extraction-out: train without these profiles' rows


_TIME_IDX = np.array([FEATURE_NAMES.index(f) for f in (*TIMES, *ACTIVE_IDLE)])
_RATE_IDX = np.array([FEATURE_NAMES.index(f) for f in ("Flow Bytes/s", "Flow Packets/s", "Fwd Packets/s",
                                                         "Bwd Packets/s")])
# extractors whose missing patterns training draws per row, equally often: both spellings of CICFlowMeter-V3
# (the original CIC-IDS2017 CSVs and CSE-CIC-IDS2018, one pattern drawn twice as often), the Python package,
# Zeek and Suricata. NFStream's `pcap` pattern was tried: corrected-release macro-F1 0.9966 instead of 0.9978, and
# not one more capture flow detected
AUGMENTED_EXTRACTORS: tuple[str, ...] = ("cicids2017-original", "cicflowmeter-v3", "cicflowmeter-python", "zeek",
                                         "suricata")
EXTRACTOR_MASKS: np.ndarray = np.stack([PROFILES[name].available_mask() for name in AUGMENTED_EXTRACTORS])


def augment(x: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """One epoch's view of the raw training features: random missing features, other extractors' missing
    patterns, and stretched time scales (another network's round-trip times), so the model does not lean on
    features one extractor lacks nor on the lab's absolute timings."""
    n = len(x)
    out = x.copy()
    stretch = rng.random(n) < cfg.time_scale_fraction
    if stretch.any():
        low, high = np.log(cfg.time_scale_range[0]), np.log(cfg.time_scale_range[1])
        factor = np.exp(rng.uniform(low, high, size=stretch.sum()))
        out[np.ix_(stretch, _TIME_IDX)] *= factor[:, None]
        out[np.ix_(stretch, _RATE_IDX)] /= factor[:, None]
    frac = rng.uniform(0.0, cfg.max_missing, size=n)
    clean = rng.random(n) < cfg.clean_fraction
    frac[clean] = 0.0
    out = drop_features(out, frac, rng)
    foreign = ~clean & (rng.random(n) < cfg.extractor_fraction)
    if foreign.any():
        masks = EXTRACTOR_MASKS[rng.integers(0, len(EXTRACTOR_MASKS), size=foreign.sum())]
        rows = out[foreign]
        rows[~masks] = np.nan
        out[foreign] = rows
    return out


def _class_weights(y: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    counts = np.bincount(y[y >= 0], minlength=n_classes).astype(np.float64)
    if not counts.any():
        return torch.ones(n_classes)
    w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1) / n_classes) ** power, 0.0)
    return torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)


def _label_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-row weights that lift rare raw labels (Heartbleed, web attacks) without drowning common ones."""
    uniq, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    w = (len(labels) / (len(uniq) * counts)) ** power
    w = w[inverse]
    return (w / w.mean()).astype(np.float32)


def _validate(model: MixtureOfExperts, pre: Preprocessor, val: Corpus, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed + 1)
    scores = {}
    for frac in VALIDATION_MISSING:
        x = drop_features(val.features, frac, rng) if frac else val.features
        probs = predict_numpy(model, pre, x)["probabilities"]
        scores[f"macro_f1@{frac}"] = binary_report(val.binary, probs.argmax(1))["macro_f1"]
    scores["mean"] = float(np.mean(list(scores.values())))
    return scores


def train(output_dir: Path, config: TrainConfig | None = None, data: list[Path] | None = None,
          log=print) -> dict:
    """Train on the corpus, write the artifact directory, return metadata (also written as metadata.json).

    On the kernels ``numerics`` pins, with oneDNN off, so the weights do not depend on the machine; a process
    that loaded torch or numpy before the pins could be set is told so in the log (``moe-ids train`` sets them
    first)."""
    for problem in numerics.check():
        log(f"numerics: {problem}")
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = onednn and numerics.native_requested()
    try:
        return _train(output_dir, config or TrainConfig(), data, log)
    finally:
        torch.backends.mkldnn.enabled = onednn


def _train(output_dir: Path, cfg: TrainConfig, data: list[Path] | None, log) -> dict:
    started = time.time()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(cfg.seed)

    corpus = load_corpus(data)
    split = split_indices(corpus, cfg.seed)
    if cfg.exclude_extractions:
        kept = ~np.isin(corpus.extraction, list(cfg.exclude_extractions))
        split = {k: v[kept[v]] for k, v in split.items()}
    train_set, val_set = corpus.subset(split["train"]), corpus.subset(split["val"])
    stats = PreprocessingStats.fit(train_set.features)
    pre = Preprocessor(stats)
    log(f"corpus: {len(corpus.binary)} flows; train {len(train_set.binary)}, val {len(val_set.binary)}, "
        f"test {len(split['test'])}")
    if corpus.attempted_left_out:
        log(f"left out {sum(corpus.attempted_left_out.values())} flows labelled '- Attempted' (attacks that "
            f"delivered nothing; neither Normal nor Attack): {corpus.attempted_left_out}")

    model = MixtureOfExperts(MoEConfig())
    all_missing, _, _ = pre.transform(np.full((1, N_FEATURES), np.nan), "median")
    model.set_host_view(torch.from_numpy(all_missing[0]))  # the second pass sees them as a client withholding them
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    bin_weights = _class_weights(train_set.binary, 2, 1.0)
    bin_loss_raw = nn.CrossEntropyLoss(weight=bin_weights, reduction="none")
    sample_w = torch.from_numpy(_label_weights(train_set.labels, cfg.label_balance_power))

    def bin_loss(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        w = sample_w[rows]
        return (bin_loss_raw(logits, target) * w).sum() / (bin_weights[target] * w).sum()

    fam_loss = nn.CrossEntropyLoss(weight=_class_weights(train_set.family, len(FAMILIES), 0.5),
                                   ignore_index=-1)
    y_bin = torch.from_numpy(train_set.binary)
    y_fam = torch.from_numpy(np.where(train_set.binary == 1, train_set.family, -1))

    best_score, best_state, best_epoch, stale = -1.0, None, 0, 0
    history = []
    n = len(train_set.binary)
    for epoch in range(cfg.epochs):
        model.train()
        x_aug = augment(train_set.features, cfg, rng)
        codes = rng.integers(0, len(STRATEGIES), size=n)
        tab, tmp, mask = to_tensors(pre, x_aug, codes)
        perm = torch.from_numpy(rng.permutation(n))
        total = 0.0
        for start in range(0, n, cfg.batch_size):
            b = perm[start:start + cfg.batch_size]
            out = model.forward_logits(tab[b], tmp[b], mask[b])
            loss = bin_loss(out["binary"], y_bin[b], b)
            if (y_fam[b] >= 0).any():
                loss = loss + cfg.family_weight * fam_loss(out["family"], y_fam[b])
            loss = loss + cfg.aux_weight * (bin_loss(out["binary_tab"], y_bin[b], b)
                                            + bin_loss(out["binary_tmp"], y_bin[b], b))
            usage = out["gating"].mean(0)
            loss = loss + cfg.balance_weight * torch.sum(usage * torch.log(usage * 2 + 1e-9))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
        sched.step()
        scores = _validate(model, pre, val_set, cfg.seed)
        history.append({"epoch": epoch + 1, "loss": total / n, **scores})
        log(f"epoch {epoch + 1:3d} loss {total / n:.4f} val " +
            " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
        if scores["mean"] > best_score + 1e-5:
            best_score, best_epoch, stale = scores["mean"], epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                log(f"early stop at epoch {epoch + 1}; best epoch {best_epoch}")
                break

    model.load_state_dict(best_state)
    trust_summary = calibrate_trust(model, pre, train_set, val_set, cfg, rng)
    log(f"trust: out-of-distribution below trust {cfg.trust_alpha:g}; calibrated on "
        f"{trust_summary['calibration_flows']} held-out validation flows")
    output_dir = Path(output_dir)
    artifacts.write_static_files(output_dir, stats)
    drift.build_drift_reference(train_set.features, source={
        "split": "train", "split_seed": cfg.seed, "data_sha256": corpus.data_hash,
    }).to_json(output_dir / drift.DRIFT_REFERENCE_FILE)  # serving's PSI gauges compare traffic with this
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(output_dir / artifacts.WEIGHTS))
    artifacts.write_json(output_dir / artifacts.MODEL_CONFIG, model.config.to_dict())
    meta = {
        "model_name": "moe_ids",
        "model_version": MODEL_VERSION,
        "trained_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(time.time() - started, 1),
        "training_data": {
            "sources": sorted(set(corpus.source.tolist())),
            "sha256": corpus.data_hash,
            "flows": int(len(corpus.binary)),
            "split_seed": cfg.seed,
            "split_sizes": {k: int(len(v)) for k, v in split.items()},
            "test_indices_digest": indices_digest(split["test"]),
            "citation": "Sharafaldin et al., ICISSP 2018; Engelen et al., IEEE SPW (WTMC) 2021",
            **({"attempted_left_out": corpus.attempted_left_out} if corpus.attempted_left_out else {}),
        },
        "train_config": cfg.__dict__,
        "best_epoch": best_epoch,
        "trust": trust_summary,
        "validation": history[best_epoch - 1] if best_epoch else {},
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "input_schema": {"name": "FEATURES", "dtype": "FP32", "shape": [-1, N_FEATURES],
                         "features": list(FEATURE_NAMES), "missing": "NaN"},
        "dependencies": _dependency_versions(),
        "numerics": numerics.describe(),
    }
    artifacts.write_json(output_dir / artifacts.METADATA, meta)
    (output_dir / "training_history.json").write_text(json.dumps(history, indent=1))
    log(f"wrote {output_dir} (best epoch {best_epoch}, val {best_score:.4f}) "
        f"in {meta['training_seconds']} s")
    return meta


def calibrate_trust(model: MixtureOfExperts, pre: Preprocessor, train_set: Corpus, val_set: Corpus,
                    cfg: TrainConfig, rng: np.random.Generator) -> dict:
    """Write the trust score's buffers. The embedding view is fitted on the training flows once as they are
    and once with an epoch's augmentation (so the missing patterns of the supported extractors are familiar);
    the input view's centroids on the training flows as they are (it ignores what is missing); the three sets of
    quantiles come from the validation flows, which nothing was fitted on."""
    x = np.concatenate([train_set.features, augment(train_set.features, cfg, rng)])
    classes = np.tile(trust_mod.class_index(train_set.binary, train_set.family), 2)
    head = model.trust
    n_knots = head.knots.shape[0] - 1
    whitening, centers = trust_mod.fit_gaussians(embeddings(model, pre, x), classes, head.centers.shape[0])
    val_d = trust_mod.min_distance(embeddings(model, pre, val_set.features), whitening, centers)
    knots = trust_mod.quantile_knots(val_d, n_knots)
    centroids = trust_mod.kmeans(input_view(pre, train_set.features)[0], head.input_centroids.shape[0], rng)
    val_in = trust_mod.observed_distance(*input_view(pre, val_set.features), centroids)
    input_knots = trust_mod.quantile_knots(val_in, n_knots)
    val_out = predict_numpy(model, pre, val_set.features)  # the probabilities do not depend on the buffers
    sensitivity = trust_mod.host_sensitivity(val_out["probabilities"], val_out["host_free"])
    host_knots = trust_mod.quantile_knots(sensitivity, n_knots)
    p_embedding, p_input = trust_mod.trust_from_knots(val_d, knots), trust_mod.trust_from_knots(val_in, input_knots)
    p_host = trust_mod.trust_from_knots(sensitivity, host_knots)
    combination = trust_mod.fit_combination(p_embedding, p_input, p_host, n_knots)
    for name, value in (("whitening", whitening), ("centers", centers), ("knots", knots),
                        ("input_centroids", centroids), ("input_knots", input_knots), ("host_knots", host_knots),
                        ("smaller_knots", combination.smaller), ("joint_knots", combination.joint),
                        ("combined_knots", combination.combined)):
        getattr(head, name).copy_(torch.from_numpy(value.astype(np.float32)))
    head.alpha.fill_(cfg.trust_alpha)
    flagged = trust_mod.combined_p_value(p_embedding, p_input, combination, p_host) < cfg.trust_alpha
    changes = trust_mod.flip_change(val_out["probabilities"], val_out["host_free"])
    head.host_change.fill_(trust_mod.host_threshold(changes, cfg.host_alpha))
    served = predict_numpy(model, pre, val_set.features)["ood"].astype(bool)  # with the host view's flags
    return {"method": "p-value of the smaller of two calibrated statistics, the smaller of two distance p-values "
                      "and that times a host-sensitivity p-value, all against held-out validation flows: the min "
                      "class-conditional Mahalanobis distance on both experts' "
                      f"embeddings, the distance of the scaled inputs to the nearest of {len(centroids)} k-means "
                      "centroids of the training flows over the observed features, and how far the attack "
                      "probability moves without the hosts' TCP parameters", "alpha": cfg.trust_alpha,
            "calibration_flows": int(len(val_d)), "fit_flows": int(len(x)),
            "input_fit_flows": int(len(train_set.features)),
            "calibration_flagged_share": float(flagged.mean()),
            "host_view": "also flagged when the verdict without the hosts' TCP parameters is the other class and "
                         "the attack probability moved by more than host_change",
            "host_alpha": cfg.host_alpha, "host_change": float(head.host_change),
            "validation_flips": float(np.mean(changes > 0)),
            "validation_host_sensitivity_quantiles": {str(q): float(np.quantile(sensitivity, q))
                                                      for q in (0.5, 0.9, 0.99)},
            "calibration_flagged_share_with_host_view": float(served.mean())}


def _dependency_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "numpy", "pandas", "onnx", "onnxruntime", "scikit-learn", "safetensors"):
        try:
            out[pkg] = importlib_metadata.version(pkg)
        except importlib_metadata.PackageNotFoundError:
            pass
    return out
