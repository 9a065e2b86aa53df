"""Checks of every exported model against the trained PyTorch model, on real held-out flows.

The held-out flows are the test split training never saw (recomputed from the corpus and the split seed in
metadata.json, and checked against the stored digest of its indices), once as recorded and once with half of
each flow's features removed, imputed with all three strategies — the inputs serving will actually get.

Acceptance: the fp32 graph matches PyTorch within 1e-5 on every output but the trust score, whose interpolation
between calibration quantiles magnifies float rounding of the distance (1e-3 there; the out-of-distribution flag
is compared where the trust is not within that of the threshold, and neither where the host view's move sits
at one of its thresholds: ``host_view_ties``); the INT8 graph's binary macro-F1 is within 0.002 of fp32's. A
failed check raises ``VerificationError``; callers exit non-zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moe_ids.core import artifacts, contract
from moe_ids.core.onnx_runtime import make_session, run_onnx
from moe_ids.core.preprocessing import STRATEGIES, Preprocessor
from moe_ids.model.metrics import binary_report

FP32_TOLERANCE = 1e-5
TRUST_TOLERANCE = 1e-3
# |attack-probability move without the hosts' TCP parameters - a host-view threshold| below this is a tie between
# the runtimes: the calibration's tied knots above the floor span 1.7e-5, and the runtimes differ by about 1e-6
HOST_TIE_MARGIN = 3e-5
INT8_F1_TOLERANCE = 0.002
HELD_OUT_MISSING = (0.0, 0.5)
MISSING_SEED = 2017
BATCH = 4096


class VerificationError(RuntimeError):
    """An exported model disagrees with PyTorch beyond the acceptance tolerance."""


@dataclass
class HeldOut:
    """Held-out flows preprocessed for the graph, with their labels."""

    tabular: np.ndarray
    temporal: np.ndarray
    mask: np.ndarray
    binary: np.ndarray
    description: dict = field(default_factory=dict)

    @property
    def inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.tabular, self.temporal, self.mask

    def __len__(self) -> int:
        return len(self.binary)

    def groups(self) -> dict[str, slice]:
        """Row ranges of each missing fraction ("missing=0.5": rows of the half-missing copy)."""
        fractions = self.description.get("missing_fractions", [])
        n = self.description.get("test_flows", 0)
        return {f"missing={f:g}": slice(i * n, (i + 1) * n) for i, f in enumerate(fractions)}


def held_out_flows(model_dir: Path, missing: tuple[float, ...] = HELD_OUT_MISSING,
                   limit: int | None = None, data: list[Path] | None = None) -> HeldOut:
    """The artifact's test split through its own Preprocessor, once per missing fraction.

    Imputation strategies cycle per row (zero, mean, median) so every path of the preprocessing is covered.
    ``limit`` takes the first rows of the test split only (for quick checks); ``data`` are the labelled CSVs
    the model was trained on when they were not the bundled corpus.
    """
    from moe_ids.data.corpus import SplitMismatchError, model_split
    from moe_ids.model.prediction import drop_features

    model_dir = Path(model_dir)
    meta = artifacts.read_json(model_dir / artifacts.METADATA)
    trained_on = meta["training_data"]
    try:
        corpus, split = model_split(model_dir, data)
    except SplitMismatchError:
        raise VerificationError(
            f"{model_dir}: the model was trained on other data than "
            f"{'the given CSVs' if data else 'the bundled corpus'} (data hash or test-split digest differs), so its "
            "held-out flows cannot be recomputed; pass the training CSVs (moe-ids export --data ...)") from None
    test_idx = split["test"]
    test = corpus.subset(test_idx[:limit] if limit else test_idx)
    pre = Preprocessor(artifacts.load_stats(model_dir))
    rng = np.random.default_rng(MISSING_SEED)
    parts, labels = [], []
    for frac in missing:
        x = drop_features(test.features, frac, rng) if frac else test.features
        parts.append(x)
        labels.append(test.binary)
    x = np.concatenate(parts)
    codes = np.arange(len(x)) % len(STRATEGIES)
    tab, tmp, mask = pre.transform(x, codes)
    described = {
        "split": "test",
        "split_seed": int(trained_on["split_seed"]),
        "test_flows": int(len(test.binary)),
        "missing_fractions": list(missing),
        "flows": int(len(x)),
        "flows_with_missing_features": int((mask.sum(1) > 0).sum()),
        "imputation": "per row cycling " + "/".join(STRATEGIES),
    }
    return HeldOut(tab, tmp, mask, np.concatenate(labels), described)


def torch_outputs(model_dir: Path, held: HeldOut) -> dict[str, np.ndarray]:
    """Contract outputs of the PyTorch model (through the same wrapper that is exported)."""
    import torch

    from moe_ids.export.onnx_export import serving_module

    module = serving_module(artifacts.load_model(model_dir))
    outs: dict[str, list[np.ndarray]] = {name: [] for name in contract.ONNX_OUTPUTS}
    with torch.no_grad():
        for s in range(0, len(held), BATCH):
            values = module(*(torch.from_numpy(a[s:s + BATCH]) for a in held.inputs))
            for name, v in zip(contract.ONNX_OUTPUTS, values, strict=True):
                outs[name].append(v.numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def onnx_outputs(path: Path, held: HeldOut, threads: int = 2, providers=None) -> dict[str, np.ndarray]:
    """Contract outputs of the graph at ``path`` (``providers`` as for ``make_session``: CPU by default)."""
    session = make_session(path, threads=threads, providers=providers)
    outs: dict[str, list[np.ndarray]] = {name: [] for name in contract.ONNX_OUTPUTS}
    for s in range(0, len(held), BATCH):
        for name, v in run_onnx(session, *(a[s:s + BATCH] for a in held.inputs)).items():
            outs[name].append(v)
    return {k: np.concatenate(v) for k, v in outs.items()}


def host_view_ties(model_dir: Path, held: HeldOut) -> np.ndarray:
    """Flows whose attack probability, asked again without the hosts' TCP parameters, moves by one of the host
    view's thresholds (within ``HOST_TIE_MARGIN``): ``HOST_NOISE``, the floor below which a move is no evidence,
    and the model's ``host_change``, beyond which a flipped verdict is flagged.

    Why they are ties: trust is discontinuous there by construction. Most lab flows do not move, so the host
    sensitivity's calibration has an atom at 0 and its p-value falls from 1 to the share of flows that move
    just past the floor; a float32 difference between the runtimes (about 1e-6) lands on either side, and
    measured on 21,456 held-out flows it moved two flows' trust by 0.004-0.005 (every other flow by at most
    8e-5). Both answers are right for a move that small, as both classes are for probabilities at 0.5."""
    import torch

    from moe_ids.model.trust import attack_move

    model = artifacts.load_model(model_dir)
    moves = []
    with torch.no_grad():
        for s in range(0, len(held), BATCH):
            out = model.verdicts(*(torch.from_numpy(a[s:s + BATCH]) for a in held.inputs))
            moves.append(attack_move(out["probabilities"].numpy(), out["host_free"].numpy()))
    move = np.concatenate(moves) if moves else np.zeros(0)
    return at_host_thresholds(move, float(model.trust.host_change))


def at_host_thresholds(move: np.ndarray, host_change: float) -> np.ndarray:
    """Which attack-probability moves (``trust.attack_move``) are within ``HOST_TIE_MARGIN`` of ``HOST_NOISE`` or
    of the model's ``host_change``: the flows ``host_view_ties`` leaves out of the trust comparisons."""
    from moe_ids.model.trust import HOST_NOISE

    move = np.asarray(move, dtype=np.float64).reshape(-1)
    return (np.abs(move - HOST_NOISE) <= HOST_TIE_MARGIN) | (np.abs(move - host_change) <= HOST_TIE_MARGIN)


def compare_outputs(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                    tie_margin: float = 0.0, alpha: float | None = None,
                    trust_ties: np.ndarray | None = None) -> dict[str, float]:
    """Max abs difference of each output (PREDICTED_CLASS, OUT_OF_DISTRIBUTION: 0 or 1, whether any differs).

    Flows whose reference probabilities are within ``tie_margin`` of a tie are left out of the PREDICTED_CLASS
    comparison: there a difference far below the tolerance may legitimately pick the other class. Likewise flows
    whose reference trust is within TRUST_TOLERANCE of the threshold ``alpha`` are left out of the
    OUT_OF_DISTRIBUTION comparison, and the ``trust_ties`` (``host_view_ties``) out of both trust outputs'.
    """
    out = {}
    for name in contract.ONNX_OUTPUTS:
        ref, cand = reference[name], candidate[name]
        if ref.shape != cand.shape:
            raise VerificationError(f"{name}: shape {cand.shape} differs from PyTorch's {ref.shape}")
        if name == contract.PREDICTED_CLASS and tie_margin > 0:
            probs = reference[contract.PROBABILITIES]
            decided = np.abs(probs[:, 1] - probs[:, 0]) > tie_margin
            ref, cand = ref[decided], cand[decided]
        if name in (contract.TRUST, contract.OUT_OF_DISTRIBUTION):
            decided = np.ones(len(ref), dtype=bool)
            if trust_ties is not None:
                decided &= ~np.asarray(trust_ties, dtype=bool).reshape(-1)
            if name == contract.OUT_OF_DISTRIBUTION and alpha is not None:
                decided &= np.abs(reference[contract.TRUST].reshape(-1) - alpha) > TRUST_TOLERANCE
            ref, cand = ref[decided], cand[decided]
        out[name] = float(np.max(np.abs(ref.astype(np.float64) - cand.astype(np.float64)))) if ref.size else 0.0
    return out


def verify_fp32(model_dir: Path, onnx_path: Path, held: HeldOut,
                reference: dict[str, np.ndarray] | None = None, tolerance: float = FP32_TOLERANCE,
                providers=None) -> dict:
    """fp32 ONNX vs PyTorch on every output; raises VerificationError beyond ``tolerance``.

    ``providers`` picks the ONNX Runtime execution providers (CPU by default, see ``make_session``).
    """
    reference = reference if reference is not None else torch_outputs(model_dir, held)
    candidate = onnx_outputs(onnx_path, held, providers=providers)
    ties = host_view_ties(model_dir, held)
    diffs = compare_outputs(reference, candidate, tie_margin=2 * tolerance, alpha=trust_alpha(model_dir),
                            trust_ties=ties)
    limits = {name: TRUST_TOLERANCE if name == contract.TRUST else tolerance for name in diffs}
    failed = {name: d for name, d in diffs.items() if d > limits[name]}
    result = {"flows": len(held), "host_view_ties": int(ties.sum()), "max_abs_diff": diffs,
              "max_abs_diff_overall": max(d for name, d in diffs.items() if name != contract.TRUST),
              "max_abs_diff_trust": diffs.get(contract.TRUST, 0.0),
              "tolerance": tolerance, "trust_tolerance": TRUST_TOLERANCE, "passed": not failed}
    if failed:
        worst = max(failed, key=lambda k: failed[k] / limits[k])
        raise VerificationError(f"{onnx_path.name}: {worst} differs from PyTorch by {diffs[worst]:.3g} "
                                f"(tolerance {limits[worst]:g}); all: {diffs}")
    return result


def trust_alpha(model_dir: Path) -> float | None:
    """The out-of-distribution threshold the model was calibrated with (metadata.json), if any."""
    meta = artifacts.read_json(Path(model_dir) / artifacts.METADATA)
    alpha = meta.get("trust", {}).get("alpha")
    return float(alpha) if alpha is not None else None


def f1_comparison(held: HeldOut, reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
                  tolerance: float, name: str) -> dict:
    """Binary macro-F1 of reference and candidate on the held-out labels, and how often they agree."""
    ref_pred = reference[contract.PREDICTED_CLASS].reshape(-1)
    cand_pred = candidate[contract.PREDICTED_CLASS].reshape(-1)
    f1_ref = binary_report(held.binary, ref_pred)["macro_f1"]
    f1_cand = binary_report(held.binary, cand_pred)["macro_f1"]
    result = {
        "flows": len(held),
        "macro_f1_fp32": f1_ref,
        f"macro_f1_{name}": f1_cand,
        "macro_f1_delta": f1_cand - f1_ref,
        "agreement": float(np.mean(ref_pred == cand_pred)),
        "max_abs_diff_probabilities": float(np.max(np.abs(reference[contract.PROBABILITIES]
                                                          - candidate[contract.PROBABILITIES]))),
        "tolerance": tolerance,
        "passed": abs(f1_cand - f1_ref) <= tolerance,
        "by_missing_fraction": {
            group: {"macro_f1_fp32": binary_report(held.binary[rows], ref_pred[rows])["macro_f1"],
                    f"macro_f1_{name}": binary_report(held.binary[rows], cand_pred[rows])["macro_f1"],
                    "agreement": float(np.mean(ref_pred[rows] == cand_pred[rows]))}
            for group, rows in held.groups().items()
        },
    }
    if not result["passed"]:
        raise VerificationError(f"{name}: binary macro-F1 {f1_cand:.4f} vs fp32 {f1_ref:.4f} on {len(held)} "
                                f"held-out flows; difference exceeds {tolerance}")
    return result


def verify_int8(fp32_path: Path, int8_path: Path, held: HeldOut,
                fp32: dict[str, np.ndarray] | None = None, tolerance: float = INT8_F1_TOLERANCE) -> dict:
    """INT8 vs fp32 ONNX binary macro-F1 on held-out flows; raises VerificationError beyond ``tolerance``."""
    fp32 = fp32 if fp32 is not None else onnx_outputs(fp32_path, held)
    return f1_comparison(held, fp32, onnx_outputs(int8_path, held), tolerance, "int8")


def verify_tensorrt(plan_path: Path, held: HeldOut, reference: dict[str, np.ndarray],
                    tolerance: float = INT8_F1_TOLERANCE) -> dict:
    """FP16 TensorRT plan vs PyTorch: max abs differences (reported) and binary macro-F1 (checked)."""
    from moe_ids.export.tensorrt_engine import run_plan

    plan = run_plan(plan_path, *held.inputs)
    result = f1_comparison(held, reference, plan, tolerance, "tensorrt_fp16")
    result["max_abs_diff"] = compare_outputs(reference, plan)
    return result
