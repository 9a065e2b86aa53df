"""``moe-ids loadtest``: a Locust load test against the Triton ensemble, with reports and SLO gates.

Exit status: 0 when every gate passed, 1 when a gate failed, 2 when the run itself could not be done.
"""

from __future__ import annotations

import argparse
from pathlib import Path

GATE_FLAGS = {
    "max_failure_ratio": "largest share of failed requests (0.01 = 1%%)",
    "max_p95_ms": "largest p95 latency in ms",
    "max_p99_ms": "largest p99 latency in ms",
    "min_rps": "least successful requests per second",
    "min_flows_per_s": "least flows scored per second",
}


def register(sub: argparse._SubParsersAction) -> None:
    from moe_ids.perf.loadtest.scenarios import IMPUTATION_STRATEGIES, SCENARIOS
    from moe_ids.perf.loadtest.schedule import SHAPE_DEFAULTS

    p = sub.add_parser(
        "loadtest", help="load-test the served model with Locust; reports, plot and SLO gates",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs Locust headless against the moe_ids ensemble on this machine and applies the "
                    "scenario's SLO gates\n(moe_ids/perf/loadtest/gates.json). Exit status: 0 gates passed, 1 a gate "
                    "failed, "
                    "2 the run could not be done.\n\nscenarios:\n" + "\n".join(
                        f"  {s.name:<14} {s.description}" for s in SCENARIOS.values()))
    p.add_argument("--scenario", choices=list(SCENARIOS), default="realtime")
    p.add_argument("--protocol", choices=("http", "http-json", "grpc"), default="http",
                   help="http: KServe v2 binary tensors; http-json: KServe v2 JSON; grpc: tritonclient gRPC")
    p.add_argument("--users", type=int, default=8, help="concurrent users (peak for step/spike/soak)")
    p.add_argument("--spawn-rate", type=float, default=8.0, help="users started per second")
    p.add_argument("--duration", default="60s", help="run time, e.g. 30s, 5m, 2h (the run stops by itself)")
    p.add_argument("--shape", choices=("constant", "step", "spike", "soak"), default="constant")
    d = SHAPE_DEFAULTS
    p.add_argument("--step-count", type=int, default=None,
                   help=f"step: steps up to --users (default {d['step_count']})")
    p.add_argument("--spike-base-users", type=int, default=None, help="spike: users outside the spike")
    p.add_argument("--spike-start", type=float, default=None,
                   help=f"spike: start, fraction of the run ({d['spike_start']})")
    p.add_argument("--spike-length", type=float, default=None,
                   help=f"spike: length, fraction of the run ({d['spike_length']})")
    p.add_argument("--soak-ramp", type=float, default=None,
                   help=f"soak: ramp-up, fraction of the run ({d['soak_ramp']})")
    p.add_argument("--imputation", choices=IMPUTATION_STRATEGIES, default=None,
                   help="imputation strategy sent with every request (default: the scenario's / the server's)")
    p.add_argument("--host", default=None,
                   help="server to load: 127.0.0.1:PORT or localhost:PORT (HTTP port for http*, gRPC port for "
                        "grpc; default the contract's 8000/8001); other machines are refused")
    p.add_argument("--serve", action="store_true", help="start a local tritonserver first and stop it after")
    p.add_argument("--model-dir", type=Path, default=None, help="--serve: model artifacts (default models/default)")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default results/loadtest-<scenario>-<UTC timestamp>)")
    p.add_argument("--workers", type=int, default=0,
                   help="distributed mode: a Locust master on 127.0.0.1 plus this many worker processes")
    p.add_argument("--gates", type=Path, default=None,
                   help="JSON gates file overriding moe_ids/perf/loadtest/gates.json")
    for key, text in GATE_FLAGS.items():
        p.add_argument(f"--{key.replace('_', '-')}", type=float, default=None, help=text)
    p.add_argument("--flow-seed", type=int, default=0, help="seed of the flows and NaN patterns sent")
    p.add_argument("--analyze", type=Path, default=None, metavar="DIR",
                   help="run nothing: apply the gates, plot and summary to Locust CSVs already in DIR "
                        "(written with --csv DIR/locust, e.g. by a multi-machine run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from moe_ids.perf.loadtest.runner import (
        LoadTestConfig,
        LoadTestError,
        analyze,
        format_summary,
        parse_duration,
        run_loadtest,
    )

    shape_options = {k: getattr(args, k) for k in ("step_count", "spike_base_users", "spike_start",
                                                   "spike_length", "soak_ramp") if getattr(args, k) is not None}
    try:
        cfg = LoadTestConfig(
            scenario=args.scenario, protocol=args.protocol, users=args.users, spawn_rate=args.spawn_rate,
            duration_s=parse_duration(args.duration), host=args.host, out=args.out, shape=args.shape,
            serve=args.serve, model_dir=args.model_dir, gates_file=args.gates,
            gate_overrides={k: getattr(args, k) for k in GATE_FLAGS}, workers=args.workers,
            imputation=args.imputation, flow_seed=args.flow_seed, shape_options=shape_options)
        result = analyze(cfg, args.analyze.resolve()) if args.analyze else run_loadtest(cfg)
    except (ValueError, LoadTestError) as exc:
        print(f"moe-ids loadtest: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result.summary))
    return 0 if result.passed else 1
