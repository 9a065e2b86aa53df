"""The stream benchmark's bookkeeping (its runs start real servers and are not part of the suite)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from moe_ids.streaming.bench import start_up_cpu


def test_start_up_cpu_is_read_from_each_workers_bind_line(tmp_path: Path) -> None:
    logs = []
    for i, seconds in enumerate(("1.25", "0.75")):
        path = tmp_path / f"worker-{i}.log"
        path.write_text("moe-ids stream: scoring FLOWS (flows.>) with consumer 'scorer' on nats://127.0.0.1:1 -> "
                        f"Triton 127.0.0.1:2 model 'moe_ids' 1.3.0 (start-up took {seconds} CPU s)\n")
        logs.append(SimpleNamespace(log_path=path))
    assert start_up_cpu(logs) == pytest.approx(2.0)


def test_a_worker_that_never_bound_is_an_error_not_zero(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    path.write_text("moe-ids stream: NATS at nats://127.0.0.1:1 not available\n")
    with pytest.raises(RuntimeError, match="no start-up line"):
        start_up_cpu([SimpleNamespace(log_path=path)])
