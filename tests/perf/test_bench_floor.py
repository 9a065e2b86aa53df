"""The benchmark's do-nothing models mirror the real ones tensor for tensor (no server needed)."""

from __future__ import annotations

from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from moe_ids.core import contract
from moe_ids.perf.bench_floor import FLOOR_ENSEMBLE, FLOOR_MODEL, FLOOR_PREPROCESS, add_floor_models, floor_configs
from moe_ids.triton.repository import RepositoryOptions, classifier_config, ensemble_config, preprocess_config


def tensors(config) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in (*config.input, *config.output)]


def test_floor_models_have_the_real_tensors_and_batching() -> None:
    opts = RepositoryOptions(target="gpu-onnx")  # the floor is always the cpu ensemble: Python models only
    cpu = RepositoryOptions(layout="ensemble")
    pre, clf, ens = floor_configs(opts)
    assert (pre.name, clf.name, ens.name) == (FLOOR_PREPROCESS, FLOOR_MODEL, FLOOR_ENSEMBLE)
    for floor, real in ((pre, preprocess_config(cpu)), (clf, classifier_config(cpu)), (ens, ensemble_config(cpu))):
        assert tensors(floor) == tensors(real)
        assert floor.dynamic_batching == real.dynamic_batching
        assert not floor.parameters and all(not t.label_filename for t in floor.output)
    assert pre.backend == clf.backend == "python"
    assert [s.model_name for s in ens.ensemble_scheduling.step] == [FLOOR_PREPROCESS, FLOOR_MODEL]
    assert contract.ADMITTED_NS in [t.name for t in clf.input]


def test_add_floor_models_writes_parseable_configs_and_shims(tmp_path: Path) -> None:
    names = add_floor_models(tmp_path, RepositoryOptions())
    assert names == [FLOOR_PREPROCESS, FLOOR_MODEL, FLOOR_ENSEMBLE]
    for name in names:
        text = (tmp_path / name / "config.pbtxt").read_text()
        assert text_format.Parse(text.split("\n", 1)[1], pb.ModelConfig()).name == name
    assert "moe_ids.triton.backends.noop" in (tmp_path / FLOOR_MODEL / "1" / "model.py").read_text()
    assert not (tmp_path / FLOOR_ENSEMBLE / "1" / "model.py").exists()
