"""Load schedules: constant, step ramp, spike and soak, all bounded by the run time.

With a shape class in the locustfile Locust hands control of the user count to the shape and ignores
``--run-time``; the shape reads ``--users``, ``--spawn-rate`` and ``--run-time`` itself (``use_common_options``)
and returns None at the end, so every run stops by itself whatever the shape. The schedule is a pure function
of time (``ShapePlan.at``), free of Locust, so the runner validates it and tests check it without Locust.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, fields
from typing import Any

SHAPES: tuple[str, ...] = ("constant", "step", "spike", "soak")


@dataclass(frozen=True)
class ShapePlan:
    """A load schedule: ``users`` is the peak, ``duration`` the whole run in seconds."""

    shape: str
    users: int
    spawn_rate: float
    duration: float
    step_count: int = 4  # step: number of equal steps up to ``users``
    spike_base_users: int = 0  # spike: users before and after the spike (0 = a quarter of ``users``)
    spike_start: float = 0.4  # spike: start, as a fraction of the run
    spike_length: float = 0.2  # spike: length, as a fraction of the run
    soak_ramp: float = 0.1  # soak: ramp-up, as a fraction of the run; the rest holds ``users``

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape: unknown shape {self.shape!r}; choose from {', '.join(SHAPES)}")
        if self.users < 1:
            raise ValueError(f"users: must be at least 1, got {self.users}")
        if self.duration <= 0:
            raise ValueError(f"run time: must be positive, got {self.duration}")
        if self.step_count < 1:
            raise ValueError(f"step count: must be at least 1, got {self.step_count}")
        if not (0 <= self.spike_start < 1 and 0 < self.spike_length <= 1 - self.spike_start):
            raise ValueError("spike: start and length are fractions of the run and must fit inside it")

    @property
    def base_users(self) -> int:
        return self.spike_base_users or max(1, self.users // 4)

    def at(self, t: float) -> tuple[int, float] | None:
        """(user count, spawn rate) at ``t`` seconds into the run; None once the run is over."""
        if t >= self.duration:
            return None
        if self.shape == "constant":
            return self.users, self.spawn_rate
        if self.shape == "step":
            step_len = self.duration / self.step_count
            step = min(self.step_count - 1, int(t // step_len))
            return math.ceil(self.users * (step + 1) / self.step_count), self.spawn_rate
        if self.shape == "spike":
            start = self.spike_start * self.duration
            end = start + self.spike_length * self.duration
            if start <= t < end:
                return self.users, max(self.spawn_rate, float(self.users))  # a spike arrives at once
            return min(self.base_users, self.users), max(self.spawn_rate, float(self.users))
        # soak: a gentle ramp, then hold the peak for the rest of the (long) run
        ramp = self.soak_ramp * self.duration
        if t < ramp:
            return min(self.users, max(1, math.ceil(self.users * (t + 1) / max(ramp, 1)))), self.spawn_rate
        return self.users, self.spawn_rate


# The shapes' parameters and their defaults, from ShapePlan itself: the Locust options, ``moe-ids loadtest``'s
# help and the plan read them here.
SHAPE_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ShapePlan) if f.default is not MISSING}


def plan_from_options(options: object) -> ShapePlan:
    """The plan from Locust's parsed options (common options plus the custom ones the locustfile adds)."""
    d = SHAPE_DEFAULTS
    return ShapePlan(
        shape=getattr(options, "shape", "constant") or "constant",
        users=int(getattr(options, "num_users", None) or 1),
        spawn_rate=float(getattr(options, "spawn_rate", None) or 1),
        duration=float(getattr(options, "run_time", None) or 60),
        step_count=int(getattr(options, "step_count", d["step_count"])),
        spike_base_users=int(getattr(options, "spike_base_users", d["spike_base_users"])),
        spike_start=float(getattr(options, "spike_start", d["spike_start"])),
        spike_length=float(getattr(options, "spike_length", d["spike_length"])),
        soak_ramp=float(getattr(options, "soak_ramp", d["soak_ramp"])),
    )
