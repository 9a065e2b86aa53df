"""TensorRT engine (``model.plan``) for Triton's native TensorRT backend on NVIDIA GPUs.

Built from the fp32 ONNX graph with FP16 kernels allowed and one optimization profile covering batch 1 to
``max_batch_size`` for each input (the same bound as ``max_batch_size`` in the model's config.pbtxt). An
engine is specific to the GPU model and TensorRT version it was built with, so it is built on the serving
host. Where the ``tensorrt`` package or a CUDA GPU is missing nothing is written and the reason is returned in
plain words — a CPU-only machine never gets a fake plan file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from moe_ids.core import contract

DEFAULT_MAX_BATCH = 1024
DEFAULT_OPT_BATCH = 256
WORKSPACE_BYTES = 1 << 30
FP16_F1_TOLERANCE = 0.002
NOT_INSTALLED = "the tensorrt package is not installed (pip install 'triton-moe-ids[gpu]')"


@dataclass
class EngineResult:
    """Outcome of a build: the plan's path when built, otherwise why it was skipped."""

    built: bool
    reason: str = ""
    path: str | None = None
    tensorrt_version: str | None = None
    profile: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def cuda_device_count() -> tuple[int, str]:
    """(number of CUDA GPUs the driver reports, explanation when 0), asking the driver API directly.

    Independent of torch (the CPU wheel reports no GPU even on a GPU host) and of onnxruntime.
    """
    names = [ctypes.util.find_library("cuda"), "libcuda.so.1", "libcuda.so", "nvcuda.dll"]
    lib = None
    for name in names:
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return 0, "no CUDA GPU visible (no NVIDIA driver: libcuda not found)"
    if lib.cuInit(0) != 0:
        return 0, "no CUDA GPU visible (the NVIDIA driver failed to initialise: cuInit error)"
    count = ctypes.c_int(0)
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return 0, "no CUDA GPU visible"
    return count.value, ""


def unavailable_reason() -> str | None:
    """Why a TensorRT engine cannot be built here, or None when it can."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return NOT_INSTALLED
    count, why = cuda_device_count()
    return None if count else why


def profile_shapes(max_batch_size: int = DEFAULT_MAX_BATCH,
                   opt_batch: int = DEFAULT_OPT_BATCH) -> dict[str, tuple[tuple[int, int], ...]]:
    """(min, opt, max) shape of every graph input: batch 1 .. max_batch_size, optimised for ``opt_batch``."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    opt = max(1, min(opt_batch, max_batch_size))
    return {name: ((1, contract.INPUT_WIDTHS[name]), (opt, contract.INPUT_WIDTHS[name]),
                   (max_batch_size, contract.INPUT_WIDTHS[name])) for name in contract.ONNX_INPUTS}


def build_engine(onnx_path: Path, plan_path: Path, max_batch_size: int = DEFAULT_MAX_BATCH,
                 opt_batch: int = DEFAULT_OPT_BATCH, fp16: bool = True) -> EngineResult:
    """Build ``plan_path`` from ``onnx_path`` when TensorRT and a GPU are present; otherwise say why not."""
    import time

    shapes = profile_shapes(max_batch_size, opt_batch)
    profile = {name: {"min": list(s[0]), "opt": list(s[1]), "max": list(s[2])} for name, s in shapes.items()}
    reason = unavailable_reason()
    if reason:
        return EngineResult(built=False, reason=f"skipped TensorRT engine: {reason}", profile=profile)

    import tensorrt as trt

    started = time.time()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fp16:  # FP16 kernels allowed where TensorRT finds them faster; fp32 elsewhere (softmax stays accurate)
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        name = network.get_input(i).name
        lo, mid, hi = shapes[name]
        opt_profile.set_shape(name, lo, mid, hi)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    plan_path = Path(plan_path)
    tmp = plan_path.with_name(f".{plan_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(plan_path)
    return EngineResult(built=True, reason="", path=str(plan_path), tensorrt_version=trt.__version__,
                        profile=profile, seconds=round(time.time() - started, 1))


class _DeviceMemory:
    """Device buffers through torch (when it has CUDA) or cuda-python; both are optional on a GPU host."""

    def __init__(self) -> None:
        self._torch = None
        self._cudart = None
        try:
            import torch

            if torch.cuda.is_available():
                self._torch = torch
        except ImportError:
            pass
        if self._torch is None:
            try:
                from cuda.bindings import runtime as cudart
            except ImportError:
                try:
                    from cuda import cudart
                except ImportError as exc:
                    raise RuntimeError("checking the plan needs torch with CUDA or cuda-python "
                                       "(pip install cuda-python)") from exc
            self._cudart = cudart
        self._owned: list = []
        self._stream = None

    def _check(self, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise RuntimeError(f"CUDA runtime error {err}")
        return rest[0] if rest else None

    def stream(self) -> int:
        """A dedicated CUDA stream (TensorRT warns on, and serialises with, the legacy default stream)."""
        if self._stream is None:
            if self._torch is not None:
                self._stream = self._torch.cuda.Stream()
            else:
                self._stream = self._check(self._cudart.cudaStreamCreate())
        return self._stream.cuda_stream if self._torch is not None else int(self._stream)

    def to_device(self, array: np.ndarray) -> int:
        array = np.ascontiguousarray(array)
        if self._torch is not None:
            t = self._torch.from_numpy(array).cuda()
            self._owned.append(("tensor", t))
            return t.data_ptr()
        ptr = self._check(self._cudart.cudaMalloc(max(array.nbytes, 1)))
        self._owned.append(("ptr", ptr))
        self._check(self._cudart.cudaMemcpy(ptr, array.ctypes.data, array.nbytes,
                                            self._cudart.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return int(ptr)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, np.ndarray]:
        host = np.empty(shape, dtype=dtype)
        return self.to_device(host), host

    def to_host(self, ptr: int, host: np.ndarray) -> np.ndarray:
        if self._torch is not None:
            for kind, t in self._owned:
                if kind == "tensor" and t.data_ptr() == ptr:
                    self._torch.cuda.synchronize()  # the engine ran on our own stream
                    return t.cpu().numpy()
            raise KeyError(ptr)
        self._check(self._cudart.cudaDeviceSynchronize())
        self._check(self._cudart.cudaMemcpy(host.ctypes.data, ptr, host.nbytes,
                                            self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost))
        return host

    def free(self) -> None:
        """Release this batch's buffers (the stream stays for the next batch)."""
        if self._cudart is not None:
            for kind, handle in self._owned:
                if kind == "ptr":
                    self._cudart.cudaFree(handle)
        self._owned.clear()

    def close(self) -> None:
        self.free()
        if self._cudart is not None and self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
        self._stream = None

    def sync(self) -> None:
        """Wait for all copies (torch copies on its own stream; the engine runs on ours)."""
        if self._torch is not None:
            self._torch.cuda.synchronize()
        else:
            self._check(self._cudart.cudaDeviceSynchronize())


def run_plan(plan_path: Path, tabular: np.ndarray, temporal: np.ndarray, mask: np.ndarray,
             batch: int = DEFAULT_OPT_BATCH) -> dict[str, np.ndarray]:
    """Contract outputs of a TensorRT plan on preprocessed arrays, in batches within the plan's profile."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(plan_path).read_bytes())
    if engine is None:
        raise RuntimeError(f"{plan_path}: TensorRT could not load the plan (built for another GPU or version?)")
    context = engine.create_execution_context()
    memory = _DeviceMemory()
    inputs = dict(zip(contract.ONNX_INPUTS, (tabular, temporal, mask), strict=True))
    outs: dict[str, list[np.ndarray]] = {name: [] for name in contract.ONNX_OUTPUTS}
    try:
        stream = memory.stream()
        for start in range(0, len(tabular), batch):
            n = min(batch, len(tabular) - start)
            results = {}
            for name, array in inputs.items():
                chunk = np.ascontiguousarray(array[start:start + n], dtype=np.float32)
                context.set_input_shape(name, chunk.shape)
                context.set_tensor_address(name, memory.to_device(chunk))
            for name in contract.ONNX_OUTPUTS:
                dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                ptr, host = memory.empty(tuple(context.get_tensor_shape(name)), dtype)
                context.set_tensor_address(name, ptr)
                results[name] = (ptr, host)
            memory.sync()
            if not context.execute_async_v3(stream):
                raise RuntimeError(f"{plan_path}: TensorRT execution failed")
            for name, (ptr, host) in results.items():
                outs[name].append(memory.to_host(ptr, host).copy())
            memory.free()
    finally:
        memory.close()
    return {name: np.concatenate(v) for name, v in outs.items()}
