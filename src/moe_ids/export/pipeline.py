"""The whole export of one artifact directory: fp32 ONNX, INT8 ONNX, TensorRT plan, checks and a report.

Every file written is verified against PyTorch before the report calls it good; a failed check raises and
leaves ``export_report.json`` saying which check failed, so ``make model`` stops instead of serving a model
that disagrees with the one that was evaluated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from moe_ids.core import artifacts
from moe_ids.core.contract import PREDICTED_CLASS
from moe_ids.export import onnx_export, quantize, tensorrt_engine, verify
from moe_ids.model.metrics import binary_report

REPORT = "export_report.json"
TENSORRT_MODES = ("auto", "require", "skip")
BENCH_SECONDS = 4.0


def _file_info(path: Path) -> dict:
    return {"path": path.name, "bytes": path.stat().st_size,
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def run_export(model_dir: Path, int8: bool = True, tensorrt: str = "auto",
               max_batch_size: int = tensorrt_engine.DEFAULT_MAX_BATCH, bench_seconds: float = BENCH_SECONDS,
               data: list[Path] | None = None, log: Callable[[str], None] = print) -> dict:
    """Export and verify everything for ``model_dir``; returns the report (also written to export_report.json).

    ``tensorrt``: ``auto`` builds when TensorRT and a GPU exist and records why not otherwise, ``require``
    raises in that case, ``skip`` does not try. ``bench_seconds`` 0 leaves out the throughput comparison.
    ``data``: the training CSVs when the model was not trained on the bundled corpus (for its held-out split).
    """
    if tensorrt not in TENSORRT_MODES:
        raise ValueError(f"tensorrt: expected one of {', '.join(TENSORRT_MODES)}, got {tensorrt!r}")
    model_dir = Path(model_dir)
    started = time.time()
    meta = artifacts.read_json(model_dir / artifacts.METADATA)
    report: dict = {
        "model_name": meta.get("model_name"),
        "model_version": meta.get("model_version"),
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "status": "failed",
    }
    report_path = model_dir / REPORT
    try:
        _export_and_check(model_dir, report, int8, tensorrt, max_batch_size, bench_seconds, data, log)
        report["status"] = "passed"
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        report["seconds"] = round(time.time() - started, 1)
        artifacts.write_json(report_path, report)
    return report


def _export_and_check(model_dir: Path, report: dict, int8: bool, tensorrt: str, max_batch_size: int,
                      bench_seconds: float, data: list[Path] | None, log: Callable[[str], None]) -> None:
    if tensorrt == "require" and (reason := tensorrt_engine.unavailable_reason()):
        raise RuntimeError(f"TensorRT engine required but cannot be built here: {reason}")
    held = verify.held_out_flows(model_dir, data=data)  # first: no files written when it cannot be checked
    report["held_out"] = held.description

    fp32_path = onnx_export.export_onnx(model_dir, log=log)
    onnx_export.check_contract(fp32_path)
    opset = onnx_export.graph_opset(fp32_path)
    report["onnx_fp32"] = {**_file_info(fp32_path), "opset": opset}
    log(f"wrote {fp32_path} (opset {opset}, dynamic batch)")

    reference = verify.torch_outputs(model_dir, held)
    fp32_out = verify.onnx_outputs(fp32_path, held)
    report["fp32_check"] = verify.verify_fp32(model_dir, fp32_path, held, reference=reference)
    report["fp32_check"]["macro_f1"] = binary_report(held.binary, fp32_out[PREDICTED_CLASS].reshape(-1))["macro_f1"]
    log(f"fp32 vs PyTorch on {len(held)} held-out flows: max abs diff "
        f"{report['fp32_check']['max_abs_diff_overall']:.2e} (tolerance {verify.FP32_TOLERANCE:g}), trust "
        f"{report['fp32_check']['max_abs_diff_trust']:.2e} (tolerance {verify.TRUST_TOLERANCE:g}); "
        f"macro-F1 {report['fp32_check']['macro_f1']:.4f}")

    int8_path = model_dir / artifacts.ONNX_INT8
    if int8:
        integer_ops = quantize.quantize_int8(fp32_path, int8_path)
        report["onnx_int8"] = {**_file_info(int8_path), "integer_ops": integer_ops,
                               "weight_type": quantize.WEIGHT_TYPE}
        check = verify.verify_int8(fp32_path, int8_path, held, fp32=fp32_out)
        report["int8_check"] = check
        log(f"wrote {int8_path} ({', '.join(f'{n} {op}' for op, n in integer_ops.items())})")
        log(f"int8 vs fp32: macro-F1 {check['macro_f1_int8']:.4f} vs {check['macro_f1_fp32']:.4f} "
            f"(delta {check['macro_f1_delta']:+.4f}, tolerance {check['tolerance']}), "
            f"agreement {check['agreement']:.2%}")
    else:
        report["onnx_int8"] = {"skipped": "--skip-int8", **_remove_stale(int8_path, log)}

    report["tensorrt"] = _tensorrt(model_dir, fp32_path, held, reference, tensorrt, max_batch_size, log)

    if bench_seconds > 0:
        report["throughput"] = _throughput(fp32_path, int8_path if int8 else None, held, bench_seconds, log)


def _throughput(fp32_path: Path, int8_path: Path | None, held: verify.HeldOut, seconds: float,
                log: Callable[[str], None]) -> dict:
    from moe_ids.export.throughput import DEFAULT_THREADS, compare_throughput, load_average

    paths = {"fp32": fp32_path, **({"int8": int8_path} if int8_path else {})}
    stats = compare_throughput(paths, held.inputs, batch=1024, seconds=seconds, threads=DEFAULT_THREADS)
    bench = {"batch": 1024, "threads": DEFAULT_THREADS, "seconds": seconds, "load_average_1m": load_average(),
             **{name: {k: round(v) for k, v in s.items()} for name, s in stats.items()}}
    line = ", ".join(f"{k} {s['flows_per_s']:,.0f} flows/s" for k, s in stats.items())
    if int8_path:
        bench["int8_speedup"] = round(stats["int8"]["flows_per_s"] / stats["fp32"]["flows_per_s"], 2)
        bench["int8_speedup_per_cpu_s"] = round(stats["int8"]["flows_per_cpu_s"] / stats["fp32"]["flows_per_cpu_s"], 2)
        line += (f"; int8/fp32 {bench['int8_speedup']:.2f}x wall clock, "
                 f"{bench['int8_speedup_per_cpu_s']:.2f}x per CPU-second")
    log(f"in-process ONNX Runtime, batch 1024, {DEFAULT_THREADS} threads: {line} "
        f"(load average {bench['load_average_1m']})")
    return bench


def _remove_stale(path: Path, log: Callable[[str], None]) -> dict:
    """Delete a derived file this export did not rewrite: it was made from earlier weights."""
    if not path.exists():
        return {}
    path.unlink()
    log(f"removed {path} (made from a previous export, not rebuilt now)")
    return {"removed_stale": path.name}


def _tensorrt(model_dir: Path, fp32_path: Path, held: verify.HeldOut, reference: dict, mode: str,
              max_batch_size: int, log: Callable[[str], None]) -> dict:
    plan_path = model_dir / artifacts.TRT_PLAN
    if mode == "skip":
        log("skipped TensorRT engine: --tensorrt skip")
        return {"built": False, "reason": "skipped TensorRT engine: --tensorrt skip", **_remove_stale(plan_path, log)}
    result = tensorrt_engine.build_engine(fp32_path, plan_path, max_batch_size=max_batch_size)
    out = result.to_dict()
    if not result.built:
        log(result.reason)
        if mode == "require":
            raise RuntimeError(result.reason)
        return {**out, **_remove_stale(plan_path, log)}
    log(f"wrote {result.path} (TensorRT {result.tensorrt_version}, FP16, batch 1..{max_batch_size}) "
        f"in {result.seconds} s")
    try:
        out["check"] = verify.verify_tensorrt(Path(result.path), held, reference)
        log(f"TensorRT FP16 vs PyTorch: macro-F1 {out['check']['macro_f1_tensorrt_fp16']:.4f} vs "
            f"{out['check']['macro_f1_fp32']:.4f}, agreement {out['check']['agreement']:.2%}")
    except RuntimeError as exc:
        if isinstance(exc, verify.VerificationError) or mode == "require":
            raise
        out["check"] = {"skipped": str(exc)}
        log(f"TensorRT plan not checked: {exc}")
    return out
