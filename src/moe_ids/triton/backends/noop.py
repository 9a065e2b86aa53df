"""A Python-backend model that reads its inputs and answers zeros: what a Triton hop costs with no work in it.

``moe-ids bench`` serves two of these as an ensemble shaped like ``moe_ids`` (same tensor names, widths and
batching) next to the real models. An ensemble of two do-nothing Python models against one do-nothing model is
the best ``single_vs_bare`` ratio any two-step Python-backend ensemble can reach on the machine, so the real
ratio can be read against what is attainable rather than against 1.0.
"""

from __future__ import annotations

import json

import numpy as np

from moe_ids.triton.backends.batching import answer, gather, inputs_by_name, invalid_argument


class TritonPythonModel:
    """Triton entry point (the model.py shim imports this class)."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        first = config["input"][0]["name"]
        self.first_input = first
        # dtypes from the config, as Triton's python_backend examples read them: one source, the generator's
        self.outputs = [(o["name"], int(o["dims"][0]), pb_utils.triton_string_to_numpy(o["data_type"]))
                        for o in config["output"]]

    def execute(self, requests: list) -> list:
        # the same gather -> one call -> split as the real models, with zeros for the call
        def rows(request) -> int:
            return int(inputs_by_name(request)[self.first_input].as_numpy().shape[0])

        responses, good, sizes = gather(self.pb, requests, rows, {ValueError: invalid_argument})
        total = int(sum(sizes))
        outputs = {name: np.zeros((total, width), dtype=dtype) for name, width, dtype in self.outputs}
        return answer(self.pb, responses, good, outputs, sizes)
