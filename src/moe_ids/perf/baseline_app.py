"""The baseline the Triton deployment is measured against: a Flask app running the PyTorch model per request.

This is what a straightforward deployment looks like — JSON in, preprocessing and a torch forward pass per
request, JSON out — served by Werkzeug's threaded WSGI server in its own process. ``moe-ids bench`` starts it
with ``python -m moe_ids.perf.baseline_app --port PORT``.

POST /predict  {"features": [[70 numbers, NaN for missing], ...]}  ->  {"probabilities": [[p_normal, p_attack]]}
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def create_app(model_dir: Path):
    import torch
    from flask import Flask, jsonify, request

    from moe_ids.core.artifacts import load_model, load_stats
    from moe_ids.core.preprocessing import PreprocessingError, Preprocessor

    torch.set_num_threads(1)  # one thread per request handler: more only fight over the 2 cores
    model = load_model(model_dir)
    pre = Preprocessor(load_stats(model_dir))
    app = Flask("moe_ids_baseline")

    @app.post("/predict")
    def predict():
        body = request.get_json(force=True, silent=True) or {}
        try:
            x = np.asarray(body.get("features"), dtype=np.float32)
            tab, tmp, mask = pre.transform(x, body.get("imputation"))
        except (PreprocessingError, TypeError, ValueError) as exc:
            return jsonify({"error": str(exc)}), 400
        with torch.inference_mode():
            probs, gating, family, _, _ = model(torch.from_numpy(tab), torch.from_numpy(tmp), torch.from_numpy(mask))
        return jsonify({"probabilities": probs.tolist(), "gating": gating.tolist(), "family": family.tolist()})

    @app.get("/health")
    def health():
        return jsonify({"ok": True})

    return app


def encode_flow(row: np.ndarray) -> list[float]:
    """JSON-ready values of one flow (Python's json writes NaN for missing values, which Flask reads back)."""
    return [float(v) if math.isfinite(v) else math.nan for v in row]


def main(argv: list[str] | None = None) -> None:
    from werkzeug.serving import run_simple

    from moe_ids.core.artifacts import default_model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    app = create_app(args.model_dir or default_model_dir())
    run_simple("127.0.0.1", args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
