"""The generated repository: valid Triton configs for every target, no drift from the committed files."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb

from moe_ids.core import artifacts, contract
from moe_ids.triton.repository import (
    LABEL_FILES,
    TARGETS,
    RepositoryOptions,
    build_repository,
    committed_repository,
    options_for_model,
    render_repository,
)


def ensemble_options(**kwargs) -> RepositoryOptions:
    """Options of the ensemble layout (the cpu default is one-hop; most tests here inspect the composing models)."""
    kwargs.setdefault("layout", "ensemble")
    return RepositoryOptions(**kwargs)


def test_the_cpu_default_is_one_hop_and_gpu_targets_keep_the_ensemble() -> None:
    assert RepositoryOptions().layout == "one-hop"
    assert RepositoryOptions(target="gpu-onnx").layout == RepositoryOptions(target="gpu-trt").layout == "ensemble"


def parse_configs(files: dict[str, str]) -> dict[str, pb.ModelConfig]:
    configs = {}
    for rel, text in files.items():
        if rel.endswith("config.pbtxt"):
            configs[rel.split("/")[0]] = text_format.Parse(text, pb.ModelConfig())
    return configs


@pytest.mark.parametrize("target", TARGETS)
def test_configs_parse_as_triton_model_config(target: str) -> None:
    configs = parse_configs(render_repository(ensemble_options(target=target, tensorrt_accelerator=True)))
    assert set(configs) == {contract.ENSEMBLE_MODEL, contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL}
    for name, config in configs.items():
        assert config.name == name
        assert config.max_batch_size > 0


@pytest.mark.parametrize("target", TARGETS)
def test_tensor_names_and_widths_come_from_the_contract(target: str) -> None:
    configs = parse_configs(render_repository(ensemble_options(target=target)))
    models = (contract.ENSEMBLE_MODEL, contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL)
    ens, pre, clf = (configs[m] for m in models)
    assert [i.name for i in ens.input] == [contract.INPUT_FEATURES, contract.INPUT_IMPUTATION]
    assert [i.name for i in pre.input] == [contract.INPUT_FEATURES, contract.INPUT_IMPUTATION]
    assert ens.input[1].optional and pre.input[1].optional
    stamp = (contract.ADMITTED_NS,) if target == "cpu" else ()  # only a Python classifier checks the stamp
    assert tuple(o.name for o in pre.output) == contract.ONNX_INPUTS + stamp
    assert tuple(i.name for i in clf.input) == contract.ONNX_INPUTS + stamp
    assert all(i.optional == (i.name == contract.ADMITTED_NS) for i in clf.input)
    assert tuple(o.name for o in clf.output) == contract.ONNX_OUTPUTS
    assert tuple(o.name for o in ens.output) == contract.ONNX_OUTPUTS
    for tensor in [*ens.input, *pre.input, *pre.output, *clf.input, *clf.output, *ens.output]:
        spec = contract.TENSORS[tensor.name]
        assert list(tensor.dims) == [spec.width], tensor.name
        assert pb.DataType.Name(tensor.data_type) == spec.dtype, tensor.name
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL]
    assert set(steps[0].output_map.values()) == set(steps[1].input_map.values())
    assert ens.max_batch_size <= min(pre.max_batch_size, clf.max_batch_size)


def test_target_specific_classifier() -> None:
    cpu = parse_configs(render_repository(ensemble_options(target="cpu", threads=3)))[contract.CLASSIFIER_MODEL]
    assert cpu.backend == "python" and cpu.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert cpu.parameters["onnx_intra_op_threads"].string_value == "3"
    onnx = parse_configs(render_repository(ensemble_options(target="gpu-onnx", tensorrt_accelerator=True)))
    onnx_clf = onnx[contract.CLASSIFIER_MODEL]
    assert onnx_clf.backend == "onnxruntime" and onnx_clf.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    accel = onnx_clf.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel[0].name == "tensorrt" and accel[0].parameters["precision_mode"] == "FP16"
    trt = parse_configs(render_repository(ensemble_options(target="gpu-trt")))[contract.CLASSIFIER_MODEL]
    assert trt.platform == "tensorrt_plan" and trt.default_model_filename == artifacts.TRT_PLAN
    # The preprocess step stays a CPU Python model on every target.
    assert onnx[contract.PREPROCESS_MODEL].instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU


def test_admission_stamp_only_where_the_classifier_can_check_it() -> None:
    cpu = parse_configs(render_repository(ensemble_options(admitted_timeout_us=250_000)))
    assert cpu[contract.CLASSIFIER_MODEL].parameters["admitted_timeout_us"].string_value == "250000"
    assert cpu[contract.PREPROCESS_MODEL].parameters["stamp_admission"].string_value == "true"
    for opts in (ensemble_options(admitted_timeout_us=0), ensemble_options(queue_policy=False),
                 ensemble_options(target="gpu-onnx")):
        configs = parse_configs(render_repository(opts))
        names = [t.name for c in configs.values() for t in (*c.input, *c.output)]
        assert contract.ADMITTED_NS not in names
        assert "stamp_admission" not in configs[contract.PREPROCESS_MODEL].parameters
    with pytest.raises(ValueError, match="admitted_timeout_us"):
        ensemble_options(admitted_timeout_us=-1)


def test_dynamic_batching_priorities_and_queue_policy() -> None:
    opts = ensemble_options()
    configs = parse_configs(render_repository(opts))
    for name in (contract.PREPROCESS_MODEL, contract.CLASSIFIER_MODEL):
        db = configs[name].dynamic_batching
        assert list(db.preferred_batch_size) == list(opts.preferred_batch_sizes)
        assert 0 < db.max_queue_delay_microseconds <= 1000
        assert [w.batch_size for w in configs[name].model_warmup] == list(opts.warmup_batch_sizes)
    db = configs[contract.PREPROCESS_MODEL].dynamic_batching  # admission: every request passes here first
    assert db.priority_levels == 2
    assert db.default_priority_level == contract.PRIORITY_BULK
    assert set(db.priority_queue_policy) == {contract.PRIORITY_REALTIME, contract.PRIORITY_BULK}
    realtime = db.priority_queue_policy[contract.PRIORITY_REALTIME]
    assert realtime.timeout_action == pb.ModelQueuePolicy.REJECT and realtime.allow_timeout_override
    assert realtime.default_timeout_microseconds == opts.realtime_timeout_us
    assert db.default_queue_policy.max_queue_size == 0  # unbounded: deadlines shed load (Triton 2.51 crash)
    # No policy behind admission: Triton 2.51's batcher stalls ~500 ms with one on the second step.
    db = configs[contract.CLASSIFIER_MODEL].dynamic_batching
    assert db.priority_levels == 0 and not db.HasField("default_queue_policy") and not db.priority_queue_policy


def test_queue_policy_can_be_left_out() -> None:
    configs = parse_configs(render_repository(ensemble_options(queue_policy=False)))
    db = configs[contract.PREPROCESS_MODEL].dynamic_batching
    assert db.priority_levels == 0 and not db.HasField("default_queue_policy") and not db.priority_queue_policy
    assert db.max_queue_delay_microseconds > 0


def test_ensemble_publishes_version_and_labels() -> None:
    files = render_repository(ensemble_options(model_version="9.9.9"))
    ens = parse_configs(files)[contract.ENSEMBLE_MODEL]
    assert ens.parameters["model_version"].string_value == "9.9.9"
    for name, labels in contract.OUTPUT_LABELS.items():
        assert ens.parameters[f"labels_{name}"].string_value.split(",") == list(labels)
    for output in ens.output:
        if output.name in LABEL_FILES:
            assert output.label_filename == LABEL_FILES[output.name]
            text = files[f"{contract.ENSEMBLE_MODEL}/{output.label_filename}"]
            assert text.splitlines() == list(contract.OUTPUT_LABELS[output.name])


def test_invalid_options_are_refused() -> None:
    with pytest.raises(ValueError, match="target"):
        ensemble_options(target="tpu")
    with pytest.raises(ValueError, match="max_batch_size"):
        ensemble_options(max_batch_size=0)


def test_committed_repository_matches_the_generator() -> None:
    """model_repository/ is the cpu repository of the default model: regenerate and compare every text file."""
    from moe_ids.triton.ops.bootstrap import ensure_model

    rendered = render_repository(options_for_model(ensure_model(artifacts.default_model_dir())))
    root = committed_repository()
    committed = {str(p.relative_to(root)): p.read_text() for p in root.rglob("*")
                 if p.is_file() and p.name != ".gitignore" and p.suffix not in (".onnx", ".plan", ".json")}
    assert sorted(committed) == sorted(rendered), "run `moe-ids repository --text-only --output model_repository`"
    for rel, text in rendered.items():
        assert committed[rel] == text, f"{rel} drifted; run `moe-ids repository --text-only --output model_repository`"


def test_build_repository_copies_the_artifacts(tmp_path: Path) -> None:
    from moe_ids.triton.ops.bootstrap import ensure_model

    model_dir = ensure_model()
    out = build_repository(model_dir, tmp_path / "repo", ensemble_options(layout="ensemble"))
    onnx = out / contract.CLASSIFIER_MODEL / "1" / artifacts.ONNX_FP32
    stats = out / contract.PREPROCESS_MODEL / "1" / artifacts.PREPROCESSING
    assert onnx.read_bytes() == (model_dir / artifacts.ONNX_FP32).read_bytes()
    assert stats.read_text() == (model_dir / artifacts.PREPROCESSING).read_text()


def test_one_hop_layout_is_one_public_model_with_the_ensembles_interface(tmp_path: Path) -> None:
    from moe_ids.triton.ops.bootstrap import ensure_model

    ensemble = parse_configs(render_repository(ensemble_options()))[contract.ENSEMBLE_MODEL]
    files = render_repository(ensemble_options(layout="one-hop"))
    (config,) = parse_configs(files).values()
    assert config.name == contract.ENSEMBLE_MODEL and config.backend == "python"
    assert [(t.name, t.data_type, list(t.dims), t.optional) for t in config.input] == \
        [(t.name, t.data_type, list(t.dims), t.optional) for t in ensemble.input]
    assert [(t.name, t.data_type, list(t.dims), t.label_filename) for t in config.output] == \
        [(t.name, t.data_type, list(t.dims), t.label_filename) for t in ensemble.output]
    for key, value in ensemble.parameters.items():  # what clients read: version, features, labels
        assert config.parameters[key].string_value == value.string_value, key
    # it admits requests itself, so Triton's batcher in front of it has no priority levels and no queue policy
    # (either turns batch prefetching off in Triton 2.51); the budgets travel as the model's parameters
    db = config.dynamic_batching
    assert db.priority_levels == 0 and not db.HasField("default_queue_policy") and not db.priority_queue_policy
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params[contract.PARAM_REALTIME_TIMEOUT] == str(contract.REALTIME_TIMEOUT_US)
    assert params[contract.PARAM_BULK_TIMEOUT] == str(contract.BULK_TIMEOUT_US)
    assert 0 < float(params[contract.PARAM_ADMISSION_HEADROOM]) <= 1 and int(params[contract.PARAM_MAX_RUN_FLOWS]) > 0
    assert "onehop" in files[f"{contract.ENSEMBLE_MODEL}/1/model.py"]
    assert not any(c.name == contract.ADMITTED_NS for c in config.output)
    out = build_repository(ensure_model(), tmp_path / "repo", ensemble_options(layout="one-hop"))
    assert sorted(p.name for p in out.iterdir()) == [contract.ENSEMBLE_MODEL]
    assert {p.name for p in (out / contract.ENSEMBLE_MODEL / "1").iterdir()} >= {
        artifacts.ONNX_FP32, artifacts.PREPROCESSING, "model.py"}
    with pytest.raises(ValueError, match="one-hop"):
        ensemble_options(target="gpu-onnx", layout="one-hop")
    with pytest.raises(ValueError, match="layout"):
        ensemble_options(layout="two-hop")


def test_build_repository_names_missing_artifacts(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model.plan"):
        build_repository(tmp_path, tmp_path / "repo", ensemble_options(target="gpu-trt"))


@pytest.mark.parametrize("target", TARGETS)
def test_instance_counts_per_step(target: str) -> None:
    default = parse_configs(render_repository(ensemble_options(target=target)))
    assert default[contract.PREPROCESS_MODEL].instance_group[0].count == 2  # one batcher stalls under overload
    assert default[contract.CLASSIFIER_MODEL].instance_group[0].count == 1
    configs = parse_configs(render_repository(ensemble_options(target=target, preprocess_instances=1,
                                                                classifier_instances=3)))
    assert configs[contract.PREPROCESS_MODEL].instance_group[0].count == 1
    assert configs[contract.CLASSIFIER_MODEL].instance_group[0].count == 3
    with pytest.raises(ValueError, match="classifier_instances"):
        ensemble_options(classifier_instances=0)
    with pytest.raises(ValueError, match="preprocess_instances"):
        ensemble_options(preprocess_instances=0)


def test_instance_flags() -> None:
    import argparse

    from moe_ids.cli.repository import instance_overrides

    def ns(**kw) -> argparse.Namespace:
        return argparse.Namespace(**{"instances": None, "preprocess_instances": None, "classifier_instances": None,
                                     **kw})

    assert instance_overrides(ns()) == {}
    assert instance_overrides(ns(instances=3)) == {"preprocess_instances": 3, "classifier_instances": 3}
    assert instance_overrides(ns(instances=3, classifier_instances=1)) == {"preprocess_instances": 3,
                                                                           "classifier_instances": 1}
