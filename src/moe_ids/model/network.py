"""The Mixture-of-Experts detector in PyTorch.

Two experts see disjoint feature groups — the tabular expert sizes, counts and flags, the temporal expert
durations, inter-arrival times, rates and active/idle periods — each with the missing-feature mask of its
group. A gating network sees every (imputed, scaled) feature and the full mask and mixes the experts'
embeddings with a softmax, so when a group is mostly missing the gate can lean on the other expert. Shared
heads give Normal/Attack and attack-family logits. Each expert is also trained through the heads on its own
(auxiliary loss), which keeps both competent and the gating weights meaningful to an analyst.

Serving also asks the model once more with the hosts' TCP parameters (``HOST_TCP_FEATURES``) sent as missing:
those describe the machines of the network the flows come from, so a verdict that flips without them rests on
the CIC lab's hosts rather than on what the flow did, and the trust score says so (``TrustScore``). Only the
tabular expert and the gate see them: the temporal expert's embedding is reused, and their first layers are
updated by the change in those features' columns alone.

No data-dependent Python control flow: the graph exports to ONNX unchanged for any batch size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from moe_ids.core.labels import FAMILIES
from moe_ids.core.schema import FEATURE_NAMES, HOST_TCP_FEATURES, N_FEATURES, TABULAR_INDICES, TEMPORAL_INDICES
from moe_ids.model.trust import DEFAULT_ALPHA, HOST_NOISE, INPUT_CENTROIDS, MIN_OBSERVED


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


def width_periodic(config: MoEConfig) -> int:
    """Columns of one feature's periodic encoding (sin and cos of each frequency)."""
    return 2 * config.periodic_k


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
    """How familiar a flow is: a p-value combining its distance to the training data in two spaces with how far its
    verdict leans on the hosts' TCP parameters.

    Embedding view: the smallest Mahalanobis distance (shared covariance, Lee et al. 2018) from the concatenated
    expert embeddings to the mean of each training class (Normal and each attack family). Input view: the
    squared distance of the scaled values to the nearest k-means centroid of the training flows, over the
    observed features, per observed feature (``moe_ids.model.trust.observed_distance``). Host sensitivity: how
    far the attack probability moves when the hosts' TCP parameters are withheld. Each becomes the share of
    held-out in-distribution flows farther out (interpolated between its knots, the quantiles of the calibration
    set). Two statistics follow: the smaller distance p-value, and that times the host p-value (evidence added up:
    a flow somewhat unfamiliar whose verdict also rests on the lab's host parameters); each becomes a p-value
    through its own knots, and ``trust`` is the share of calibration flows whose smaller one was smaller still,
    so trust is uniform on in-distribution flows and ``trust < alpha`` flags a fraction ``alpha`` of them: the
    stated false-alarm rate of ``out_of_distribution`` (``moe_ids.model.trust`` says why both statistics).
    Host flip: when the verdict without the hosts' TCP parameters is the other class and the attack probability
    moved by more than ``host_change`` (calibrated so that this flags ``HOST_ALPHA`` of the validation flows), the
    flow is also flagged and its trust is at most 1 - that change.
    A flow with fewer than ``MIN_OBSERVED`` observed features has trust 0 and is flagged: too little evidence for
    any verdict (``moe_ids.model.trust``).
    Everything is a buffer written by ``moe_ids.model.training.calibrate_trust``; it runs inside the ONNX graph.
    """

    def __init__(self, dim: int, n_classes: int, knots: int, input_dim: int = 0, centroids: int = 1) -> None:
        super().__init__()
        self.register_buffer("whitening", torch.eye(dim))  # Cholesky factor of the precision matrix
        self.register_buffer("centers", torch.zeros(n_classes, dim))  # class means, already whitened
        self.register_buffer("knots", torch.linspace(0.0, 1.0, knots + 1))  # ascending distance quantiles
        self.register_buffer("input_centroids", torch.zeros(centroids, max(input_dim, 1)))
        self.register_buffer("input_knots", torch.linspace(0.0, 1.0, knots + 1))
        # quantiles of the host sensitivity; uncalibrated, above any change, so that no change is unusual
        self.register_buffer("host_knots", torch.linspace(1.0, 2.0, knots + 1))
        # trust.CombinationKnots: quantiles of the smaller distance p-value, of it times the host p-value, and of the
        # smaller of the p-values those two give
        self.register_buffer("smaller_knots", torch.linspace(0.0, 1.0, knots + 1))
        self.register_buffer("joint_knots", torch.linspace(0.0, 1.0, knots + 1))
        self.register_buffer("combined_knots", torch.linspace(0.0, 1.0, knots + 1))
        self.register_buffer("alpha", torch.tensor(DEFAULT_ALPHA))
        self.register_buffer("host_change", torch.tensor(0.0))  # flips by more than this are flagged

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

    def forward(self, embedding: torch.Tensor, values: torch.Tensor, missing: torch.Tensor,
                probs: torch.Tensor, host_free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p_embedding = 1.0 - self._share_below(self.distance(embedding), self.knots)
        p_input = 1.0 - self._share_below(self.input_distance(values, missing), self.input_knots)
        flagged, change = self.host_flags(probs, host_free)
        sensitivity = torch.clamp(change - HOST_NOISE, min=0.0)  # trust.host_sensitivity
        p_host = 1.0 - self._share_below(sensitivity, self.host_knots)
        smaller = torch.minimum(p_embedding, p_input)
        rules = torch.minimum(self._share_below(smaller, self.smaller_knots),
                              self._share_below(smaller * p_host, self.joint_knots))
        trust = self._share_below(rules, self.combined_knots)
        trust = torch.where(flagged, torch.minimum(trust, 1.0 - change), trust)
        scarce = (1.0 - missing).sum(dim=1, keepdim=True) < MIN_OBSERVED  # trust.too_few_observed
        trust = torch.where(scarce, torch.zeros_like(trust), trust)
        return trust, (trust < self.alpha) | flagged | scarce

    def host_flags(self, probs: torch.Tensor, host_free: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([n, 1] flows the host view flags, [n, 1] change in attack probability without the hosts' TCP
        parameters)."""
        flips = probs.argmax(dim=1, keepdim=True) != host_free.argmax(dim=1, keepdim=True)
        change = torch.abs(probs[:, 1:2] - host_free[:, 1:2])
        return flips & (change > self.host_change), change


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
        # The host view: where the hosts' TCP parameters sit among the tabular values and in the full mask, and the
        # scaled value a missing one gets (set by set_host_view from the preprocessing statistics)
        host = [FEATURE_NAMES.index(name) for name in HOST_TCP_FEATURES]
        in_tabular = [TABULAR_INDICES.index(i) for i in host]
        n_tab = c.n_tabular
        per = width_periodic(c)  # the expert's input: values, mask bits, then each feature's periodic columns
        expert_columns = [j for i in in_tabular
                          for j in (i, n_tab + i, *range(2 * n_tab + per * i, 2 * n_tab + per * (i + 1)))]
        gate_columns = in_tabular + [n_tab + c.n_temporal + i for i in host]
        self.register_buffer("host_tabular", torch.tensor(in_tabular, dtype=torch.long), persistent=False)
        self.register_buffer("host_features", torch.tensor(host, dtype=torch.long), persistent=False)
        self.register_buffer("host_expert_columns", torch.tensor(expert_columns, dtype=torch.long), persistent=False)
        self.register_buffer("host_gate_columns", torch.tensor(gate_columns, dtype=torch.long), persistent=False)
        self.register_buffer("host_fill", torch.zeros(len(host)))

    def set_host_view(self, missing_tabular: torch.Tensor) -> None:
        """The scaled values the preprocessing gives missing hosts' TCP parameters (median imputation), from
        ``missing_tabular`` [n_tabular]: the tabular values of a flow whose features are all missing."""
        self.host_fill.copy_(missing_tabular[self.host_tabular].to(self.host_fill.dtype))

    def host_free(self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor, e_tmp: torch.Tensor,
                  expert_pre: torch.Tensor, gate_pre: torch.Tensor) -> torch.Tensor:
        """Normal/Attack probabilities with the hosts' TCP parameters sent as missing.

        Only their columns change, so the first layers of the tabular expert and the gate are updated by the
        change in those columns (54 and 6 of 774 and 140) instead of being computed again: the second pass costs
        a fifth of the model, not half of it."""
        freq = self.tabular_periodic.frequencies.index_select(0, self.host_tabular)
        old = tabular.index_select(1, self.host_tabular)
        old_mask = mask.index_select(1, self.host_features)
        fill = self.host_fill.unsqueeze(0).expand_as(old)

        def columns(values: torch.Tensor, missing: torch.Tensor) -> torch.Tensor:
            angles = (2 * torch.pi * values).unsqueeze(2) * freq.unsqueeze(0)
            periodic = torch.cat([torch.sin(angles), torch.cos(angles)], dim=2)
            return torch.cat([values.unsqueeze(2), missing.unsqueeze(2), periodic], dim=2).flatten(1)

        delta = columns(fill, torch.ones_like(old_mask)) - columns(old, old_mask)
        first = self.tabular_expert[0]
        e_tab = self.tabular_expert[1:](expert_pre + delta @ first.weight.index_select(1, self.host_expert_columns).t())
        gate_first = self.gate[0]
        gate_delta = torch.cat([fill - old, 1.0 - old_mask], dim=1)
        gate_pre = gate_pre + gate_delta @ gate_first.weight.index_select(1, self.host_gate_columns).t()
        gating = torch.softmax(self.gate[1:](gate_pre), dim=1)
        return torch.softmax(self.binary_head(gating[:, 0:1] * e_tab + gating[:, 1:2] * e_tmp), dim=1)

    def _layers(self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both experts and the gate, keeping the first-layer outputs the host view's second pass starts from.
        The tabular expert runs before the temporal one, so training draws its dropout masks in one order."""
        tab_mask = mask.index_select(1, self.tab_idx)
        tmp_mask = mask.index_select(1, self.tmp_idx)
        expert_pre = self.tabular_expert[0](torch.cat([tabular, tab_mask, self.tabular_periodic(tabular)], dim=1))
        e_tab = self.tabular_expert[1:](expert_pre)
        e_tmp = self.temporal_expert(torch.cat([temporal, tmp_mask, self.temporal_periodic(temporal)], dim=1))
        gate_pre = self.gate[0](torch.cat([tabular, temporal, mask], dim=1))
        return {"expert_pre": expert_pre, "e_tab": e_tab, "e_tmp": e_tmp, "gate_pre": gate_pre,
                "gating": torch.softmax(self.gate[1:](gate_pre), dim=1)}

    def experts(
        self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Expert embeddings and gating weights (softmax over the two experts)."""
        layers = self._layers(tabular, temporal, mask)
        return layers["e_tab"], layers["e_tmp"], layers["gating"]

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

    def verdicts(self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Probabilities, gating, family probabilities, both embeddings, and the probabilities without the hosts'
        TCP parameters (``host_free``), sharing the first layers between the two passes."""
        layers = self._layers(tabular, temporal, mask)
        gating, e_tab, e_tmp = layers["gating"], layers["e_tab"], layers["e_tmp"]
        mixed = gating[:, 0:1] * e_tab + gating[:, 1:2] * e_tmp
        return {"probabilities": torch.softmax(self.binary_head(mixed), dim=1), "gating": gating,
                "family": torch.softmax(self.family_head(mixed), dim=1), "e_tab": e_tab, "e_tmp": e_tmp,
                "host_free": self.host_free(tabular, temporal, mask, e_tmp, layers["expert_pre"],
                                            layers["gate_pre"])}

    def outputs(self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """What serving returns (``verdicts`` with ``trust`` and ``ood``), and which flows the host view flagged
        (``host_flagged``: a report's figure; serving folds it into ``ood``)."""
        out = self.verdicts(tabular, temporal, mask)
        out["trust"], out["ood"] = self.trust(torch.cat([out["e_tab"], out["e_tmp"]], dim=1),
                                              *self.grouped_inputs(tabular, temporal, mask),
                                              out["probabilities"], out["host_free"])
        out["host_flagged"] = self.trust.host_flags(out["probabilities"], out["host_free"])[0][:, 0]
        return out

    def forward(
        self, tabular: torch.Tensor, temporal: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Serving outputs: (Normal/Attack probabilities, gating weights, attack-family probabilities, trust,
        out-of-distribution flag)."""
        out = self.outputs(tabular, temporal, mask)
        return out["probabilities"], out["gating"], out["family"], out["trust"], out["ood"]
