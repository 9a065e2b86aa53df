"""The overload test's open-loop arrivals: Poisson at the asked rate, spread out, no catch-up bursts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from moe_ids.perf.loadtest.arrivals import PoissonArrivals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def send_times(arrivals: PoissonArrivals, clock: Clock, n: int, answer_s: float = 0.0) -> np.ndarray:
    """When a user following ``arrivals`` sends its first ``n`` requests, each answered after ``answer_s``."""
    times = []
    for _ in range(n):
        clock.now += arrivals()
        times.append(clock.now)
        clock.now += answer_s
    return np.array(times)


def test_gaps_are_exponential_at_the_asked_rate() -> None:
    clock = Clock()
    times = send_times(PoissonArrivals(4.0, random.Random(1), clock), clock, 4000)
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(0.25, rel=0.05)
    assert gaps.std() == pytest.approx(0.25, rel=0.1)  # exponential: standard deviation = mean


def test_users_start_at_their_own_random_moments() -> None:
    firsts = []
    for seed in range(200):
        clock = Clock()
        firsts.append(send_times(PoissonArrivals(0.5, random.Random(seed), clock), clock, 1)[0] - 100.0)
    assert np.std(firsts) > 0.5  # spread over seconds, not one synchronised wave


def test_slow_answers_do_not_thin_the_load_or_cause_bursts() -> None:
    clock = Clock()
    times = send_times(PoissonArrivals(10.0, random.Random(2), clock), clock, 2000, answer_s=0.05)
    assert len(times) / (times[-1] - times[0]) == pytest.approx(10.0, rel=0.1)  # answers take half a gap
    clock = Clock()
    late = send_times(PoissonArrivals(10.0, random.Random(3), clock), clock, 50, answer_s=1.0)
    assert np.diff(late).min() >= 1.0  # a user 1 s behind sends when it can, it does not fire a backlog


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        PoissonArrivals(0.0)
