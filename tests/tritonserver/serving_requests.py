"""Small request helpers of the serving integration tests (real tritonclient, real server)."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient

from moe_ids.core import contract


def features_input(x: np.ndarray, dtype: str = "FP32") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(contract.INPUT_FEATURES, list(x.shape), dtype)
    tensor.set_data_from_numpy(x)
    return tensor


def imputation_input(strategies: list[str]) -> grpcclient.InferInput:
    values = np.array([[s.encode()] for s in strategies], dtype=object)
    tensor = grpcclient.InferInput(contract.INPUT_IMPUTATION, list(values.shape), "BYTES")
    tensor.set_data_from_numpy(values)
    return tensor


def infer(client: grpcclient.InferenceServerClient, x: np.ndarray, strategy: str | list[str] | None = None,
          **kwargs) -> dict[str, np.ndarray]:
    inputs = [features_input(x)]
    if strategy is not None:
        inputs.append(imputation_input([strategy] * len(x) if isinstance(strategy, str) else strategy))
    result = client.infer(contract.ENSEMBLE_MODEL, inputs, **kwargs)
    return {name: result.as_numpy(name) for name in contract.ONNX_OUTPUTS}
