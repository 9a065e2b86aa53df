"""Pinned floating-point kernels, so that ``moe-ids train`` writes the same weights on any x86-64 machine.

Why: PyTorch (ATen), MKL, oneDNN and numpy's OpenBLAS each pick their kernels by the CPU they find (AVX-512 on
one machine, AVX2 on the next, a vendor-specific path on a third), and two kernels sum in different orders. A
last-bit difference in the first step grows over 80 epochs into another model: the same commit, trained on two
machines, scored corrected-release macro-F1 0.9978 on one and 0.9972 on the other, with another epoch kept and
other flows flagged. With the kernels pinned the weights depend on the code, the data and the seed only, so the
README's figures are what a fresh clone's ``moe-ids train`` gives.

What is pinned, before torch and numpy are loaded (the libraries read these once, at start-up):

* ``ATEN_CPU_CAPABILITY=avx2`` - ATen's vectorised kernels at the AVX2 level, which every x86-64 server
  of the last decade has (a CPU without AVX2 falls back to ATen's default kernels, which differ);
* ``MKL_CBWR=COMPATIBLE,STRICT`` - MKL's conditional numerical reproducibility: the same code path, and the
  same results, on Intel and compatible processors whatever their instruction sets, regardless of alignment;
* ``OPENBLAS_CORETYPE=Prescott`` - numpy's OpenBLAS on its SSE3 kernels, which every x86-64 CPU runs (numpy's
  share of training is the trust score's calibration: covariances and distances);
* oneDNN off during training (``training.train``): its kernels are blocked by each CPU's cache sizes.

The thread count is fixed by ``TrainConfig.threads`` (2), and it is part of what the weights depend on. The cost:
training takes about twice as long as on the native kernels of an AVX-512 machine (6-7 minutes on 2 cores
instead of 3-4). ``MOE_IDS_NATIVE_NUMERICS=1`` skips the pins (faster, reproducible only on the same kind of
CPU). Inference is not pinned: serving runs ONNX Runtime, and its answers agree with PyTorch's to the tolerance
``moe-ids export`` checks.
"""

from __future__ import annotations

import os
import sys

PINNED_ENVIRONMENT: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE,STRICT",
    "OPENBLAS_CORETYPE": "Prescott",
}
NATIVE_SWITCH = "MOE_IDS_NATIVE_NUMERICS"
_READ_AT_LOAD = {"ATEN_CPU_CAPABILITY": "torch", "MKL_CBWR": "torch", "OPENBLAS_CORETYPE": "numpy"}


def native_requested() -> bool:
    return os.environ.get(NATIVE_SWITCH, "").strip().lower() in {"1", "true", "yes"}


def pin_environment() -> list[str]:
    """Set the pinned kernels for this process and its children (``moe-ids train``, ``evaluate`` and
    ``importance`` do, before anything loads numpy); what could not take effect, as ``check`` tells it."""
    if native_requested():
        return []
    for name, value in PINNED_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    return check()


def check() -> list[str]:
    """A line per pin that does not hold in this process: a value the caller set on purpose (it wins), or a
    library loaded before its pin was set (an interactive session that imported torch before training: its
    native kernels stay, and the weights may differ from another machine's)."""
    if native_requested():
        return []
    problems = []
    for name, value in PINNED_ENVIRONMENT.items():
        current = os.environ.get(name)
        if current is not None and current != value:
            problems.append(f"{name}={current} is set: training uses it instead of {value}")
        elif current is None and _READ_AT_LOAD[name] in sys.modules:
            problems.append(f"{_READ_AT_LOAD[name]} was loaded before {name}={value} could be set: its native "
                            "kernels stay")
    return problems


def describe() -> dict[str, object]:
    """What the weights were computed with, for metadata.json (read after the libraries are loaded)."""
    import torch

    return {
        "pinned": not native_requested() and not check(),
        "not_pinned": check(),
        "environment": {name: os.environ.get(name) for name in PINNED_ENVIRONMENT},
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }
