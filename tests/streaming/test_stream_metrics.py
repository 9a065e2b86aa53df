"""The worker's own metrics: the progress line's rate, the per-sensor out-of-distribution counts."""

from __future__ import annotations

import pytest

from moe_ids.streaming import metrics as metrics_module
from moe_ids.streaming.metrics import MAX_SENSOR_LABELS, OTHER_SENSOR, WorkerMetrics


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


def value(m: WorkerMetrics, name: str, sensor: str) -> float | None:
    return m.registry.get_sample_value(name, {"sensor": sensor})


def test_out_of_distribution_verdicts_are_counted_per_sensor() -> None:
    m = WorkerMetrics()
    m.verdicts_published(["Normal", "Normal", "Attack", "Normal"], [None, None, "high", None], [0.0] * 4,
                         ["edge-1", "edge-1", "edge-1", "dmz"], [True, False, None, True])
    assert value(m, "moe_ids_stream_sensor_verdicts_total", "edge-1") == 3
    assert value(m, "moe_ids_stream_out_of_distribution_total", "edge-1") == 1
    assert value(m, "moe_ids_stream_out_of_distribution_total", "dmz") == 1
    assert m.counts()["out_of_distribution"] == 2
    assert "out-of-distribution 2," in m.progress_line()


def test_sensor_labels_are_bounded_whatever_producers_send() -> None:
    m = WorkerMetrics()
    sensors = [f"s{i}" for i in range(MAX_SENSOR_LABELS + 10)]
    m.verdicts_published(["Normal"] * len(sensors), [None] * len(sensors), [0.0] * len(sensors), sensors,
                         [True] * len(sensors))
    assert value(m, "moe_ids_stream_sensor_verdicts_total", OTHER_SENSOR) == 10
    assert value(m, "moe_ids_stream_sensor_verdicts_total", sensors[-1]) is None
    assert value(m, "moe_ids_stream_out_of_distribution_total", sensors[0]) == 1
