"""The fp32 graph is the serving contract: names, dynamic batch, metadata, and PyTorch's numbers."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from moe_ids.core import artifacts, contract
from moe_ids.core.onnx_runtime import make_session, run_onnx
from moe_ids.core.schema import FEATURE_NAMES
from moe_ids.export import onnx_export, verify


def test_graph_follows_the_contract(exported):
    onnx_export.check_contract(exported.fp32)
    model = onnx.load(str(exported.fp32))
    assert onnx_export.graph_opset(exported.fp32) == onnx_export.OPSET
    onnx_types = {"TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_INT64": onnx.TensorProto.INT64,
                  "TYPE_BOOL": onnx.TensorProto.BOOL}
    for value in [*model.graph.input, *model.graph.output]:  # the graph's dtypes and widths are the contract's
        spec = contract.TENSORS[value.name]
        assert value.type.tensor_type.elem_type == onnx_types[spec.dtype], value.name
        assert value.type.tensor_type.shape.dim[1].dim_value == spec.width, value.name


def test_metadata_names_version_and_features(exported):
    props = {p.key: p.value for p in onnx.load(str(exported.fp32)).metadata_props}
    meta = artifacts.read_json(exported.model_dir / artifacts.METADATA)
    assert props["model_version"] == meta["model_version"]
    assert tuple(json.loads(props["feature_names"])) == FEATURE_NAMES
    assert tuple(json.loads(props["binary_labels"])) == contract.OUTPUT_LABELS[contract.PROBABILITIES]


def test_export_is_deterministic(exported, tmp_path):
    again = onnx_export.export_onnx(exported.model_dir, tmp_path / "again.onnx")
    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(exported.fp32.read_bytes()).digest()


@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_dynamic_batch_matches_pytorch(exported, batch):
    held = exported.held
    rows = np.arange(batch) * (len(held) // batch)  # spread over clean and half-missing flows
    inputs = [a[rows] for a in held.inputs]
    assert inputs[2].sum() > 0 or batch == 1
    out = run_onnx(make_session(exported.fp32), *inputs)
    module = onnx_export.serving_module(artifacts.load_model(exported.model_dir))
    with torch.no_grad():
        ref = dict(zip(contract.ONNX_OUTPUTS, (t.numpy() for t in module(*map(torch.from_numpy, inputs))),
                       strict=True))
    ties = verify.host_view_ties(exported.model_dir, exported.held)[rows]
    diffs = verify.compare_outputs(ref, out, trust_ties=ties)
    for name in contract.ONNX_OUTPUTS:
        assert out[name].shape == (batch, contract.OUTPUT_WIDTHS[name]), name
        limit = verify.TRUST_TOLERANCE if name == contract.TRUST else 1e-5
        assert diffs[name] <= limit, name
    probs = out[contract.PROBABILITIES]
    assert out[contract.PREDICTED_CLASS].dtype == np.int64
    np.testing.assert_array_equal(out[contract.PREDICTED_CLASS][:, 0], probs.argmax(1))
    np.testing.assert_allclose(out[contract.CONFIDENCE][:, 0], probs.max(1), rtol=0, atol=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[contract.GATING].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[contract.FAMILY_PROBABILITIES].sum(1), 1.0, atol=1e-5)


def test_torchscript_fallback_exports_the_same_model(exported, tmp_path):
    path = onnx_export.export_onnx(exported.model_dir, tmp_path / "ts.onnx", exporter="torchscript")
    onnx_export.check_contract(path)
    assert onnx_export.graph_opset(path) == onnx_export.TORCHSCRIPT_OPSET
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["exporter"].endswith("torchscript")
    a = run_onnx(make_session(path), *exported.held.inputs)
    diffs = verify.compare_outputs(exported.reference, a,
                                   trust_ties=verify.host_view_ties(exported.model_dir, exported.held))
    for name in contract.ONNX_OUTPUTS:
        limit = verify.TRUST_TOLERANCE if name == contract.TRUST else 1e-5
        assert diffs[name] <= limit, name


def test_contract_check_rejects_a_renamed_output(exported, tmp_path):
    model = onnx.load(str(exported.fp32))
    model.graph.output[0].name = "probs"
    bad = tmp_path / "renamed.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(ValueError, match="differ from the contract"):
        onnx_export.check_contract(bad)
