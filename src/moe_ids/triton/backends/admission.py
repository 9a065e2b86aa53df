"""Admission control for the one-hop model: it owns its queue, so it knows its backlog and refuses early.

Triton 2.51's dynamic batcher cannot shed load well (``../docs/reliability.md``): any queue policy or priority
level turns batch prefetching off, the batcher then sleeps up to 500 ms while an instance is free, and
expired requests are only found when batch formation walks over them. Under a 3x flood that left the model
idle most of the time while requests expired in Triton's queue. So the one-hop model runs with a policy-free
batcher (prefetching on, no stall), its ``execute`` only validates and enqueues each request here and
returns at once, and a scoring thread takes batches from this queue. The queue sees every waiting flow and
how fast the model drains them, so a request is refused *on arrival* when it could not be answered within
its budget, before any work is spent on it, and the model stays busy on requests it can answer in time.

A request's budget is its Triton ``timeout`` (microseconds) when it set one, else its priority level's budget
(``request_budget_ns``). A shorter budget is served first (real-time before bulk), FIFO within a budget. Pure
Python and unit-tested without a server; the clock is injectable.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moe_ids.core.contract import ENSEMBLE_MODEL, PRIORITY_PARAMETER, PRIORITY_REALTIME, QUEUE_TIMEOUT_TEXT
from moe_ids.core.preprocessing import PreprocessingError

# How much of a budget the queue may promise: the rest is left to the transport (the request's upload, the
# response's way back, the client's own scheduling on a busy machine) and to estimation error.
DEFAULT_HEADROOM = 0.5
DEFAULT_MAX_RUN_FLOWS = 4096  # flows per model run: big enough to amortise a run, small enough to stay granular
SHUTDOWN_TEXT = f"{ENSEMBLE_MODEL}: the model is shutting down; retry later"
EWMA_WEIGHT = 0.2  # weight of the newest run in the per-flow cost estimate
MIN_ESTIMATE_FLOWS = 128  # runs smaller than this say more about the fixed cost than about the cost per flow


@dataclass
class Pending:
    """One admitted request: the backend's ``item`` (request, sender, arrays) plus what scheduling needs."""

    item: Any
    flows: int
    arrival_ns: int
    deadline_ns: int
    budget_ns: int = field(repr=False)


def request_budget_ns(timeout_us: int, level: Any, realtime_us: int, bulk_us: int) -> int:
    """A request's budget: its own Triton ``timeout`` when it set one, else its level's (``PRIORITY_PARAMETER``:
    real-time's for level 1, bulk's for any other level or none, like Triton's default level). PreprocessingError
    for a level that is not an integer, so the caller answers it as a bad request."""
    if timeout_us and timeout_us > 0:
        return int(timeout_us) * 1000
    if level is None:
        return int(bulk_us) * 1000
    try:
        value = int(level)
    except (TypeError, ValueError):
        raise PreprocessingError(f"request parameter '{PRIORITY_PARAMETER}': expected a priority level "
                                 f"(an integer), got {level!r}") from None
    return int(realtime_us if value == PRIORITY_REALTIME else bulk_us) * 1000


def refusal_message(wait_ns: float, budget_ns: int, *, on_arrival: bool) -> str:
    """Worded like Triton's queue-policy refusal ("request timeout expired"), which every client of this project
    already treats as overload to back off from, plus the numbers an operator needs."""
    when = "would wait" if on_arrival else "waited"
    return (f"{ENSEMBLE_MODEL}: {QUEUE_TIMEOUT_TEXT}: the request {when} {wait_ns / 1e6:.0f} ms for the model "
            f"(budget {budget_ns / 1e6:.0f} ms); the server is overloaded, retry later")


class AdmissionQueue:
    """Budget classes of FIFO queues, a cost model of a run, and the admission test.

    The cost of a run of ``n`` flows in ``r`` requests is modelled as ``overhead + n * per_flow + r *
    per_request``: scoring grows with the flows, answering with the requests (each answer is a round trip to
    the server; a run of 1,024 single flows spends most of its time answering). ``overhead`` and ``per_flow``
    start from a calibration at initialize, ``per_request`` from zero, and both rates follow the measured runs
    (EWMA). A new request is admitted when the work ahead of it (the rest of the running batch, every queued
    request whose budget is not longer than its own) plus its own, at that cost, ends within ``headroom`` x
    its budget.
    """

    def __init__(self, *, per_flow_ns: float, overhead_ns: float, per_request_ns: float = 0.0,
                 headroom: float = DEFAULT_HEADROOM, max_run_flows: int = DEFAULT_MAX_RUN_FLOWS,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        if not 0 < headroom <= 1:
            raise ValueError(f"headroom must be in (0, 1], got {headroom}")
        if max_run_flows < 1:
            raise ValueError(f"max_run_flows must be >= 1, got {max_run_flows}")
        self.per_flow_ns = max(float(per_flow_ns), 1.0)
        self.overhead_ns = max(float(overhead_ns), 0.0)
        self.per_request_ns = max(float(per_request_ns), 0.0)
        self.headroom = float(headroom)
        self.max_run_flows = int(max_run_flows)
        self.clock = clock
        self._classes: dict[int, deque[Pending]] = {}
        self._queued_flows: dict[int, int] = {}
        self._order: list[int] = []  # budgets, shortest first
        self._cond = threading.Condition()
        self._closed = False
        self._running_until_ns = 0  # when the running batch is expected to end (0: none running)
        self.refused_on_arrival = 0
        self.refused_expired = 0

    # -- the cost model -----------------------------------------------------------------------------------------

    def run_ns(self, flows: int, requests: int = 1) -> float:
        """Expected duration of one run of ``flows`` flows in ``requests`` requests."""
        return self.overhead_ns + flows * self.per_flow_ns + requests * self.per_request_ns

    def _work_ns(self, flows: int, requests: int) -> float:
        """Expected time to drain ``flows`` flows of ``requests`` requests in runs of at most ``max_run_flows``."""
        runs = -(-flows // self.max_run_flows) if flows else 0
        return runs * self.overhead_ns + flows * self.per_flow_ns + requests * self.per_request_ns

    def finished(self, flows: int, requests: int, scoring_ns: int, answering_ns: int) -> None:
        """Record a run's measured scoring and answering times, so the estimates follow the machine (other
        load, contention); runs too small to say much about the cost per flow leave that one alone."""
        with self._cond:
            self._running_until_ns = 0
            if flows >= MIN_ESTIMATE_FLOWS:
                observed = max((scoring_ns - self.overhead_ns) / flows, 1.0)
                self.per_flow_ns += EWMA_WEIGHT * (observed - self.per_flow_ns)
            if requests > 0:
                self.per_request_ns += EWMA_WEIGHT * (answering_ns / requests - self.per_request_ns)

    # -- arrival ------------------------------------------------------------------------------------------------

    def _refusal(self, flows: int, budget: int, now: int) -> str | None:
        """The refusal of a request arriving now, or None when it would be answered within its budget."""
        ahead = [b for b in self._order if b <= budget]
        ahead_flows = sum(self._queued_flows[b] for b in ahead)
        ahead_requests = sum(len(self._classes[b]) for b in ahead)
        wait = max(self._running_until_ns - now, 0) + self._work_ns(ahead_flows + flows, ahead_requests + 1)
        return refusal_message(wait, budget, on_arrival=True) if wait > self.headroom * budget else None

    def would_refuse(self, flows: int, budget_ns: int, now_ns: int | None = None) -> str | None:
        """The refusal ``offer`` would give now (counted as one), without queueing anything."""
        now = self.clock() if now_ns is None else now_ns
        with self._cond:
            if self._closed:
                return SHUTDOWN_TEXT
            refusal = self._refusal(int(flows), int(budget_ns), now)
            if refusal is not None:
                self.refused_on_arrival += 1
            return refusal

    def offer(self, item: Any, flows: int, budget_ns: int, now_ns: int | None = None) -> str | None:
        """Queue a request, or return the refusal message when it cannot be answered within its budget."""
        now = self.clock() if now_ns is None else now_ns
        budget = int(budget_ns)
        with self._cond:
            if self._closed:
                return SHUTDOWN_TEXT
            refusal = self._refusal(int(flows), budget, now)
            if refusal is not None:
                self.refused_on_arrival += 1
                return refusal
            if budget not in self._classes:
                self._classes[budget] = deque()
                self._queued_flows[budget] = 0
                self._order = sorted(self._classes)
            self._classes[budget].append(Pending(item, int(flows), now, now + budget, budget))
            self._queued_flows[budget] += int(flows)
            self._cond.notify()
        return None

    # -- the scoring thread -------------------------------------------------------------------------------------

    def take(self, wait_s: float | None = None) -> tuple[list[Pending], list[Pending]] | None:
        """The next run's requests (shortest budget first, up to ``max_run_flows`` flows, at least one request)
        and the requests found past saving (they could no longer end within their budget); None once closed
        and empty, or ([], []) when ``wait_s`` passed with nothing queued."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or any(self._queued_flows.values()), timeout=wait_s):
                return [], []
            if not any(self._queued_flows.values()):
                return None
            now = self.clock()
            batch: list[Pending] = []
            late: list[Pending] = []
            flows = 0
            for budget in self._order:
                queue = self._classes[budget]
                while queue and (not batch or flows + queue[0].flows <= self.max_run_flows):
                    pending = queue.popleft()
                    self._queued_flows[budget] -= pending.flows
                    if now + self.run_ns(flows + pending.flows, len(batch) + 1) > pending.deadline_ns:
                        late.append(pending)
                        continue
                    batch.append(pending)
                    flows += pending.flows
                if batch and flows >= self.max_run_flows:
                    break
            self.refused_expired += len(late)
            if batch:
                self._running_until_ns = now + int(self.run_ns(flows, len(batch)))
            return batch, late

    def idle(self) -> bool:
        """Nothing queued and nothing running: a small execution may be scored at once, without the queue."""
        with self._cond:
            return self._running_until_ns == 0 and not any(self._queued_flows.values())

    def queued(self) -> tuple[int, int]:
        """(requests, flows) waiting now."""
        with self._cond:
            return sum(len(q) for q in self._classes.values()), sum(self._queued_flows.values())

    def close(self) -> list[Pending]:
        """Stop admitting; everything still queued, for the caller to refuse. ``take`` then returns None."""
        with self._cond:
            self._closed = True
            left = [p for budget in self._order for p in self._classes[budget]]
            for budget in self._order:
                self._classes[budget].clear()
                self._queued_flows[budget] = 0
            self._cond.notify_all()
        return left
