"""The checks against PyTorch pass on the real export and fail on a model that is not the trained one."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from moe_ids.core import artifacts
from moe_ids.export import onnx_export, verify


def test_held_out_flows_are_the_test_split_with_missing_features(exported):
    d = exported.held.description
    meta = artifacts.read_json(exported.model_dir / artifacts.METADATA)
    assert d["test_flows"] == meta["training_data"]["split_sizes"]["test"]
    assert d["flows"] == len(exported.held) == d["test_flows"] * len(verify.HELD_OUT_MISSING)
    assert d["flows_with_missing_features"] >= d["test_flows"]  # every half-missing copy, plus native gaps
    assert set(np.unique(exported.held.binary)) == {0, 1}


def test_fp32_within_1e5_of_pytorch(exported):
    result = verify.verify_fp32(exported.model_dir, exported.fp32, exported.held, reference=exported.reference)
    assert result["passed"]
    assert result["max_abs_diff_overall"] <= verify.FP32_TOLERANCE
    assert set(result["max_abs_diff"]) == set(verify.contract.ONNX_OUTPUTS)


def test_int8_macro_f1_within_tolerance_of_fp32(exported):
    result = verify.verify_int8(exported.fp32, exported.int8, exported.held)
    assert abs(result["macro_f1_int8"] - result["macro_f1_fp32"]) <= verify.INT8_F1_TOLERANCE
    assert result["macro_f1_fp32"] > 0.9
    assert result["agreement"] > 0.99


def test_fp32_check_catches_a_different_model(exported, tmp_path):
    other = tmp_path / "perturbed"
    shutil.copytree(exported.model_dir, other)
    weights = load_file(str(other / artifacts.WEIGHTS))
    key = next(k for k in weights if k.endswith("binary_head.bias"))
    weights[key][1] += 0.01  # one logit only: a shift of both would cancel in the softmax
    save_file(weights, str(other / artifacts.WEIGHTS))
    wrong = onnx_export.export_onnx(other)
    with pytest.raises(verify.VerificationError, match="differs from PyTorch"):
        verify.verify_fp32(exported.model_dir, wrong, exported.held, reference=exported.reference)


def test_f1_check_fails_beyond_tolerance(exported):
    reference = exported.reference
    flipped = dict(reference)
    pred = reference[verify.contract.PREDICTED_CLASS].copy()
    pred[: len(pred) // 20] ^= 1  # 5% of predictions wrong
    flipped[verify.contract.PREDICTED_CLASS] = pred
    with pytest.raises(verify.VerificationError, match="macro-F1"):
        verify.f1_comparison(exported.held, reference, flipped, verify.INT8_F1_TOLERANCE, "int8")


def test_held_out_refuses_a_model_trained_on_other_data(exported, tmp_path):
    other = tmp_path / "other-data"
    shutil.copytree(exported.model_dir, other)
    meta = artifacts.read_json(other / artifacts.METADATA)
    meta["training_data"]["test_indices_digest"] = "0" * 16
    artifacts.write_json(other / artifacts.METADATA, meta)
    with pytest.raises(verify.VerificationError, match="other data"):
        verify.held_out_flows(other, limit=10)


def test_int8_report_breaks_down_by_missing_fraction(exported):
    result = verify.verify_int8(exported.fp32, exported.int8, exported.held)
    groups = result["by_missing_fraction"]
    assert list(groups) == [f"missing={f:g}" for f in verify.HELD_OUT_MISSING]
    # equal-sized groups covering every row: their agreements average to the overall one
    assert np.mean([g["agreement"] for g in groups.values()]) == pytest.approx(result["agreement"], abs=1e-12)
    assert all(g["macro_f1_fp32"] > 0.5 for g in groups.values())


def test_argmax_flip_counts_only_away_from_a_tie():
    probs = np.array([[0.5, 0.5], [0.9, 0.1]], dtype=np.float32)
    ref = {name: np.zeros((2, verify.contract.OUTPUT_WIDTHS[name]), dtype=np.float32)
           for name in verify.contract.ONNX_OUTPUTS}
    ref[verify.contract.PROBABILITIES] = probs
    ref[verify.contract.PREDICTED_CLASS] = np.array([[0], [0]])
    tie_flip = {**ref, verify.contract.PREDICTED_CLASS: np.array([[1], [0]])}
    real_flip = {**ref, verify.contract.PREDICTED_CLASS: np.array([[0], [1]])}
    assert verify.compare_outputs(ref, tie_flip, tie_margin=2e-5)[verify.contract.PREDICTED_CLASS] == 0.0
    assert verify.compare_outputs(ref, real_flip, tie_margin=2e-5)[verify.contract.PREDICTED_CLASS] == 1.0
    assert verify.compare_outputs(ref, tie_flip)[verify.contract.PREDICTED_CLASS] == 1.0


def test_trust_differences_count_only_away_from_a_host_view_tie():
    ref = {name: np.zeros((3, verify.contract.OUTPUT_WIDTHS[name]), dtype=np.float32)
           for name in verify.contract.ONNX_OUTPUTS}
    ref[verify.contract.TRUST] = np.array([[0.52], [0.30], [0.9]], dtype=np.float32)
    at_tie = {**ref, verify.contract.TRUST: np.array([[0.515], [0.30], [0.9]], dtype=np.float32),
              verify.contract.OUT_OF_DISTRIBUTION: np.array([[1], [0], [0]])}
    elsewhere = {**ref, verify.contract.TRUST: np.array([[0.52], [0.295], [0.9]], dtype=np.float32)}
    ties = np.array([True, False, False])
    diffs = verify.compare_outputs(ref, at_tie, alpha=0.015, trust_ties=ties)
    assert diffs[verify.contract.TRUST] == 0.0 and diffs[verify.contract.OUT_OF_DISTRIBUTION] == 0.0
    assert verify.compare_outputs(ref, elsewhere, trust_ties=ties)[verify.contract.TRUST] > verify.TRUST_TOLERANCE
    assert verify.compare_outputs(ref, at_tie)[verify.contract.TRUST] > verify.TRUST_TOLERANCE


def test_host_view_ties_are_a_small_share_at_the_floor(exported):
    from moe_ids.model.trust import HOST_NOISE

    ties = verify.host_view_ties(exported.model_dir, exported.held)
    assert ties.shape == (len(exported.held),)
    assert ties.mean() < 0.05, "the neighbourhood of two thresholds, not the held-out flows at large"
    assert verify.HOST_TIE_MARGIN < HOST_NOISE
