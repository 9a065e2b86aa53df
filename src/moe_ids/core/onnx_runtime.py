"""ONNX Runtime sessions for the exported classifier, configured the way serving needs them.

Numpy and onnxruntime only: Triton's Python backend imports this module, and torch must not be required
there. ONNX Runtime's worker threads busy-wait between ops by default; inside a Triton model instance that
spins a whole core per session and halves throughput on a small machine, so spinning is switched off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from moe_ids.core.contract import MISSING_MASK, ONNX_OUTPUTS, TABULAR, TEMPORAL

CPU_PROVIDER = "CPUExecutionProvider"
# Preference order when GPU execution providers are asked for by keyword.
GPU_PROVIDERS: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
# The CUDA provider runs fp32 MatMul/Gemm in TF32 by default (use_tf32=1 on Ampere and newer): on an H100 that
# moved this graph's probabilities by up to 3e-3 from PyTorch's. With these options it stays within 1e-5 (the
# fp32 acceptance of moe_ids.export.verify), at no measurable cost at batch 1024. Use as
# ``[(CUDA_PROVIDER, CUDA_FP32_OPTIONS), CPU_PROVIDER]``.
CUDA_FP32_OPTIONS: dict[str, str] = {"use_tf32": "0"}


def tensorrt_loadable() -> bool:
    """Whether TensorRT's runtime library loads. onnxruntime-gpu lists its TensorRT provider without it, and a
    session asked for it then falls back to CUDA *with default options* (TF32 on, measured on an H100: 3e-3
    off PyTorch), silently dropping ``CUDA_FP32_OPTIONS``; so the ``"gpu"`` keyword leaves it out instead."""
    import ctypes

    for name in ("libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def session_options(threads: int = 1):
    """Options: ``threads`` intra-op threads, one inter-op thread, no spinning, all graph optimisations."""
    import onnxruntime as ort

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def resolve_providers(providers: Sequence[Any] | str | None) -> list[Any]:
    """Execution providers to use: CPU by default; ``"gpu"`` means TensorRT/CUDA (TF32 off) when installed, else CPU.

    Explicit lists (names or ``(name, options)`` tuples) are checked against what this onnxruntime build
    offers, so asking for CUDA on a CPU-only wheel fails with a message instead of silently running on CPU.
    """
    import onnxruntime as ort

    available = ort.get_available_providers()
    if providers is None:
        return [CPU_PROVIDER]
    if isinstance(providers, str):
        if providers.lower() == "cpu":
            return [CPU_PROVIDER]
        if providers.lower() in ("gpu", "auto"):  # CUDA in exact fp32: the exports' checks hold on GPU too
            gpu = [p for p in GPU_PROVIDERS if p in available]
            if TENSORRT_PROVIDER in gpu and not tensorrt_loadable():
                gpu.remove(TENSORRT_PROVIDER)
            return [(p, CUDA_FP32_OPTIONS) if p == CUDA_PROVIDER else p for p in gpu] + [CPU_PROVIDER]
        providers = [providers]
    chosen = list(providers)
    missing = [p if isinstance(p, str) else p[0] for p in chosen]
    missing = [name for name in missing if name not in available]
    if missing:
        raise ValueError(f"execution provider(s) {', '.join(missing)} not available in this onnxruntime build "
                         f"(available: {', '.join(available)})")
    return chosen


def make_session(path: str | Path, threads: int = 1, providers: Sequence[Any] | str | None = None):
    """An ``onnxruntime.InferenceSession`` for ``path`` with serving options (see ``session_options``)."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ONNX model not found (run `moe-ids export`)")
    return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                providers=resolve_providers(providers))


def run_onnx(session, tabular: np.ndarray, temporal: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """Run the classifier graph on preprocessed arrays; outputs keyed by contract tensor name."""
    feeds = {
        TABULAR: np.ascontiguousarray(tabular, dtype=np.float32),
        TEMPORAL: np.ascontiguousarray(temporal, dtype=np.float32),
        MISSING_MASK: np.ascontiguousarray(mask, dtype=np.float32),
    }
    values = session.run(list(ONNX_OUTPUTS), feeds)
    return dict(zip(ONNX_OUTPUTS, values, strict=True))
