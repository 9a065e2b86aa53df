"""The trust score's calibration arithmetic (numpy) and the graph's (torch) agree and mean what they say."""

import numpy as np
import torch

from moe_ids.model import trust
from moe_ids.model.network import TrustScore


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


def _fitted_head(rng: np.random.Generator) -> tuple[TrustScore, dict[str, np.ndarray]]:
    h = rng.normal(size=(500, 6))
    values, missing = rng.normal(size=(500, 4)), (rng.random((500, 4)) < 0.3).astype(float)
    classes = rng.integers(0, 3, size=500)
    whitening, centers = trust.fit_gaussians(h, classes, 3)
    knots = trust.quantile_knots(trust.min_distance(h, whitening, centers), 50)
    centroids = trust.kmeans(values, 16, np.random.default_rng(3))
    d_in = trust.observed_distance(values, missing, centroids)
    input_knots = trust.quantile_knots(d_in, 50)
    combination = trust.fit_combination(trust.trust_from_knots(trust.min_distance(h, whitening, centers), knots),
                                        trust.trust_from_knots(d_in, input_knots), np.ones(500), 50)
    head = TrustScore(6, 3, 50, input_dim=4, centroids=16)
    fitted = {"whitening": whitening, "centers": centers, "knots": knots, "input_centroids": centroids,
              "input_knots": input_knots, "smaller_knots": combination.smaller, "joint_knots": combination.joint,
              "combined_knots": combination.combined}
    for name, value in fitted.items():
        getattr(head, name).copy_(torch.from_numpy(value).float())
    head.alpha.fill_(0.05)
    return head, fitted


def _numpy_trust(fitted: dict[str, np.ndarray], h: np.ndarray, values: np.ndarray,
                 missing: np.ndarray) -> np.ndarray:
    p_emb = trust.trust_from_knots(trust.min_distance(h, fitted["whitening"], fitted["centers"]), fitted["knots"])
    p_in = trust.trust_from_knots(trust.observed_distance(values, missing, fitted["input_centroids"]),
                                  fitted["input_knots"])
    return trust.evidence_floor(trust.combined_p_value(p_emb, p_in, _knots(fitted)), missing)


def _knots(fitted: dict[str, np.ndarray]) -> trust.CombinationKnots:
    return trust.CombinationKnots(fitted["smaller_knots"], fitted["joint_knots"], fitted["combined_knots"])


def _head(head: TrustScore, *arrays: np.ndarray, probs: np.ndarray | None = None,
          host_free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Trust and flag of the graph's head; the same verdict with and without the host parameters by default."""
    n = len(arrays[0])
    probs = np.tile([0.8, 0.2], (n, 1)) if probs is None else probs
    host_free = probs if host_free is None else host_free
    t, ood = head(*(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (*arrays, probs, host_free)))
    assert ood.dtype == torch.bool
    return t.numpy()[:, 0], ood.numpy()[:, 0]


def test_graph_trust_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    head, fitted = _fitted_head(rng)
    q = rng.normal(size=(300, 6)) * 1.5
    values, missing = rng.normal(size=(300, 4)) * 1.5, (rng.random((300, 4)) < 0.1).astype(float)
    t, ood = _head(head, q, values, missing)
    np.testing.assert_allclose(t, _numpy_trust(fitted, q, values, missing), atol=1e-4)
    np.testing.assert_array_equal(ood, t < 0.05)
    full = missing.sum(1) == 0
    assert 0.5 < full.mean() < 0.8 and (t[full] > 0.05).sum() > 50  # the floor leaves these to the two views


def test_a_flow_with_fewer_observed_features_than_the_floor_is_flagged_at_trust_zero() -> None:
    assert trust.MIN_OBSERVED == 4
    rng = np.random.default_rng(5)
    head, _ = _fitted_head(rng)
    familiar = np.zeros((5, 6))  # embeddings and inputs at the heart of the training data ...
    missing = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=float)
    t, ood = _head(head, familiar, np.zeros((5, 4)), missing)
    # ... so only the number of observed features decides: four pass, three or fewer are no evidence
    assert not ood[0] and t[0] > 0.3
    np.testing.assert_array_equal(ood[1:], True)
    np.testing.assert_array_equal(t[1:], 0.0)
    np.testing.assert_array_equal(trust.too_few_observed(missing), [False, True, True, True, True])
    np.testing.assert_array_equal(trust.evidence_floor(np.full(5, 0.7), missing), [0.7, 0, 0, 0, 0])


def test_a_verdict_that_flips_without_the_host_parameters_is_flagged_and_its_trust_capped() -> None:
    rng = np.random.default_rng(3)
    head, fitted = _fitted_head(rng)
    familiar = np.zeros((4, 6))
    values, missing = np.zeros((4, 4)), np.zeros((4, 4))
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.45, 0.55]])
    host_free = np.array([[0.3, 0.7], [0.6, 0.4], [0.7, 0.3], [0.55, 0.45]])  # flips, holds, flips, flips
    t, ood = _head(head, familiar, values, missing, probs=probs, host_free=host_free)
    base, base_ood = _head(head, familiar, values, missing)
    assert not base_ood.any() and (base > 0.3).all()
    np.testing.assert_array_equal(ood, [True, False, True, True])
    np.testing.assert_allclose(t, np.minimum(base, [0.4, 1.0, 0.5, 0.9]), atol=1e-6)
    expected_t, expected_ood = trust.host_view(_numpy_trust(fitted, familiar, values, missing), probs, host_free, 0.05)
    np.testing.assert_allclose(t, expected_t, atol=1e-4)
    np.testing.assert_array_equal(ood, expected_ood)
    head.host_change.fill_(0.55)  # calibrated: only flips that move the attack probability by more than this
    t, ood = _head(head, familiar, values, missing, probs=probs, host_free=host_free)
    np.testing.assert_array_equal(ood, [True, False, False, False])
    np.testing.assert_allclose(t, np.minimum(base, [0.4, 1.0, 1.0, 1.0]), atol=1e-6)
    expected_t, expected_ood = trust.host_view(_numpy_trust(fitted, familiar, values, missing), probs, host_free, 0.05,
                                               threshold=0.55)
    np.testing.assert_allclose(t, expected_t, atol=1e-4)
    np.testing.assert_array_equal(ood, expected_ood)


def test_host_threshold_flags_the_stated_share_of_calibration_flows() -> None:
    rng = np.random.default_rng(8)
    probs = np.stack([p := rng.random(20_000), 1 - p], axis=1)
    moved = np.clip(probs[:, 1] + rng.normal(scale=0.2, size=20_000), 0, 1)
    host_free = np.stack([1 - moved, moved], axis=1)
    changes = trust.flip_change(probs, host_free)
    flips = probs.argmax(1) != host_free.argmax(1)
    assert (changes[~flips] == 0).all() and (changes[flips] > 0).all()
    threshold = trust.host_threshold(changes, 0.001)
    assert np.mean(changes > threshold) <= 0.001 < np.mean(changes >= threshold * 0.9)
    fresh_p = rng.random(200_000)
    fresh_moved = np.clip(fresh_p + rng.normal(scale=0.2, size=200_000), 0, 1)
    fresh = trust.flip_change(np.stack([1 - fresh_p, fresh_p], 1), np.stack([1 - fresh_moved, fresh_moved], 1))
    assert abs(np.mean(fresh > threshold) - 0.001) < 0.0005  # on new flows like the calibration ones
    assert trust.host_threshold(np.zeros(1000), 0.001) == 0.0  # nothing flips: every flip would be flagged


def test_a_flow_far_from_the_training_inputs_is_flagged_though_its_embedding_is_familiar() -> None:
    rng = np.random.default_rng(4)
    head, _ = _fitted_head(rng)
    familiar = np.zeros((2, 6))  # at the heart of the embedding classes
    values = np.array([[40.0, 40.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]])  # no training flow was near the first
    t, ood = _head(head, familiar, values, np.zeros((2, 4)))
    assert ood[0] and t[0] == 0.0
    assert not ood[1] and t[1] > 0.3


def test_missing_features_neither_count_nor_depend_on_their_imputed_value() -> None:
    centroids = np.array([[0.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    missing = np.array([[0, 1, 0], [0, 1, 0], [0, 0, 0]])
    values = np.array([[1.0, -7.0, 1.0], [1.0, 3.0, 1.0], [1.0, 1.0, 1.0]])  # the middle value imputed otherwise
    d = trust.observed_distance(values, missing, centroids)
    np.testing.assert_allclose(d, [1.0, 1.0, 1.0])  # per observed feature: 2/2, 2/2, 3/3
    assert trust.observed_distance(values[:1], np.ones((1, 3)), centroids)[0] == 0.0  # nothing observed


def test_combined_trust_is_again_uniform_on_calibration_like_flows() -> None:
    rng = np.random.default_rng(5)
    p_a, p_b, p_h = rng.random(20_000), rng.random(20_000), rng.random(20_000)  # independent views here
    knots = trust.fit_combination(p_a, p_b, p_h, 200)
    fresh = trust.combined_p_value(rng.random(200_000), rng.random(200_000), knots, rng.random(200_000))
    assert abs(np.mean(fresh < 0.01) - 0.01) < 0.002
    assert abs(np.mean(fresh < 0.2) - 0.2) < 0.01
    # the smaller p-value alone would flag about twice alpha
    assert abs(np.mean(np.minimum(rng.random(200_000), rng.random(200_000)) < 0.01) - 0.0199) < 0.002
    # no host evidence anywhere (every verdict holds without the host parameters): the two views' minimum
    plain = trust.fit_combination(p_a, p_b, np.ones_like(p_a), 200)
    expected = trust.share_below(np.minimum(p_a[:50], p_b[:50]), trust.quantile_knots(np.minimum(p_a, p_b), 200))
    np.testing.assert_allclose(trust.combined_p_value(p_a[:50], p_b[:50], plain), expected, atol=0.01)


def test_evidence_from_both_views_adds_up_and_a_single_view_still_counts() -> None:
    """A flow in the 2% tail of the distance views whose verdict also moves more than 98% of the calibration
    flows' is flagged at alpha 0.01, though neither view alone reaches 0.01; a flow extreme in one distance view
    and without host evidence is flagged too (the product alone would need it far more extreme); the lab's
    rate stays 0.01."""
    rng = np.random.default_rng(9)
    p_a, p_b = rng.random(20_000), rng.random(20_000)
    p_h = np.where(rng.random(20_000) < 0.9, 1.0, rng.random(20_000) * 0.1)  # most verdicts do not move
    knots = trust.fit_combination(p_a, p_b, p_h, 200)
    smallest = trust.quantile_knots(np.minimum(np.minimum(p_a, p_b), p_h), 200)
    both = (np.array([0.02]), np.array([0.5]), np.array([0.02]))
    assert trust.combined_p_value(*both[:2], knots, both[2])[0] < 0.01
    assert trust.share_below(np.minimum(np.minimum(*both[:2]), both[2]), smallest)[0] > 0.01
    single = (np.array([0.003]), np.array([0.5]), np.array([1.0]))
    assert trust.combined_p_value(*single[:2], knots, single[2])[0] < 0.01
    product_only = trust.quantile_knots(trust.combination_statistics(p_a, p_b, p_h)[1], 200)
    assert trust.share_below(np.array([0.003]), product_only)[0] > 0.01
    fresh_h = np.where(rng.random(100_000) < 0.9, 1.0, rng.random(100_000) * 0.1)
    fresh = trust.combined_p_value(rng.random(100_000), rng.random(100_000), knots, fresh_h)
    assert abs(np.mean(fresh < 0.01) - 0.01) < 0.002


def test_host_sensitivity_ignores_moves_below_the_float32_noise() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    host_free = np.array([[0.9, 0.1], [0.89995, 0.10005], [0.7, 0.3], [0.5, 0.5]])
    np.testing.assert_allclose(trust.host_sensitivity(probs, host_free), [0.0, 0.0, 0.5 - trust.HOST_NOISE, 0.0],
                               atol=1e-12)


def test_graph_weighs_host_sensitivity_as_numpy_does() -> None:
    rng = np.random.default_rng(10)
    head, fitted = _fitted_head(rng)
    n = 400
    p = rng.random(n)
    moved = np.clip(p + rng.normal(scale=0.05, size=n) * (rng.random(n) < 0.5), 0, 1)  # half do not move
    probs, host_free = np.stack([1 - p, p], 1), np.stack([1 - moved, moved], 1)
    h, values = rng.normal(size=(n, 6)), rng.normal(size=(n, 4))
    missing = (rng.random((n, 4)) < 0.1).astype(float)
    sensitivity = trust.host_sensitivity(probs, host_free)
    host_knots = trust.quantile_knots(sensitivity, 50)
    p_emb = trust.trust_from_knots(trust.min_distance(h, fitted["whitening"], fitted["centers"]), fitted["knots"])
    p_in = trust.trust_from_knots(trust.observed_distance(values, missing, fitted["input_centroids"]),
                                  fitted["input_knots"])
    p_host = trust.trust_from_knots(sensitivity, host_knots)
    combination = trust.fit_combination(p_emb, p_in, p_host, 50)
    for name, value in (("host_knots", host_knots), ("smaller_knots", combination.smaller),
                        ("joint_knots", combination.joint), ("combined_knots", combination.combined)):
        getattr(head, name).copy_(torch.from_numpy(value).float())
    head.host_change.fill_(2.0)  # no flip flags here: the combined statistic alone
    t, ood = _head(head, h, values, missing, probs=probs, host_free=host_free)
    expected = trust.evidence_floor(trust.combined_p_value(p_emb, p_in, combination, p_host), missing)
    np.testing.assert_allclose(t, expected, atol=2e-3)
    assert np.mean(np.abs(t - expected) < 1e-4) > 0.95
    still = sensitivity == 0  # a verdict that does not move: the distance views alone decide
    np.testing.assert_array_equal(p_host[still], 1.0)


def test_kmeans_finds_separated_clusters_and_is_deterministic() -> None:
    rng = np.random.default_rng(6)
    truth = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = np.concatenate([c + rng.normal(scale=0.3, size=(400, 2)) for c in truth])
    a = trust.kmeans(x, 4, np.random.default_rng(7))
    b = trust.kmeans(x, 4, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert np.all(trust.observed_distance(truth, np.zeros_like(truth), a) < 0.05)
    brute = ((x[:, None, :] - a[None]) ** 2).sum(axis=2).min(axis=1) / 2
    np.testing.assert_allclose(trust.observed_distance(x, np.zeros_like(x), a), brute, atol=1e-9)


def test_kmeans_keeps_every_centroid_on_data_with_fewer_distinct_points() -> None:
    x = np.repeat(np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]), 50, axis=0)
    c = trust.kmeans(x, 5, np.random.default_rng(8))
    assert c.shape == (5, 2) and np.all(np.isfinite(c))
    assert np.all(trust.observed_distance(x, np.zeros_like(x), c) < 1e-12)


def test_class_index_groups_normal_and_families() -> None:
    np.testing.assert_array_equal(trust.class_index(np.array([0, 1, 1, 0]), np.array([-1, 2, -1, -1])),
                                  [0, 3, -1, 0])
