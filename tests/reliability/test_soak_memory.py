"""The soak test's memory sampler: per-process RSS of a real server under load, and the growth verdict.

The 10-minute run itself (``moe-ids loadtest --scenario soak --shape soak --duration 10m --serve``) is not
part of the suite; its figures are in docs/reliability.md. Here the sampler follows the session server for a
few seconds of real requests, and the verdict logic is checked on constructed series.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from moe_ids.core import contract
from moe_ids.perf.soak import (
    SERVER_ROLE,
    TOTAL,
    MemorySample,
    MemorySampler,
    growth_report,
    plot_memory,
    read_csv,
    soak_windows,
    write_csv,
)


def series(values: list[float], step: float = 5.0) -> list[MemorySample]:
    return [MemorySample(i * step, {SERVER_ROLE: v, "moe_ids_model": 2 * v, TOTAL: 3 * v})
            for i, v in enumerate(values)]


def test_flat_memory_after_warmup_passes() -> None:
    samples = series([50, 70, 90] + [100, 101, 100, 99, 100, 101, 100, 100])  # warm-up growth is ignored
    report = growth_report(samples, warmup_s=15, window_s=10)
    assert report["passed"] is True
    assert abs(report["roles"][TOTAL]["growth"]) < 0.05
    assert report["roles"]["moe_ids_model"]["after_warmup_mb"] == pytest.approx(200, abs=2)


def test_steady_growth_fails() -> None:
    report = growth_report(series([100 + 2 * i for i in range(20)]), warmup_s=10, window_s=10)
    assert report["passed"] is False and report["roles"][TOTAL]["growth"] > 0.05


def test_too_short_a_run_is_not_judged() -> None:
    report = growth_report(series([100, 100]), warmup_s=60, window_s=10)
    assert report["passed"] is None and "warm-up" in report["reason"]


def test_windows_scale_with_the_run() -> None:
    assert soak_windows(600) == (120, 60)
    warmup, window = soak_windows(10)
    assert warmup == 2 and window >= 2


@pytest.mark.integration
def test_sampler_follows_server_and_each_stub_under_load(triton_server, tmp_path: Path) -> None:
    x = np.nan_to_num(np.random.default_rng(0).lognormal(3, 2, size=(256, 70)).astype(np.float32))
    stop = threading.Event()

    def load() -> None:
        client = httpclient.InferenceServerClient(triton_server.http_url)
        tensor = httpclient.InferInput(contract.INPUT_FEATURES, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        while not stop.is_set():
            client.infer(contract.ENSEMBLE_MODEL, [tensor])
        client.close()

    worker = threading.Thread(target=load, daemon=True)
    with MemorySampler(triton_server.pid, interval=0.5) as sampler:
        worker.start()
        time.sleep(4)
        stop.set()
        worker.join(timeout=30)
    samples = sampler.samples
    assert len(samples) >= 5
    roles = {SERVER_ROLE, contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL, TOTAL}
    for s in samples:
        assert set(s.rss_mb) == roles
        assert all(v > 10 for v in s.rss_mb.values())  # tens of MB each: real processes, not zombies
        assert s.rss_mb[TOTAL] == pytest.approx(sum(v for k, v in s.rss_mb.items() if k != TOTAL))
        assert s.pids[SERVER_ROLE] == [triton_server.pid]
    write_csv(samples, tmp_path / "memory.csv")
    back = read_csv(tmp_path / "memory.csv")
    assert [round(s.rss_mb[TOTAL], 1) for s in samples] == [b.rss_mb[TOTAL] for b in back]
    report = growth_report(samples, *soak_windows(4))
    assert set(report["roles"]) == roles and report["passed"] is not None
    assert plot_memory(samples, tmp_path / "memory.png", "test", warmup_s=1).stat().st_size > 10_000
