"""Retries with exponential backoff and full jitter, for failures that say nothing about the request.

Jitter matters here: when a server restarts, every client that lost it retries; without jitter they all come
back in the same millisecond and overflow the queue again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import TRANSIENT_ERRORS, MoEClientError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; delays grow ``base * 2**attempt`` up to ``cap`` seconds."""

    retries: int = 3
    base: float = 0.1
    cap: float = 5.0
    retry_on: tuple[type[MoEClientError], ...] = TRANSIENT_ERRORS

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full-jitter delay before retry number ``attempt`` (0-based)."""
        ceiling = min(self.cap, self.base * (2 ** attempt))
        return (rng or random).uniform(0.0, ceiling)

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        return attempt < self.retries and isinstance(error, self.retry_on)


def call_with_retry(fn: Callable[[], T], policy: RetryPolicy, translate: Callable[[BaseException], MoEClientError],
                    sleep: Callable[[float], None] = time.sleep, first_attempt: int = 0) -> T:
    """Run ``fn``; translate its failures into typed errors and retry the transient ones.

    ``first_attempt`` counts attempts already made elsewhere (a pipelined request that failed), so one
    request never gets more than the policy's ``retries`` however it was first sent.
    """
    attempt = first_attempt
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - every failure is translated into a typed error
            error = translate(exc)
            if not policy.should_retry(error, attempt):
                raise error from (None if error is exc else exc)
            sleep(policy.delay(attempt))
            attempt += 1


async def acall_with_retry(fn: Callable[[], Awaitable[T]], policy: RetryPolicy,
                           translate: Callable[[BaseException], MoEClientError]) -> T:
    """The asyncio flavour of ``call_with_retry``."""
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:  # noqa: BLE001
            error = translate(exc)
            if not policy.should_retry(error, attempt):
                raise error from (None if error is exc else exc)
            await asyncio.sleep(policy.delay(attempt))
            attempt += 1
