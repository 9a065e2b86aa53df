"""``moe-ids serve``: train/export the default model if needed, build the cpu repository, run tritonserver.

Endpoints bind to 127.0.0.1. A watchdog restarts the server if it dies (at most 3 times in 5 minutes);
Ctrl-C or SIGTERM shuts it down cleanly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from moe_ids.core import contract
from moe_ids.core.preprocessing import STRATEGIES


def register(sub: argparse._SubParsersAction) -> None:
    from moe_ids.triton.repository import TARGETS

    p = sub.add_parser("serve", help="serve the model with a local tritonserver (127.0.0.1)")
    p.add_argument("--http-port", type=int, default=contract.DEFAULT_HTTP_PORT)
    p.add_argument("--grpc-port", type=int, default=contract.DEFAULT_GRPC_PORT)
    p.add_argument("--metrics-port", type=int, default=contract.DEFAULT_METRICS_PORT)
    p.add_argument("--target", choices=TARGETS, default="cpu",
                   help="repository target; the bundled tritonserver runs only cpu (gpu targets need NVIDIA's "
                        "container: build them with `moe-ids repository`)")
    from moe_ids.cli.repository import add_layout

    add_layout(p)
    p.add_argument("--model-dir", type=Path, default=None, help="model artifacts (default: models/default)")
    p.add_argument("--repository", type=Path, default=None,
                   help="where to generate the repository (default: build/serve-repository)")
    p.add_argument("--instances", type=int, default=None, help="instances of each composing model")
    p.add_argument("--preprocess-instances", type=int, default=None,
                   help="preprocess-step instances (see `moe-ids repository --help`)")
    p.add_argument("--classifier-instances", type=int, default=None,
                   help="classifier-step instances (see `moe-ids repository --help`)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads per classifier instance")
    p.add_argument("--no-queue-policy", action="store_true",
                   help="no priority levels or queue policies (see `moe-ids repository --help`)")
    p.add_argument("--max-restarts", type=int, default=3, help="watchdog restarts allowed within 5 minutes")
    p.add_argument("--nats", action="store_true",
                   help="also start a local nats-server with JetStream for `moe-ids stream` (one-machine case)")
    p.add_argument("--nats-port", type=int, default=None, help="NATS client port with --nats (default 4222)")
    p.add_argument("--nats-monitor-port", type=int, default=None, help="NATS monitoring port (default 8222)")
    p.add_argument("--nats-store", type=Path, default=None,
                   help="JetStream store directory (default: build/jetstream; kept across restarts)")
    p.set_defaults(func=run)


def example_request(path: Path) -> Path:
    """A KServe v2 JSON request holding one real flow of the bundled data (NaN for missing values)."""
    import numpy as np

    from moe_ids.data.loading import default_training_csv, load_flows

    features = load_flows(default_training_csv()).features.to_numpy(np.float64)[:200]
    row = features[np.isfinite(features).all(axis=1).argmax()]
    body = {"inputs": [{"name": contract.INPUT_FEATURES, "shape": [1, len(row)], "datatype": "FP32",
                        "data": [float(v) for v in row]}],
            "outputs": [{"name": contract.PROBABILITIES, "parameters": {"classification": 2}},
                        {"name": contract.PREDICTED_CLASS}, {"name": contract.CONFIDENCE},
                        {"name": contract.TRUST}, {"name": contract.OUT_OF_DISTRIBUTION}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def run(args: argparse.Namespace) -> int:
    from moe_ids.core.artifacts import project_root
    from moe_ids.triton.ops.bootstrap import ensure_model
    from moe_ids.triton.ops.server import ServerError, TritonServer
    from moe_ids.triton.ops.supervisor import Supervisor
    from moe_ids.triton.repository import build_repository, options_for_model

    if args.target != "cpu":
        print(f"--target {args.target}: the bundled tritonserver has no onnxruntime/TensorRT backend; "
              "generate the repository with `moe-ids repository --target ...` and serve it in NVIDIA's container")
        return 2
    model_dir = ensure_model(args.model_dir)
    repository = args.repository or project_root() / "build" / "serve-repository"
    build = repository.parent  # log and example request live beside the repository
    from moe_ids.cli.repository import instance_overrides

    overrides = instance_overrides(args)
    if args.threads is not None:
        overrides["threads"] = args.threads
    overrides["queue_policy"] = not args.no_queue_policy
    overrides["layout"] = args.layout
    build_repository(model_dir, repository, options_for_model(model_dir, **overrides))
    server = TritonServer(repository, http_port=args.http_port, grpc_port=args.grpc_port,
                          metrics_port=args.metrics_port, log_path=build / "tritonserver.log")
    supervisor = Supervisor(server, max_restarts=args.max_restarts)
    supervisor.install_signal_handlers()
    try:
        server.start()
    except ServerError as exc:
        print(exc)
        return 1
    broker = None
    if args.nats:
        try:
            broker = start_nats(args, build)
        except RuntimeError as exc:
            print(exc)
            server.stop()
            return 1
    request = example_request(build / "example_request.json")
    print(f"tritonserver {server.pid} ready, serving {repository}\n"
          f"  HTTP    http://{server.http_url}   (KServe v2)\n"
          f"  gRPC    {server.grpc_url}\n"
          f"  metrics http://{server.metrics_url}/metrics\n"
          f"  log     {server.log_path}\n"
          f"models: {contract.ENSEMBLE_MODEL} (FEATURES [-1,{contract.INPUT_WIDTHS[contract.INPUT_FEATURES]}] FP32, "
          f"NaN = missing; optional IMPUTATION [-1,1] BYTES {'|'.join(STRATEGIES)}), "
          + (f"{contract.PREPROCESS_MODEL}, {contract.CLASSIFIER_MODEL}\n" if args.layout == "ensemble" else
             "one Python model (one-hop layout)\n")
          + f"example (one real flow):\n"
          f"  curl -s http://{server.http_url}/v2/models/{contract.ENSEMBLE_MODEL}/infer -d @{request}\n"
          + (f"NATS JetStream {broker.url} (store {broker.store_dir}, monitoring {broker.monitor_url})\n"
             f"  score flows from it: moe-ids stream --nats {broker.url} --url {server.grpc_url}\n"
             f"  send a file:         moe-ids stream publish FILE --nats {broker.url}\n" if broker else "")
          + "Ctrl-C to stop.", flush=True)
    try:
        return supervisor.run()
    finally:
        if broker is not None:
            broker.stop()


def start_nats(args: argparse.Namespace, build: Path):
    """The local nats-server beside Triton; its store survives restarts so streams and consumers persist."""
    from moe_ids.streaming import topology
    from moe_ids.streaming.nats_server import NatsServer

    server = NatsServer(args.nats_store or build / "jetstream", port=args.nats_port or topology.DEFAULT_NATS_PORT,
                        monitor_port=args.nats_monitor_port or topology.DEFAULT_NATS_MONITOR_PORT,
                        log_path=build / "nats-server.log")
    return server.start()
