"""``moe-ids export`` end to end on a trained artifact, and the in-process throughput helper."""

from __future__ import annotations

import math
import shutil

import pytest

from moe_ids.cli import main
from moe_ids.core import artifacts
from moe_ids.export import tensorrt_engine
from moe_ids.export.pipeline import REPORT
from moe_ids.export.throughput import compare_throughput, measure_onnx_throughput


def test_export_command_writes_verified_models_and_report(model_dir, tmp_path, capsys):
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    for name in (artifacts.ONNX_FP32, artifacts.ONNX_INT8, REPORT):
        (target / name).unlink(missing_ok=True)
    assert main(["export", "--model-dir", str(target), "--bench-seconds", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "max abs diff" in printed and "int8 vs fp32" in printed and "int8/fp32" in printed
    report = artifacts.read_json(target / REPORT)
    assert report["status"] == "passed"
    assert report["fp32_check"]["max_abs_diff_overall"] <= 1e-5
    assert abs(report["int8_check"]["macro_f1_delta"]) <= 0.002
    assert report["onnx_int8"]["integer_ops"]["MatMulInteger"] > 0
    assert report["throughput"]["int8_speedup"] > 0 and report["throughput"]["int8_speedup_per_cpu_s"] > 0
    assert report["throughput"]["fp32"]["flows_per_s"] > 0
    assert (target / artifacts.ONNX_FP32).is_file() and (target / artifacts.ONNX_INT8).is_file()
    if tensorrt_engine.unavailable_reason():
        assert report["tensorrt"]["reason"].startswith("skipped TensorRT engine:")
        assert report["tensorrt"]["reason"] in printed
        # --tensorrt require fails with the reason instead of writing a partial result
        assert main(["export", "--model-dir", str(target), "--skip-int8", "--tensorrt", "require",
                     "--bench-seconds", "0"]) == 1
        assert "TensorRT engine required" in capsys.readouterr().err
        assert artifacts.read_json(target / REPORT)["status"] == "failed"
    # files derived from earlier weights do not survive an export that does not rebuild them
    (target / artifacts.TRT_PLAN).write_bytes(b"old plan")
    assert main(["export", "--model-dir", str(target), "--skip-int8", "--tensorrt", "skip",
                 "--bench-seconds", "0"]) == 0
    assert not (target / artifacts.ONNX_INT8).exists() and not (target / artifacts.TRT_PLAN).exists()
    report = artifacts.read_json(target / REPORT)
    assert report["onnx_int8"]["removed_stale"] == artifacts.ONNX_INT8
    assert report["tensorrt"]["removed_stale"] == artifacts.TRT_PLAN


def test_export_command_refuses_an_untrained_directory(tmp_path, capsys):
    assert main(["export", "--model-dir", str(tmp_path)]) == 2
    assert "no trained model" in capsys.readouterr().err


def test_throughput_helpers_report_flows_per_second(exported):
    inputs = [a[:300] for a in exported.held.inputs]  # fewer rows than a batch: tiled
    rate = measure_onnx_throughput(exported.fp32, inputs, batch=512, seconds=0.2)
    assert math.isfinite(rate) and rate > 0
    rates = compare_throughput({"fp32": exported.fp32, "int8": exported.int8}, inputs, batch=256, seconds=0.4,
                               rounds=2)
    assert set(rates) == {"fp32", "int8"}
    for stats in rates.values():
        assert 0 < stats["flows_per_s"] <= stats["best_flows_per_s"]
        assert stats["flows_per_cpu_s"] > 0


@pytest.mark.slow
def test_export_of_a_model_trained_on_other_csvs_needs_them(tmp_path, capsys):
    from moe_ids.data.loading import bundled_data_dir
    from moe_ids.model.training import TrainConfig, train

    csv = bundled_data_dir() / "cicids2017-original" / "orig_Tuesday_head4998_binarylabel.csv.gz"
    target = tmp_path / "custom"
    train(target, TrainConfig(epochs=1), [csv], log=lambda _: None)
    args = ["export", "--model-dir", str(target), "--skip-int8", "--tensorrt", "skip", "--bench-seconds", "0"]
    assert main(args) == 1
    assert "--data" in capsys.readouterr().err
    assert not (target / artifacts.ONNX_FP32).exists()  # nothing written that could not be checked
    assert main([*args, "--data", str(csv)]) == 0
    report = artifacts.read_json(target / REPORT)
    assert report["held_out"]["test_flows"] == report_split(target)
    assert report["fp32_check"]["max_abs_diff_overall"] <= 1e-5


def report_split(model_dir) -> int:
    return artifacts.read_json(model_dir / artifacts.METADATA)["training_data"]["split_sizes"]["test"]
