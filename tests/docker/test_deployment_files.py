"""Invariants of the deployment files: Dockerfile, compose stack, Prometheus/Grafana, Kubernetes manifests.

No Docker engine or cluster exists here, so these read the files (and run the real Docker Compose v2,
hadolint, kubectl kustomize and Kubernetes schema validation where installed). The production command line
itself runs against a real tritonserver in test_entrypoint_server.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from moe_ids.core.artifacts import project_root
from moe_ids.triton.repository import TARGETS

DOCKER = project_root() / "docker"
K8S = DOCKER / "k8s"
TRITON_PORTS = {8000, 8001, 8002}
RESTRICTED = "model-repository,shared-memory,trace,logging"
DOCKERFILES = ("Dockerfile", "Dockerfile.loadtest", "Dockerfile.stream")
IMAGE_TAG = re.compile(r"^nvcr\.io/nvidia/tritonserver:(\d\d)\.(\d\d)-py3$")


def venv_tool(name: str) -> str | None:
    """A tool installed by the dev extra next to this interpreter, else on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def triton_image_tag() -> str:
    args = dict(a.split("=", 1) for i, a in dockerfile_instructions(DOCKER / "Dockerfile") if i == "ARG" and "=" in a)
    return args["TRITON_IMAGE"]


def triton_version_of_tag(tag: str) -> str:
    """NGC container yy.mm -> Triton server version (24.10 is 2.51.0, one minor version per monthly release)."""
    m = IMAGE_TAG.match(tag)
    assert m, tag
    yy, mm = int(m.group(1)), int(m.group(2))
    return f"2.{(yy - 24) * 12 + mm + 41}.0"


# ---------------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_pins_triton_and_runs_as_non_root_with_healthcheck() -> None:
    steps = dockerfile_instructions(DOCKER / "Dockerfile")
    tag = triton_image_tag()
    assert IMAGE_TAG.match(tag) and "latest" not in tag
    assert triton_version_of_tag("nvcr.io/nvidia/tritonserver:24.10-py3") == "2.51.0"
    assert [a for i, a in steps if i == "FROM"] == ["${TRITON_IMAGE}"]
    users = [a for i, a in steps if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [a for i, a in steps if i == "HEALTHCHECK"]
    assert len(health) == 1 and "moe_ids.triton.ops.probe" in health[0]
    exposed = {int(p) for i, a in steps if i == "EXPOSE" for p in a.split()}
    assert exposed == TRITON_PORTS
    target = [a for i, a in steps if i == "ARG" and a.startswith("TARGET=")]
    assert target and target[0].split("=")[1] in TARGETS and target[0].split("=")[1].startswith("gpu")
    assert any(i == "COPY" and "build/repository-${TARGET}" in a for i, a in steps)
    entry = [a for i, a in steps if i == "ENTRYPOINT"]
    assert entry and "moe-ids-triton" in entry[0]
    assert "--shm-size" in (DOCKER / "Dockerfile").read_text()  # documented next to the run command


def test_dockerfile_installs_numpy_at_the_project_pin_and_no_torch() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert 'startswith("numpy==")' in text and "--no-deps ." in text
    assert "torch" not in re.sub(r"#.*", "", text)


def test_python_backend_modules_import_with_numpy_alone() -> None:
    """What the image installs is enough: the backends and monitor import without pandas, torch, clients."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'pandas', 'torch', 'tritonclient', 'onnxruntime', 'onnx', 'locust'}:\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import moe_ids.triton.backends.preprocess, moe_ids.triton.backends.monitoring\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_hadolint_passes() -> None:
    tool = venv_tool("hadolint")
    if tool is None:
        pytest.skip("hadolint not installed (dev extra)")
    for name in DOCKERFILES:
        subprocess.run([tool, str(DOCKER / name)], check=True, timeout=60)


def test_dockerignore_lets_in_what_the_dockerfiles_copy() -> None:
    for name in DOCKERFILES:
        allowed = [line[1:].rstrip("/") for line in (DOCKER / f"{name}.dockerignore").read_text().splitlines()
                   if line.startswith("!")]
        for i, args in dockerfile_instructions(DOCKER / name):
            if i == "COPY":
                sources = [a for a in args.split()[:-1] if not a.startswith("--")]
                for src in sources:
                    src = src.replace("${TARGET}", "gpu-onnx")
                    assert any(src == a or src.startswith(a + "/") for a in allowed), (name, src)


# ---------------------------------------------------------------------------------------------------- entrypoint


def test_entrypoint_holds_the_production_flags() -> None:
    text = (DOCKER / "triton-entrypoint.sh").read_text()
    for flag in ("--model-control-mode=none", "--strict-readiness=true", "--disable-auto-complete-config",
                 "--http-restricted-api=", "--grpc-restricted-protocol=", "--metrics-config=summary_latencies=true"):
        assert flag in text, flag
    assert f'restricted="{RESTRICTED}:admin-key=${{key}}"' in text
    assert os.access(DOCKER / "triton-entrypoint.sh", os.X_OK)


def test_one_exit_timeout_for_the_local_launcher_the_image_and_the_pod() -> None:
    """Triton drains in-flight requests for --exit-timeout-secs after SIGTERM; whoever stops it must wait longer."""
    from moe_ids.triton.ops import server

    text = (DOCKER / "triton-entrypoint.sh").read_text()
    assert re.findall(r"--exit-timeout-secs=(\d+)", text) == [str(server.EXIT_TIMEOUT_S)]
    local = server.TritonServer(Path("/nonexistent")).command(server.TritonInstall(Path("/t"), Path("/l")), Path("/b"))
    assert f"--exit-timeout-secs={server.EXIT_TIMEOUT_S}" in local
    assert server.STOP_GRACE_S > server.EXIT_TIMEOUT_S
    pod = named("Deployment", "moe-ids-triton")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > server.EXIT_TIMEOUT_S


def test_entrypoint_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "MOE_IDS_MODEL_REPOSITORY": str(tmp_path),
           "MOE_IDS_ADMIN_KEY_FILE": str(tmp_path / "absent"), "TRITONSERVER": "/bin/false"}
    done = subprocess.run(["bash", str(DOCKER / "triton-entrypoint.sh")], env=env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 64 and "no admin key" in done.stderr
    done = subprocess.run(["bash", str(DOCKER / "triton-entrypoint.sh")], env={**env, "MOE_IDS_ADMIN_KEY": "short"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 64 and "at least 16" in done.stderr


# ---------------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_triton_service(compose: dict) -> None:
    triton = compose["services"]["triton"]
    assert triton["build"]["dockerfile"] == "docker/Dockerfile"
    assert "latest" not in triton["image"]
    assert triton["shm_size"] == "1gb"
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    published = {int(p.split(":")[-1]) for p in triton["ports"]}
    assert published == TRITON_PORTS
    assert all(p.startswith("127.0.0.1:") for p in triton["ports"])
    assert "moe_ids_admin_key" in triton["secrets"]
    assert "moe_ids.triton.ops.probe" in " ".join(triton["healthcheck"]["test"])
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert image and not image.endswith(":latest") and ":" in image, name
        assert all(str(p).startswith("127.0.0.1:") for p in service.get("ports", [])), name


def test_compose_locust_runs_the_project_scenarios(compose: dict) -> None:
    from moe_ids.perf.loadtest.scenarios import SCENARIOS

    master, worker = compose["services"]["locust-master"], compose["services"]["locust-worker"]
    assert "--master" in master["command"] and "--worker" in worker["command"]
    scenario = next(a for a in master["command"] if a.startswith("--scenario="))
    default = re.search(r":-([\w-]+)\}", scenario).group(1)
    assert default in SCENARIOS
    assert any(a.startswith("--host=http://triton:8000") for a in master["command"])
    assert (DOCKER / "Dockerfile.loadtest").is_file()


def test_compose_stream_profile_is_a_three_node_jetstream_cluster_with_scorers(compose: dict) -> None:
    nodes = {name: svc for name, svc in compose["services"].items() if name.startswith("nats-")}
    assert sorted(nodes) == ["nats-1", "nats-2", "nats-3"]
    routes = {f"nats://{name}:6222" for name in nodes}
    for name, node in nodes.items():
        args = node["command"]
        assert "--jetstream" in args and args[args.index("--name") + 1] == name
        assert set(args[args.index("--routes") + 1].split(",")) == routes
        assert any(v.endswith(":/data") for v in node["volumes"]) and node["profiles"] == ["stream"]
        assert "js-enabled-only" in " ".join(node["healthcheck"]["test"])
    assert len({v for n in nodes.values() for v in n["volumes"]}) == 3, "a store of its own per node"
    scorer = compose["services"]["scorer"]
    args = scorer["command"]
    assert set(args[args.index("--nats") + 1].split(",")) == {f"nats://{n}:4222" for n in nodes}
    assert args[args.index("--replicas") + 1] == "3" and args[args.index("--url") + 1] == "triton:8001"
    assert scorer["build"]["dockerfile"] == "docker/Dockerfile.stream"
    steps = dockerfile_instructions(DOCKER / "Dockerfile.stream")
    assert any(i == "RUN" and '".[stream]"' in a for i, a in steps)
    assert [a for i, a in steps if i == "USER"][-1].split(":")[0] not in ("root", "0")
    entry = json.loads(next(a for i, a in steps if i == "ENTRYPOINT"))
    assert entry[:2] == ["moe-ids", "stream"] and entry[entry.index("--metrics-port") + 1] == "9400"


def test_prometheus_scrapes_triton_metrics_port() -> None:
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert "triton:8002" in targets
    scorer = next(job for job in config["scrape_configs"] if job["job_name"] == "scorer")
    assert scorer["dns_sd_configs"][0]["names"] == ["scorer"] and scorer["dns_sd_configs"][0]["port"] == 9400


def test_grafana_dashboard_uses_the_provisioned_datasource() -> None:
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yaml").read_text())
    uid = datasource["datasources"][0]["uid"]
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/moe-ids.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    dashboard = json.loads((DOCKER / "grafana/dashboards/moe-ids.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert {p["datasource"]["uid"] for p in panels} == {uid}
    text = " ".join(t["expr"] for p in panels for t in p["targets"])
    for needle in ("nv_inference_count", "nv_inference_exec_count", "nv_inference_queue_duration_us",
                   'quantile="0.99"', "moe_ids_predictions_total", "moe_ids_missing_values_total",
                   "moe_ids_temporal_gating_weight_bucket", "moe_ids_feature_psi"):
        assert needle in text, needle


def compose_command() -> list[str] | None:
    tool = venv_tool("docker-compose")
    if tool:
        return [tool]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def test_docker_compose_config_validates() -> None:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("no Docker Compose v2 (docker compose plugin or the dev extra's docker-compose)")
    env = {**os.environ, "MOE_IDS_ADMIN_KEY": "x" * 16, "GRAFANA_ADMIN_PASSWORD": "y" * 12}
    for profile in ([], ["--profile", "loadtest"], ["--profile", "stream"]):
        done = subprocess.run([*cmd, "-f", str(DOCKER / "compose.yaml"), *profile, "config", "--format", "json"],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        resolved = json.loads(done.stdout)
        assert int(resolved["services"]["triton"]["shm_size"]) == 1 << 30
        if profile == ["--profile", "loadtest"]:
            assert set(resolved["services"]) == {"triton", "prometheus", "grafana", "locust-master", "locust-worker"}
    assert set(resolved["services"]) == {"triton", "prometheus", "grafana", "nats-1", "nats-2", "nats-3", "scorer"}
    assert resolved["services"]["scorer"]["depends_on"]["nats-3"]["condition"] == "service_healthy"


# ---------------------------------------------------------------------------------------------------- Kubernetes


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs.extend((path.name, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def of_kind(kind: str) -> list[dict]:
    return [d for _, d in k8s_documents() if d["kind"] == kind]


def named(kind: str, name: str) -> dict:
    (doc,) = [d for d in of_kind(kind) if d["metadata"]["name"] == name]
    return doc


def test_manifests_validate_against_kubernetes_schemas() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    checked = 0
    for name, doc in k8s_documents():
        try:
            kv.validate(doc, "1.30.0", strict=True)
            checked += 1
        except kv.SchemaNotFoundError:  # CRDs: PodMonitor, ServingRuntime, InferenceService
            assert doc["apiVersion"].split("/")[0] in ("monitoring.coreos.com", "serving.kserve.io"), name
    assert checked >= 6


def test_deployment_probes_resources_security_and_shm() -> None:
    deployment = named("Deployment", "moe-ids-triton")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    liveness = container["livenessProbe"]["exec"]["command"]
    assert liveness[:3] == ["python3", "-m", "moe_ids.triton.ops.probe"] and "127.0.0.1:8000" in liveness
    assert {p["containerPort"] for p in container["ports"]} == TRITON_PORTS
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    shm = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"}
    assert any(v["name"] in shm and v["emptyDir"]["medium"] == "Memory" for v in pod["volumes"])
    assert any(m["mountPath"] == "/run/secrets/moe_ids_admin_key" for m in container["volumeMounts"])
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "8002"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert all(i["newTag"] != "latest" for i in kustomization["images"])


def test_services_and_podmonitor_expose_the_triton_ports() -> None:
    ports = {p["port"] for s in of_kind("Service") if s["metadata"]["name"].startswith("moe-ids-triton")
             for p in s["spec"]["ports"]}
    assert ports == TRITON_PORTS
    monitor = named("PodMonitor", "moe-ids-triton")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def adapter_config() -> dict:
    (config,) = [d for d in of_kind("ConfigMap") if d["metadata"]["name"].startswith("prometheus-adapter")]
    return yaml.safe_load(config["data"]["config.yaml"])


def adapter_rule() -> dict:
    return adapter_config()["rules"][0]


def test_hpa_scales_on_the_adapter_queue_time_metric() -> None:
    hpa = named("HorizontalPodAutoscaler", "moe-ids-triton")
    metric = hpa["spec"]["metrics"][0]
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == adapter_rule()["name"]["as"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "moe-ids-triton"
    assert "nv_inference_queue_duration_us" in adapter_rule()["metricsQuery"]
    assert "nv_inference_request_success" in adapter_rule()["metricsQuery"]


def test_nats_statefulset_is_a_three_node_jetstream_cluster_on_its_own_volumes() -> None:
    nats = named("StatefulSet", "nats")
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["serviceName"] == "nats"
    (container,) = nats["spec"]["template"]["spec"]["containers"]
    args = dict(a.split("=", 1) if "=" in a else (a, "") for a in container["args"])
    assert "--jetstream" in args and args["--store_dir"] == "/data"
    assert set(args["--routes"].split(",")) == {f"nats://nats-{i}.nats:6222" for i in range(3)}
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    assert any(m["mountPath"] == "/data" for m in container["volumeMounts"])
    assert "js-enabled-only" in container["readinessProbe"]["httpGet"]["path"]
    assert named("Service", "nats")["spec"]["clusterIP"] == "None"
    assert named("PodDisruptionBudget", "nats")["spec"]["maxUnavailable"] == 1


def test_scorer_deployment_uses_r3_streams_and_scales_on_consumer_lag() -> None:
    scorer = named("Deployment", "moe-ids-scorer")
    (container,) = scorer["spec"]["template"]["spec"]["containers"]
    args = dict(a.split("=", 1) for a in container["args"])
    assert set(args["--nats"].split(",")) == {f"nats://nats-{i}.nats:4222" for i in range(3)}
    assert args["--replicas"] == "3" and args["--url"] == "moe-ids-triton:8001"
    assert container["ports"][0]["containerPort"] == 9400 and container["image"] == "moe-ids-stream"
    assert scorer["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert named("PodMonitor", "moe-ids-scorer")["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    hpa = named("HorizontalPodAutoscaler", "moe-ids-scorer")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "moe-ids-scorer"
    (metric,) = hpa["spec"]["metrics"]
    (rule,) = adapter_config()["externalRules"]
    assert metric["type"] == "External" and metric["external"]["metric"]["name"] == rule["name"]["as"]
    from moe_ids.streaming.metrics import PREFIX

    assert f"{PREFIX}_consumer_pending" in rule["metricsQuery"] and f"{PREFIX}_consumer_pending" in rule["seriesQuery"]


def test_kserve_inference_service_uses_a_triton_runtime_with_this_image() -> None:
    (runtime,) = of_kind("ServingRuntime")
    (isvc,) = of_kind("InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["runtime"] == runtime["metadata"]["name"]
    (container,) = runtime["spec"]["containers"]
    assert "moe-ids-triton" in container["image"] and not container["image"].endswith(":latest")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MOE_IDS_MODEL_REPOSITORY"] == "/mnt/models"
    assert any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])


def test_kustomize_renders() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout) if d]
    assert {"Namespace", "Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitor", "StatefulSet"} <= set(kinds)
    assert "registry.example.com/moe-ids/moe-ids-stream:0.1.0" in done.stdout
    assert "registry.example.com/moe-ids/moe-ids-triton:0.1.0-gpu-onnx" in done.stdout


def test_dashboard_and_autoscaler_queries_parse_as_promql() -> None:
    promql = pytest.importorskip("promql_parser")
    dashboard = json.loads((DOCKER / "grafana/dashboards/moe-ids.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] if p["type"] != "row" for t in p["targets"]]
    # prometheus-adapter fills in its templates before querying
    rule = adapter_rule()["metricsQuery"].replace("<<.GroupBy>>", "namespace, pod")
    queries.append(rule.replace("<<.LabelMatchers>>", 'namespace="moe-ids", pod=~"moe-ids-triton-.*"'))
    external = adapter_config()["externalRules"][0]["metricsQuery"]
    queries.append(external.replace("<<.LabelMatchers>>", 'namespace="moe-ids"'))
    assert len(queries) >= 20
    for query in queries:
        promql.parse(query)  # raises ValueError naming the problem
    with pytest.raises(ValueError):
        promql.parse("sum(rate(nv_inference_count[1m])")
