"""``moe_ids_preprocess``: Triton Python-backend model that imputes, scales and splits raw flow features.

It calls ``moe_ids.core.preprocessing.Preprocessor`` — the code training used — once per execution over the rows of
all requests Triton batched together, each row carrying its own imputation strategy. The strategy comes from
the optional ``IMPUTATION`` input ([batch, 1] BYTES, one value per flow; Triton requires its batch size to
equal FEATURES'), else from the request parameter ``imputation`` (one strategy for the whole request), else
from the model's ``default_imputation`` config parameter. Triton 2.51 ensembles pass both the optional input
and request parameters through to this step (checked by the integration tests).

A bad request gets an error response naming the field and the problem; the other requests of the execution
are still answered.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from moe_ids.core.contract import (
    ADMITTED_NS,
    DEFAULT_IMPUTATION_NAME,
    IMPUTATION_PARAMETER,
    INPUT_FEATURES,
    INPUT_IMPUTATION,
    MISSING_MASK,
    PARAM_DEFAULT_STRATEGY,
    PARAM_STAMP_ADMISSION,
    PARAM_STATS_FILE,
    STATS_FILE,
    TABULAR,
    TEMPORAL,
)
from moe_ids.core.preprocessing import (
    PreprocessingError,
    PreprocessingStats,
    Preprocessor,
    strategy_code,
    validate_features,
)
from moe_ids.triton.backends.batching import (
    answer,
    concat,
    gather,
    inputs_by_name,
    invalid_argument,
    model_parameters,
)
from moe_ids.triton.backends.monitoring import Monitor, load_drift_reference

PARAMETER_IMPUTATION = IMPUTATION_PARAMETER


DEFAULT_NAMES = frozenset({"", DEFAULT_IMPUTATION_NAME, b"", DEFAULT_IMPUTATION_NAME.encode()})


def _code(value: Any, default_code: int) -> int:
    """Code of one strategy name; empty or "default" means the model's default, not the library's."""
    if isinstance(value, (str, bytes)) and value.strip().lower() in DEFAULT_NAMES:
        return default_code
    return strategy_code(value)


def request_codes(imputation: np.ndarray | None, parameter: Any, n_rows: int, default_code: int) -> int | np.ndarray:
    """Imputation code(s) of one request: a scalar when uniform, else one code per row."""
    if imputation is None:
        if parameter is None:
            return default_code
        try:
            return _code(str(parameter), default_code)
        except PreprocessingError as exc:
            raise PreprocessingError(f"request parameter '{PARAMETER_IMPUTATION}': {exc}") from None
    values = np.asarray(imputation)
    if values.ndim != 2 or values.shape[1] != 1:
        raise PreprocessingError(f"{INPUT_IMPUTATION}: expected shape [batch, 1], got {list(values.shape)}")
    flat = values.reshape(-1)
    if flat.shape[0] not in (1, n_rows):
        raise PreprocessingError(
            f"{INPUT_IMPUTATION}: expected 1 or {n_rows} strategies (one per flow), got {flat.shape[0]}")
    distinct = set(flat.tolist())
    if len(distinct) == 1:
        return _code(next(iter(distinct)), default_code)
    lookup = {value: _code(value, default_code) for value in distinct}
    return np.fromiter((lookup[v] for v in flat.tolist()), dtype=np.int64, count=flat.shape[0])


def batch_codes(codes: list[int | np.ndarray], sizes: list[int]) -> int | np.ndarray:
    """Per-request codes as one scalar (all equal scalars) or one per-row array for the whole batch."""
    if all(np.ndim(c) == 0 for c in codes) and len(set(int(c) for c in codes)) == 1:
        return int(codes[0])
    return np.concatenate([np.full(n, c, dtype=np.int64) if np.ndim(c) == 0 else c
                           for c, n in zip(codes, sizes, strict=True)])


def request_parameter(request, key: str) -> Any:
    """A request parameter's value, or None when absent (or the parameters are not JSON)."""
    try:
        text = request.parameters()
        if not text or text == "{}":
            return None
        params = json.loads(text)
    except (AttributeError, ValueError):
        return None
    return params.get(key)


def read_request(request, default_code: int) -> tuple[np.ndarray, int | np.ndarray]:
    """One request's validated FEATURES and imputation code(s); PreprocessingError naming the problem."""
    tensors = inputs_by_name(request)
    tensor = tensors.get(INPUT_FEATURES)
    if tensor is None:
        raise PreprocessingError(f"{INPUT_FEATURES}: missing input")
    x = validate_features(tensor.as_numpy())
    imputation = tensors.get(INPUT_IMPUTATION)
    values = None if imputation is None else imputation.as_numpy()
    codes = request_codes(values, request_parameter(request, PARAMETER_IMPUTATION), x.shape[0], default_code)
    return x, codes


def load_preprocessing(params: dict[str, str], version_dir: Path) -> tuple[PreprocessingStats, Preprocessor, int]:
    """The statistics file the config names, its Preprocessor and the default imputation code (the config's
    ``default_imputation``, else the statistics' own): what every model that preprocesses starts from."""
    stats = PreprocessingStats.from_json(version_dir / params.get(PARAM_STATS_FILE, STATS_FILE))
    return stats, Preprocessor(stats), strategy_code(params.get(PARAM_DEFAULT_STRATEGY) or stats.default_strategy)


def read_batch(pb_utils, requests: list, default_code: int) -> tuple[list, list[int], np.ndarray, Any, list[int]]:
    """Every request read on its own (a bad one gets its error response): (responses, good request indices,
    their FEATURES concatenated, the imputation code(s) of those rows, rows per good request)."""
    responses, good, read = gather(pb_utils, requests, lambda request: read_request(request, default_code),
                                   {PreprocessingError: invalid_argument})
    if not good:
        return responses, good, np.empty((0, 0), dtype=np.float32), default_code, []
    sizes = [x.shape[0] for x, _ in read]
    return responses, good, concat([x for x, _ in read]), batch_codes([c for _, c in read], sizes), sizes


class TritonPythonModel:
    """Triton entry point (the model.py shim imports this class)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        params, version_dir = model_parameters(args)
        stats, self.preprocessor, self.default_code = load_preprocessing(params, version_dir)
        self.stamp_admission = params.get(PARAM_STAMP_ADMISSION, "").lower() == "true"
        # missing/imputed/out-of-range counts and PSI drift, published at Triton's /metrics
        self.monitor = Monitor.from_triton_args(args, pb_utils, inputs=True, stats=stats,
                                                reference=load_drift_reference(version_dir))

    def execute(self, requests: list) -> list:
        pb = self.pb
        responses, good, features, row_codes, sizes = read_batch(pb, requests, self.default_code)
        if not good:
            return responses
        try:
            tabular, temporal, mask = self.preprocessor.transform(features, row_codes)
        except PreprocessingError as exc:  # defensive: inputs were validated per request above
            for i in good:
                responses[i] = invalid_argument(pb, str(exc))
            return responses
        self.monitor.observe_inputs(features, row_codes)
        outputs = {TABULAR: tabular, TEMPORAL: temporal, MISSING_MASK: mask}
        if self.stamp_admission:
            outputs[ADMITTED_NS] = np.full((features.shape[0], 1), time.monotonic_ns(), dtype=np.int64)
        return answer(pb, responses, good, outputs, sizes)

    def finalize(self) -> None:
        self.monitor.close()
