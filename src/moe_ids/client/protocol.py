"""What the synchronous and asyncio clients share: URLs, priorities, request tensors and response parsing.

Both transports (gRPC and HTTP/KServe v2) send FEATURES as a binary FP32 tensor: NaN marks a missing
feature, and the JSON encoding of KServe v2 cannot carry NaN reliably.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from moe_ids.core import contract
from moe_ids.core.preprocessing import PreprocessingError, strategy_code

from .errors import InvalidInputError
from .model_info import ModelInfo
from .results import outputs_to_frame, result_columns

Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[str, ...] = ("grpc", "http")
PRIORITIES: dict[str, int] = {"realtime": contract.PRIORITY_REALTIME, "bulk": contract.PRIORITY_BULK}


def check_protocol(protocol: str) -> str:
    key = str(protocol).lower()
    if key not in PROTOCOLS:
        raise InvalidInputError(f"protocol={protocol!r}: expected 'grpc' or 'http'", field="protocol")
    return key


def normalize_url(url: str | None, protocol: str) -> str:
    """host:port as tritonclient wants it; the default is the local server's port for the protocol."""
    if not url:
        port = contract.DEFAULT_GRPC_PORT if protocol == "grpc" else contract.DEFAULT_HTTP_PORT
        return f"{contract.DEFAULT_HOST}:{port}"
    lowered = url.strip().lower()
    for scheme in ("https://", "grpcs://"):
        if lowered.startswith(scheme):  # stripping it would connect in plain text: a silent TLS downgrade
            raise InvalidInputError(
                f"url={url!r}: TLS ({scheme[:-3]}) is not supported by this client; connect to Triton's plain "
                "ports on a trusted network, or through a TLS-terminating proxy that you address in plain text",
                field="url")
    for scheme in ("http://", "grpc://"):
        if lowered.startswith(scheme):
            url = url.strip()[len(scheme):]
    return url.rstrip("/")


def priority_value(priority: int | str) -> int:
    """Triton priority level (1 = highest) from a name ('realtime', 'bulk') or a number."""
    if isinstance(priority, str):
        key = priority.strip().lower()
        if key in PRIORITIES:
            return PRIORITIES[key]
        if not key.isdigit():
            raise InvalidInputError(f"priority={priority!r}: expected one of {', '.join(PRIORITIES)} or a level",
                                    field="priority")
        priority = int(key)
    if int(priority) < 0:
        raise InvalidInputError(f"priority={priority!r}: must be >= 0", field="priority")
    return int(priority)


def priority_parameters(priority: int) -> dict[str, int]:
    """The request parameters that carry the priority level to a Python-backend model, which cannot read
    Triton's own ``priority`` field (the one-hop model admits and orders requests by it)."""
    return {contract.PRIORITY_PARAMETER: int(priority)}


def check_strategy(missing_strategy: str | None, info: ModelInfo) -> str | None:
    """Validate an imputation strategy name before sending it; None leaves the model's default."""
    if missing_strategy is None:
        return None
    try:
        strategy_code(missing_strategy)
    except PreprocessingError as exc:
        raise InvalidInputError(str(exc).replace("IMPUTATION: ", "missing_strategy: "),
                                field="missing_strategy") from None
    if not info.accepts_imputation:
        raise InvalidInputError(
            f"missing_strategy: model {info.name!r} has no {contract.INPUT_IMPUTATION} input, it always uses "
            "its default imputation", field="missing_strategy")
    return str(missing_strategy).strip().lower()


Strategies = str | np.ndarray | None  # one name for the request, or one per row (None / "default" = the model's)
DEFAULT_IMPUTATION = contract.DEFAULT_IMPUTATION_NAME


def check_strategies(missing_strategy: str | Sequence[str | None] | np.ndarray | None, n_rows: int,
                     info: ModelInfo) -> Strategies:
    """``check_strategy`` for one name, or for one name per flow (a stream's messages each carry their own)."""
    if missing_strategy is None or isinstance(missing_strategy, str):
        return check_strategy(missing_strategy, info)
    names = np.asarray([DEFAULT_IMPUTATION if v is None else str(v).strip().lower() for v in missing_strategy],
                       dtype=object)
    if names.shape != (n_rows,):
        raise InvalidInputError(f"missing_strategy: expected one strategy per flow ({n_rows}), got {names.size}",
                                field="missing_strategy")
    distinct = set(names.tolist()) - {DEFAULT_IMPUTATION}
    if not distinct:
        return None
    for name in distinct:
        check_strategy(name, info)
    return names


def build_inputs(module: Any, x: np.ndarray, strategy: Strategies) -> list[Any]:
    """InferInput objects for one request, from the protocol module (tritonclient.grpc/http or their aio)."""
    features = module.InferInput(contract.INPUT_FEATURES, list(x.shape), "FP32")
    features.set_data_from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    inputs = [features]
    if strategy is not None:
        imputation = module.InferInput(contract.INPUT_IMPUTATION, [x.shape[0], 1], "BYTES")
        if isinstance(strategy, str):
            values = np.full((x.shape[0], 1), strategy.encode(), dtype=object)
        else:
            values = np.asarray([s.encode() for s in strategy], dtype=object).reshape(-1, 1)
        imputation.set_data_from_numpy(values)
        inputs.append(imputation)
    return inputs


def strategy_slice(strategy: Strategies, sl: slice) -> Strategies:
    """The strategies of one request's rows."""
    return strategy if strategy is None or isinstance(strategy, str) else strategy[sl]


def build_outputs(module: Any, info: ModelInfo) -> list[Any]:
    return [module.InferRequestedOutput(name) for name in info.outputs]


def result_arrays(result: Any, info: ModelInfo) -> dict[str, np.ndarray]:
    return {name: result.as_numpy(name) for name in info.outputs}


def chunk_slices(n: int, batch_size: int, info: ModelInfo) -> list[slice]:
    """Request-sized slices; never larger than the model's max_batch_size."""
    if batch_size < 1:
        raise InvalidInputError(f"batch_size={batch_size}: must be >= 1", field="batch_size")
    size = min(batch_size, info.max_batch_size) if info.max_batch_size > 0 else batch_size
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def concat_outputs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}


def frame_from_parts(parts: Sequence[Mapping[str, np.ndarray]], info: ModelInfo, index: pd.Index) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame({c: [] for c in result_columns(info)}, index=index)
    return outputs_to_frame(concat_outputs(parts), info, index)


def as_single_flow(features: Any) -> Mapping[str, Any]:
    """predict() takes one flow: a mapping (or a pandas Series) of feature name to value."""
    if isinstance(features, pd.Series):
        return features.to_dict()
    if not isinstance(features, Mapping):
        raise InvalidInputError(
            f"features: expected a mapping of feature name to value, got {type(features).__name__}; "
            "use predict_batch() for tables and arrays", field="features")
    return features
