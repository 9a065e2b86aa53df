"""Connection and retry settings shared by the blocking and the asyncio client."""

from __future__ import annotations

from moe_ids.core import contract

from . import protocol as proto
from .features import AUTO, check_extractor, check_unknown_policy
from .model_info import ModelInfo
from .retry import RetryPolicy


class ClientSettings:
    """Validated settings both clients start from; each subclass adds its connection in ``_connect``."""

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
        self.retry_policy = RetryPolicy(retries=max(0, int(retries)), base=backoff, cap=max_backoff)
        self._verbose = verbose
        self._info: ModelInfo | None = None
        self._connect()

    def _connect(self) -> None:
        """Set up the protocol's tritonclient connection (each client its own flavour)."""
        raise NotImplementedError
