"""The TensorRT builder: a real FP16 plan where TensorRT and a GPU exist, a plain reason everywhere else."""

from __future__ import annotations

import pytest

from moe_ids.core import artifacts, contract
from moe_ids.export import tensorrt_engine


def test_profile_covers_batch_1_to_max_for_every_input():
    shapes = tensorrt_engine.profile_shapes(max_batch_size=512, opt_batch=256)
    assert set(shapes) == set(contract.ONNX_INPUTS)
    for name, (lo, opt, hi) in shapes.items():
        width = contract.INPUT_WIDTHS[name]
        assert (lo, opt, hi) == ((1, width), (256, width), (512, width))
    assert tensorrt_engine.profile_shapes(max_batch_size=8)[contract.TABULAR][1][0] == 8
    with pytest.raises(ValueError):
        tensorrt_engine.profile_shapes(max_batch_size=0)


def test_builder_builds_or_says_why_not(exported, tmp_path):
    plan = tmp_path / artifacts.TRT_PLAN
    reason = tensorrt_engine.unavailable_reason()
    result = tensorrt_engine.build_engine(exported.fp32, plan, max_batch_size=64)
    if reason is None:  # TensorRT and a CUDA GPU: the plan must exist and agree with PyTorch
        from moe_ids.export import verify

        assert result.built and plan.stat().st_size > 0
        check = verify.verify_tensorrt(plan, exported.held, exported.reference)
        assert check["passed"]
    else:
        assert not result.built
        assert not plan.exists()
        assert result.reason == f"skipped TensorRT engine: {reason}"
        assert ("tensorrt package is not installed" in reason) or ("no CUDA GPU visible" in reason)


def test_gpu_probe_answers_without_torch():
    count, why = tensorrt_engine.cuda_device_count()
    assert count >= 0
    assert (count == 0) == bool(why)
