"""Request gathering shared by the Python-backend models: many requests in, one vectorised call, split back.

Triton's dynamic batcher hands a Python model a list of requests; calling the model once per request would
throw the batching away. These helpers concatenate the rows of every valid request, remember where each
request's rows are, and slice outputs back. Pure numpy, so they are unit-tested without a server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def row_offsets(sizes: Sequence[int]) -> np.ndarray:
    """Start offsets of each request's rows in the concatenated batch, plus the total at the end."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    """One array of all parts; no copy for the common single-request execution."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def split(array: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Row slices of ``array`` per request (views, no copies)."""
    return [array[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def inputs_by_name(request) -> dict:
    """A request's input tensors by name, from one ``inputs()`` call.

    ``pb_utils.get_input_tensor_by_name`` walks ``request.inputs()`` afresh on every call (a C++ round trip
    building every input's wrapper), which adds up to microseconds per request at thousands of requests/s.
    """
    return {tensor.name(): tensor for tensor in request.inputs()}


def invalid_argument(pb_utils, message: str):
    """An error response Triton reports as a client error (HTTP 400 / gRPC INVALID_ARGUMENT), not a crash."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(error=error)


def unavailable(pb_utils, message: str):
    """An error response Triton reports as "try again later" (HTTP 503 / gRPC UNAVAILABLE)."""
    code = getattr(pb_utils.TritonError, "UNAVAILABLE", None)
    error = pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)
    return pb_utils.InferenceResponse(error=error)


def model_parameters(args: dict[str, str]) -> tuple[dict[str, str], Path]:
    """The string parameters of a model's config and its version directory, from Triton's initialize() args."""
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    return params, Path(args["model_repository"]) / str(args["model_version"])


def gather(pb_utils, requests: Sequence, read: Callable[[Any], Any],
           refusals: Mapping[type[Exception], Callable]) -> tuple[list, list[int], list]:
    """Read every request on its own: (responses with an error where reading failed, indices of the good
    requests, what ``read`` returned for each). ``refusals`` maps an exception type to the response builder
    (``invalid_argument``, ``unavailable``) for it; other exceptions propagate."""
    responses: list = [None] * len(requests)
    good, items = [], []
    for i, request in enumerate(requests):
        try:
            items.append(read(request))
        except tuple(refusals) as exc:
            respond = next(r for kind, r in refusals.items() if isinstance(exc, kind))
            responses[i] = respond(pb_utils, str(exc))
            continue
        good.append(i)
    return responses, good, items


def answer(pb_utils, responses: list, good: Sequence[int], outputs: Mapping[str, np.ndarray],
           sizes: Sequence[int]) -> list:
    """Fill the good requests' responses with their rows of every output, checking first that each output has
    one row per flow of the batch (a short output would hand one request another's results)."""
    offsets = row_offsets(sizes)
    for name, array in outputs.items():
        if np.shape(array)[0] != offsets[-1]:
            raise ValueError(f"{name}: {np.shape(array)[0]} rows for a batch of {int(offsets[-1])} flows")
    parts = {name: split(np.asarray(array), offsets) for name, array in outputs.items()}
    for k, i in enumerate(good):
        responses[i] = pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, per_request[k]) for name, per_request in parts.items()])
    return responses
