"""The production command line (docker/triton-entrypoint.sh) run by the real tritonserver 2.51.

The image's Triton (NGC 24.10) is the same server version as the nvidia-pytriton binary here, so this checks
that every production flag is accepted, that the restricted APIs demand the admin key while inference, health
and metrics stay open, and that every metric the Grafana dashboard and the autoscaler query exists.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_deployment_files import DOCKER, adapter_rule, triton_image_tag, triton_version_of_tag

from moe_ids.core.contract import ENSEMBLE_MODEL, INPUT_FEATURES
from moe_ids.core.schema import N_FEATURES
from moe_ids.triton.ops.server import TritonInstall, TritonServer

pytestmark = pytest.mark.integration

ADMIN_KEY = "test-admin-key-0123456789"


class EntrypointServer(TritonServer):
    """TritonServer launched through the image's entrypoint script instead of its own command line."""

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        return [
            "bash", str(DOCKER / "triton-entrypoint.sh"),
            f"--backend-directory={backends}",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
        ]


@pytest.fixture(scope="module")
def production_server(triton_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EntrypointServer]:
    from moe_ids.triton.ops.server import find_triton

    mp = pytest.MonkeyPatch()
    key_file = tmp_path_factory.mktemp("secrets") / "admin_key"
    key_file.write_text(ADMIN_KEY + "\n")
    mp.setenv("MOE_IDS_MODEL_REPOSITORY", str(triton_server.repository))
    mp.setenv("MOE_IDS_ADMIN_KEY_FILE", str(key_file))
    mp.setenv("TRITONSERVER", str(find_triton().binary))
    server = EntrypointServer(triton_server.repository, log_path=tmp_path_factory.mktemp("prod") / "triton.log")
    try:
        server.start()  # the child process keeps the environment it was started with
    finally:
        mp.undo()
    try:
        yield server
    finally:
        server.stop()


def request(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://{url}", method=method, headers=headers or {},
                                 data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_server_version_matches_the_image(production_server) -> None:
    status, body = request(f"{production_server.http_url}/v2")
    assert status == 200
    assert json.loads(body)["version"] == triton_version_of_tag(triton_image_tag())


def test_restricted_apis_need_the_admin_key(production_server) -> None:
    url = production_server.http_url
    status, body = request(f"{url}/v2/repository/index", "POST")
    assert status == 403 and "admin-key" in body
    assert request(f"{url}/v2/repository/index", "POST", {"admin-key": "wrong-key-0123456789"})[0] == 403
    status, body = request(f"{url}/v2/repository/index", "POST", {"admin-key": ADMIN_KEY})
    assert status == 200 and ENSEMBLE_MODEL in body
    assert request(f"{url}/v2/logging")[0] == 403
    assert request(f"{url}/v2/trace/setting")[0] == 403
    assert request(f"{url}/v2/systemsharedmemory/status")[0] == 403
    # open: probes, metadata, statistics, metrics
    assert request(f"{url}/v2/health/ready")[0] == 200
    assert request(f"{url}/v2/health/live")[0] == 200
    assert request(f"{url}/v2/models/{ENSEMBLE_MODEL}")[0] == 200
    assert request(f"{url}/v2/models/{ENSEMBLE_MODEL}/stats")[0] == 200


def test_grpc_restricted_protocol_needs_the_admin_key(production_server) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(production_server.grpc_url)
    try:
        assert client.is_server_ready()
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.get_model_repository_index()
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.get_log_settings()
        # Triton prefixes gRPC restriction headers: the metadata key is triton-grpc-protocol-<header>.
        index = client.get_model_repository_index(headers={"triton-grpc-protocol-admin-key": ADMIN_KEY})
        assert ENSEMBLE_MODEL in {m.name for m in index.models}
        with pytest.raises(InferenceServerException, match="admin-key"):
            client.get_model_repository_index(headers={"admin-key": ADMIN_KEY})
        assert client.is_model_ready(ENSEMBLE_MODEL)
        assert client.get_inference_statistics(ENSEMBLE_MODEL).model_stats
    finally:
        client.close()


def test_every_metric_the_dashboard_and_autoscaler_query_is_published(production_server) -> None:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(production_server.http_url)
    x = np.zeros((8, N_FEATURES), dtype=np.float32)
    x[:, 0] = 1000.0
    x[0, 3] = np.nan
    tensor = httpclient.InferInput(INPUT_FEATURES, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    for _ in range(3):
        client.infer(ENSEMBLE_MODEL, [tensor])
    client.close()

    dashboard = json.loads((DOCKER / "grafana/dashboards/moe-ids.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    queries.append(adapter_rule()["metricsQuery"])
    unquoted = [re.sub(r'"[^"]*"', '""', q) for q in queries]  # model names in label values are not metrics
    wanted = {m for q in unquoted for m in re.findall(r"\b((?:nv|moe_ids)_[a-z0-9_]+)\b", q)}
    wanted = {m for m in wanted if not m.startswith("nv_gpu_")}  # no GPU here
    assert "moe_ids_predictions_total" in wanted and "nv_inference_request_summary_us" in wanted
    from_stream_workers = {m for m in wanted if m.startswith("moe_ids_stream_")}  # scraped from the scorers
    assert not from_stream_workers - stream_worker_metric_names(), sorted(from_stream_workers)
    wanted -= from_stream_workers

    import time

    deadline = time.monotonic() + 15
    while True:
        status, text = request(f"{production_server.metrics_url}/metrics")
        published = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, flags=re.MULTILINE))
        missing = wanted - published
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(0.5)  # the moe_ids_* counters reach Triton on the monitor's next flush
    assert status == 200
    assert not missing, sorted(missing)


def stream_worker_metric_names() -> set[str]:
    """Every series name a scorer worker can publish, labelled or not, as Prometheus scrapes it."""
    from moe_ids.streaming.metrics import WorkerMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    return {family.name + suffix for family in WorkerMetrics().registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


def test_liveness_probe_passes_with_the_production_flags(production_server) -> None:
    """The probe the image and the manifests use reads model configs and infers through the open APIs."""
    from moe_ids.triton.ops.probe import check

    assert check(production_server.http_url, production_server.pid) == []
