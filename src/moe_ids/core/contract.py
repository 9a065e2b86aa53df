"""Names shared by the exporter, the model repository, the server launcher and the client.

One place for Triton model names, tensor names, label sets and default ports, so the ONNX graph, every
``config.pbtxt`` and the SDK cannot drift apart.
"""

from __future__ import annotations

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
# Triton dtype of each output (inputs are all TYPE_FP32)
OUTPUT_DTYPES: dict[str, str] = {name: "TYPE_FP32" for name in ONNX_OUTPUTS} | {
    PREDICTED_CLASS: "TYPE_INT64", OUT_OF_DISTRIBUTION: "TYPE_BOOL"}

INPUT_WIDTHS: dict[str, int] = {
    INPUT_FEATURES: N_FEATURES,
    TABULAR: len(TABULAR_INDICES),
    TEMPORAL: len(TEMPORAL_INDICES),
    MISSING_MASK: N_FEATURES,
}
OUTPUT_WIDTHS: dict[str, int] = {
    PROBABILITIES: len(BINARY_LABELS),
    GATING: len(EXPERT_LABELS),
    FAMILY_PROBABILITIES: len(FAMILIES),
    PREDICTED_CLASS: 1,
    CONFIDENCE: 1,
    TRUST: 1,
    OUT_OF_DISTRIBUTION: 1,
}
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
STATS_FILE = "preprocessing.json"  # the preprocessing statistics, in the artifact directory and beside the model
