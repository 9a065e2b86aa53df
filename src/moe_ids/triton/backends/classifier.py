"""``moe_ids_model`` on CPU: the exported ONNX graph run by ONNX Runtime inside a Triton Python-backend model.

The Triton build available without containers has no onnxruntime backend, so the classifier step hosts an
``onnxruntime.InferenceSession`` (``moe_ids.core.onnx_runtime.make_session``: no thread spinning) and runs it once
per execution over the rows of every request the dynamic batcher grouped. On GPU targets Triton's native
onnxruntime or TensorRT backend takes this model's place with the same tensor names.
"""

from __future__ import annotations

import time

import numpy as np

from moe_ids.core.artifacts import ONNX_FP32
from moe_ids.core.contract import (
    ADMITTED_NS,
    CLASSIFIER_MODEL,
    GATING,
    INPUT_WIDTHS,
    MISSING_MASK,
    ONNX_INPUTS,
    ONNX_OUTPUTS,
    OUT_OF_DISTRIBUTION,
    PARAM_ADMITTED_TIMEOUT,
    PARAM_ONNX_FILE,
    PARAM_SMALL_ROWS,
    PARAM_THREADS,
    PROBABILITIES,
    QUEUE_TIMEOUT_TEXT,
    TABULAR,
    TEMPORAL,
)
from moe_ids.core.onnx_runtime import make_session, run_onnx
from moe_ids.triton.backends.batching import (
    answer,
    concat,
    gather,
    inputs_by_name,
    invalid_argument,
    model_parameters,
    unavailable,
)
from moe_ids.triton.backends.monitoring import Monitor


class Overdue(Exception):
    """A flow waited past its budget after admission; refused as overload, like Triton's own queue deadline."""


def overdue_message(waited_ns: int, budget_ns: int) -> str:
    """Worded like Triton's queue-policy refusal ("Request timeout expired"), which clients already treat as
    overload to back off from, plus how long the flow waited."""
    return (f"{CLASSIFIER_MODEL}: {QUEUE_TIMEOUT_TEXT}: waited {waited_ns / 1e6:.0f} ms for the classifier after "
            f"admission (budget {budget_ns / 1e6:.0f} ms); the server is overloaded, retry later")


def check_admission(stamp: np.ndarray, now_ns: int, budget_ns: int) -> None:
    """Raise Overdue when the oldest flow of a request was admitted more than ``budget_ns`` before ``now_ns``."""
    if stamp.dtype != np.int64 or stamp.ndim != 2 or stamp.shape[1] != 1 or stamp.shape[0] == 0:
        raise ValueError(f"{ADMITTED_NS}: expected INT64 [batch, 1], got {stamp.dtype} {list(stamp.shape)}")
    waited = now_ns - int(stamp.min())
    if waited > budget_ns:
        raise Overdue(overdue_message(waited, budget_ns))


def check_input(name: str, array: np.ndarray) -> np.ndarray:
    """The array as float32 [n, width]; ValueError naming the tensor and the problem otherwise."""
    width = INPUT_WIDTHS[name]
    if array.dtype != np.float32:
        raise ValueError(f"{name}: expected FP32, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name}: expected shape [batch, {width}], got {list(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name}: empty batch (0 flows)")
    return array


class OnnxSessions:
    """The exported graph on ONNX Runtime, with a one-thread session for small executions.

    Waking a second ONNX Runtime thread costs more than it saves on a handful of rows (measured: 8 rows take
    56 us of CPU on one thread, 88 us on two), so executions below ``small_rows`` run on one thread.
    """

    def __init__(self, path, threads: int, small_rows: int) -> None:
        self.session = make_session(path, threads=threads)
        self.small_rows = small_rows
        self.small_session = make_session(path, threads=1) if threads > 1 and small_rows > 0 else self.session

    @classmethod
    def from_parameters(cls, params: dict[str, str], version_dir) -> OnnxSessions:
        return cls(version_dir / params.get(PARAM_ONNX_FILE, ONNX_FP32), int(params.get(PARAM_THREADS, "1")),
                   int(params.get(PARAM_SMALL_ROWS, "0")))

    def run(self, tabular: np.ndarray, temporal: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        session = self.small_session if tabular.shape[0] < self.small_rows else self.session
        return run_onnx(session, tabular, temporal, mask)


class TritonPythonModel:
    """Triton entry point (the model.py shim imports this class)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        params, version_dir = model_parameters(args)
        self.sessions = OnnxSessions.from_parameters(params, version_dir)
        self.monitor = Monitor.from_triton_args(args, pb_utils, outputs=True)  # attack rate, gating histogram
        self.admitted_budget_ns = int(params.get(PARAM_ADMITTED_TIMEOUT, "0")) * 1000

    def _read(self, request, now_ns: int) -> tuple[np.ndarray, ...]:
        arrays = []
        tensors = inputs_by_name(request)
        stamp = tensors.get(ADMITTED_NS)
        if stamp is not None and self.admitted_budget_ns > 0:
            check_admission(stamp.as_numpy(), now_ns, self.admitted_budget_ns)
        for name in ONNX_INPUTS:
            tensor = tensors.get(name)
            if tensor is None:
                raise ValueError(f"{name}: missing input")
            arrays.append(check_input(name, tensor.as_numpy()))
        if len({a.shape[0] for a in arrays}) != 1:
            raise ValueError(f"{', '.join(ONNX_INPUTS)}: batch sizes differ {[a.shape[0] for a in arrays]}")
        return tuple(arrays)

    def execute(self, requests: list) -> list:
        pb = self.pb
        now = time.monotonic_ns()
        responses, good, rows = gather(pb, requests, lambda request: self._read(request, now),
                                       {ValueError: invalid_argument, Overdue: unavailable})
        if not good:
            return responses
        tabular, temporal, mask = (concat([r[k] for r in rows]) for k in range(3))
        try:
            outputs = self.sessions.run(tabular, temporal, mask)
        except Exception as exc:  # noqa: BLE001 - any runtime failure is reported to every caller of the batch
            for i in good:
                responses[i] = pb.InferenceResponse(error=pb.TritonError(f"{TABULAR}/{TEMPORAL}/{MISSING_MASK}: "
                                                                         f"ONNX Runtime failed: {exc}"))
            return responses
        self.monitor.observe_outputs(outputs[PROBABILITIES], outputs[GATING], tabular,
                                     outputs[OUT_OF_DISTRIBUTION])
        return answer(pb, responses, good, {name: outputs[name] for name in ONNX_OUTPUTS},
                      [r[0].shape[0] for r in rows])

    def finalize(self) -> None:
        self.monitor.close()
