"""``AsyncMoEClient``: the asyncio client, for services that score flows inside an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from moe_ids.core import contract

from . import protocol as proto
from .base import BatchPlan, ClientBase
from .errors import MoEClientError
from .model_info import ModelInfo
from .results import Prediction, result_columns, result_data
from .retry import acall_with_retry


class AsyncMoEClient(ClientBase):
    """The same API as ``MoEClient`` with coroutines, on tritonclient.grpc.aio / tritonclient.http.aio.

    Use as ``async with AsyncMoEClient(url) as client: await client.predict(flow)``.
    """

    def _connect(self) -> None:
        self._client: Any = None
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as module
        else:
            import tritonclient.http.aio as module
        self._module = module

    def _connection(self) -> Any:
        # Created lazily: the aio clients bind to the running event loop.
        if self._client is None:
            if self.protocol == "grpc":
                self._client = self._module.InferenceServerClient(self.url, verbose=self._verbose)
            else:
                self._client = self._module.InferenceServerClient(
                    self.url, verbose=self._verbose, conn_limit=max(self.concurrency, 4), conn_timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __aenter__(self) -> AsyncMoEClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _bounded(self, coro: Any) -> Any:
        return await asyncio.wait_for(coro, timeout=self.timeout)

    # -- health ------------------------------------------------------------------------------------------
    async def is_live(self) -> bool:
        try:
            return bool(await self._bounded(self._connection().is_server_live()))
        except Exception:  # noqa: BLE001
            return False

    async def is_ready(self) -> bool:
        try:
            client = self._connection()
            return bool(await self._bounded(client.is_server_ready())) and bool(
                await self._bounded(client.is_model_ready(self.model_name)))
        except Exception:  # noqa: BLE001
            return False

    async def health(self) -> dict[str, Any]:
        report = self._health_report(await self.is_live())
        if report["live"]:
            report["ready"] = await self.is_ready()
            try:
                report["model_version"] = (await self.refresh_model_info()).version
            except MoEClientError as exc:
                report["error"] = str(exc)
        return report

    # -- model description -------------------------------------------------------------------------------
    async def get_model_info(self) -> ModelInfo:
        if self._info is None:
            self._info = await self._fetch_info()
        return self._info

    async def refresh_model_info(self) -> ModelInfo:
        self._info = await self._fetch_info()
        return self._info

    async def _fetch_info(self) -> ModelInfo:
        async def fetch() -> ModelInfo:
            config = self._connection().get_model_config(self.model_name, **self._config_kw(with_timeout=False))
            return self._info_from_config(await self._bounded(config))

        return await acall_with_retry(fetch, self.retry_policy, self._translate)

    # -- inference ---------------------------------------------------------------------------------------
    async def _infer(self, x: np.ndarray, strategy: proto.Strategies, priority: int) -> dict[str, np.ndarray]:
        info = await self.get_model_info()

        async def once() -> dict[str, np.ndarray]:
            result = await self._bounded(self._connection().infer(
                self.model_name, proto.build_inputs(self._module, x, strategy),
                outputs=proto.build_outputs(self._module, info), priority=priority,
                parameters=proto.priority_parameters(priority), **self._timeout_kw()))
            return proto.result_arrays(result, info)

        return await acall_with_retry(once, self.retry_policy, self._translate)

    async def predict(self, features: Mapping[str, Any], missing_strategy: str | None = None,
                      unknown: str | None = None, extractor: str | None = None) -> Prediction:
        """Score one flow at real-time priority."""
        info = await self.get_model_info()
        x, index, strategy = self._single(features, info, missing_strategy, unknown, extractor)
        return self._prediction(await self._infer(x, strategy, contract.PRIORITY_REALTIME), info, index)

    async def predict_batch(
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
        """Score many flows with up to ``concurrency`` requests in flight; rows keep the input's order/index."""
        info = await self.get_model_info()
        plan = self._plan(flows, info, batch_size, missing_strategy, priority, unknown, extractor)
        return proto.frame_from_parts(await self._run_plan(plan, concurrency, progress), info, plan.index)

    async def predict_outputs(
        self,
        flows: pd.DataFrame | list[Mapping[str, Any]] | np.ndarray,
        batch_size: int = 1024,
        missing_strategy: str | Sequence[str | None] | None = None,
        priority: int | str = contract.PRIORITY_BULK,
        extractor: str | None = None,
    ) -> dict[str, np.ndarray]:
        """``predict_batch``'s results as ``result_data`` columns (arrays by column name) rather than a frame:
        for a service that turns each row into a message of its own, where building the frame would cost more
        than scoring (``results.prediction_dicts`` reads either)."""
        info = await self.get_model_info()
        plan = self._plan(flows, info, batch_size, missing_strategy, priority, None, extractor)
        parts = await self._run_plan(plan, None, None)
        if not parts:
            return {column: np.empty(0) for column in result_columns(info)}
        return result_data(proto.concat_outputs(parts), info)

    async def _run_plan(self, plan: BatchPlan, concurrency: int | None,
                        progress: Callable[[int], None] | None) -> list[dict[str, np.ndarray]]:
        gate = asyncio.Semaphore(max(1, int(concurrency or self.concurrency)))

        async def run(sl: slice) -> dict[str, np.ndarray]:
            async with gate:
                out = await self._infer(*plan.request(sl), plan.priority)
            if progress is not None:
                progress(sl.stop - sl.start)
            return out

        tasks = [asyncio.ensure_future(run(sl)) for sl in plan.slices]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
