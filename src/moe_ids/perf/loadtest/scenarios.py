"""The load scenarios: which requests a user sends, in what mix, at which priority.

A scenario is a weighted mix of request kinds. Each kind fixes the batch size, the share of features blanked
to NaN, the imputation strategy (None = the server's default), the Triton priority and whether the request is
deliberately malformed. Every user class (binary HTTP, JSON HTTP, gRPC) plays any scenario, so protocols are
compared on identical traffic. Kind names become Locust request names, so the report breaks latency down
per kind (e.g. real-time single flows vs. bulk batches in ``mixed``).
"""

from __future__ import annotations

from dataclasses import dataclass

from moe_ids.core.contract import PRIORITY_BULK, PRIORITY_REALTIME
from moe_ids.core.preprocessing import STRATEGIES

IMPUTATION_STRATEGIES: tuple[str, ...] = STRATEGIES  # every strategy the model accepts

# Ways the bad-request scenario breaks a request; each must be refused by the server with a clear error.
MALFORMATIONS: tuple[str, ...] = ("wrong-width", "wrong-datatype", "unknown-imputation", "missing-input")


@dataclass(frozen=True)
class RequestKind:
    """One kind of request of a scenario."""

    name: str
    batch: int = 1
    missing: float = 0.0
    imputation: str | None = None
    priority: int = PRIORITY_REALTIME
    weight: int = 1
    malformed: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    kinds: tuple[RequestKind, ...]

    @property
    def weights(self) -> list[int]:
        return [k.weight for k in self.kinds]

    def kind(self, name: str) -> RequestKind:
        for k in self.kinds:
            if k.name == name:
                return k
        raise KeyError(f"scenario {self.name!r} has no request kind {name!r}")


def _build() -> dict[str, Scenario]:
    rt = PRIORITY_REALTIME
    bulk = PRIORITY_BULK
    scenarios = [
        Scenario("realtime", "one flow per request, real-time priority (a sensor scoring each flow as it ends)",
                 (RequestKind("single", 1, priority=rt),)),
        Scenario("batch256", "256 flows per request, bulk priority (offline re-scoring)",
                 (RequestKind("batch256", 256, priority=bulk),)),
        Scenario("batch1024", "1024 flows per request, bulk priority (offline re-scoring)",
                 (RequestKind("batch1024", 1024, priority=bulk),)),
    ]
    for pct in (25, 50, 75):
        scenarios.append(Scenario(
            f"missing{pct}", f"one flow per request with {pct}% of its features missing (NaN), server-default "
            "imputation", (RequestKind(f"missing{pct}", 1, missing=pct / 100, priority=rt),)))
    for strategy in IMPUTATION_STRATEGIES:
        scenarios.append(Scenario(
            f"impute-{strategy}", f"batches of 64 flows with 50% of features missing, imputed by {strategy!r}",
            (RequestKind(f"impute-{strategy}", 64, missing=0.5, imputation=strategy, priority=bulk),)))
    scenarios.append(Scenario(
        "mixed", "mostly single flows at real-time priority, some 256/1024-flow batches at bulk priority",
        (RequestKind("realtime", 1, priority=rt, weight=90),
         RequestKind("bulk256", 256, priority=bulk, weight=8),
         RequestKind("bulk1024", 1024, priority=bulk, weight=2))))
    scenarios.append(Scenario(
        "bad-request", "one request in four is malformed; proves the gates fail and the server stays up",
        (RequestKind("valid", 1, priority=rt, weight=3),
         RequestKind("malformed", 1, priority=rt, weight=1, malformed=True))))
    scenarios.append(Scenario(
        "soak", "steady mixed traffic for a long run (--shape soak); per-process server memory must not grow",
        (RequestKind("realtime", 1, priority=rt, weight=80),
         RequestKind("missing50", 1, missing=0.5, priority=rt, weight=12),
         RequestKind("bulk256", 256, missing=0.2, imputation="mean", priority=bulk, weight=8))))
    scenarios.append(Scenario(
        "overload", "open-loop 1024-flow requests at ~3x the measured capacity (perf/loadtest/overload.py): "
        "every request answered or rejected by the queue policy, no process dies",
        (RequestKind("overload", 1024, priority=rt),)))
    return {s.name: s for s in scenarios}


SCENARIOS: dict[str, Scenario] = _build()


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; choose from: {', '.join(SCENARIOS)}") from None
