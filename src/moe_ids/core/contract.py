"""Names shared by the exporter, the model repository, the server launcher and the client.

One place for Triton model names, tensor names, label sets and default ports, so the ONNX graph, every
``config.pbtxt`` and the SDK cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from moe_ids.core.labels import BINARY_LABELS, FAMILIES
from moe_ids.core.schema import EXPERT_LABELS, N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES

# Triton models
ENSEMBLE_MODEL = "moe_ids"
PREPROCESS_MODEL = "moe_ids_preprocess"
CLASSIFIER_MODEL = "moe_ids_model"

# Ensemble / preprocess inputs
INPUT_FEATURES = "FEATURES"  # FP32 [batch, N_FEATURES], NaN = missing
INPUT_IMPUTATION = "IMPUTATION"  # optional BYTES [batch, 1]: zero | mean | median
DEFAULT_IMPUTATION_NAME = "default"  # an IMPUTATION value (like "") that means the model's default strategy
IMPUTATION_PARAMETER = "imputation"  # request-parameter alternative to the IMPUTATION tensor (KServe v2 JSON)

# Preprocess outputs == classifier (ONNX graph) inputs
TABULAR = "TABULAR"
TEMPORAL = "TEMPORAL"
MISSING_MASK = "MISSING_MASK"
# INT64 [batch, 1], cpu target only: CLOCK_MONOTONIC nanoseconds at which the preprocess step admitted the flow.
# The classifier step refuses a flow that then waited past its budget (see RepositoryOptions.admitted_timeout_us).
ADMITTED_NS = "ADMITTED_NS"

# Classifier (ONNX graph) outputs == ensemble outputs
PROBABILITIES = "PROBABILITIES"  # FP32 [batch, 2]: Normal, Attack
GATING = "GATING"  # FP32 [batch, 2]: tabular, temporal expert weight
FAMILY_PROBABILITIES = "FAMILY_PROBABILITIES"  # FP32 [batch, len(FAMILIES)]
PREDICTED_CLASS = "PREDICTED_CLASS"  # INT64 [batch, 1]: index into BINARY_LABELS
CONFIDENCE = "CONFIDENCE"  # FP32 [batch, 1]: probability of the predicted class
TRUST = "TRUST"  # FP32 [batch, 1] in [0, 1]: how familiar the flow is (p-value against held-out training flows)
OUT_OF_DISTRIBUTION = "OUT_OF_DISTRIBUTION"  # BOOL [batch, 1]: TRUST below the calibrated false-alarm rate

ONNX_INPUTS: tuple[str, ...] = (TABULAR, TEMPORAL, MISSING_MASK)
ONNX_OUTPUTS: tuple[str, ...] = (PROBABILITIES, GATING, FAMILY_PROBABILITIES, PREDICTED_CLASS, CONFIDENCE, TRUST,
                                 OUT_OF_DISTRIBUTION)


@dataclass(frozen=True)
class TensorSpec:
    """Triton dtype and width of a [batch, width] tensor: what every generated config declares and every Python
    backend reads back from its config at initialize."""

    dtype: str
    width: int


TENSORS: dict[str, TensorSpec] = {
    INPUT_FEATURES: TensorSpec("TYPE_FP32", N_FEATURES),
    INPUT_IMPUTATION: TensorSpec("TYPE_STRING", 1),
    TABULAR: TensorSpec("TYPE_FP32", len(TABULAR_INDICES)),
    TEMPORAL: TensorSpec("TYPE_FP32", len(TEMPORAL_INDICES)),
    MISSING_MASK: TensorSpec("TYPE_FP32", N_FEATURES),
    ADMITTED_NS: TensorSpec("TYPE_INT64", 1),
    PROBABILITIES: TensorSpec("TYPE_FP32", len(BINARY_LABELS)),
    GATING: TensorSpec("TYPE_FP32", len(EXPERT_LABELS)),
    FAMILY_PROBABILITIES: TensorSpec("TYPE_FP32", len(FAMILIES)),
    PREDICTED_CLASS: TensorSpec("TYPE_INT64", 1),
    CONFIDENCE: TensorSpec("TYPE_FP32", 1),
    TRUST: TensorSpec("TYPE_FP32", 1),
    OUT_OF_DISTRIBUTION: TensorSpec("TYPE_BOOL", 1),
}
# views of the table for the places that need one column of it
OUTPUT_DTYPES: dict[str, str] = {name: TENSORS[name].dtype for name in ONNX_OUTPUTS}
INPUT_WIDTHS: dict[str, int] = {name: TENSORS[name].width for name in (INPUT_FEATURES, *ONNX_INPUTS)}
OUTPUT_WIDTHS: dict[str, int] = {name: TENSORS[name].width for name in ONNX_OUTPUTS}
OUTPUT_LABELS: dict[str, tuple[str, ...]] = {
    PROBABILITIES: BINARY_LABELS,
    GATING: EXPERT_LABELS,
    FAMILY_PROBABILITIES: FAMILIES,
}

# Lower-cased words of Triton's queue-policy refusals (a full queue; a queueing deadline passed). The classifier's
# own refusal after admission reuses the second, so clients, load tests and probes treat all of them as overload.
QUEUE_FULL_TEXT = "exceeds maximum queue size"
QUEUE_TIMEOUT_TEXT = "request timeout expired"
OVERLOAD_TEXTS: tuple[str, ...] = (QUEUE_FULL_TEXT, QUEUE_TIMEOUT_TEXT)

# Request priorities (Triton: 1 is the highest). Real-time single flows outrank bulk scoring.
PRIORITY_REALTIME = 1
PRIORITY_BULK = 2
# Queueing budgets (microseconds) of the two levels: the defaults of the repository's queue policies and of the
# one-hop model's own admission. A request's Triton `timeout` overrides its level's budget in both.
REALTIME_TIMEOUT_US = 1_000_000
BULK_TIMEOUT_US = 5_000_000
# A Python-backend model cannot read a request's Triton priority, so the SDK also sends the level as this request
# parameter; the one-hop model reads it (the ensemble's steps ignore it, Triton's own priority drives them).
PRIORITY_PARAMETER = "moe_ids_priority"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002

# Parameter keys of the generated configs that the Python backends read at initialize: written by the generator
# (moe_ids.triton.repository), read by the backends, defined here so neither imports the other.
PARAM_THREADS = "onnx_intra_op_threads"
PARAM_SMALL_ROWS = "onnx_single_thread_below_rows"
PARAM_ONNX_FILE = "onnx_file"
PARAM_STATS_FILE = "preprocessing_file"
PARAM_DEFAULT_STRATEGY = "default_imputation"
PARAM_STAMP_ADMISSION = "stamp_admission"
PARAM_ADMITTED_TIMEOUT = "admitted_timeout_us"
PARAM_REALTIME_TIMEOUT = "realtime_timeout_us"  # one-hop admission: budget of a real-time request
PARAM_BULK_TIMEOUT = "bulk_timeout_us"  # one-hop admission: budget of a bulk request (or one naming no level)
PARAM_ADMISSION_HEADROOM = "admission_headroom"  # one-hop admission: share of a budget the queue may promise
PARAM_MAX_RUN_FLOWS = "max_run_flows"  # one-hop admission: flows per model run
STATS_FILE = "preprocessing.json"  # the preprocessing statistics, in the artifact directory and beside the model
