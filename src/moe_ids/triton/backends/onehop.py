"""``moe_ids`` in the one-hop cpu layout: validation, imputation, scaling and ONNX Runtime in one Python model.

On a CPU-only server the ensemble chains two Python-backend models, and every execution of each pays the
Python backend's fixed hop (about 250-300 us: shared-memory tensors, the stub's IPC). This model does both
steps with the same code and numbers (``preprocess.read_request``, ``Preprocessor``,
``classifier.OnnxSessions``) and publishes the input and output metrics of both. The GPU targets keep the
ensemble, because their classifier is a native backend behind the Python preprocess step.

It also does its own admission (``admission.AdmissionQueue``): ``execute`` validates each request on its own
(a bad one gets its error at once), asks the queue to admit it (an overloaded server refuses it at once, as
"request timeout expired", before any work) and returns without waiting; a scoring thread takes the queued
requests in runs of up to ``max_run_flows`` flows, preprocesses and scores each run once and answers every
request through its response sender. Triton allows that for a non-decoupled model as long as each request
gets exactly one final response, which this class guarantees on every path, shutdown included.

One shortcut: an execution of at most ``INLINE_FLOWS`` flows that finds the queue idle is scored inside
``execute``, on the stub's own thread. Single flows at moderate rates then pay no thread hand-off; the
admission test still applies, and Triton's queue can hold at most one such small execution's worth of
waiting requests before the next execution is large enough to go through the queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from moe_ids.core.contract import (
    BULK_TIMEOUT_US,
    ENSEMBLE_MODEL,
    GATING,
    N_FEATURES,
    ONNX_OUTPUTS,
    OUT_OF_DISTRIBUTION,
    PARAM_ADMISSION_HEADROOM,
    PARAM_BULK_TIMEOUT,
    PARAM_MAX_RUN_FLOWS,
    PARAM_REALTIME_TIMEOUT,
    PRIORITY_PARAMETER,
    PROBABILITIES,
    REALTIME_TIMEOUT_US,
)
from moe_ids.core.preprocessing import PreprocessingError
from moe_ids.triton.backends.admission import (
    DEFAULT_HEADROOM,
    DEFAULT_MAX_RUN_FLOWS,
    SHUTDOWN_TEXT,
    AdmissionQueue,
    Pending,
    refusal_message,
    request_budget_ns,
)
from moe_ids.triton.backends.batching import (
    concat,
    invalid_argument,
    model_parameters,
    row_offsets,
    split,
    unavailable,
)
from moe_ids.triton.backends.classifier import OnnxSessions
from moe_ids.triton.backends.monitoring import Monitor, load_drift_reference
from moe_ids.triton.backends.preprocess import batch_codes, load_preprocessing, read_request, request_parameter

log = logging.getLogger(__name__)

INLINE_FLOWS = 64  # executions up to this size, on an idle queue, are scored inside execute
CALIBRATION_ROWS = 1024
CALIBRATION_REPEATS = 5


def calibrate(score, rows: int = CALIBRATION_ROWS, repeats: int = CALIBRATION_REPEATS) -> tuple[float, float]:
    """(overhead, per-flow) nanoseconds of ``score(features)`` from the fastest of a few runs of 1 and ``rows``
    all-missing flows: the queue's first cost model, before any real run has been measured."""
    def fastest(n: int) -> float:
        x = np.full((n, N_FEATURES), np.nan, dtype=np.float32)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            score(x)
            best = min(best, time.perf_counter_ns() - t0)
        return best

    one, many = fastest(1), fastest(rows)
    return one, max((many - one) / (rows - 1), 1.0)


class TritonPythonModel:
    """Triton entry point (the model.py shim imports this class)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        params, version_dir = model_parameters(args)
        stats, self.preprocessor, self.default_code = load_preprocessing(params, version_dir)
        self.sessions = OnnxSessions.from_parameters(params, version_dir)
        self.monitor = Monitor.from_triton_args(args, pb_utils, inputs=True, outputs=True, admission=True,
                                                stats=stats, reference=load_drift_reference(version_dir))
        overhead, per_flow = calibrate(lambda x: self._score(x, self.default_code))
        self.budgets_us = (int(params.get(PARAM_REALTIME_TIMEOUT, REALTIME_TIMEOUT_US)),
                           int(params.get(PARAM_BULK_TIMEOUT, BULK_TIMEOUT_US)))
        self.queue = AdmissionQueue(
            per_flow_ns=per_flow, overhead_ns=overhead,
            headroom=float(params.get(PARAM_ADMISSION_HEADROOM, DEFAULT_HEADROOM)),
            max_run_flows=int(params.get(PARAM_MAX_RUN_FLOWS, DEFAULT_MAX_RUN_FLOWS)))
        self.worker = threading.Thread(target=self._serve, name="moe-ids-scorer", daemon=True)
        self.worker.start()

    def _score(self, features: np.ndarray, codes) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The model's outputs for raw features, and the scaled tabular block the output metrics read."""
        tabular, temporal, mask = self.preprocessor.transform(features, codes)
        return self.sessions.run(tabular, temporal, mask), tabular

    def _send(self, sender, response) -> None:
        try:
            sender.send(response, flags=self.final)
        except Exception as exc:  # noqa: BLE001 - a caller that went away must not stop the scoring thread
            log.warning("%s: could not send a response: %s", ENSEMBLE_MODEL, exc)

    def execute(self, requests: list) -> list | None:
        pb = self.pb
        now = time.monotonic_ns()
        errors: dict[int, object] = {}
        read: list[tuple[int, np.ndarray, object, int]] = []  # (index, features, codes, budget)
        for i, request in enumerate(requests):
            try:
                features, codes = read_request(request, self.default_code)
                budget = request_budget_ns(request.timeout(), request_parameter(request, PRIORITY_PARAMETER),
                                           *self.budgets_us)
            except PreprocessingError as exc:
                errors[i] = invalid_argument(pb, str(exc))
                continue
            read.append((i, features, codes, budget))
        if sum(r[1].shape[0] for r in read) <= INLINE_FLOWS and self.queue.idle():
            return self._answer_inline(len(requests), errors, read, now)
        # Decide every request first: an execution with nothing admitted (a flood being refused) is answered by
        # return value, one message for all of it, instead of a round trip per refusal.
        refusals: dict[int, object] = {}
        admitted: list[tuple[int, np.ndarray, object, int]] = []
        for i, features, codes, budget in read:
            refusal = self.queue.would_refuse(features.shape[0], budget, now)
            if refusal is None:
                admitted.append((i, features, codes, budget))
            else:
                refusals[i] = unavailable(pb, refusal)
        if refusals:
            self.monitor.observe_admission(refused_on_arrival=len(refusals))
        if not admitted:
            return [errors[i] if i in errors else refusals[i] for i in range(len(requests))]
        senders = [request.get_response_sender() for request in requests]
        for i, response in (*errors.items(), *refusals.items()):
            self._send(senders[i], response)
        for i, features, codes, budget in admitted:
            refusal = self.queue.offer((requests[i], senders[i], features, codes), features.shape[0], budget, now)
            if refusal is not None:  # the queue filled since the check above
                self.monitor.observe_admission(refused_on_arrival=1)
                self._send(senders[i], unavailable(pb, refusal))
        return None

    def _answer_inline(self, n: int, errors: dict, read: list, now: int) -> list:
        """Score a small execution now, on this thread, and answer it by return value: one message to the
        server for all of its responses, where a response sender costs a round trip per response (measured:
        single-flow throughput 0.80 of the bare model through senders, 1.06 by return value)."""
        responses: list = [errors.get(i) for i in range(n)]
        flows = sum(r[1].shape[0] for r in read)
        admitted = []
        for i, features, codes, budget in read:
            refusal = self.queue.would_refuse(flows, budget, now)  # the same test, on an idle queue
            if refusal is None:
                admitted.append((i, features, codes))
            else:
                self.monitor.observe_admission(refused_on_arrival=1)
                responses[i] = unavailable(self.pb, refusal)
        if admitted:
            def keep(k: int, response) -> None:
                responses[admitted[k][0]] = response

            self._score_requests([a[1] for a in admitted], [a[2] for a in admitted], keep)
        return responses

    def _serve(self) -> None:
        while True:
            taken = self.queue.take()
            if taken is None:
                return
            batch, late = taken
            now = time.monotonic_ns()
            for pending in late:
                self._send(pending.item[1], unavailable(self.pb, refusal_message(now - pending.arrival_ns,
                                                                                 pending.budget_ns, on_arrival=False)))
            self.monitor.observe_admission(
                refused_in_queue=len(late), queued_flows=self.queue.queued()[1],
                waits_ns=np.fromiter((now - p.arrival_ns for p in batch), dtype=np.int64, count=len(batch)))
            if batch:
                started = time.monotonic_ns()
                scoring_ns = self._run(batch)
                self.queue.finished(sum(p.flows for p in batch), len(batch), scoring_ns,
                                    time.monotonic_ns() - started - scoring_ns)

    def _score_requests(self, features: list[np.ndarray], codes: list, deliver: Callable[[int, Any], None]) -> int:
        """Score the requests in one run and hand each its response (its rows, or the run's error) to
        ``deliver(k, response)``; the nanoseconds the scoring took, before delivery. Delivery happens here,
        while the output arrays are alive: sending a ``pb_utils.Tensor`` made from a numpy view after that
        view's array was freed crashed the stub (segmentation faults within seconds under load)."""
        pb = self.pb
        started = time.monotonic_ns()
        sizes = [f.shape[0] for f in features]
        x = concat(features)
        row_codes = batch_codes(codes, sizes)
        try:
            outputs, tabular = self._score(x, row_codes)
        except Exception as exc:  # noqa: BLE001 - reported to every caller of the run, the server stays up
            scored = time.monotonic_ns() - started
            for k in range(len(sizes)):
                deliver(k, pb.InferenceResponse(error=pb.TritonError(f"{ENSEMBLE_MODEL} failed: {exc}")))
            return scored
        scored = time.monotonic_ns() - started
        offsets = row_offsets(sizes)
        parts = {name: split(outputs[name], offsets) for name in ONNX_OUTPUTS}
        for k in range(len(sizes)):
            deliver(k, pb.InferenceResponse(
                output_tensors=[pb.Tensor(name, per_request[k]) for name, per_request in parts.items()]))
        self.monitor.observe_inputs(x, row_codes)
        self.monitor.observe_outputs(outputs[PROBABILITIES], outputs[GATING], tabular, outputs[OUT_OF_DISTRIBUTION])
        return scored

    def _run(self, batch: list[Pending]) -> int:
        """Score one run (every request gets exactly one final response); the scoring's nanoseconds."""
        return self._score_requests([p.item[2] for p in batch], [p.item[3] for p in batch],
                                    lambda k, response: self._send(batch[k].item[1], response))

    def finalize(self) -> None:
        for pending in self.queue.close():
            self._send(pending.item[1], unavailable(self.pb, SHUTDOWN_TEXT))
        self.worker.join(timeout=30)
        self.monitor.close()
