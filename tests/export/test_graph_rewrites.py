"""The GELU rewrite: exact (same bits unfused), and ONNX Runtime fuses the result into one kernel."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from moe_ids.export.graph_rewrites import halve_gelu_last


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(12, 16)
        self.act = torch.nn.GELU()

    def forward(self, x):
        return self.act(self.linear(x)) * 3.0


@pytest.fixture(scope="module")
def gelu_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gelu") / "gelu.onnx"
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(Block().eval(), (torch.randn(4, 12),), str(path), input_names=["x"], output_names=["y"],
                      dynamic_shapes={"x": {0: batch}}, opset_version=18, dynamo=True, verbose=False)
    return path


def run(model, x: np.ndarray, level) -> np.ndarray:
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def fused_ops(model, tmp: Path) -> Counter:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp)
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(str(tmp)).graph.node)


def test_rewrite_is_exact_and_lets_onnx_runtime_fuse_gelu(gelu_graph: Path, tmp_path: Path) -> None:
    original = onnx.load(str(gelu_graph))
    assert fused_ops(original, tmp_path / "before.onnx")["Erf"] == 1  # torch's order is not fused
    rewritten = onnx.load(str(gelu_graph))
    assert halve_gelu_last(rewritten) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    x = np.random.default_rng(0).standard_normal((64, 12)).astype(np.float32) * 4
    off = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    np.testing.assert_array_equal(run(rewritten, x, off), run(original, x, off))
    ops = fused_ops(rewritten, tmp_path / "after.onnx")
    assert ops["Gelu"] == 1 and ops["Erf"] == 0
    np.testing.assert_allclose(run(rewritten, x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                               run(original, x, off), atol=1e-5)
    assert halve_gelu_last(rewritten) == 0  # nothing left to rewrite


def test_exported_model_has_every_gelu_rewritten(exported) -> None:
    model = onnx.load(str(exported.fp32))
    props = {p.key: p.value for p in model.metadata_props}
    assert int(props["gelu_rewrites"]) == Counter(n.op_type for n in model.graph.node)["Erf"] > 0
