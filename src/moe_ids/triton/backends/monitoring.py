"""Serving metrics of the model itself, published through Triton's ``/metrics`` endpoint.

Triton already reports requests, latencies, queue time and batch sizes per model. What it cannot know is what
the flows look like and what the model answers: how many values arrive missing (per feature) and how they were
imputed, how many fall outside the range seen in training, how far the input distribution has drifted from the
training split (population stability index), what share of flows is classified as an attack and how the gate
splits its weight between the experts. The Python-backend models record these through the Python backend's
custom metrics API (``pb_utils.MetricFamily``), so they appear next to Triton's own metrics at ``:8002/metrics``.

Cost model. Every ``Metric.increment``/``set`` call is a round trip from the model's stub process to the server
(measured here at 15-35 us each), and a native ``HISTOGRAM`` needs one ``observe`` call per value — 1,024 calls
for one batch of 1,024 flows. So the request path only does vectorised numpy over the whole execution (counts
per feature, per bin, per bucket) and adds them to pending totals under a lock; a background thread pushes the
non-zero totals to Triton once per ``flush_interval_s``. The number of metric calls per second is therefore
bounded by the number of series, not by the request rate. Histograms are emulated the way Prometheus lays them
out (cumulative ``<name>_bucket{le=...}`` counters plus ``<name>_sum`` and ``<name>_count``), which
``histogram_quantile`` reads exactly like a native histogram.

Warm-up. Triton sends each instance its ``model_warmup`` samples (zero tensors) before it serves; those rows are
not traffic. A monitor built from the Triton ``args`` skips the first all-zero rows up to the number of warm-up
flows in the model config, and counts everything after that.

The drift reference (bin edges and proportions per feature, computed on the training split, ``moe_ids.core.drift``) is
written by training into the artifact directory and copied into the version directory of the model that admits
the flows.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from moe_ids.core.contract import OUTPUT_LABELS, PROBABILITIES
from moe_ids.core.drift import DRIFT_REFERENCE_FILE, DriftReference
from moe_ids.core.preprocessing import STRATEGIES, PreprocessingStats
from moe_ids.core.schema import FEATURE_NAMES, N_FEATURES

DEFAULT_FLUSH_INTERVAL_S = 1.0
DRIFT_MIN_FLOWS = 500  # PSI over fewer observed values is mostly sampling noise
DRIFT_WINDOW_FLOWS = 50_000  # counts are halved past this, so the PSI follows recent traffic
DRIFT_SAMPLE_ROWS = 128  # rows per execution kept for the PSI (an evenly strided sample of larger batches)
PSI_EPSILON = 1e-4  # floor for empty bins: PSI is infinite for a bin with zero mass on one side
GATING_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

# Metric names (Prometheus conventions: snake case, unit-less counts end in _total).
FLOWS = "moe_ids_flows_total"
MISSING_VALUES = "moe_ids_missing_values_total"
IMPUTED_FLOWS = "moe_ids_imputed_flows_total"
OUT_OF_RANGE = "moe_ids_out_of_range_values_total"
FEATURE_PSI = "moe_ids_feature_psi"
DRIFT_WINDOW = "moe_ids_drift_window_flows"
PREDICTIONS = "moe_ids_predictions_total"
OUT_OF_DISTRIBUTION_FLOWS = "moe_ids_out_of_distribution_total"
GATING_WEIGHT = "moe_ids_temporal_gating_weight"  # emulated histogram: _bucket, _sum, _count
# The one-hop model's own admission (Triton's queue metrics see only its instant execute calls):
ADMISSION_REFUSALS = "moe_ids_admission_refusals_total"
QUEUE_WAIT = "moe_ids_queue_wait_seconds"  # _sum and _count of the admitted requests' wait before their run
QUEUED_FLOWS = "moe_ids_queued_flows"
REFUSAL_WHEN = ("on_arrival", "in_queue")


# --------------------------------------------------------------------------------------------------------------
# Drift reference


def copy_drift_reference(model_dir: Path, destination: Path) -> Path | None:
    """Put the model's drift reference (written by training) into a model version directory; None (no drift
    metrics, the PSI gauges are absent, serving works) when the artifact directory has none."""
    source = Path(model_dir) / DRIFT_REFERENCE_FILE
    if not source.is_file():
        print(f"moe_ids: no {DRIFT_REFERENCE_FILE} in {model_dir} (trained before training wrote one): "
              "no drift metrics; retrain, or write one with moe_ids.core.drift.build_drift_reference")
        return None
    target = Path(destination) / DRIFT_REFERENCE_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def load_drift_reference(directory: Path) -> DriftReference | None:
    """The drift reference in a model version directory, if the repository generator put one there."""
    path = Path(directory) / DRIFT_REFERENCE_FILE
    return DriftReference.from_json(path) if path.is_file() else None


class BinCounter:
    """Counts values per reference bin for many features: one ``searchsorted`` per feature over all rows."""

    def __init__(self, reference: DriftReference) -> None:
        self.columns = reference.indices
        self.edges = [np.asarray(e, dtype=np.float64) for e in reference.edges]
        self.n_bins = max((len(e) for e in self.edges), default=0) + 1
        self.expected = np.zeros((len(self.columns), self.n_bins), dtype=np.float64)
        self.valid = np.zeros((len(self.columns), self.n_bins), dtype=bool)
        for f, p in enumerate(reference.proportions):
            self.expected[f, :len(p)] = p
            self.valid[f, :len(p)] = True

    def count(self, features: np.ndarray) -> np.ndarray:
        """[n_monitored, n_bins] counts of the finite values of raw [n, N_FEATURES] features."""
        x = np.asarray(features)
        out = np.zeros((len(self.columns), self.n_bins), dtype=np.int64)
        for f, (column, edges) in enumerate(zip(self.columns, self.edges, strict=True)):
            values = x[:, column]
            values = values[np.isfinite(values)]
            out[f, :len(edges) + 1] = np.bincount(np.searchsorted(edges, values, side="left"),
                                                  minlength=len(edges) + 1)
        return out

    def psi(self, counts: np.ndarray) -> np.ndarray:
        """PSI per monitored feature: sum over bins of (actual - expected) * ln(actual / expected)."""
        totals = counts.sum(axis=1, keepdims=True)
        actual = np.where(totals > 0, counts / np.maximum(totals, 1), 0.0)
        a = np.maximum(actual, PSI_EPSILON)
        e = np.maximum(self.expected, PSI_EPSILON)
        terms = np.where(self.valid, (a - e) * np.log(a / e), 0.0)
        return terms.sum(axis=1)


# --------------------------------------------------------------------------------------------------------------
# Monitor


def _le(bound: float) -> str:
    return "+Inf" if np.isinf(bound) else f"{bound:g}"


class Monitor:
    """Accumulates per-execution statistics and publishes them as Triton custom metrics.

    One monitor per model instance (stub process). The preprocess model calls ``observe_inputs`` and owns the
    input-side families; the classifier step calls ``observe_outputs`` and owns the output-side families. Two
    instances of one model share the series: Triton hands both the same metric for the same name and labels.

    ``api`` is ``triton_python_backend_utils`` inside Triton; anything with the same ``MetricFamily`` interface
    works (the unit tests use an in-memory one).
    """

    def __init__(self, api: Any, *, inputs: bool = False, outputs: bool = False, admission: bool = False,
                 stats: PreprocessingStats | None = None, reference: DriftReference | None = None,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S, warmup_flows: int = 0, instance: str = "",
                 drift_min_flows: int = DRIFT_MIN_FLOWS, drift_window_flows: int = DRIFT_WINDOW_FLOWS,
                 drift_sample_rows: int = DRIFT_SAMPLE_ROWS) -> None:
        self.api = api
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._families: list[Any] = []
        self._warmup_left = int(warmup_flows)
        # Counters of several instances add up in one series; gauges would overwrite each other, so each
        # instance's gauges carry its name.
        self._gauge_labels = {"model_instance": instance} if instance else {}
        self.inputs, self.outputs, self.admission = inputs, outputs, admission
        self.drift_min_flows, self.drift_window_flows = drift_min_flows, drift_window_flows
        self.drift_sample_rows = max(1, int(drift_sample_rows))
        if inputs:
            self._init_inputs(stats, reference)
        if outputs:
            self._init_outputs()
        if admission:
            self._init_admission()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if flush_interval_s > 0:
            self._thread = threading.Thread(target=self._run, args=(flush_interval_s,), name="moe-ids-metrics",
                                            daemon=True)
            self._thread.start()

    # -- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_triton_args(cls, args: dict[str, str], api: Any, **kwargs: Any) -> Monitor:
        """A monitor for a Python-backend model, configured from its ``initialize`` args.

        Config parameters (all optional): ``metrics`` ("false" disables, leaving a monitor that records
        nothing), ``metrics_flush_interval_s``. Warm-up flows are counted from the config's ``model_warmup``.
        """
        config = json.loads(args["model_config"])
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        if params.get("metrics", "true").strip().lower() in ("false", "0", "off", "no"):
            kwargs["inputs"] = kwargs["outputs"] = kwargs["admission"] = False
            kwargs["flush_interval_s"] = 0
        if "metrics_flush_interval_s" in params:
            kwargs.setdefault("flush_interval_s", float(params["metrics_flush_interval_s"]))
        kwargs.setdefault("warmup_flows", warmup_flows(config))
        kwargs.setdefault("instance", args.get("model_instance_name", ""))
        return cls(api, **kwargs)

    def _family(self, name: str, description: str, kind: str) -> Any:
        family = self.api.MetricFamily(name=name, description=description,
                                       kind=getattr(self.api.MetricFamily, kind))
        self._families.append(family)
        return family

    def _init_inputs(self, stats: PreprocessingStats | None, reference: DriftReference | None) -> None:
        flows = self._family(FLOWS, "Flows that passed input validation and were preprocessed", "COUNTER")
        self._m_flows = flows.Metric(labels={})
        missing = self._family(MISSING_VALUES, "Missing (NaN or infinite) input values, per feature", "COUNTER")
        self._m_missing = [missing.Metric(labels={"feature": name}) for name in FEATURE_NAMES]
        imputed = self._family(IMPUTED_FLOWS, "Flows with at least one imputed value, per imputation strategy",
                               "COUNTER")
        self._m_imputed = [imputed.Metric(labels={"strategy": s}) for s in STRATEGIES]
        self._flows = 0
        self._missing = np.zeros(N_FEATURES, dtype=np.int64)
        self._imputed = np.zeros(len(STRATEGIES), dtype=np.int64)
        self._range: tuple[np.ndarray, np.ndarray] | None = None
        if stats is not None:
            # float32 like the served features, so a value equal to the training extreme is not "outside"
            self._range = (np.asarray(stats.minimum, dtype=np.float32), np.asarray(stats.maximum, dtype=np.float32))
            oor = self._family(OUT_OF_RANGE, "Observed input values outside the training range, per feature",
                               "COUNTER")
            self._m_oor = [oor.Metric(labels={"feature": name}) for name in FEATURE_NAMES]
            self._oor = np.zeros(N_FEATURES, dtype=np.int64)
        self._bins: BinCounter | None = None
        if reference is not None:
            self._bins = BinCounter(reference)
            psi = self._family(FEATURE_PSI, "Population stability index of recent inputs against the training "
                               "split, per feature (0.1 moderate, 0.25 large shift)", "GAUGE")
            self._m_psi = [psi.Metric(labels={"feature": name, **self._gauge_labels})
                           for name in reference.feature_names]
            window = self._family(DRIFT_WINDOW, "Sampled flows in the (decaying) window the PSI is computed over",
                                  "GAUGE")
            self._m_window = window.Metric(labels=dict(self._gauge_labels))
            self._window = np.zeros((len(reference.feature_names), self._bins.n_bins), dtype=np.float64)
            self._window_flows = 0.0
            self._drift_rows: list[np.ndarray] = []

    def _init_outputs(self) -> None:
        labels = OUTPUT_LABELS[PROBABILITIES]
        predictions = self._family(PREDICTIONS, "Scored flows per predicted class", "COUNTER")
        self._m_pred = [predictions.Metric(labels={"predicted_class": label}) for label in labels]
        self._pred = np.zeros(len(labels), dtype=np.int64)
        ood = self._family(OUT_OF_DISTRIBUTION_FLOWS, "Scored flows the trust score flagged out-of-distribution "
                           "(unlike the training data), per predicted class", "COUNTER")
        self._m_ood = [ood.Metric(labels={"predicted_class": label}) for label in labels]
        self._ood = np.zeros(len(labels), dtype=np.int64)
        self._bounds = np.asarray(GATING_BUCKETS + (np.inf,), dtype=np.float32)
        bucket = self._family(f"{GATING_WEIGHT}_bucket", "Weight the gate gives the temporal expert: cumulative "
                              "count of flows with weight <= le (a histogram built from counters)", "COUNTER")
        self._m_bucket = [bucket.Metric(labels={"le": _le(b)}) for b in GATING_BUCKETS + (np.inf,)]
        total = self._family(f"{GATING_WEIGHT}_sum", "Sum of the temporal expert's gating weights", "COUNTER")
        count = self._family(f"{GATING_WEIGHT}_count", "Flows with an observed gating weight", "COUNTER")
        self._m_gsum, self._m_gcount = total.Metric(labels={}), count.Metric(labels={})
        self._gbuckets = np.zeros(len(self._bounds), dtype=np.int64)
        self._gsum = 0.0
        self._gcount = 0

    def _init_admission(self) -> None:
        refusals = self._family(ADMISSION_REFUSALS, "Requests the model refused as overloaded: on arrival (they could "
                                "not have been answered within their budget) or in its queue (they no longer could)",
                                "COUNTER")
        self._m_refused = [refusals.Metric(labels={"when": when}) for when in REFUSAL_WHEN]
        wait_sum = self._family(f"{QUEUE_WAIT}_sum", "Seconds admitted requests waited in the model's queue", "COUNTER")
        wait_count = self._family(f"{QUEUE_WAIT}_count", "Admitted requests that reached a model run", "COUNTER")
        self._m_wsum, self._m_wcount = wait_sum.Metric(labels={}), wait_count.Metric(labels={})
        queued = self._family(QUEUED_FLOWS, "Flows admitted and waiting for a model run, per instance", "GAUGE")
        self._m_queued = queued.Metric(labels=dict(self._gauge_labels))
        self._refused = np.zeros(len(REFUSAL_WHEN), dtype=np.int64)
        self._wsum, self._wcount, self._queued = 0.0, 0, 0

    # -- request path ------------------------------------------------------------------------------------------

    def _skip_warmup(self, rows: np.ndarray) -> int:
        """How many leading rows are warm-up samples (all zero, within the warm-up budget)."""
        if self._warmup_left <= 0:
            return 0
        nonzero = np.flatnonzero(np.any(rows.reshape(rows.shape[0], -1) != 0, axis=1))
        leading_zero = int(nonzero[0]) if nonzero.size else rows.shape[0]
        skip = min(leading_zero, self._warmup_left)
        self._warmup_left = self._warmup_left - skip if skip == leading_zero and nonzero.size == 0 else 0
        return skip

    def observe_inputs(self, features: np.ndarray, codes: np.ndarray | int) -> None:
        """Record one execution's raw [n, N_FEATURES] features and their imputation codes (scalar or [n])."""
        if not self.inputs:
            return
        x = np.asarray(features)
        codes_arr = np.broadcast_to(np.asarray(codes, dtype=np.int64).reshape(-1), (x.shape[0],))
        with self._lock:
            skip = self._skip_warmup(x)
        if skip:
            x, codes_arr = x[skip:], codes_arr[skip:]
        if x.shape[0] == 0:
            return
        n = x.shape[0]
        finite = np.isfinite(x)
        if finite.all():  # the common case: skip the (slow) per-column counts of an all-false mask
            missing = imputed = None
        else:
            missing = np.count_nonzero(~finite, axis=0)
            missing_rows = ~finite.all(axis=1)
            imputed = np.bincount(codes_arr[missing_rows], minlength=len(STRATEGIES))[:len(STRATEGIES)]
        oor = None
        if self._range is not None:
            low, high = self._range
            # Column extremes first (NaN-ignoring); exact counts only for the columns that leave the range.
            cols = np.flatnonzero((np.fmin.reduce(x, axis=0) < low) | (np.fmax.reduce(x, axis=0) > high))
            if cols.size:
                sub = x[:, cols]
                oor = np.zeros(N_FEATURES, dtype=np.int64)
                oor[cols] = np.count_nonzero(finite[:, cols] & ((sub < low[cols]) | (sub > high[cols])), axis=0)
        sample = None
        if self._bins is not None:  # binned later by the flush thread, off the request path
            stride = -(-n // self.drift_sample_rows)
            sample = np.array(x[::stride], dtype=np.float32)
        with self._lock:
            self._flows += n
            if missing is not None:
                self._missing += missing
                self._imputed += imputed
            if oor is not None:
                self._oor += oor
            if sample is not None:
                self._drift_rows.append(sample)

    def observe_outputs(self, probabilities: np.ndarray, gating: np.ndarray,
                        inputs: np.ndarray | None = None, out_of_distribution: np.ndarray | None = None) -> None:
        """Record one execution's [n, 2] class probabilities, [n, 2] expert gating weights and [n, 1]
        out-of-distribution flags.

        ``inputs`` (any [n, ...] model input) lets the monitor recognise the zero warm-up samples.
        """
        if not self.outputs:
            return
        p = np.asarray(probabilities)
        g = np.asarray(gating)[:, 1].astype(np.float32)  # compared with float32 bounds: 0.05 <= le="0.05"
        ood = (np.zeros(p.shape[0], dtype=bool) if out_of_distribution is None
               else np.asarray(out_of_distribution, dtype=bool).reshape(-1))
        if inputs is not None:
            with self._lock:
                skip = self._skip_warmup(np.asarray(inputs))
            p, g, ood = p[skip:], g[skip:], ood[skip:]
        if p.shape[0] == 0:
            return
        classes = np.argmax(p, axis=1)
        predicted = np.bincount(classes, minlength=p.shape[1])
        flagged = np.bincount(classes[ood], minlength=p.shape[1])
        buckets = np.bincount(np.searchsorted(self._bounds, g, side="left"), minlength=len(self._bounds))
        with self._lock:
            self._pred += predicted[:len(self._pred)]
            self._ood += flagged[:len(self._ood)]
            self._gbuckets += buckets[:len(self._bounds)]
            self._gsum += float(g.sum(dtype=np.float64))
            self._gcount += g.shape[0]

    # -- publishing --------------------------------------------------------------------------------------------

    def observe_admission(self, *, refused_on_arrival: int = 0, refused_in_queue: int = 0,
                          waits_ns: np.ndarray | None = None, queued_flows: int | None = None) -> None:
        """Record refusals, the waits of the requests of one run and the flows still queued (latest wins)."""
        if not self.admission:
            return
        with self._lock:
            self._refused += (refused_on_arrival, refused_in_queue)
            if waits_ns is not None and len(waits_ns):
                self._wsum += float(np.sum(waits_ns)) / 1e9
                self._wcount += len(waits_ns)
            if queued_flows is not None:
                self._queued = int(queued_flows)

    def _take(self) -> dict[str, Any]:
        """Pending deltas (reset to zero) and the drift state, under the lock."""
        d: dict[str, Any] = {}
        with self._lock:
            if self.inputs:
                d["flows"], self._flows = self._flows, 0
                d["missing"], self._missing = self._missing, np.zeros_like(self._missing)
                d["imputed"], self._imputed = self._imputed, np.zeros_like(self._imputed)
                if self._range is not None:
                    d["oor"], self._oor = self._oor, np.zeros_like(self._oor)
                if self._bins is not None:
                    d["drift_rows"], self._drift_rows = self._drift_rows, []
            if self.outputs:
                d["pred"], self._pred = self._pred, np.zeros_like(self._pred)
                d["ood"], self._ood = self._ood, np.zeros_like(self._ood)
                d["gbuckets"], self._gbuckets = self._gbuckets, np.zeros_like(self._gbuckets)
                d["gsum"], self._gsum = self._gsum, 0.0
                d["gcount"], self._gcount = self._gcount, 0
            if self.admission:
                d["refused"], self._refused = self._refused, np.zeros_like(self._refused)
                d["wsum"], d["wcount"], d["queued"] = self._wsum, self._wcount, self._queued
                self._wsum, self._wcount = 0.0, 0
        return d

    def flush(self) -> None:
        """Push pending counts to Triton: one call per series that changed."""
        with self._flush_lock:
            d = self._take()
            if self.inputs:
                if d["flows"]:
                    self._m_flows.increment(float(d["flows"]))
                for f in np.flatnonzero(d["missing"]):
                    self._m_missing[f].increment(float(d["missing"][f]))
                for s in np.flatnonzero(d["imputed"]):
                    self._m_imputed[s].increment(float(d["imputed"][s]))
                if "oor" in d:
                    for f in np.flatnonzero(d["oor"]):
                        self._m_oor[f].increment(float(d["oor"][f]))
                if d.get("drift_rows"):
                    self._update_drift(np.concatenate(d["drift_rows"]))
            if self.outputs:
                for c in np.flatnonzero(d["pred"]):
                    self._m_pred[c].increment(float(d["pred"][c]))
                for c in np.flatnonzero(d["ood"]):
                    self._m_ood[c].increment(float(d["ood"][c]))
                if d["gcount"]:
                    cumulative = np.cumsum(d["gbuckets"])
                    for b in np.flatnonzero(cumulative):
                        self._m_bucket[b].increment(float(cumulative[b]))
                    self._m_gsum.increment(d["gsum"])
                    self._m_gcount.increment(float(d["gcount"]))
            if self.admission:
                for w in np.flatnonzero(d["refused"]):
                    self._m_refused[w].increment(float(d["refused"][w]))
                if d["wcount"]:
                    self._m_wsum.increment(d["wsum"])
                    self._m_wcount.increment(float(d["wcount"]))
                self._m_queued.set(float(d["queued"]))

    def _update_drift(self, rows: np.ndarray) -> None:
        """Add sampled rows to the drift window and publish the PSI of features with enough observations."""
        self._window += self._bins.count(rows)
        self._window_flows += rows.shape[0]
        self._m_window.set(float(self._window_flows))
        observed = self._window.sum(axis=1)
        psi = self._bins.psi(self._window)
        for f in np.flatnonzero(observed >= self.drift_min_flows):
            self._m_psi[f].set(float(psi[f]))
        if self._window_flows >= self.drift_window_flows:
            self._window *= 0.5
            self._window_flows *= 0.5

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - a metrics hiccup must never take the model down
                logger = getattr(self.api, "Logger", None)
                if logger is not None:
                    logger.log_warn(f"moe_ids metrics: flush failed: {exc}")

    def close(self) -> None:
        """Stop the flush thread and publish what is pending (call from the model's ``finalize``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        try:
            self.flush()
        except Exception:  # noqa: BLE001 - the server may already be tearing the metrics down
            pass
        # Metrics must go before their families (the Python backend checks the order).
        for attr in [a for a in vars(self) if a.startswith("_m_")]:
            delattr(self, attr)
        self._families.clear()


def warmup_flows(config: dict[str, Any]) -> int:
    """Flows one instance receives as warm-up: the sum of the config's ``model_warmup`` batch sizes."""
    return sum(int(w.get("batch_size", 1) or 1) * int(w.get("count", 1) or 1) for w in config.get("model_warmup", []))
