"""The fp32 graph on ONNX Runtime's CUDA execution provider gives what the CPU provider and PyTorch give.

Runs where onnxruntime-gpu and a usable NVIDIA GPU are present, and is skipped (with the reason) elsewhere:
on a CPU-only onnxruntime build, and where onnxruntime-gpu is installed but the session falls back to the CPU
provider (no GPU, or CUDA libraries missing): a fallback must not pass for a GPU result. The rows are the
held-out flows of the bundled corpus, clean and with half of each flow's features imputed.

With TF32 off (``CUDA_FP32_OPTIONS``) the GPU is held to the fp32 acceptance of the CPU export (1e-5 from
PyTorch). With the provider's defaults (TF32 on) it is held to a TF32-sized bound and to the same decisions.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from moe_ids.core import contract
from moe_ids.core.onnx_runtime import CPU_PROVIDER, CUDA_FP32_OPTIONS, CUDA_PROVIDER, make_session, resolve_providers
from moe_ids.export import verify

GPU_TOLERANCE = 1e-4  # TF32 off, vs the CPU provider; measured on an H100: 2.4e-6
TF32_TOLERANCE = 1e-2  # provider defaults (TF32 on), vs PyTorch; measured on an H100: 2.9e-3

pytestmark = pytest.mark.skipif(
    CUDA_PROVIDER not in ort.get_available_providers(),
    reason=f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu on a host "
           "with an NVIDIA GPU)")

FP32 = [(CUDA_PROVIDER, CUDA_FP32_OPTIONS), CPU_PROVIDER]
DEFAULTS = [CUDA_PROVIDER, CPU_PROVIDER]


@pytest.fixture(scope="module")
def on_gpu(exported) -> None:
    """Skips when onnxruntime could not put the session on the GPU (it then falls back to the CPU)."""
    session = make_session(exported.fp32, providers=FP32)
    if session.get_providers()[0] != CUDA_PROVIDER:
        pytest.skip(f"CUDAExecutionProvider is built in but the session fell back to {session.get_providers()} "
                    "(no usable GPU or CUDA libraries)")
    assert session.get_provider_options()[CUDA_PROVIDER]["use_tf32"] == "0"


def test_cuda_provider_matches_cpu_provider(exported, on_gpu):
    cpu = verify.onnx_outputs(exported.fp32, exported.held)
    gpu = verify.onnx_outputs(exported.fp32, exported.held, providers=FP32)
    diffs = verify.compare_outputs(cpu, gpu, tie_margin=2 * GPU_TOLERANCE)
    assert set(diffs) == set(contract.ONNX_OUTPUTS)
    assert max(diffs.values()) <= GPU_TOLERANCE, diffs
    for name in contract.ONNX_OUTPUTS:
        assert gpu[name].shape == cpu[name].shape
        assert gpu[name].dtype == cpu[name].dtype
    np.testing.assert_allclose(gpu[contract.PROBABILITIES].sum(axis=1), 1.0, atol=1e-5)


def test_cuda_provider_passes_the_fp32_check_against_pytorch(exported, on_gpu):
    result = verify.verify_fp32(exported.model_dir, exported.fp32, exported.held, reference=exported.reference,
                                providers=FP32)
    assert result["passed"]
    assert result["flows"] == len(exported.held) > 0
    assert result["max_abs_diff_overall"] <= verify.FP32_TOLERANCE


def test_cuda_provider_defaults_stay_within_tf32_error(exported, on_gpu):
    assert make_session(exported.fp32, providers=DEFAULTS).get_providers()[0] == CUDA_PROVIDER
    gpu = verify.onnx_outputs(exported.fp32, exported.held, providers=DEFAULTS)
    diffs = verify.compare_outputs(exported.reference, gpu, tie_margin=2 * TF32_TOLERANCE)
    assert max(diffs.values()) <= TF32_TOLERANCE, diffs
    agreement = np.mean(gpu[contract.PREDICTED_CLASS] == exported.reference[contract.PREDICTED_CLASS])
    assert agreement >= 0.999


def test_gpu_keyword_puts_cuda_before_cpu(exported, on_gpu):
    chosen = resolve_providers("gpu")
    resolved = [p if isinstance(p, str) else p[0] for p in chosen]
    assert resolved.index(CUDA_PROVIDER) < resolved.index(CPU_PROVIDER)
    assert (CUDA_PROVIDER, CUDA_FP32_OPTIONS) in chosen  # exact fp32, not TF32
    assert CUDA_PROVIDER in make_session(exported.fp32, providers="gpu").get_providers()
    # the keyword keeps fp32 accuracy end to end (onnxruntime's own TensorRT fallback would drop the options)
    result = verify.verify_fp32(exported.model_dir, exported.fp32, exported.held, reference=exported.reference,
                                providers="gpu")
    assert result["passed"]
