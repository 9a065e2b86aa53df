"""Load schedules: every shape reaches its peak and ends at the run time."""

from __future__ import annotations

import pytest

from moe_ids.perf.loadtest.schedule import SHAPES, ShapePlan


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_stops_at_run_time(shape: str) -> None:
    plan = ShapePlan(shape, users=12, spawn_rate=4, duration=30)
    assert plan.at(0) is not None
    assert plan.at(29.9) is not None
    assert plan.at(30) is None
    assert plan.at(1e6) is None
    peak = max(plan.at(t / 10)[0] for t in range(300))
    assert peak == 12


def test_constant_holds_users_and_rate() -> None:
    plan = ShapePlan("constant", users=5, spawn_rate=2.5, duration=10)
    assert {plan.at(t) for t in (0, 3, 9.5)} == {(5, 2.5)}


def test_step_ramps_in_equal_steps() -> None:
    plan = ShapePlan("step", users=8, spawn_rate=8, duration=40, step_count=4)
    assert [plan.at(t)[0] for t in (0, 9.9, 10, 20, 30, 39.9)] == [2, 2, 4, 6, 8, 8]


def test_spike_jumps_to_peak_inside_its_window_only() -> None:
    plan = ShapePlan("spike", users=20, spawn_rate=2, duration=100, spike_start=0.4, spike_length=0.2)
    assert plan.at(10)[0] == 5  # a quarter of the peak by default
    users, rate = plan.at(45)
    assert users == 20 and rate >= 20  # the spike arrives at once, not at the spawn rate
    assert plan.at(61)[0] == 5
    assert ShapePlan("spike", 20, 2, 100, spike_base_users=3).at(0)[0] == 3


def test_soak_ramps_then_holds() -> None:
    plan = ShapePlan("soak", users=10, spawn_rate=5, duration=600, soak_ramp=0.1)
    early = plan.at(0)[0]
    assert 1 <= early < 10
    assert plan.at(30)[0] < 10
    assert plan.at(60)[0] == plan.at(599)[0] == 10


@pytest.mark.parametrize("kwargs, field", [
    ({"shape": "sawtooth"}, "shape"),
    ({"users": 0}, "users"),
    ({"duration": 0}, "run time"),
    ({"step_count": 0}, "step count"),
    ({"spike_start": 0.9, "spike_length": 0.2}, "spike"),
])
def test_bad_plans_name_the_option(kwargs: dict, field: str) -> None:
    base = {"shape": "spike", "users": 4, "spawn_rate": 1.0, "duration": 10.0}
    with pytest.raises(ValueError, match=field):
        ShapePlan(**{**base, **kwargs})
