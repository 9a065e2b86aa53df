"""INT8 variant of the classifier: dynamic quantisation of every fully connected layer (the trust score stays fp32).

The exporter writes ``nn.Linear`` as ``Gemm``. Older ``onnxruntime.quantization.quantize_dynamic`` releases
quantise only MatMul and silently leave Gemm in fp32 — the "INT8" file is then the fp32 model under another
name, and any release quantises nothing without a word when no node matches. So the graph is first rewritten
Gemm -> MatMul + Add (same numbers in fp32; the quantiser's best-supported pattern on every release), then
quantised, and the result is checked for real integer kernels: a graph without them is an error, never a
silent fallback.
"""

from __future__ import annotations

import logging
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

INTEGER_OPS: frozenset[str] = frozenset(
    {"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul", "QLinearConv", "QLinearAdd",
     "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QGemm"}
)
# Weights signed, activations unsigned (DynamicQuantizeLinear is uint8): ORT's fastest x86 dynamic path,
# and measured accurate on held-out flows (see export_report.json).
WEIGHT_TYPE = "QInt8"


class QuantizationError(RuntimeError):
    """The quantised graph does not hold integer kernels (nothing was quantised)."""


def _attr(node, name: str, default):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def gemm_to_matmul(model):
    """Return a copy of ``model`` with every Gemm replaced by MatMul (+ Add for a bias), numerically equal.

    transA/transB become Transpose nodes, or are folded into the weight initialiser when B is a constant
    (always the case for exported Linear layers); alpha/beta scale the constants or become Mul nodes.
    """
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = Counter(i for n in graph.node for i in n.input)
    new_nodes = []
    reshaped: set[str] = set()
    for node in graph.node:
        if node.op_type != "Gemm":
            new_nodes.append(node)
            continue
        a, b = node.input[0], node.input[1]
        c = node.input[2] if len(node.input) > 2 and node.input[2] else None
        alpha, beta = float(_attr(node, "alpha", 1.0)), float(_attr(node, "beta", 1.0))
        trans_a, trans_b = int(_attr(node, "transA", 0)), int(_attr(node, "transB", 0))
        base = node.name or node.output[0]
        out = node.output[0]

        if trans_a:
            new_nodes.append(helper.make_node("Transpose", [a], [f"{base}_At"], perm=[1, 0], name=f"{base}_TransA"))
            a = f"{base}_At"
        if b in inits and consumers[b] == 1:
            w = numpy_helper.to_array(inits[b])
            w = w.T if trans_b else w
            if alpha != 1.0:
                w = w * np.asarray(alpha, dtype=w.dtype)
                alpha = 1.0
            inits[b].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w), b))
            reshaped.add(b)
        elif b in inits and trans_b:  # a weight two passes share (the trust score's host view): transposed once
            name = f"{b}_transposed"
            if name not in inits:
                w = np.ascontiguousarray(numpy_helper.to_array(inits[b]).T)
                graph.initializer.append(numpy_helper.from_array(w, name))
                inits[name] = graph.initializer[-1]
            b = name
        elif trans_b:
            new_nodes.append(helper.make_node("Transpose", [b], [f"{base}_Bt"], perm=[1, 0], name=f"{base}_TransB"))
            b = f"{base}_Bt"

        mm_out = out if (c is None and alpha == 1.0) else f"{base}_MatMul_out"
        new_nodes.append(helper.make_node("MatMul", [a, b], [mm_out], name=f"{base}_MatMul"))
        if alpha != 1.0:
            scaled = out if c is None else f"{base}_alpha_out"
            graph.initializer.append(numpy_helper.from_array(np.asarray(alpha, dtype=np.float32), f"{base}_alpha"))
            new_nodes.append(helper.make_node("Mul", [mm_out, f"{base}_alpha"], [scaled], name=f"{base}_Alpha"))
            mm_out = scaled
        if c is not None:
            if beta != 1.0:
                if c in inits and consumers[c] == 1:
                    bias = numpy_helper.to_array(inits[c])
                    inits[c].CopyFrom(numpy_helper.from_array(bias * np.asarray(beta, dtype=bias.dtype), c))
                else:
                    graph.initializer.append(
                        numpy_helper.from_array(np.asarray(beta, dtype=np.float32), f"{base}_beta"))
                    new_nodes.append(helper.make_node("Mul", [c, f"{base}_beta"], [f"{base}_Cb"],
                                                      name=f"{base}_Beta"))
                    c = f"{base}_Cb"
            new_nodes.append(helper.make_node("Add", [mm_out, c], [out], name=f"{base}_Bias"))
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    unused = [t for t in graph.initializer if t.name not in used]  # shared weights now held transposed
    for t in unused:
        graph.initializer.remove(t)
    # Shape annotations of rewritten weights are stale (transposed); shape inference re-derives them.
    for field in (graph.value_info, graph.input):
        stale = [v for v in field if v.name in reshaped]
        for v in stale:
            field.remove(v)
    onnx.checker.check_model(model)
    return model


def op_counts(path_or_model) -> Counter:
    """Node counts by op type (of a path or a loaded ModelProto)."""
    import onnx

    model = onnx.load(str(path_or_model)) if isinstance(path_or_model, (str, Path)) else path_or_model
    return Counter(n.op_type for n in model.graph.node)


def verify_integer_ops(path: Path, fp32_matmuls: int = 0) -> dict[str, int]:
    """The integer ops in the graph at ``path``; QuantizationError when there are none or fp32 Gemm/MatMul remain
    beyond the ``fp32_matmuls`` kept on purpose."""
    counts = op_counts(path)
    integer = {op: n for op, n in counts.items() if op in INTEGER_OPS}
    if not integer:
        raise QuantizationError(f"{path}: no integer ops after quantisation (ops: {dict(counts)})")
    leftover = {op: counts[op] for op in ("Gemm", "MatMul") if counts.get(op)}
    if leftover.get("MatMul", 0) <= fp32_matmuls:
        leftover.pop("MatMul", None)
    if leftover:
        raise QuantizationError(f"{path}: fp32 layers left unquantised: {leftover}")
    return integer


def quantize_int8(fp32_path: Path, output: Path, weight_type: str = WEIGHT_TYPE) -> dict[str, int]:
    """Write the dynamically quantised model to ``output``; returns the integer op counts it holds."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, output = Path(fp32_path), Path(output)
    original = onnx.load(str(fp32_path))
    # MatMuls that were not Linear layers (the trust score's whitening and centroid products) stay fp32: its
    # distance quantiles were calibrated in fp32, and quantising the distances would move every flow's trust
    keep_fp32 = [n.name for n in original.graph.node if n.op_type == "MatMul"]
    if any(not name for name in keep_fp32):
        raise QuantizationError(f"{fp32_path}: a MatMul node has no name, so it cannot be kept in fp32")
    rewritten = gemm_to_matmul(original)
    # work files beside the output (same filesystem: the final rename is atomic), removed whatever happens
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as work:
        staging, tmp = Path(work) / "matmul.onnx", Path(work) / "int8.onnx"
        onnx.save(rewritten, str(staging))
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs advice about static-quantisation pre-processing
        try:
            quantize_dynamic(str(staging), str(tmp), weight_type=getattr(QuantType, weight_type),
                             per_channel=False, op_types_to_quantize=["MatMul"], nodes_to_exclude=keep_fp32)
        finally:
            root.setLevel(level)
        quantized = onnx.load(str(tmp))
        del quantized.metadata_props[:]
        for prop in onnx.load(str(fp32_path), load_external_data=False).metadata_props:
            quantized.metadata_props.add(key=prop.key, value=prop.value)
        quantized.metadata_props.add(key="quantization",
                                     value=f"dynamic int8 (weights {weight_type}, activations uint8)")
        onnx.checker.check_model(quantized)
        onnx.save(quantized, str(tmp))
        integer = verify_integer_ops(tmp, fp32_matmuls=len(keep_fp32))
        tmp.replace(output)
    return integer
