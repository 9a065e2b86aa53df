"""``moe_ids`` in the one-hop cpu layout: validation, imputation, scaling and ONNX Runtime in one Python model.

On a CPU-only server the ensemble chains two Python-backend models, and every execution of each pays the
Python backend's fixed hop (about 250-300 us: shared-memory tensors, the stub's IPC). This model does both
steps in one execution with the same code and numbers (``preprocess.read_request``, ``Preprocessor``,
``classifier.OnnxSessions``): every request's rows are validated on their own (a bad request gets its own
error, the others are scored), concatenated, preprocessed and run once, and the outputs are split back. It
publishes the input and output metrics of both steps. The GPU targets keep the ensemble, because their
classifier is a native backend behind the Python preprocess step.
"""

from __future__ import annotations

from moe_ids.core.contract import (
    GATING,
    ONNX_OUTPUTS,
    OUT_OF_DISTRIBUTION,
    PROBABILITIES,
)
from moe_ids.triton.backends.batching import answer, model_parameters
from moe_ids.triton.backends.classifier import OnnxSessions
from moe_ids.triton.backends.monitoring import Monitor, load_drift_reference
from moe_ids.triton.backends.preprocess import load_preprocessing, read_batch


class TritonPythonModel:
    """Triton entry point (the model.py shim imports this class)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        params, version_dir = model_parameters(args)
        stats, self.preprocessor, self.default_code = load_preprocessing(params, version_dir)
        self.sessions = OnnxSessions.from_parameters(params, version_dir)
        self.monitor = Monitor.from_triton_args(args, pb_utils, inputs=True, outputs=True, stats=stats,
                                                reference=load_drift_reference(version_dir))

    def execute(self, requests: list) -> list:
        pb = self.pb
        responses, good, features, row_codes, sizes = read_batch(pb, requests, self.default_code)
        if not good:
            return responses
        try:
            tabular, temporal, mask = self.preprocessor.transform(features, row_codes)
            outputs = self.sessions.run(tabular, temporal, mask)
        except Exception as exc:  # noqa: BLE001 - reported to every caller of the batch, the server stays up
            for i in good:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"moe_ids failed: {exc}"))
            return responses
        self.monitor.observe_inputs(features, row_codes)
        self.monitor.observe_outputs(outputs[PROBABILITIES], outputs[GATING], tabular, outputs[OUT_OF_DISTRIBUTION])
        return answer(pb, responses, good, {name: outputs[name] for name in ONNX_OUTPUTS}, sizes)

    def finalize(self) -> None:
        self.monitor.close()
