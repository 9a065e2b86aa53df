"""Open-loop arrival schedules for load generators, kept free of Locust so they can be tested on their own
(importing Locust monkey-patches the whole process with gevent)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable


class PoissonArrivals:
    """A Locust ``wait_time`` for open-loop arrivals: exponential gaps at ``rate`` per second, scheduled from
    the previous due time (not from when the last answer came back), so a slow answer does not thin the load."""

    def __init__(self, rate: float, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests/s, got {rate}")
        self.rate, self.rng, self.clock = rate, rng or random.Random(), clock
        self.due = clock()

    def __call__(self) -> float:
        """Seconds until the next request. A user that fell behind (its last answer came late) sends at once
        but does not burst to catch up on more than one gap."""
        now = self.clock()
        self.due = max(self.due, now - 1.0 / self.rate) + self.rng.expovariate(self.rate)
        return max(0.0, self.due - now)
