"""INT8: Gemm is rewritten without changing numbers, and the quantised graph really runs integer kernels."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from moe_ids.core import contract
from moe_ids.core.onnx_runtime import make_session, run_onnx
from moe_ids.export import quantize


def test_gemm_rewrite_keeps_outputs_equal(exported, tmp_path):
    original = onnx.load(str(exported.fp32))
    rewritten = quantize.gemm_to_matmul(original)
    before, after = quantize.op_counts(original), quantize.op_counts(rewritten)
    assert before["Gemm"] > 0 and after["Gemm"] == 0
    assert after["MatMul"] == before["Gemm"] + before.get("MatMul", 0)
    path = tmp_path / "matmul.onnx"
    onnx.save(rewritten, str(path))
    a = run_onnx(make_session(exported.fp32), *exported.held.inputs)
    b = run_onnx(make_session(path), *exported.held.inputs)
    for name in contract.ONNX_OUTPUTS:
        assert np.max(np.abs(a[name].astype(np.float64) - b[name])) <= 1e-6, name


@pytest.mark.parametrize("trans_a,trans_b,alpha,beta,const_b", [
    (0, 1, 1.0, 1.0, True), (1, 0, 0.5, 2.0, True), (0, 1, 1.5, 0.5, False), (1, 1, 1.0, 1.0, False)])
def test_gemm_rewrite_handles_every_attribute(tmp_path, trans_a, trans_b, alpha, beta, const_b):
    rng = np.random.default_rng(0)
    a_shape = (5, 3) if trans_a else (3, 5)
    b_shape = (4, 5) if trans_b else (5, 4)
    w = rng.standard_normal(b_shape).astype(np.float32)
    c = rng.standard_normal(4).astype(np.float32)
    inputs = [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)]
    inits = [numpy_helper.from_array(c, "C")]
    if const_b:
        inits.append(numpy_helper.from_array(w, "B"))
    else:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, b_shape))
    node = helper.make_node("Gemm", ["A", "B", "C"], ["Y"], transA=trans_a, transB=trans_b, alpha=alpha, beta=beta)
    graph = helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, (3, 4))],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    rewritten = quantize.gemm_to_matmul(model)
    assert quantize.op_counts(rewritten)["Gemm"] == 0
    feeds = {"A": rng.standard_normal(a_shape).astype(np.float32)}
    if not const_b:
        feeds["B"] = w
    a_mat = feeds["A"].T if trans_a else feeds["A"]
    b_mat = w.T if trans_b else w
    expected = alpha * a_mat @ b_mat + beta * c
    import onnxruntime as ort

    for m in (model, rewritten):
        got = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_int8_graph_holds_integer_ops(exported):
    counts = quantize.op_counts(exported.int8)
    fp32 = quantize.op_counts(exported.fp32)
    assert counts["MatMulInteger"] == fp32["Gemm"]  # every Linear layer
    assert counts["DynamicQuantizeLinear"] > 0
    # the trust score's whitening and its two centroid products stay fp32, and so do the host view's two
    # first-layer updates (small products with slices of weights the quantised Linear layers hold)
    assert counts["Gemm"] == 0 and counts["MatMul"] == fp32["MatMul"] == 5
    assert exported.integer_ops == quantize.verify_integer_ops(exported.int8, fp32_matmuls=5)
    with pytest.raises(quantize.QuantizationError, match="left unquantised"):
        quantize.verify_integer_ops(exported.int8)
    props = {p.key for p in onnx.load(str(exported.int8)).metadata_props}
    assert {"model_version", "feature_names", "quantization"} <= props


def test_integer_op_check_rejects_an_unquantised_graph(exported):
    with pytest.raises(quantize.QuantizationError, match="no integer ops"):
        quantize.verify_integer_ops(exported.fp32)


def test_a_quantiser_run_that_quantises_nothing_is_caught(exported, tmp_path):
    """quantize_dynamic succeeds silently when no node matches; the integer-op check is what notices."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = tmp_path / "naive.int8.onnx"
    quantize_dynamic(str(exported.fp32), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    with pytest.raises(quantize.QuantizationError, match="no integer ops"):
        quantize.verify_integer_ops(out)


def test_int8_session_runs_contract(exported):
    out = run_onnx(make_session(exported.int8), *(a[:64] for a in exported.held.inputs))
    assert out[contract.PREDICTED_CLASS].shape == (64, 1)
    np.testing.assert_allclose(out[contract.PROBABILITIES].sum(1), 1.0, atol=1e-5)
