"""Container liveness probe: is this tritonserver still able to score a flow?

Triton 2.51 keeps ``/v2/health/live`` and ``/v2/health/ready`` green when a Python-backend stub has died, while
every request routed to that stub fails (docs/reliability.md). ``moe-ids serve`` has a watchdog for that; in a
container the orchestrator restarts the pod instead, but only if its liveness probe can see the failure. This
probe checks what the health endpoints do not:

- every Python-backend instance the models' configs ask for has a live stub process (found under the server's
  pid in /proc, as the watchdog does), so a dead instance is caught even while the others still answer;
- one real-time inference of a flow through the ensemble is answered. A refusal for overload (HTTP 503,
  "request timeout expired") counts as alive: a busy server must not be restarted for being busy.

Standard library only (the image installs the package without the client extras). Exit status 0 alive, 1 not.
Usage: ``python3 -m moe_ids.triton.ops.probe [--url 127.0.0.1:8000] [--server-pid PID] [--timeout 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from moe_ids.core import contract
from moe_ids.triton.ops import procfs
from moe_ids.triton.ops.stubs import backend_stubs

MODELS = (contract.ENSEMBLE_MODEL, contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL)


def _get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def expected_stubs(http_url: str, timeout: float) -> dict[str, int]:
    """Python-backend instances per model, from the configs the server reports (an open, read-only API)."""
    expected = {}
    for model in MODELS:
        config = _get_json(f"http://{http_url}/v2/models/{model}/config", timeout)
        if config.get("backend") == "python":
            expected[model] = sum(int(group.get("count", 1)) for group in config.get("instance_group", []))
    return expected


def find_server_pid(http_url: str) -> int | None:
    """The tritonserver serving ``http_url``: the only one running, or the one started with that HTTP port."""
    port = http_url.rsplit(":", 1)[-1]
    candidates = []
    for pid in procfs.pids():
        argv = procfs.cmdline(pid)
        if argv and os.path.basename(argv[0]) == "tritonserver":
            candidates.append((pid, argv))
    if len(candidates) == 1:
        return candidates[0][0]
    matching = [pid for pid, argv in candidates if f"--http-port={port}" in argv]
    return matching[0] if len(matching) == 1 else None


def stub_problems(server_pid: int, expected: dict[str, int]) -> list[str]:
    """One line per model with fewer live stubs than instances."""
    live = backend_stubs(server_pid)
    return [f"{model}: {len(live.get(model, []))} of {count} Python-backend stub processes alive"
            for model, count in expected.items() if len(live.get(model, [])) < count]


def inference_problem(http_url: str, timeout: float) -> str | None:
    """None when a zero flow is scored (or refused as overload); else what went wrong."""
    body = {"inputs": [{"name": contract.INPUT_FEATURES, "shape": [1, contract.INPUT_WIDTHS[contract.INPUT_FEATURES]],
                        "datatype": "FP32", "data": [0.0] * contract.INPUT_WIDTHS[contract.INPUT_FEATURES]}],
            "outputs": [{"name": contract.PROBABILITIES}],
            "parameters": {"priority": contract.PRIORITY_REALTIME}}
    request = urllib.request.Request(f"http://{http_url}/v2/models/{contract.ENSEMBLE_MODEL}/infer",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            outputs = {o["name"]: o for o in json.loads(response.read()).get("outputs", [])}
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        if exc.code == 503 or any(t in text.lower() for t in contract.OVERLOAD_TEXTS):
            return None
        return f"inference failed with HTTP {exc.code}: {text[:300]}"
    except (OSError, ValueError) as exc:
        return f"inference failed: {exc}"
    probabilities = outputs.get(contract.PROBABILITIES)
    if probabilities is None or probabilities.get("shape") != [1, 2]:
        return f"inference answered without {contract.PROBABILITIES} [1, 2]: {sorted(outputs)}"
    return None


def check(http_url: str, server_pid: int | None = None, timeout: float = 4.0) -> list[str]:
    """Everything wrong with the server at ``http_url``; empty when it is alive."""
    try:
        expected = expected_stubs(http_url, timeout)
    except (OSError, ValueError) as exc:
        return [f"model configs unavailable at {http_url}: {exc}"]
    problems = []
    if expected:
        pid = server_pid if server_pid is not None else find_server_pid(http_url)
        if pid is None:
            problems.append(f"no single tritonserver process found for {http_url} (pass --server-pid)")
        else:
            problems += stub_problems(pid, expected)
    problem = inference_problem(http_url, timeout)
    if problem:
        problems.append(problem)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m moe_ids.triton.ops.probe", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=f"{contract.DEFAULT_HOST}:{contract.DEFAULT_HTTP_PORT}",
                        help="the server's HTTP endpoint, host:port")
    parser.add_argument("--server-pid", type=int, default=None,
                        help="tritonserver's pid (default: the only tritonserver running, or the one on --url's port)")
    parser.add_argument("--timeout", type=float, default=4.0, help="seconds per HTTP call")
    args = parser.parse_args(argv)
    problems = check(args.url, args.server_pid, args.timeout)
    for line in problems:
        print(f"moe-ids probe: {line}", file=sys.stderr)
    if not problems:
        print("moe-ids probe: alive")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
