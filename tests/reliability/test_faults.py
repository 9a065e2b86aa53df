"""Backend processes killed for real (SIGKILL) on a server of this module's own.

What Triton 2.51 does by itself is pinned down first: a dead Python-backend stub is not restarted and its
model still reports READY while every inference fails. Then the watchdog of ``moe-ids serve`` (Supervisor)
is shown to notice the dead stub and bring the service back. The watchdog's restart of a killed tritonserver
is in tests/tritonserver/ops/test_server_lifecycle.py, the whole of ``moe-ids serve`` recovering from a killed stub
in test_serve_recovery.py, and ``moe-ids score`` keeping exactly one output row per input
row across a server restart in tests/client/test_score_cli.py::test_score_survives_a_server_restart.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from moe_ids.core import contract
from moe_ids.data.loading import load_flows
from moe_ids.triton.ops.stubs import backend_stubs, missing_stubs
from moe_ids.triton.ops.supervisor import Supervisor

pytestmark = pytest.mark.integration

FLOWS_CSV = "data/cicids2017-original/orig_Friday-DDos_head9998.csv.gz"
RECOVERY_DEADLINE_S = 90.0  # a bound on waiting, not a performance figure (the time is printed)
PYTHON_MODELS = (contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL)


@pytest.fixture(scope="module")
def server(triton_serving, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    with triton_serving(tmp_path_factory.mktemp("faults"), layout="ensemble", warmup_batch_sizes=()) as srv:
        yield srv


@pytest.fixture(scope="module")
def flows() -> np.ndarray:
    return load_flows(FLOWS_CSV).features.to_numpy(np.float32)[:16]


def infer(server, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url, network_timeout=30)
    try:
        tensor = httpclient.InferInput(contract.INPUT_FEATURES, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return client.infer(contract.ENSEMBLE_MODEL, [tensor]).as_numpy(contract.PROBABILITIES)
    finally:
        client.close()


def model_ready(server, model: str) -> bool:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        return client.is_model_ready(model)
    finally:
        client.close()


def test_every_python_model_runs_in_its_own_stub(server) -> None:
    from moe_ids.triton.repository import RepositoryOptions

    stubs = backend_stubs(server.pid)
    assert set(stubs) == set(PYTHON_MODELS)
    defaults = RepositoryOptions()  # one stub process per instance
    assert len(stubs[contract.PREPROCESS_MODEL]) == defaults.preprocess_instances == 2
    assert len(stubs[contract.CLASSIFIER_MODEL]) == defaults.classifier_instances == 1
    assert len({pid for pids in stubs.values() for pid in pids}) == 3


def test_triton_alone_leaves_a_killed_stub_dead_and_the_model_ready(server, flows: np.ndarray) -> None:
    """The behaviour the watchdog exists for (Triton 2.51, measured): no restart, READY, every request fails."""
    reference = infer(server, flows)
    stubs = backend_stubs(server.pid)
    os.kill(stubs[contract.CLASSIFIER_MODEL][0], signal.SIGKILL)
    time.sleep(1.0)
    for _ in range(3):
        with pytest.raises(InferenceServerException, match="Stub process .* is not healthy"):
            infer(server, flows)
        time.sleep(0.5)
    assert contract.CLASSIFIER_MODEL not in backend_stubs(server.pid)
    assert model_ready(server, contract.CLASSIFIER_MODEL) and model_ready(server, contract.ENSEMBLE_MODEL)
    assert server.running()
    server.stop(grace=1.0)  # repair for the next test
    server.start()
    np.testing.assert_allclose(infer(server, flows), reference, atol=1e-6, rtol=0)


def test_watchdog_restarts_the_server_when_a_stub_dies(server, flows: np.ndarray) -> None:
    """The preprocess stub here; the classifier's under ``moe-ids serve`` in test_serve_recovery.py."""
    model = contract.PREPROCESS_MODEL
    reference = infer(server, flows)
    messages: list[str] = []
    supervisor = Supervisor(server, max_restarts=2, poll_s=0.2, log=messages.append)
    thread = threading.Thread(target=supervisor.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not supervisor.stubs and time.monotonic() < deadline:
            time.sleep(0.05)
        before = backend_stubs(server.pid)
        assert supervisor.stubs == before and model in before
        old_server = server.pid
        victim = before[model][0]
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        recovered = None
        while time.monotonic() - killed < RECOVERY_DEADLINE_S:
            try:
                out = infer(server, flows)
            except Exception:  # noqa: BLE001 - failing, refused or reset while the server restarts
                time.sleep(0.1)
                continue
            if server.pid != old_server:  # an answer from the old server would be a request that raced the kill
                recovered = time.monotonic() - killed
                np.testing.assert_allclose(out, reference, atol=1e-6, rtol=0)
                break
            time.sleep(0.1)
        assert recovered is not None, f"no correct answer {RECOVERY_DEADLINE_S:.0f} s after killing {model}: {messages}"
        print(f"\nkilled {model} stub (pid {victim}): correct answers again after {recovered:.1f} s")
        assert len(supervisor.restarts) == 1
        assert any(f"Python-backend stub of {model} (pid {victim}) died" in m for m in messages), messages
        # The supervisor records the new server's stubs on its next poll after readiness: give it that poll.
        settle = time.monotonic() + 10
        after = backend_stubs(server.pid)
        while missing_stubs(supervisor.stubs, after) and time.monotonic() < settle:
            time.sleep(0.1)
            after = backend_stubs(server.pid)
        assert set(after) == set(PYTHON_MODELS) and not missing_stubs(supervisor.stubs, after)
        assert victim not in after[model]
    finally:
        supervisor.request_stop()
        thread.join(timeout=60)
    assert not thread.is_alive() and not server.running()
    server.start()  # the supervisor stops the server on exit; serve the next test
