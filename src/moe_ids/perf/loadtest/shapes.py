"""The Locust shape class driving every run, and the command-line options of the schedules.

Locust picks up the shape class from the locustfile; the schedule itself lives in ``schedule.py``.
"""

from __future__ import annotations

from locust import LoadTestShape

from moe_ids.perf.loadtest.schedule import SHAPE_DEFAULTS, SHAPES, ShapePlan, plan_from_options


class ScheduledShape(LoadTestShape):
    """The Locust shape driving every run; which schedule comes from ``--shape``."""

    use_common_options = True
    _plan: ShapePlan | None = None

    def tick(self) -> tuple[int, float] | None:
        if self._plan is None:
            self._plan = plan_from_options(self.runner.environment.parsed_options)
        return self._plan.at(self.get_run_time())


def add_shape_arguments(parser: object) -> None:
    """Custom Locust arguments of the shapes (sent by the master to its workers)."""
    group = parser.add_argument_group("moe-ids load shape")  # type: ignore[attr-defined]
    group.add_argument("--shape", choices=SHAPES, default="constant", help="load shape (peak = --users)")
    d = SHAPE_DEFAULTS
    group.add_argument("--step-count", type=int, default=d["step_count"], help="step: number of steps up to --users")
    group.add_argument("--spike-base-users", type=int, default=d["spike_base_users"],
                       help="spike: users outside the spike")
    group.add_argument("--spike-start", type=float, default=d["spike_start"], help="spike: start (fraction of the run)")
    group.add_argument("--spike-length", type=float, default=d["spike_length"],
                       help="spike: length (fraction of the run)")
    group.add_argument("--soak-ramp", type=float, default=d["soak_ramp"], help="soak: ramp-up (fraction of the run)")
