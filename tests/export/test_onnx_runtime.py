"""Serving sessions: thread counts, no busy-waiting, CPU by default, clear errors for what is not there."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from moe_ids.core import contract
from moe_ids.core.onnx_runtime import make_session, resolve_providers, run_onnx, session_options


def test_session_options_disable_spinning():
    opts = session_options(threads=3)
    assert opts.intra_op_num_threads == 3
    assert opts.inter_op_num_threads == 1
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"
    assert opts.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with pytest.raises(ValueError):
        session_options(threads=0)


def test_make_session_defaults_to_cpu(exported):
    session = make_session(exported.fp32, threads=2)
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert [i.name for i in session.get_inputs()] == list(contract.ONNX_INPUTS)
    out = run_onnx(session, *(a[:3].astype(np.float64) for a in exported.held.inputs))  # dtype is coerced
    assert list(out) == list(contract.ONNX_OUTPUTS)


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        make_session(tmp_path / "nothing.onnx")


def test_provider_lists():
    assert resolve_providers(None) == ["CPUExecutionProvider"]
    assert resolve_providers("gpu")[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(ValueError, match="CUDAExecutionProvider"):
            resolve_providers(["CUDAExecutionProvider", "CPUExecutionProvider"])
    else:
        assert resolve_providers(["CUDAExecutionProvider"]) == ["CUDAExecutionProvider"]


@pytest.mark.parametrize("trt_loads", [True, False])
def test_gpu_keyword_lists_tensorrt_only_when_it_loads(monkeypatch, trt_loads: bool):
    """onnxruntime-gpu offers its TensorRT provider without TensorRT installed; asked for it anyway, a session
    falls back to CUDA with default options (TF32), losing the fp32 options, so the keyword leaves it out."""
    from moe_ids.core import onnx_runtime

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_runtime, "tensorrt_loadable", lambda: trt_loads)
    cuda = ("CUDAExecutionProvider", onnx_runtime.CUDA_FP32_OPTIONS)
    expected = (["TensorrtExecutionProvider"] if trt_loads else []) + [cuda, "CPUExecutionProvider"]
    assert resolve_providers("gpu") == expected

