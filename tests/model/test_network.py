"""The trained network's host view: its second pass (first layers updated by the changed columns only) is the
model asked without the hosts' TCP parameters."""

import numpy as np
import pytest
import torch

from moe_ids.core import artifacts
from moe_ids.core.preprocessing import Preprocessor
from moe_ids.core.schema import FEATURE_NAMES, HOST_TCP_FEATURES
from moe_ids.data.loading import bundled_data_dir, load_flows
from moe_ids.model import trust
from moe_ids.model.prediction import predict_numpy, to_tensors


@pytest.fixture(scope="module")
def trained():
    from moe_ids.triton.ops.bootstrap import ensure_model

    model_dir = ensure_model()
    return artifacts.load_model(model_dir), Preprocessor(artifacts.load_stats(model_dir))


def _flows() -> np.ndarray:
    """Real flows of both extractions and of the Python package's Internet scan (verdicts that flip)."""
    root = bundled_data_dir()
    parts = [load_flows(root / "cicids2017-original" / "machinelearningcve_stratified12k.csv.gz", nrows=300),
             load_flows(root / "cicids2017-improved" / "flows.csv.gz", nrows=300),
             load_flows(root / "cicflowmeter-python" / "nmap_syn_scan.csv.gz", nrows=300)]
    return np.concatenate([t.features.to_numpy(np.float64) for t in parts])


def test_the_second_pass_is_the_model_without_the_host_parameters(trained) -> None:
    model, pre = trained
    x = _flows()
    tab, tmp, mask = to_tensors(pre, x, "median")
    with torch.no_grad():
        out = model.verdicts(tab, tmp, mask)
        e_tab, e_tmp, gating = model.experts(tab, tmp, mask)  # the first pass, computed the plain way
    host_free = out["host_free"].numpy()
    np.testing.assert_allclose(out["gating"].numpy(), gating.numpy(), atol=1e-6)
    np.testing.assert_allclose(out["e_tab"].numpy(), e_tab.numpy(), atol=1e-6)
    withheld = x.copy()
    withheld[:, [FEATURE_NAMES.index(f) for f in HOST_TCP_FEATURES]] = np.nan
    expected = predict_numpy(model, pre, withheld, strategy="median")["probabilities"]
    np.testing.assert_allclose(host_free, expected, atol=1e-5)


def test_served_flags_are_the_familiarity_flags_or_a_wide_flip(trained) -> None:
    model, pre = trained
    x = _flows()
    out = predict_numpy(model, pre, x, strategy="median")
    withheld = x.copy()
    withheld[:, [FEATURE_NAMES.index(f) for f in HOST_TCP_FEATURES]] = np.nan
    host_free = predict_numpy(model, pre, withheld, strategy="median")["probabilities"]
    change = trust.flip_change(out["probabilities"], host_free)
    threshold = float(model.trust.host_change)
    assert 0.0 <= threshold < 0.8
    wide = change > threshold
    assert wide[600:].mean() > 0.2 and wide[:600].mean() < 0.01  # the foreign scan, not the lab's flows
    assert out["ood"][wide].all()
    assert (out["trust"][wide] <= 1.0 - change[wide] + 1e-6).all()
    _, ood = trust.host_view(out["trust"][~wide], out["probabilities"][~wide], host_free[~wide],
                             float(model.trust.alpha), threshold)
    np.testing.assert_array_equal(out["ood"][~wide], ood)
