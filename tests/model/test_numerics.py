"""``moe-ids train`` on pinned kernels: the weights do not depend on which instruction sets the CPU offers."""

import json
import os
import subprocess
import sys

import pytest

from moe_ids.core import artifacts
from moe_ids.data.loading import bundled_data_dir
from moe_ids.model import numerics

SMALL = bundled_data_dir() / "cicids2017-original" / "orig_Tuesday_head4998_binarylabel.csv.gz"
# What MKL and oneDNN may use on a CPU without AVX-512. On this project's AVX-512 machine the same two settings
# change the weights of a training on the native kernels (checked when the pins were introduced), so equal
# weights below mean the pins took the choice away from the CPU.
SMALLER_CPU = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def _train(out, extra_env: dict[str, str]) -> bytes:
    env = {k: v for k, v in os.environ.items() if k not in numerics.PINNED_ENVIRONMENT and k != numerics.NATIVE_SWITCH}
    env.update(extra_env)
    subprocess.run([sys.executable, "-m", "moe_ids.cli", "train", "--output", str(out), "--data", str(SMALL),
                    "--epochs", "2", "--seed", "3"], env=env, check=True, capture_output=True, timeout=300)
    return (out / artifacts.WEIGHTS).read_bytes()


@pytest.fixture(scope="module")
def pinned_runs(tmp_path_factory):
    here = _train(tmp_path_factory.mktemp("here"), {})
    smaller = _train(tmp_path_factory.mktemp("smaller"), SMALLER_CPU)
    return here, smaller, tmp_path_factory.getbasetemp()


def test_weights_are_the_same_with_fewer_instruction_sets(pinned_runs):
    here, smaller, _ = pinned_runs
    assert here == smaller


def test_metadata_records_the_pinned_kernels(pinned_runs):
    base = pinned_runs[2]
    meta = json.loads(next(base.glob("here*")).joinpath(artifacts.METADATA).read_text())
    assert meta["numerics"]["pinned"] is True
    assert meta["numerics"]["environment"] == numerics.PINNED_ENVIRONMENT
    assert meta["numerics"]["threads"] == 2


def _unset(monkeypatch, *names: str) -> None:
    for name in names:  # set first, so that monkeypatch restores the variable's absence afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_a_value_set_by_the_caller_wins_and_is_reported(monkeypatch):
    _unset(monkeypatch, "ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE", numerics.NATIVE_SWITCH)
    monkeypatch.setenv("MKL_CBWR", "AVX2")
    problems = numerics.pin_environment()
    assert os.environ["MKL_CBWR"] == "AVX2"
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2"
    assert any("MKL_CBWR=AVX2 is set" in p for p in problems)


def test_libraries_loaded_before_the_pins_are_reported(monkeypatch):
    import numpy  # noqa: F401 - loaded, as in any process that trains in-process
    import torch  # noqa: F401

    _unset(monkeypatch, *numerics.PINNED_ENVIRONMENT, numerics.NATIVE_SWITCH)
    problems = numerics.check()
    assert any(p.startswith("torch was loaded before ATEN_CPU_CAPABILITY") for p in problems)
    assert any(p.startswith("numpy was loaded before OPENBLAS_CORETYPE") for p in problems)


def test_native_switch_sets_nothing(monkeypatch):
    _unset(monkeypatch, *numerics.PINNED_ENVIRONMENT)
    monkeypatch.setenv(numerics.NATIVE_SWITCH, "1")
    assert numerics.pin_environment() == []
    assert not any(name in os.environ for name in numerics.PINNED_ENVIRONMENT)
