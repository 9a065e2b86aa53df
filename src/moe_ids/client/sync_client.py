"""``MoEClient``: the blocking client for scripts, notebooks and the ``moe-ids score`` command."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pandas as pd

from moe_ids.core import contract

from . import protocol as proto
from .base import ClientBase
from .errors import MoEClientError
from .model_info import ModelInfo
from .results import Prediction
from .retry import call_with_retry


class MoEClient(ClientBase):
    """Client of the ``moe_ids`` ensemble on a Triton server, over gRPC (default) or HTTP.

    The feature order, outputs and label sets are read from the server on first use (``model_info``), so
    the client follows whatever model is deployed. Transient failures (server unreachable, queue full,
    timeout) are retried ``retries`` times with exponential backoff and jitter; bad input never is.
    """

    def _connect(self) -> None:
        self._info_lock = threading.Lock()
        if self.protocol == "grpc":
            import tritonclient.grpc as module

            self._module = module
            self._client = module.InferenceServerClient(self.url, verbose=self._verbose)
        else:
            import tritonclient.http as module

            self._module = module
            self._client = module.InferenceServerClient(
                self.url, verbose=self._verbose, concurrency=self.concurrency,
                connection_timeout=self.timeout, network_timeout=self.timeout)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MoEClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- health ------------------------------------------------------------------------------------------
    def is_live(self) -> bool:
        """True when the server answers its liveness probe; never raises."""
        try:
            return bool(self._client.is_server_live(**self._timeout_kw()))
        except Exception:  # noqa: BLE001 - a probe answers yes or no
            return False

    def is_ready(self) -> bool:
        """True when the server and this client's model are ready to infer; never raises."""
        try:
            return bool(self._client.is_server_ready(**self._timeout_kw())) and bool(
                self._client.is_model_ready(self.model_name, **self._timeout_kw()))
        except Exception:  # noqa: BLE001
            return False

    def health(self) -> dict[str, Any]:
        """Liveness, readiness and the deployed model's version, for status pages and start-up checks."""
        report = self._health_report(self.is_live())
        if report["live"]:
            report["ready"] = self.is_ready()
            try:
                report["model_version"] = self.refresh_model_info().version
            except MoEClientError as exc:
                report["error"] = str(exc)
        return report

    # -- model description -------------------------------------------------------------------------------
    @property
    def model_info(self) -> ModelInfo:
        """The deployed model's features, outputs and labels (fetched once, on first use)."""
        if self._info is None:
            with self._info_lock:
                if self._info is None:
                    self._info = self._fetch_info()
        return self._info

    def refresh_model_info(self) -> ModelInfo:
        """Re-read the model description, e.g. after the server loaded a new model version."""
        info = self._fetch_info()
        self._info = info
        return info

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model_info.feature_names

    def _fetch_info(self) -> ModelInfo:
        def fetch() -> ModelInfo:
            return self._info_from_config(self._client.get_model_config(self.model_name, **self._config_kw()))

        return call_with_retry(fetch, self.retry_policy, self._translate)

    # -- inference ---------------------------------------------------------------------------------------
    def _infer(self, x: np.ndarray, strategy: proto.Strategies, priority: int) -> dict[str, np.ndarray]:
        info = self.model_info
        result = self._client.infer(
            self.model_name, proto.build_inputs(self._module, x, strategy),
            outputs=proto.build_outputs(self._module, info), priority=priority,
            parameters=proto.priority_parameters(priority), **self._timeout_kw())
        return proto.result_arrays(result, info)

    def _infer_retrying(self, x: np.ndarray, strategy: proto.Strategies, priority: int,
                        first_attempt: int = 0) -> dict[str, np.ndarray]:
        return call_with_retry(lambda: self._infer(x, strategy, priority), self.retry_policy, self._translate,
                               first_attempt=first_attempt)

    def _submit(self, x: np.ndarray, strategy: proto.Strategies, priority: int) -> Callable[[], dict[str, np.ndarray]]:
        """Start one request without waiting; returns a function that waits for its outputs."""
        info = self.model_info
        inputs = proto.build_inputs(self._module, x, strategy)
        outputs = proto.build_outputs(self._module, info)
        if self.protocol == "grpc":
            future: Future = Future()

            def done(result: Any, error: Any) -> None:
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(result)

            self._client.async_infer(self.model_name, inputs, callback=done, outputs=outputs, priority=priority,
                                     parameters=proto.priority_parameters(priority), client_timeout=self.timeout)
            return lambda: proto.result_arrays(future.result(), info)
        request = self._client.async_infer(self.model_name, inputs, outputs=outputs, priority=priority,
                                           parameters=proto.priority_parameters(priority))
        return lambda: proto.result_arrays(request.get_result(), info)

    def predict(self, features: Mapping[str, Any], missing_strategy: str | None = None,
                unknown: str | None = None, extractor: str | None = None) -> Prediction:
        """Score one flow at real-time priority; features in any supported naming, absent ones are missing."""
        info = self.model_info
        x, index, strategy = self._single(features, info, missing_strategy, unknown, extractor)
        return self._prediction(self._infer_retrying(x, strategy, contract.PRIORITY_REALTIME), info, index)

    def predict_batch(
        self,
        flows: pd.DataFrame | list[Mapping[str, Any]] | np.ndarray,
        batch_size: int = 1024,
        missing_strategy: str | Sequence[str | None] | None = None,
        concurrency: int | None = None,
        priority: int | str = contract.PRIORITY_BULK,
        unknown: str | None = None,
        extractor: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> pd.DataFrame:
        """Score many flows; one result row per input row, same order and index as the input.

        Requests of ``batch_size`` flows are kept ``concurrency`` deep in flight; a request that fails
        transiently is retried on its own, so results are complete and in order or an error is raised.
        ``progress`` is called with the number of flows finished after each request.
        """
        info = self.model_info
        plan = self._plan(flows, info, batch_size, missing_strategy, priority, unknown, extractor)
        depth = max(1, int(concurrency or self.concurrency))
        slices = plan.slices
        parts: list[dict[str, np.ndarray]] = [{} for _ in slices]
        pending: deque[tuple[int, Callable[[], dict[str, np.ndarray]]]] = deque()

        def finish(i: int, wait: Callable[[], dict[str, np.ndarray]]) -> None:
            try:
                parts[i] = wait()
            except Exception as exc:  # noqa: BLE001
                error = self._translate(exc)
                if not self.retry_policy.should_retry(error, 0):
                    raise error from (None if error is exc else exc)
                time.sleep(self.retry_policy.delay(0))
                parts[i] = self._infer_retrying(*plan.request(slices[i]), plan.priority, first_attempt=1)
            if progress is not None:
                progress(slices[i].stop - slices[i].start)

        for i, sl in enumerate(slices):
            if len(pending) >= depth:
                finish(*pending.popleft())
            try:
                pending.append((i, self._submit(*plan.request(sl), plan.priority)))
            except Exception as exc:  # noqa: BLE001 - submission failed: surface it when its turn comes

                def failed(exc: Exception = exc) -> dict[str, np.ndarray]:
                    raise exc

                pending.append((i, failed))
        while pending:
            finish(*pending.popleft())
        return proto.frame_from_parts(parts, info, plan.index)
