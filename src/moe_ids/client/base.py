"""What the blocking and the asyncio client share: validated settings, error translation, the health report,
the model description, and turning flows into request tensors and outputs into results. Each subclass adds only
its I/O: how it connects, sends a request and waits for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from moe_ids.core import contract

from . import protocol as proto
from .errors import MoEClientError, translate
from .features import AUTO, check_extractor, check_unknown_policy, check_withheld, encode_flows, withhold_columns
from .model_info import ModelInfo
from .results import Prediction, row_to_prediction
from .retry import RetryPolicy


@dataclass
class BatchPlan:
    """A batch of flows encoded and cut into requests: what both clients send, whatever their concurrency."""

    x: np.ndarray
    index: pd.Index
    strategy: proto.Strategies
    priority: int
    slices: list[slice]

    def request(self, sl: slice) -> tuple[np.ndarray, proto.Strategies]:
        return self.x[sl], proto.strategy_slice(self.strategy, sl)


class ClientBase:
    """Settings and protocol-independent behaviour of both clients; a subclass connects in ``_connect``."""

    def __init__(
        self,
        url: str | None = None,
        protocol: str = "grpc",
        model_name: str = contract.ENSEMBLE_MODEL,
        timeout: float = 30.0,
        retries: int = 3,
        *,
        concurrency: int = 4,
        unknown: str = "raise",
        extractor: str = AUTO,
        withhold: Sequence[str] = (),
        backoff: float = 0.1,
        max_backoff: float = 5.0,
        verbose: bool = False,
    ) -> None:
        self.protocol = proto.check_protocol(protocol)
        self.url = proto.normalize_url(url, self.protocol)
        self.model_name = model_name
        self.timeout = float(timeout)
        self.concurrency = max(1, int(concurrency))
        self.unknown = check_unknown_policy(unknown)
        self.extractor = check_extractor(extractor)
        self.withhold = check_withheld(withhold)
        self.retry_policy = RetryPolicy(retries=max(0, int(retries)), base=backoff, cap=max_backoff)
        self._verbose = verbose
        self._info: ModelInfo | None = None
        self._connect()

    def _connect(self) -> None:
        """Set up the protocol's tritonclient connection (each client its own flavour)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, protocol={self.protocol!r}, model_name={self.model_name!r})"

    def _translate(self, exc: BaseException) -> MoEClientError:
        return translate(exc, url=self.url, model=self.model_name)

    def _timeout_kw(self) -> dict[str, Any]:
        return {"client_timeout": self.timeout} if self.protocol == "grpc" else {}

    def _config_kw(self, with_timeout: bool = True) -> dict[str, Any]:
        """Arguments of ``get_model_config``: gRPC answers a protobuf unless asked for JSON."""
        if self.protocol != "grpc":
            return {}
        return {"as_json": True, **(self._timeout_kw() if with_timeout else {})}

    def _info_from_config(self, config: Mapping[str, Any]) -> ModelInfo:
        return ModelInfo.from_config(config, self.model_name)

    def _health_report(self, live: bool) -> dict[str, Any]:
        """The health report before readiness and version are filled in (by the subclass, blocking or not)."""
        return {"url": self.url, "protocol": self.protocol, "model": self.model_name, "live": live, "ready": False,
                "model_version": None, "error": None if live else f"cannot reach Triton at {self.url}"}

    def _single(self, features: Mapping[str, Any], info: ModelInfo, missing_strategy: str | None,
                unknown: str | None, extractor: str | None) -> tuple[np.ndarray, pd.Index, proto.Strategies]:
        x, index = encode_flows(proto.as_single_flow(features), info.feature_names, unknown or self.unknown,
                                extractor or self.extractor)
        return withhold_columns(x, info.feature_names, self.withhold), index, proto.check_strategy(missing_strategy,
                                                                                                   info)

    @staticmethod
    def _prediction(outputs: dict[str, np.ndarray], info: ModelInfo, index: pd.Index) -> Prediction:
        frame = proto.frame_from_parts([outputs], info, index)
        return row_to_prediction(frame.iloc[0].to_dict(), info)

    def _plan(self, flows: Any, info: ModelInfo, batch_size: int, missing_strategy: str | Sequence[str | None] | None,
              priority: int | str, unknown: str | None, extractor: str | None) -> BatchPlan:
        x, index = encode_flows(flows, info.feature_names, unknown or self.unknown, extractor or self.extractor)
        x = withhold_columns(x, info.feature_names, self.withhold)
        return BatchPlan(x, index, proto.check_strategies(missing_strategy, x.shape[0], info),
                         proto.priority_value(priority), proto.chunk_slices(x.shape[0], batch_size, info))
