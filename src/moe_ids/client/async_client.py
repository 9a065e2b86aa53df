"""``AsyncMoEClient``: the asyncio client, for services that score flows inside an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from moe_ids.core import contract

from . import protocol as proto
from .errors import MoEClientError, translate
from .features import encode_flows
from .model_info import ModelInfo
from .results import Prediction, row_to_prediction
from .retry import acall_with_retry
from .settings import ClientSettings


class AsyncMoEClient(ClientSettings):
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

    def __repr__(self) -> str:
        return f"AsyncMoEClient(url={self.url!r}, protocol={self.protocol!r}, model_name={self.model_name!r})"

    def _translate(self, exc: BaseException) -> MoEClientError:
        return translate(exc, url=self.url, model=self.model_name)

    def _timeout_kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

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
        report: dict[str, Any] = {"url": self.url, "protocol": self.protocol, "model": self.model_name,
                                  "live": await self.is_live(), "ready": False, "model_version": None, "error": None}
        if report["live"]:
            report["ready"] = await self.is_ready()
            try:
                report["model_version"] = (await self.refresh_model_info()).version
            except MoEClientError as exc:
                report["error"] = str(exc)
        else:
            report["error"] = f"cannot reach Triton at {self.url}"
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
            client = self._connection()
            if self.protocol == "grpc":
                config = await self._bounded(client.get_model_config(self.model_name, as_json=True))
            else:
                config = await self._bounded(client.get_model_config(self.model_name))
            return ModelInfo.from_config(config, self.model_name)

        return await acall_with_retry(fetch, self.retry_policy, self._translate)

    # -- inference ---------------------------------------------------------------------------------------
    async def _infer(self, x: np.ndarray, strategy: proto.Strategies, priority: int) -> dict[str, np.ndarray]:
        info = await self.get_model_info()

        async def once() -> dict[str, np.ndarray]:
            result = await self._bounded(self._connection().infer(
                self.model_name, proto.build_inputs(self._module, x, strategy),
                outputs=proto.build_outputs(self._module, info), priority=priority, **self._timeout_kw()))
            return proto.result_arrays(result, info)

        return await acall_with_retry(once, self.retry_policy, self._translate)

    async def predict(self, features: Mapping[str, Any], missing_strategy: str | None = None,
                      unknown: str | None = None, extractor: str | None = None) -> Prediction:
        """Score one flow at real-time priority."""
        info = await self.get_model_info()
        x, index = encode_flows(proto.as_single_flow(features), info.feature_names, unknown or self.unknown,
                                extractor or self.extractor)
        strategy = proto.check_strategy(missing_strategy, info)
        outputs = await self._infer(x, strategy, contract.PRIORITY_REALTIME)
        frame = proto.frame_from_parts([outputs], info, index)
        return row_to_prediction(frame.iloc[0].to_dict(), info)

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
        x, index = encode_flows(flows, info.feature_names, unknown or self.unknown, extractor or self.extractor)
        strategy = proto.check_strategies(missing_strategy, x.shape[0], info)
        level = proto.priority_value(priority)
        slices = proto.chunk_slices(x.shape[0], batch_size, info)
        gate = asyncio.Semaphore(max(1, int(concurrency or self.concurrency)))

        async def run(sl: slice) -> dict[str, np.ndarray]:
            async with gate:
                out = await self._infer(x[sl], proto.strategy_slice(strategy, sl), level)
            if progress is not None:
                progress(sl.stop - sl.start)
            return out

        tasks = [asyncio.ensure_future(run(sl)) for sl in slices]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return proto.frame_from_parts(list(parts), info, index)
