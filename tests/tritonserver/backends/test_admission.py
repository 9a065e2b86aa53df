"""The one-hop model's admission queue: who is admitted, who is refused on arrival, what a run takes."""

from __future__ import annotations

import threading

import pytest

from moe_ids.core.contract import PRIORITY_BULK, PRIORITY_REALTIME, QUEUE_TIMEOUT_TEXT
from moe_ids.core.preprocessing import PreprocessingError
from moe_ids.triton.backends.admission import MIN_ESTIMATE_FLOWS, AdmissionQueue, request_budget_ns

MS = 1_000_000
SECOND = 1000 * MS


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def make_queue(clock: Clock, **kw) -> AdmissionQueue:
    """1 us per flow and no fixed cost per run, so waits are easy to compute by hand."""
    options = {"per_flow_ns": 1000.0, "overhead_ns": 0.0, "headroom": 0.5,
               "max_run_flows": 4096, "clock": clock}
    return AdmissionQueue(**{**options, **kw})


def test_requests_are_admitted_until_the_queue_holds_headroom_times_the_budget() -> None:
    clock = Clock()
    queue = make_queue(clock)  # 1 s budgets, half of each promised: 500,000 flows at 1 us each
    admitted = sum(queue.offer(k, 100_000, SECOND) is None for k in range(5))
    assert admitted == 5
    refusal = queue.offer("sixth", 100_000, SECOND)
    assert refusal is not None and QUEUE_TIMEOUT_TEXT in refusal
    assert "would wait 600 ms" in refusal and "budget 1000 ms" in refusal
    assert queue.refused_on_arrival == 1
    assert queue.queued() == (5, 500_000)


def test_a_request_timeout_overrides_its_levels_budget() -> None:
    assert request_budget_ns(0, PRIORITY_REALTIME, 1_000_000, 5_000_000) == SECOND
    assert request_budget_ns(0, str(PRIORITY_REALTIME), 1_000_000, 5_000_000) == SECOND
    assert request_budget_ns(0, PRIORITY_BULK, 1_000_000, 5_000_000) == 5 * SECOND
    assert request_budget_ns(0, None, 1_000_000, 5_000_000) == 5 * SECOND  # no level: Triton's default, bulk
    assert request_budget_ns(0, 0, 1_000_000, 5_000_000) == 5 * SECOND
    assert request_budget_ns(250_000, PRIORITY_REALTIME, 1_000_000, 5_000_000) == 250 * MS
    with pytest.raises(PreprocessingError, match="moe_ids_priority.*integer"):
        request_budget_ns(0, "urgent", 1_000_000, 5_000_000)
    queue = make_queue(Clock())
    assert queue.offer("too big for 250 ms", 200_000, 250 * MS) is not None  # 200 ms > 125 ms
    assert queue.offer("fits 1 s", 200_000, SECOND) is None


def test_shorter_budgets_are_served_first_and_fifo_within_a_budget() -> None:
    queue = make_queue(Clock(), max_run_flows=10)
    for name, budget in (("bulk-1", 5 * SECOND), ("rt-1", SECOND), ("bulk-2", 5 * SECOND), ("rt-2", SECOND)):
        assert queue.offer(name, 5, budget) is None
    batch, late = queue.take()
    assert [p.item for p in batch] == ["rt-1", "rt-2"] and late == []
    queue.finished(10, 2, 10_000, 0)
    batch, _ = queue.take()
    assert [p.item for p in batch] == ["bulk-1", "bulk-2"]


def test_a_shorter_budget_does_not_count_longer_budgets_ahead_of_it() -> None:
    queue = make_queue(Clock())
    assert queue.offer("bulk", 2_000_000, 5 * SECOND) is None  # 2 s of work, within 2.5 s
    assert queue.offer("real-time", 1000, SECOND) is None  # served before the bulk request
    assert queue.offer("bulk behind", 1_000_000, 5 * SECOND) is not None  # 3.001 s > 2.5 s


def test_a_run_stops_at_max_run_flows_but_always_takes_one_request() -> None:
    queue = make_queue(Clock(), max_run_flows=1024)
    for k in range(3):
        queue.offer(k, 600, SECOND)
    assert [p.item for p in queue.take()[0]] == [0]  # 0 + 1 would be 1200 flows
    queue.finished(600, 1, 600_000, 0)
    queue.offer("huge", 5000, SECOND)
    assert [p.item for p in queue.take()[0]] == [1]
    queue.finished(600, 1, 600_000, 0)
    assert [p.item for p in queue.take()[0]] == [2]
    queue.finished(600, 1, 600_000, 0)
    assert [p.item for p in queue.take()[0]] == ["huge"]  # larger than a run: it runs alone


def test_the_running_batch_counts_as_work_ahead() -> None:
    clock = Clock()
    queue = make_queue(clock)
    queue.offer("first", 400_000, SECOND)
    queue.take()  # running: expected to end at 400 ms
    assert queue.offer("second", 150_000, SECOND) is not None  # 400 + 150 ms > 500 ms
    clock.now = 300 * MS  # 100 ms of the run left
    assert queue.offer("second", 150_000, SECOND) is None
    queue.finished(400_000, 1, 400 * MS, 0)
    assert queue.offer("third", 340_000, SECOND) is None  # nothing running any more: 150 + 340 ms


def test_requests_that_can_no_longer_finish_in_time_are_handed_back_as_late() -> None:
    clock = Clock()
    queue = make_queue(clock)
    queue.offer("stale", 1000, 10 * MS)
    queue.offer("fresh", 1000, SECOND)
    clock.now = 20 * MS
    batch, late = queue.take()
    assert [p.item for p in late] == ["stale"] and [p.item for p in batch] == ["fresh"]
    assert late[0].arrival_ns == 0 and late[0].budget_ns == 10 * MS
    assert queue.refused_expired == 1


def test_the_costs_follow_measured_runs_but_small_runs_leave_the_cost_per_flow_alone() -> None:
    queue = make_queue(Clock())
    queue.finished(MIN_ESTIMATE_FLOWS - 1, 1, 10**12, 0)  # a tiny run says nothing about the cost per flow
    assert queue.per_flow_ns == 1000.0
    for _ in range(50):
        queue.finished(1000, 10, 3 * MS, 2 * MS)  # 3 us per flow scoring, 200 us per request answering
    assert queue.per_flow_ns == pytest.approx(3000.0, rel=1e-3)
    assert queue.per_request_ns == pytest.approx(200_000.0, rel=1e-3)


def test_answering_costs_count_per_queued_request() -> None:
    """A flood of single flows is bounded by its answers, not its flows: 1 us per flow, 100 us per request."""
    queue = make_queue(Clock(), per_request_ns=100_000.0)
    admitted = sum(queue.offer(k, 1, SECOND) is None for k in range(10_000))
    assert admitted == 4950  # 4,950 x 101 us = 499.95 ms; one more would pass the 500 ms promised


def test_take_waits_for_work_and_close_hands_back_what_is_queued() -> None:
    queue = make_queue(Clock())
    assert queue.take(wait_s=0.01) == ([], [])
    got: list = []
    taker = threading.Thread(target=lambda: got.append(queue.take(wait_s=10)))
    taker.start()
    queue.offer("wake up", 10, SECOND)
    taker.join(5)
    assert [p.item for p in got[0][0]] == ["wake up"]
    queue.offer("left over", 10, SECOND)
    assert [p.item for p in queue.close()] == ["left over"]
    assert queue.take() is None
    assert "shutting down" in queue.offer("too late", 10, SECOND)


@pytest.mark.parametrize("bad", [{"headroom": 0.0}, {"headroom": 1.5}, {"max_run_flows": 0}])
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        make_queue(Clock(), **bad)
