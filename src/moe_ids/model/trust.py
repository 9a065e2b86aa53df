"""Calibration of the trust score (``moe_ids.model.network.TrustScore``): three views of how familiar a flow is,
each turned into a p-value against held-out flows, and one more p-value of a statistic that combines them.

- **Embedding view**: class-conditional Gaussians on the experts' embeddings of training flows (Lee et al. 2018).
  It sees what the model has learnt to tell apart, and misses flows the experts map into familiar regions.
- **Input view**: the distance of the flow's observed scaled values to the nearest of ``INPUT_CENTROIDS``
  k-means centroids of the training flows, over the observed features only. It sees a flow whose values no
  training flow had (another network's round-trip times, another extractor's units) where the embedding does
  not: on the Python package's flows of an Internet SYN scan the embedding view flagged 0%, the input view 98%.
- **Host sensitivity**: how far the attack probability moves when the hosts' TCP parameters
  (``moe_ids.core.schema.HOST_TCP_FEATURES``) are withheld (``host_sensitivity``). They describe the lab's machines;
  on the lab's own flows the verdict barely moves (nine in ten validation flows by at most 0.0001), on another
  network's it often moves a lot, because those parameters then describe machines the model never saw.

Two statistics, each mapped through its own validation quantiles: the smaller of the two distance p-values (the
strongest single piece of evidence), and that times the host p-value (evidence added up). Trust is the p-value
of the smaller of their two p-values, again through validation quantiles, so it is uniform on in-distribution
flows and ``trust < alpha`` still flags ``alpha`` of them. Why both: a flow of another network is often only
somewhat unusual in each view (on the captures in ``data/cicflowmeter-python``: trust 0.01-0.03 from the
distances, a verdict that moves by 0.05-0.6 without the host parameters) and clearly unusual in both at once;
the smallest p-value alone left half of those captures' attacks called Normal and trusted. The product alone
would need a distance view about eight times as extreme before it flags a flow without host evidence (a Zeek
record, withheld parameters): it flagged none of the Python package's Internet scan with the parameters
withheld, against 39% for the two together.

- **Host flip** (``host_view``): the verdict is the other class without the hosts' TCP parameters and the attack
  probability moved by more than a threshold: the flow is flagged and its trust capped at 1 - that change. The
  threshold is calibrated like the rest (``host_threshold``): the flip alone flags ``HOST_ALPHA`` of the
  validation flows. The lab's own verdicts that flip do so narrowly (the probability moves by 0.5-0.6), another
  network's widely (0.8-1.0).

Why a p-value: an analyst reads ``trust 0.3`` as "30% of the flows the model was checked on looked less
familiar than this one", and ``out_of_distribution`` (trust below ``alpha``) flags ``alpha`` of in-distribution
traffic by construction - the false-alarm rate is a stated number, not a tuning accident. The arithmetic lives
here in numpy (``trust_from_knots`` mirrors the graph's) so it can be tested without torch.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_ALPHA = 0.015  # stated false-alarm rate of out_of_distribution on in-distribution flows (see README)
HOST_ALPHA = 0.001  # share of in-distribution flows the host view adds to them
HOST_NOISE = 1e-4  # moves of the attack probability below this are float32 noise, not host evidence
SHRINKAGE = 0.05  # share of the mean variance added to the covariance's diagonal (stable inverse)
INPUT_CENTROIDS = 256  # k-means centroids of the input view
KMEANS_ITERATIONS = 25
# fewest observed features a flow needs for a verdict that can be trusted. Why: both distance views measure only
# what was observed, so a flow with nothing observed sat at distance 0 and was trusted at 1.0 with the model's
# prior as its verdict; held-out flows with 96% / 99% of their features removed (at most three / one observed)
# scored macro-F1 0.81 / 0.67 with 0.2% / 0% flagged (README, "Trust score"). Why four: the CICFlowMeter family
# and NFStream deliver dozens, Suricata and Zeek at least four for any flow (duration, both packet counts and
# their ratio; moe_ids.client.zeek reads a lone packet's unset duration as the 0 it is), so three or fewer is a
# producer that left out what its sensor knows, or a file of another layout read by name.
MIN_OBSERVED = 4


def class_index(binary: np.ndarray, family: np.ndarray) -> np.ndarray:
    """0 for Normal, 1 + family for attacks; -1 for attacks without a known family (left out of the means)."""
    return np.where(binary == 0, 0, np.where(family >= 0, family + 1, -1)).astype(np.int64)


def fit_gaussians(embeddings: np.ndarray, classes: np.ndarray, n_classes: int,
                  shrinkage: float = SHRINKAGE) -> tuple[np.ndarray, np.ndarray]:
    """(whitening [D, D], whitened centers [C, D]) so that ``||h @ W - c_k||^2`` is the Mahalanobis distance of
    ``h`` to class k under the pooled within-class covariance. Classes without rows get the overall mean."""
    h = np.asarray(embeddings, dtype=np.float64)
    dim = h.shape[1]
    overall = h.mean(axis=0)
    means = np.tile(overall, (n_classes, 1))
    centred = []
    for k in range(n_classes):
        rows = h[classes == k]
        if len(rows):
            means[k] = rows.mean(axis=0)
            centred.append(rows - means[k])
    resid = np.concatenate(centred) if centred else h - overall
    cov = resid.T @ resid / max(len(resid) - 1, 1)
    cov += shrinkage * max(float(np.trace(cov)) / dim, 1e-12) * np.eye(dim)
    whitening = np.linalg.cholesky(np.linalg.inv(cov))  # P = L L^T, so (h - m) P (h - m)^T = ||(h - m) L||^2
    return whitening, means @ whitening


def min_distance(embeddings: np.ndarray, whitening: np.ndarray, centers: np.ndarray) -> np.ndarray:
    z = np.asarray(embeddings, dtype=np.float64) @ whitening
    return ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).min(axis=1)


def quantile_knots(distances: np.ndarray, knots: int) -> np.ndarray:
    """``knots + 1`` strictly increasing distance quantiles at levels 0, 1/knots, ..., 1."""
    q = np.quantile(np.asarray(distances, dtype=np.float64), np.linspace(0.0, 1.0, knots + 1))
    q = np.maximum.accumulate(q)
    step = max(float(q[-1] - q[0]), 1.0) * 1e-7
    return q + step * np.arange(len(q))  # ties would divide by zero in the interpolation


def trust_from_knots(distances: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """1 - the interpolated empirical CDF of the calibration distances: the graph's arithmetic in numpy."""
    d = np.asarray(distances, dtype=np.float64)[:, None]
    lo, hi = knots[None, :-1], knots[None, 1:]
    return 1.0 - np.clip((d - lo) / (hi - lo), 0.0, 1.0).mean(axis=1)


def observed_distance(values: np.ndarray, missing: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared distance to the nearest centroid over the flow's observed features only, per observed feature.

    Why observed only: a feature the sensor does not deliver is no evidence that the flow is unusual (Zeek never
    sends window sizes), and what it was imputed with must not move the distance. Why per feature: a flow with
    15 observed features and one with 70 are then on one scale. Expanded as the graph computes it (no
    [n, k, d] tensor)."""
    v = np.asarray(values, dtype=np.float64)
    o = 1.0 - np.asarray(missing, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    d = (o * v * v).sum(axis=1)[:, None] - 2.0 * (o * v) @ c.T + o @ (c * c).T
    return np.maximum(d.min(axis=1), 0.0) / np.maximum(o.sum(axis=1), 1.0)


def too_few_observed(missing: np.ndarray) -> np.ndarray:
    """Flows with fewer than ``MIN_OBSERVED`` observed features."""
    return (1.0 - np.asarray(missing, dtype=np.float64)).sum(axis=1) < MIN_OBSERVED


def evidence_floor(trust: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Trust 0 for flows with too few observed features (so also out-of-distribution), as the graph does it."""
    return np.where(too_few_observed(missing), 0.0, trust)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = KMEANS_ITERATIONS) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding, in numpy so a seed gives the same centroids on every machine that
    gives the same floating-point sums. An emptied cluster is re-seeded at the point farthest from its centroid."""
    x = np.asarray(points, dtype=np.float64)
    n = len(x)
    k = min(k, n)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(n)]
    closest = ((x - centroids[0]) ** 2).sum(axis=1)
    for j in range(1, k):
        total = closest.sum()
        pick = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[j] = x[pick]
        closest = np.minimum(closest, ((x - centroids[j]) ** 2).sum(axis=1))
    for _ in range(iterations):
        d = (x * x).sum(axis=1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
        assign = d.argmin(axis=1)
        counts = np.bincount(assign, minlength=k)
        sums = np.stack([np.bincount(assign, weights=x[:, i], minlength=k) for i in range(x.shape[1])], axis=1)
        nearest = d[np.arange(n), assign]
        for j in np.flatnonzero(counts == 0):
            far = int(nearest.argmax())
            sums[j], counts[j], nearest[far] = x[far], 1, -np.inf
        centroids = sums / counts[:, None]
    return centroids


def attack_move(probs: np.ndarray, host_free: np.ndarray) -> np.ndarray:
    """|attack probability with - without the hosts' TCP parameters| (``probs`` and ``host_free`` are [n, 2]
    Normal/Attack probabilities): what both the flip and the host sensitivity measure."""
    return np.abs(np.asarray(probs, dtype=np.float64)[:, 1] - np.asarray(host_free, dtype=np.float64)[:, 1])


def flip_change(probs: np.ndarray, host_free: np.ndarray) -> np.ndarray:
    """How far the attack probability moves where the verdict flips without the hosts' TCP parameters; 0 where
    it holds."""
    flips = np.asarray(probs).argmax(axis=1) != np.asarray(host_free).argmax(axis=1)
    return np.where(flips, attack_move(probs, host_free), 0.0)


def host_threshold(changes: np.ndarray, share: float = HOST_ALPHA) -> float:
    """The change above which the host view flags a flow, so that it flags at most ``share`` of the calibration
    flows (``changes`` from ``flip_change``); 0 (every flip) when fewer of them flip at all.

    Halfway between the largest change left unflagged and the smallest flagged, so that no calibration flow sits
    on the threshold, where the exported graph's rounding could decide its flag differently from PyTorch's."""
    c = np.sort(np.asarray(changes, dtype=np.float64))
    if len(c) == 0:
        return 0.0
    k = int(np.floor(share * len(c)))  # calibration flows allowed above it
    if k == 0:
        return float(c[-1]) + 1e-6
    if k >= len(c):
        return 0.0
    return float(0.5 * (c[len(c) - k - 1] + c[len(c) - k]))


def host_view(trust: np.ndarray, probs: np.ndarray, host_free: np.ndarray, alpha: float = DEFAULT_ALPHA,
              threshold: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(trust, out_of_distribution) once the host view is applied: the graph's arithmetic in numpy."""
    change = flip_change(probs, host_free)
    flagged = change > threshold
    out = np.where(flagged, np.minimum(trust, 1.0 - change), trust)
    return out, (out < alpha) | flagged


def host_sensitivity(probs: np.ndarray, host_free: np.ndarray) -> np.ndarray:
    """How far the attack probability moves without the hosts' TCP parameters, flip or not, less
    ``HOST_NOISE``: the host evidence the combined statistic weighs.

    Why less a floor: most lab flows' probability moves by next to nothing, and at that scale the exported
    float32 graph and PyTorch round differently; below the floor a move is no evidence, in either of them."""
    return np.maximum(attack_move(probs, host_free) - HOST_NOISE, 0.0)


class CombinationKnots(NamedTuple):
    """Calibration quantiles of the three statistics ``combined_p_value`` maps in turn (``TrustScore``'s
    ``smaller_knots``, ``joint_knots`` and ``combined_knots``)."""

    smaller: np.ndarray  # of the smaller distance p-value
    joint: np.ndarray  # of that times the host p-value
    combined: np.ndarray  # of the smaller of the two p-values these give


def share_below(values: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The interpolated share of calibration values below ``values``: a p-value where small is unusual."""
    return 1.0 - trust_from_knots(values, knots)


def combination_statistics(p_embedding: np.ndarray, p_input: np.ndarray,
                           p_host: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(single, joint): the smaller distance p-value, the strongest single piece of evidence; and it times the
    host p-value (1, no evidence, where the verdict does not depend on the host parameters or they are
    missing), evidence added up across the views."""
    smaller = np.minimum(np.asarray(p_embedding, dtype=np.float64), np.asarray(p_input, dtype=np.float64))
    return smaller, smaller * np.asarray(p_host, dtype=np.float64)


def rule_p_value(p_embedding: np.ndarray, p_input: np.ndarray, p_host: np.ndarray, smaller_knots: np.ndarray,
                 joint_knots: np.ndarray) -> np.ndarray:
    """The smaller of the two statistics' calibrated p-values: whichever way a flow is unusual counts."""
    single, joint = combination_statistics(p_embedding, p_input, p_host)
    return np.minimum(share_below(single, smaller_knots), share_below(joint, joint_knots))


def fit_combination(p_embedding: np.ndarray, p_input: np.ndarray, p_host: np.ndarray,
                    n_knots: int) -> CombinationKnots:
    """The three sets of quantiles from the calibration flows' p-values of each view."""
    single, joint = combination_statistics(p_embedding, p_input, p_host)
    smaller, joined = quantile_knots(single, n_knots), quantile_knots(joint, n_knots)
    rules = rule_p_value(p_embedding, p_input, p_host, smaller, joined)
    return CombinationKnots(smaller, joined, quantile_knots(rules, n_knots))


def combined_p_value(p_embedding: np.ndarray, p_input: np.ndarray, knots: CombinationKnots,
                     p_host: np.ndarray | None = None) -> np.ndarray:
    """Trust from the views' p-values: the share of calibration flows whose ``rule_p_value`` was smaller,
    interpolated as in ``trust_from_knots`` (``p_host`` None: no host evidence, as for a flow without them)."""
    p_host = np.ones(len(np.atleast_1d(p_embedding))) if p_host is None else p_host
    return share_below(rule_p_value(p_embedding, p_input, p_host, knots.smaller, knots.joint), knots.combined)
