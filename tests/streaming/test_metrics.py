"""The worker's progress line: its rate is what the worker does now, not an average that decays when idle."""

from __future__ import annotations

import pytest

from moe_ids.streaming import metrics as metrics_module
from moe_ids.streaming.metrics import WorkerMetrics


def test_the_progress_rate_covers_the_time_since_the_previous_line(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: clock[0])
    m = WorkerMetrics()
    clock[0] += 10.0
    m.verdicts_published(["Attack"] * 1000, ["high"] * 1000, [0.01] * 1000)
    assert m.progress_line().endswith("100 verdicts/s now, 100 on average")
    clock[0] += 10.0  # quiet: nothing scored
    line = m.progress_line()
    assert "verdicts 1000 (attack 1000), alerts 1000" in line
    assert line.endswith("0 verdicts/s now, 50 on average")
