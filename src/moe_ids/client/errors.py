"""Typed errors of the client SDK and the translation of raw tritonclient / network failures into them.

Callers need to tell apart "try again later" (server down, queue full, too slow) from "fix your request"
(bad input) and "wrong deployment" (model missing or not loaded): the retry logic and the CLI decide on the
class alone, so every failure that leaves the SDK is one of these.
"""

from __future__ import annotations

import re

from moe_ids.core import contract


class MoEClientError(Exception):
    """Base class of every error raised by the MoE-IDS client."""


class ServerUnavailableError(MoEClientError):
    """The server cannot be reached (refused, reset, DNS, TLS) or says it is not serving."""


class ModelNotReadyError(MoEClientError):
    """The server is up but the model is unknown, still loading, or failed to load."""


class InvalidInputError(MoEClientError, ValueError):
    """The request was rejected because of its content; ``field`` names the offending feature or tensor."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class OverloadedError(MoEClientError):
    """Triton's queue policy rejected the request (queue full, or it waited past its queue timeout)."""


class RequestTimeoutError(MoEClientError, TimeoutError):
    """No answer within the client's timeout; the server may be overloaded or stuck."""


class SchemaMismatchError(MoEClientError):
    """The deployed model's inputs, outputs or labels are not what this client can speak to."""


# Failures worth retrying: they say nothing about the request itself.
TRANSIENT_ERRORS: tuple[type[MoEClientError], ...] = (ServerUnavailableError, OverloadedError, RequestTimeoutError)

# Texts Triton's dynamic-batcher queue policy answers with (core/src/scheduler_utils.cc, dynamic_batch_scheduler.cc)
# and the classifier's refusal after admission, plus the rate limiter's.
_OVERLOAD_TEXTS = (*contract.OVERLOAD_TEXTS, "rate limit")
_NOT_READY_TEXTS = ("unknown model", "is not ready", "not at ready state", "no available versions",
                    "is not found", "model is unavailable", "failed to load")
_FIELD_PATTERNS = (
    re.compile(r"^(?:\[[^\]]*\]\s*)*([A-Za-z_][\w ./-]*?):\s"),  # "FEATURES: ..." (preprocess errors)
    re.compile(r"input '([^']+)'"),  # Triton core: "unexpected shape for input 'FEATURES' ..."
    re.compile(r"(?:tensor|field|feature|column) '([^']+)'"),
)
_GRPC_CODE = re.compile(r"StatusCode\.([A-Z_]+)")


def _field_in(message: str) -> str | None:
    for pattern in _FIELD_PATTERNS:
        match = pattern.search(message)
        if match:
            return match.group(1).strip()
    return None


def _clean(message: str) -> str:
    """Drop tritonclient's and Triton's prefixes ("[StatusCode.X] [request id: ...] in ensemble 'moe_ids', ")."""
    return re.sub(r"^(?:\s*\[[^\]]*\]\s*|\s*in ensemble '[^']*',\s*)+", "", message).strip()


def translate(exc: BaseException, *, url: str, model: str) -> MoEClientError:
    """The typed error for any exception raised while talking to Triton (tritonclient, grpc, socket, aiohttp)."""
    if isinstance(exc, MoEClientError):
        return exc
    where = f"Triton at {url}"
    status, message = _status_and_message(exc)
    low = message.lower()
    code = status.upper()

    if status == "" and _is_network_error(exc):
        if _is_timeout(exc):
            return RequestTimeoutError(f"{where} did not answer in time ({type(exc).__name__}: {message})")
        return ServerUnavailableError(f"cannot reach {where}: {message or type(exc).__name__}")
    if any(text in low for text in _OVERLOAD_TEXTS):
        return OverloadedError(f"{where} rejected the request, model {model!r} is overloaded: {_clean(message)}")
    if code in ("DEADLINE_EXCEEDED", "504") or "deadline exceeded" in low or "timed out" in low:
        return RequestTimeoutError(f"{where} did not answer in time: {_clean(message)}")
    if code in ("NOT_FOUND", "404") or any(text in low for text in _NOT_READY_TEXTS):
        return ModelNotReadyError(f"model {model!r} is not ready on {where}: {_clean(message)}")
    if code in ("UNAVAILABLE", "503", "502") or "failed to connect" in low or "connection refused" in low:
        return ServerUnavailableError(f"cannot reach {where}: {_clean(message)}")
    field = _field_in(_clean(message))
    if code in ("INVALID_ARGUMENT", "400", "422") or (code in ("INTERNAL", "500") and field is not None):
        return InvalidInputError(f"{where} rejected the input: {_clean(message)}", field=field)
    return MoEClientError(f"{where} failed ({status or type(exc).__name__}): {_clean(message)}")


def _status_and_message(exc: BaseException) -> tuple[str, str]:
    status_fn = getattr(exc, "status", None)
    message_fn = getattr(exc, "message", None)
    if callable(status_fn) and callable(message_fn):  # tritonclient.utils.InferenceServerException
        status = str(status_fn() or "")
        grpc_code = _GRPC_CODE.search(status)
        return (grpc_code.group(1) if grpc_code else status), str(message_fn() or "")
    code_fn = getattr(exc, "code", None)
    details_fn = getattr(exc, "details", None)
    if callable(code_fn) and callable(details_fn):  # raw grpc.RpcError
        return getattr(code_fn(), "name", str(code_fn())), str(details_fn() or "")
    return "", str(exc)


def _is_network_error(exc: BaseException) -> bool:
    if isinstance(exc, (OSError, EOFError)):  # ConnectionError, socket.timeout, gaierror, ssl errors
        return True
    module = type(exc).__module__ or ""
    return module.startswith(("aiohttp", "geventhttpclient", "gevent", "urllib3", "http.client", "asyncio"))


def _is_timeout(exc: BaseException) -> bool:
    import asyncio

    return isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "timeout" in type(exc).__name__.lower()
