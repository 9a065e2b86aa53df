"""The trust score's calibration arithmetic (numpy) and the graph's (torch) agree and mean what they say."""

import numpy as np
import torch

from moe_ids import trust
from moe_ids.model import TrustScore


def test_trust_is_the_interpolated_share_of_calibration_flows_farther_away() -> None:
    knots = np.array([0.0, 1.0, 2.0, 4.0, 8.0])  # 4 equal-mass bins
    d = np.array([-1.0, 0.0, 0.5, 1.0, 3.0, 8.0, 100.0])
    np.testing.assert_allclose(trust.trust_from_knots(d, knots), [1.0, 1.0, 0.875, 0.75, 0.375, 0.0, 0.0])


def test_out_of_distribution_rate_on_calibration_like_data_is_alpha() -> None:
    rng = np.random.default_rng(0)
    calibration = rng.gamma(3.0, 2.0, size=20_000)
    fresh = rng.gamma(3.0, 2.0, size=200_000)  # the same distribution, not the same draws
    knots = trust.quantile_knots(calibration, 200)
    t = trust.trust_from_knots(fresh, knots)
    assert abs(np.mean(t < 0.01) - 0.01) < 0.002
    assert abs(np.mean(t < 0.1) - 0.1) < 0.005  # uniform: a p-value, not just a threshold
    assert np.all(np.diff(knots) > 0)


def test_quantile_knots_survive_ties() -> None:
    knots = trust.quantile_knots(np.zeros(100), 10)  # every calibration distance equal
    assert np.all(np.diff(knots) > 0)
    assert np.all(np.isfinite(trust.trust_from_knots(np.array([0.0, 1.0]), knots)))


def test_fitted_distance_is_the_mahalanobis_distance_to_the_nearest_class() -> None:
    rng = np.random.default_rng(1)
    a = rng.multivariate_normal([0, 0, 0], [[2, 0.5, 0], [0.5, 1, 0.2], [0, 0.2, 0.5]], size=3000)
    b = a + np.array([6.0, -3.0, 1.0])
    h = np.concatenate([a, b])
    classes = np.repeat([0, 1], 3000)
    whitening, centers = trust.fit_gaussians(h, classes, 2, shrinkage=0.0)
    means = np.stack([a.mean(0), b.mean(0)])
    resid = np.concatenate([a - means[0], b - means[1]])
    precision = np.linalg.inv(resid.T @ resid / (len(resid) - 1))
    q = rng.normal(size=(20, 3)) * 4
    expected = np.min([np.einsum("ij,jk,ik->i", q - m, precision, q - m) for m in means], axis=0)
    np.testing.assert_allclose(trust.min_distance(q, whitening, centers), expected, rtol=1e-8)


def test_graph_trust_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    h = rng.normal(size=(500, 6))
    classes = rng.integers(0, 3, size=500)
    whitening, centers = trust.fit_gaussians(h, classes, 3)
    knots = trust.quantile_knots(trust.min_distance(h, whitening, centers), 50)
    head = TrustScore(6, 3, 50)
    head.whitening.copy_(torch.from_numpy(whitening).float())
    head.centers.copy_(torch.from_numpy(centers).float())
    head.knots.copy_(torch.from_numpy(knots).float())
    head.alpha.fill_(0.05)
    q = rng.normal(size=(300, 6)) * 1.5
    t, ood = head(torch.from_numpy(q).float())
    expected = trust.trust_from_knots(trust.min_distance(q, whitening, centers), knots)
    np.testing.assert_allclose(t.numpy()[:, 0], expected, atol=1e-4)
    np.testing.assert_array_equal(ood.numpy()[:, 0], t.numpy()[:, 0] < 0.05)
    assert ood.dtype == torch.bool


def test_class_index_groups_normal_and_families() -> None:
    np.testing.assert_array_equal(trust.class_index(np.array([0, 1, 1, 0]), np.array([-1, 2, -1, -1])),
                                  [0, 3, -1, 0])
