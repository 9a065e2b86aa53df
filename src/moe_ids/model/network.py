"""The Mixture-of-Experts detector in PyTorch.

Two experts see disjoint feature groups — the tabular expert sizes, counts and flags, the temporal expert
durations, inter-arrival times, rates and active/idle periods — each with the missing-feature mask of its
group. A gating network sees every (imputed, scaled) feature and the full mask and mixes the experts'
embeddings with a softmax, so when a group is mostly missing the gate can lean on the other expert. Shared
heads give Normal/Attack and attack-family logits. Each expert is also trained through the heads on its own
(auxiliary loss), which keeps both competent and the gating weights meaningful to an analyst.

No data-dependent Python control flow: the graph exports to ONNX unchanged for any batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from moe_ids.core.labels import FAMILIES
from moe_ids.core.schema import N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES
from moe_ids.model.trust import DEFAULT_ALPHA, INPUT_CENTROIDS


@dataclass
class MoEConfig:
    """Shapes and widths; stored as model_config.json beside the weights."""

    n_tabular: int = len(TABULAR_INDICES)
    n_temporal: int = len(TEMPORAL_INDICES)
    n_features: int = N_FEATURES
    n_families: int = len(FAMILIES)
    hidden: int = 192
    embedding: int = 96
    gate_hidden: int = 64
    dropout: float = 0.1
    periodic_k: int = 8  # frequencies per feature of the experts' periodic input encoding (0 = off)
    periodic_sigma: float = 3.0  # std of the initial frequencies, in cycles per standard deviation
    trust_knots: int = 200  # quantiles of the held-out distance distribution that map a distance to trust
    trust_centroids: int = INPUT_CENTROIDS  # k-means centroids of the trust score's input view

    def to_dict(self) -> dict:
        return asdict(self)


class PeriodicEncoding(nn.Module):
    """sin/cos of learned frequencies of each scaled feature (Gorishniy et al., NeurIPS 2022).

    A plain MLP cannot resolve values that scaling squeezes together — TCP window sizes 247 and 259 differ by
    0.01 standard deviations, yet tell SSH brute force from normal SSH — while trees split on them exactly.
    Periodic features with learned frequencies give the expert that resolution; it runs inside the graph, so
    serving's preprocessing is unchanged.
    """

    def __init__(self, n_features: int, k: int, sigma: float) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, k) * sigma)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # 2*pi*z before the unsqueeze: the same numbers, but ONNX Runtime's broadcasting multiply is slow on a
        # trailing axis of size 1 (0.3 ms of a 7 ms batch of 1024 when done after it)
        angles = (2 * torch.pi * z).unsqueeze(2) * self.frequencies.unsqueeze(0)
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=2).flatten(1)


def _mlp(n_in: int, hidden: int, n_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_out),
        nn.GELU(),
    )


class TrustScore(nn.Module):
    """How familiar a flow is: a p-value combining its distance to the training data in two spaces.

    Embedding view: the smallest Mahalanobis distance (shared covariance, Lee et al. 2018) from the concatenated
    expert embeddings to the mean of each training class (Normal and each attack family). Input view: the
    squared distance of the scaled values to the nearest k-means centroid of the training flows, over the
    observed features, per observed feature (``moe_ids.model.trust.observed_distance``). Each distance becomes the
    share of held-out in-distribution flows farther away (interpolated between its knots, the distance
    quantiles of the calibration set); ``trust`` is the share of calibration flows whose smaller p-value was
    smaller still, so trust is uniform on in-distribution flows and ``trust < alpha`` flags a fraction
    ``alpha`` of them: the stated false-alarm rate of ``out_of_distribution``.
    Everything is a buffer written by ``moe_ids.model.training.calibrate_trust``; it runs inside the ONNX graph.
    """

    def __init__(self, dim: int, n_classes: int, knots: int, input_dim: int = 0, centroids: int = 1) -> None:
        super().__init__()
        self.register_buffer("whitening", torch.eye(dim))  # Cholesky factor of the precision matrix
        self.register_buffer("centers", torch.zeros(n_classes, dim))  # class means, already whitened
        self.register_buffer("knots", torch.linspace(0.0, 1.0, knots + 1))  # ascending distance quantiles
        self.register_buffer("input_centroids", torch.zeros(centroids, max(input_dim, 1)))
        self.register_buffer("input_knots", torch.linspace(0.0, 1.0, knots + 1))
        self.register_buffer("combined_knots", torch.linspace(0.0, 1.0, knots + 1))  # quantiles of min p-value
        self.register_buffer("alpha", torch.tensor(DEFAULT_ALPHA))

    def distance(self, embedding: torch.Tensor) -> torch.Tensor:
        z = embedding @ self.whitening
        diff = z.unsqueeze(1) - self.centers.unsqueeze(0)
        return (diff * diff).sum(dim=2).min(dim=1, keepdim=True).values

    def input_distance(self, values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
        # expanded square: a [batch, centroids, dim] difference tensor would be 1 GB at batch 8192
        c = self.input_centroids
        observed = 1.0 - missing
        seen = observed * values
        d = (seen * values).sum(dim=1, keepdim=True) - 2.0 * seen @ c.t() + observed @ (c * c).t()
        d = torch.clamp(d.min(dim=1, keepdim=True).values, min=0.0)
        return d / torch.clamp(observed.sum(dim=1, keepdim=True), min=1.0)

    @staticmethod
    def _share_below(value: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
        lo, hi = knots[:-1].unsqueeze(0), knots[1:].unsqueeze(0)
        return torch.clamp((value - lo) / (hi - lo), 0.0, 1.0).mean(dim=1, keepdim=True)

    def forward(self, embedding: torch.Tensor, values: torch.Tensor,
                missing: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p_embedding = 1.0 - self._share_below(self.distance(embedding), self.knots)
        p_input = 1.0 - self._share_below(self.input_distance(values, missing), self.input_knots)
        trust = self._share_below(torch.minimum(p_embedding, p_input), self.combined_knots)
        return trust, trust < self.alpha


class MixtureOfExperts(nn.Module):
    """Tabular + temporal experts, softmax gate, binary and family heads, and the trust score."""

    def __init__(self, config: MoEConfig | None = None) -> None:
        super().__init__()
        self.config = config or MoEConfig()
        c = self.config
        self.register_buffer("tab_idx", torch.tensor(TABULAR_INDICES, dtype=torch.long), persistent=False)
        self.register_buffer("tmp_idx", torch.tensor(TEMPORAL_INDICES, dtype=torch.long), persistent=False)
        width = 2 + 2 * c.periodic_k  # value, mask bit and the periodic encoding of each feature
        self.tabular_periodic = PeriodicEncoding(c.n_tabular, c.periodic_k, c.periodic_sigma)
        self.temporal_periodic = PeriodicEncoding(c.n_temporal, c.periodic_k, c.periodic_sigma)
        self.tabular_expert = _mlp(width * c.n_tabular, c.hidden, c.embedding, c.dropout)
        self.temporal_expert = _mlp(width * c.n_temporal, c.hidden, c.embedding, c.dropout)
        self.gate = nn.Sequential(
            nn.Linear(c.n_tabular + c.n_temporal + c.n_features, c.gate_hidden),
            nn.GELU(),
            nn.Linear(c.gate_hidden, 2),
        )
        self.binary_head = nn.Linear(c.embedding, 2)
        self.family_head = nn.Linear(c.embedding, c.n_families)
        self.trust = TrustScore(2 * c.embedding, 1 + c.n_families, c.trust_knots,
                                input_dim=c.n_features, centroids=c.trust_centroids)

    def experts(
        self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expert embeddings and gating weights (softmax over the two experts)."""
        tab_mask = mask.index_select(1, self.tab_idx)
        tmp_mask = mask.index_select(1, self.tmp_idx)
        e_tab = self.tabular_expert(torch.cat([tabular, tab_mask, self.tabular_periodic(tabular)], dim=1))
        e_tmp = self.temporal_expert(torch.cat([temporal, tmp_mask, self.temporal_periodic(temporal)], dim=1))
        gating = torch.softmax(self.gate(torch.cat([tabular, temporal, mask], dim=1)), dim=1)
        return e_tab, e_tmp, gating

    def forward_logits(
        self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Logits of the mixture and of each expert alone (the latter for the auxiliary training loss)."""
        e_tab, e_tmp, gating = self.experts(tabular, temporal, mask)
        mixed = gating[:, 0:1] * e_tab + gating[:, 1:2] * e_tmp
        return {
            "binary": self.binary_head(mixed),
            "family": self.family_head(mixed),
            "binary_tab": self.binary_head(e_tab),
            "binary_tmp": self.binary_head(e_tmp),
            "gating": gating,
        }

    def embedding(self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Both experts' embeddings side by side: the space the trust score measures distances in."""
        e_tab, e_tmp, _ = self.experts(tabular, temporal, mask)
        return torch.cat([e_tab, e_tmp], dim=1)

    def grouped_inputs(self, tabular: torch.Tensor, temporal: torch.Tensor,
                       mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled values and missing mask in one column order (tabular, then temporal): the trust score's input
        view, as ``moe_ids.model.training.input_view`` builds it for calibration."""
        grouped_mask = torch.cat([mask.index_select(1, self.tab_idx), mask.index_select(1, self.tmp_idx)], dim=1)
        return torch.cat([tabular, temporal], dim=1), grouped_mask

    def forward(
        self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Serving outputs: (Normal/Attack probabilities, gating weights, attack-family probabilities, trust,
        out-of-distribution flag)."""
        e_tab, e_tmp, gating = self.experts(tabular, temporal, mask)
        mixed = gating[:, 0:1] * e_tab + gating[:, 1:2] * e_tmp
        probs = torch.softmax(self.binary_head(mixed), dim=1)
        family = torch.softmax(self.family_head(mixed), dim=1)
        trust, ood = self.trust(torch.cat([e_tab, e_tmp], dim=1), *self.grouped_inputs(tabular, temporal, mask))
        return probs, gating, family, trust, ood
