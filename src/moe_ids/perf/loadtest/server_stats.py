"""What the server saw during a run: per-model request, batch and queue figures from Triton's statistics.

Locust times requests at the client; Triton's ``/v2/models/stats`` says whether dynamic batching formed
batches (inference_count / execution_count) and where the server-side time went (queue vs compute). The
runner snapshots the counters before and after the run and reports the difference.
"""

from __future__ import annotations

from typing import Any

from moe_ids.core.contract import ENSEMBLE_MODEL


def model_ready(protocol: str, url: str) -> str | None:
    """None when the ensemble is ready to serve at ``url``, else why not (checked before any load is sent)."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url)
            ready = client.is_model_ready(ENSEMBLE_MODEL, client_timeout=5)
        else:
            import tritonclient.http as httpclient

            client = httpclient.InferenceServerClient(url, connection_timeout=5, network_timeout=5)
            ready = client.is_model_ready(ENSEMBLE_MODEL)
        client.close()
    except Exception as exc:  # noqa: BLE001 - any failure to ask means the server is not usable
        return f"no Triton server answers at {url} ({type(exc).__name__}: {exc})"
    return None if ready else f"model {ENSEMBLE_MODEL!r} is not ready on {url}"


def snapshot(protocol: str, url: str) -> dict[str, dict[str, int]] | None:
    """Cumulative counters per model (None when the server cannot be asked; a run never fails on this)."""
    try:
        if protocol == "grpc":
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url)
            doc = client.get_inference_statistics(as_json=True)
            client.close()
        else:
            import tritonclient.http as httpclient

            client = httpclient.InferenceServerClient(url, connection_timeout=5, network_timeout=10)
            doc = client.get_inference_statistics()
            client.close()
    except Exception:  # noqa: BLE001 - statistics are a bonus; the load run's result stands without them
        return None
    return {m["name"]: _counters(m) for m in doc.get("model_stats", [])}


def _counters(model: dict[str, Any]) -> dict[str, int]:
    stats = model.get("inference_stats", {})

    def part(name: str, field: str) -> int:
        return int((stats.get(name) or {}).get(field, 0) or 0)

    return {
        "inference_count": int(model.get("inference_count", 0) or 0),
        "execution_count": int(model.get("execution_count", 0) or 0),
        "success_count": part("success", "count"),
        "fail_count": part("fail", "count"),
        "success_ns": part("success", "ns"),
        "queue_ns": part("queue", "ns"),
        "compute_infer_ns": part("compute_infer", "ns"),
    }


def difference(before: dict[str, dict[str, int]] | None,
               after: dict[str, dict[str, int]] | None) -> dict[str, dict[str, float]]:
    """Per model: requests, failures, flows, executions, mean batch, mean queue and compute time (ms)."""
    if not before or not after:
        return {}
    out: dict[str, dict[str, float]] = {}
    for name, end in sorted(after.items()):
        start = before.get(name, dict.fromkeys(end, 0))
        d = {k: end[k] - start.get(k, 0) for k in end}
        if d["success_count"] == 0 and d["fail_count"] == 0:
            continue
        requests = max(d["success_count"], 1)
        out[name] = {
            "requests": d["success_count"],
            "failed_requests": d["fail_count"],
            "flows": d["inference_count"],
            "executions": d["execution_count"],
            "mean_batch": d["inference_count"] / d["execution_count"] if d["execution_count"] else 0.0,
            "mean_request_ms": d["success_ns"] / requests / 1e6,
            "mean_queue_ms": d["queue_ns"] / requests / 1e6,
            "mean_compute_ms": d["compute_infer_ns"] / requests / 1e6,
        }
    return out
