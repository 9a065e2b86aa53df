"""Export of the trained MoE to an fp32 ONNX graph that is the serving contract.

The graph carries everything a client needs after preprocessing: both softmaxes, the argmax and its
probability, so Triton (or any ONNX runtime) returns final answers without post-processing code that could
drift from training. Tensor names come from ``moe_ids.core.contract``; every axis 0 is dynamic so one graph serves
batch 1 and batch 1024. torch's ``torch.export``-based exporter (opset 18) writes the graph; it is
deterministic (byte-identical files for the same weights) and emits plain Gemm/Erf/Softmax nodes that ONNX
Runtime, the INT8 quantiser and TensorRT all handle. Should it fail on some torch/onnxscript combination, the
TorchScript exporter (opset 17) is used instead and the graph's metadata says which one wrote it.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from moe_ids.core import artifacts, contract
from moe_ids.core.schema import EXPERT_LABELS, FEATURE_NAMES, N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES
from moe_ids.export.graph_rewrites import halve_gelu_last

OPSET = 18  # what the torch.export-based exporter writes natively (its down-conversion to 17 fails)
TORCHSCRIPT_OPSET = 17
EXPORTERS = ("auto", "dynamo", "torchscript")
BATCH_AXIS = "batch"


def serving_module(model):
    """Wrap the MoE so its forward returns the contract outputs (softmax, argmax, confidence, trust inside)."""
    import torch

    class ServingMoE(torch.nn.Module):
        def __init__(self, moe) -> None:
            super().__init__()
            self.moe = moe

        def forward(self, tabular, temporal, missing_mask):
            probabilities, gating, family, trust, ood = self.moe(tabular, temporal, missing_mask)
            confidence, predicted = torch.max(probabilities, dim=1, keepdim=True)
            return probabilities, gating, family, predicted.to(torch.int64), confidence, trust, ood

    return ServingMoE(model).eval()


def example_inputs(batch: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shape-correct float32 inputs (standardised-looking values, some rows flagged missing) for tracing."""
    rng = np.random.default_rng(seed)
    tab = rng.standard_normal((batch, len(TABULAR_INDICES))).astype(np.float32)
    tmp = rng.standard_normal((batch, len(TEMPORAL_INDICES))).astype(np.float32)
    mask = (rng.random((batch, N_FEATURES)) < 0.3).astype(np.float32)
    return tab, tmp, mask


def _metadata(model_dir: Path) -> dict[str, str]:
    """Key/value pairs stored in the graph's metadata_props, so a lone model.onnx still says what it is."""
    meta_path = model_dir / artifacts.METADATA
    meta = artifacts.read_json(meta_path) if meta_path.exists() else {}
    props = {
        "model_name": str(meta.get("model_name", contract.ENSEMBLE_MODEL)),
        "model_version": str(meta.get("model_version", "unknown")),
        "trained_at": str(meta.get("trained_at", "")),
        "training_data_sha256": str(meta.get("training_data", {}).get("sha256", "")),
        "feature_names": json.dumps(list(FEATURE_NAMES)),
        "tabular_features": json.dumps([FEATURE_NAMES[i] for i in TABULAR_INDICES]),
        "temporal_features": json.dumps([FEATURE_NAMES[i] for i in TEMPORAL_INDICES]),
        "binary_labels": json.dumps(list(contract.OUTPUT_LABELS[contract.PROBABILITIES])),
        "family_labels": json.dumps(list(contract.OUTPUT_LABELS[contract.FAMILY_PROBABILITIES])),
        "expert_labels": json.dumps(list(EXPERT_LABELS)),
        "missing_value": "NaN before preprocessing; MISSING_MASK=1 after",
    }
    return props


def _export_dynamo(module, inputs: tuple, path: Path) -> int:
    import torch

    # the exporter warns about every torchvision op it cannot register; this model uses none of them
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    batch = torch.export.Dim(BATCH_AXIS, min=1)
    dynamic_shapes = {"tabular": {0: batch}, "temporal": {0: batch}, "missing_mask": {0: batch}}
    with warnings.catch_warnings():
        # every input shares the one batch dimension; torch notes that the shared name is used once
        warnings.filterwarnings("ignore", message=".*axis name.*will not be used.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # inside torch.export
        torch.onnx.export(module, inputs, str(path), input_names=list(contract.ONNX_INPUTS),
                          output_names=list(contract.ONNX_OUTPUTS), dynamic_shapes=dynamic_shapes,
                          opset_version=OPSET, dynamo=True, optimize=True, external_data=False, verbose=False)
    return OPSET


def _export_torchscript(module, inputs: tuple, path: Path) -> int:
    import torch

    dynamic_axes = {name: {0: BATCH_AXIS} for name in (*contract.ONNX_INPUTS, *contract.ONNX_OUTPUTS)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(module, inputs, str(path), input_names=list(contract.ONNX_INPUTS),
                          output_names=list(contract.ONNX_OUTPUTS), dynamic_axes=dynamic_axes,
                          opset_version=TORCHSCRIPT_OPSET, do_constant_folding=True, dynamo=False)
    return TORCHSCRIPT_OPSET


def export_onnx(model_dir: Path, output: Path | None = None, exporter: str = "auto",
                log: Callable[[str], None] = print) -> Path:
    """Write ``model_dir/model.onnx`` from the artifact's weights; returns its path. Checked by onnx.checker.

    ``exporter``: ``dynamo`` (torch.export based), ``torchscript``, or ``auto`` (dynamo, else torchscript).
    """
    import onnx
    import torch

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter: expected one of {', '.join(EXPORTERS)}, got {exporter!r}")
    model_dir = Path(model_dir)
    output = Path(output) if output is not None else model_dir / artifacts.ONNX_FP32
    module = serving_module(artifacts.load_model(model_dir))
    inputs = tuple(torch.from_numpy(a) for a in example_inputs())
    used = "torchscript" if exporter == "torchscript" else "dynamo"
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as work:
        tmp = Path(work) / "model.onnx"
        with torch.no_grad():
            if used == "dynamo":
                try:
                    _export_dynamo(module, inputs, tmp)
                except Exception as exc:
                    if exporter == "dynamo":
                        raise
                    log(f"torch.export-based ONNX export failed ({type(exc).__name__}: {exc}); "
                        "using the TorchScript exporter")
                    used = "torchscript"
            if used == "torchscript":
                _export_torchscript(module, inputs, tmp)
        graph = onnx.load(str(tmp))
        gelus = halve_gelu_last(graph)  # exact; lets ONNX Runtime fuse each GELU into one kernel
        graph.producer_name = "moe-ids"
        graph.doc_string = "Mixture-of-Experts intrusion detector (CIC-IDS2017 flow features)"
        del graph.metadata_props[:]
        props = {**_metadata(model_dir), "exporter": f"torch {torch.__version__} {used}", "gelu_rewrites": str(gelus)}
        for key, value in props.items():
            graph.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(graph, full_check=True)
        onnx.save(graph, str(tmp))
        tmp.replace(output)  # atomic: a server reading model.onnx never sees half a file
    return output


def graph_opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_contract(path: Path) -> None:
    """Raise unless the graph's inputs/outputs are exactly the contract's names, dtypes and dynamic batch."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names_in = tuple(i.name for i in graph.input)
    names_out = tuple(o.name for o in graph.output)
    if names_in != contract.ONNX_INPUTS or names_out != contract.ONNX_OUTPUTS:
        raise ValueError(f"{path}: tensors {names_in} -> {names_out} differ from the contract "
                         f"{contract.ONNX_INPUTS} -> {contract.ONNX_OUTPUTS}")
    elem_types = {"TYPE_FP32": onnx.TensorProto.FLOAT, "TYPE_INT64": onnx.TensorProto.INT64,
                  "TYPE_BOOL": onnx.TensorProto.BOOL}
    for value in graph.output:
        expected = elem_types[contract.OUTPUT_DTYPES[value.name]]
        if value.type.tensor_type.elem_type != expected:
            raise ValueError(f"{path}: output {value.name} has ONNX element type {value.type.tensor_type.elem_type}, "
                             f"expected {onnx.TensorProto.DataType.Name(expected)}")
    widths = {**contract.INPUT_WIDTHS, **contract.OUTPUT_WIDTHS}
    for value in (*graph.input, *graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) != 2 or dims[0].dim_param == "" or dims[1].dim_value != widths[value.name]:
            raise ValueError(f"{path}: {value.name} has shape {[d.dim_param or d.dim_value for d in dims]}, "
                             f"expected [{BATCH_AXIS}, {widths[value.name]}]")
