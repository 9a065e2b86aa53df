"""Fixtures of the serving tests: real held-out flows and the offline PyTorch reference."""

from __future__ import annotations

import numpy as np
import pytest

N_FLOWS = 384


@pytest.fixture(scope="session")
def reference_model():
    """(torch model, Preprocessor) of the default artifact, the offline reference for served outputs."""
    from moe_ids.core.artifacts import default_model_dir, load_model, load_stats
    from moe_ids.core.preprocessing import Preprocessor
    from moe_ids.triton.ops.bootstrap import ensure_model

    model_dir = ensure_model(default_model_dir())
    return load_model(model_dir), Preprocessor(load_stats(model_dir))


@pytest.fixture(scope="session")
def held_out_flows() -> np.ndarray:
    """Real flows of the test split training never saw, float32; the second half has features dropped.

    Rows i >= N_FLOWS // 2 lose a growing fraction (10% .. 80%) of their features, so imputation matters.
    """
    from moe_ids.core.artifacts import default_model_dir
    from moe_ids.data.corpus import model_split
    from moe_ids.model.prediction import drop_features

    corpus, split = model_split(default_model_dir())
    test = split["test"]
    rng = np.random.default_rng(2017)
    rows = np.sort(rng.choice(test, size=N_FLOWS, replace=False))
    x = corpus.features[rows].astype(np.float32)
    half = N_FLOWS // 2
    x[half:] = drop_features(x[half:], np.linspace(0.1, 0.8, N_FLOWS - half), rng)
    return x


@pytest.fixture(scope="session")
def probe_server(triton_serving, tmp_path_factory: pytest.TempPathFactory):
    """A second real server whose queues make scheduling observable (not the production settings).

    Requests wait up to 300 ms for a batch of 1024, and real-time (priority 1) requests may wait only 1 us
    before Triton rejects them: a priority-1 request is rejected at once, a bulk one is answered after the
    queue delay. This server is also the one lifecycle tests kill and restart.
    """
    with triton_serving(tmp_path_factory.mktemp("triton-probe"), layout="ensemble", realtime_timeout_us=1,
                        max_queue_delay_us=300_000, preferred_batch_sizes=(1024,), warmup_batch_sizes=()) as server:
        yield server
