"""SimCLR (Chen, Kornblith, Norouzi & Hinton 2020): the projection head, the NT-Xent loss, LARS and the
learning-rate schedule; the pieces Cole et al. 2022 train with.

    h = f(x)          the encoder's pooled representation (`resnet.py`), kept for the linear probe
    z = g(h)          the projection head, used only by the loss (§2.1)
    loss = NT-Xent    eq. (1), over the 2N augmented views of a batch of N images

Sources: the paper (§2.1, eq. 1, App. B.6/B.9) and the official TF1 code, google-research/simclr
(`model_util.py`, `objective.py`, `lars_optimizer.py`, `run.py` flags, README's CIFAR-10 command).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# -- the recipe, in one place ---------------------------------------------------------------------------
# The official CIFAR-10 pretraining command (README, "Pretraining"): ResNet-18, batch 512, 1000 epochs,
# LARS at learning_rate 1.0 (× batch / 256), weight decay 1e-4, temperature 0.5, colour strength 0.5,
# no blur; `run.py` defaults for the rest (momentum 0.9, 10 warm-up epochs, head 128-d).
SIMCLR_CIFAR10 = dict(
    depth=18, batch_size=512, epochs=1000, base_learning_rate=1.0, learning_rate_scaling="linear",
    weight_decay=1e-4, momentum=0.9, warmup_epochs=10, temperature=0.5, projection_dim=128,
    colour_strength=0.5, blur=False,
)
TRUST_COEFFICIENT = 0.001  # `lars_optimizer.py`: EETA_DEFAULT
BN_EPSILON = 1e-5  # `resnet.py`: BATCH_NORM_EPSILON


# -- the projection head g(·) ------------------------------------------------------------------------------
class ScaleOnlyBatchNorm(nn.Module):
    """BN with a learnable scale γ and no shift β: the official head's last layer
    (`linear_layer(..., use_bias=False, use_bn=True)` calls BN with `center=False`)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, eps=BN_EPSILON, affine=False)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.weight


class ProjectionHead(nn.Module):
    """g(h): `layers` linear layers, hidden width = in_dim, out 128, ReLU between them, none after the last.

    The paper (§2.1) writes z = W2 σ(W1 h). The official code (`model_util.projection_head`, mode
    "nonlinear") puts BN after every linear layer: the hidden ones are Linear (no bias) - BN (γ, β) -
    ReLU, the last is Linear (no bias) - BN (γ only). `layers=2` is SimCLR v1's head (the first commit's
    `num_nlh_layers=1`), `layers=3` SimCLR v2's (`num_proj_layers=3`; Cole et al. use the v2
    configuration, per a third-party review). `batch_norm=False` gives the paper's plain MLP, with biases
    on the hidden layers."""

    def __init__(self, in_dim: int, out_dim: int = 128, layers: int = 2, batch_norm: bool = True):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1 (1 is a linear head), got {layers}")
        modules: list[nn.Module] = []
        for i in range(layers):
            last = i == layers - 1
            width = out_dim if last else in_dim
            modules.append(nn.Linear(in_dim, width, bias=not (batch_norm or last)))
            if batch_norm:
                modules.append(ScaleOnlyBatchNorm(width) if last else nn.BatchNorm1d(width, eps=BN_EPSILON))
            if not last:
                modules.append(nn.ReLU())
        self.layers = nn.Sequential(*modules)
        self.out_dim = out_dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.layers(h)


# -- the loss ---------------------------------------------------------------------------------------------------
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, SimCLR eq. (1): z1[k] and z2[k] are the two views of image k (both (N, d)).

    With sim(u, v) = uᵀv / (|u| |v|) over the 2N views, each view i is an anchor whose positive j is the
    other view of its image:
        ℓ(i, j) = −log exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ),
    and the loss is the mean of ℓ over all 2N anchors. (The official `add_contrastive_loss` returns
    loss_a + loss_b, each a mean over N anchors: twice this value, the same gradient direction.)"""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must both be (N, d) with the same shape; got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))  # k ≠ i
    positives = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return F.cross_entropy(logits, positives)


# -- LARS ------------------------------------------------------------------------------------------------------
def lars_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups for `LARS`: the weight matrices and kernels (weight decay, trust-ratio
    adaptation) and every 1-d parameter, i.e. the BN scales and shifts and the biases (neither): the
    official `exclude_from_weight_decay=['batch_normalization', 'bias']`, which also excludes them from
    adaptation (`exclude_from_layer_adaptation` defaults to it)."""
    adapted = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    excluded = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [dict(params=adapted, weight_decay=weight_decay, adapt=True),
            dict(params=excluded, weight_decay=0.0, adapt=False)]


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman & Ginsburg 2017), the official SimCLR version
    (`lars_optimizer.py`, `classic_momentum=True`), per parameter tensor w with gradient g:

        g ← g + weight_decay · w                                 (if the group has weight decay)
        trust = η |w| / |g|  if |w| > 0 and |g| > 0, else 1     (if the group is adapted; else 1)
        v ← momentum · v + lr · trust · g
        w ← w − v                                                (Nesterov: w − (momentum · v + lr · trust · g))

    η = `trust_coefficient` (0.001). Use `lars_param_groups(model, weight_decay)` to exclude BN and
    bias parameters from both weight decay and adaptation; a group's `adapt` defaults to True."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = TRUST_COEFFICIENT, nesterov: bool = False):
        if not lr >= 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if not trust_coefficient > 0:
            raise ValueError(f"trust_coefficient must be > 0, got {trust_coefficient}")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient,
                        nesterov=nesterov, adapt=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                if group["weight_decay"]:
                    g = g.add(w, alpha=group["weight_decay"])
                scaled_lr = torch.as_tensor(group["lr"], dtype=w.dtype, device=w.device)
                if group["adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(g)
                    trust = torch.where((w_norm > 0) & (g_norm > 0),
                                        group["trust_coefficient"] * w_norm / g_norm, torch.ones_like(w_norm))
                    scaled_lr = scaled_lr * trust
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                v = state["momentum_buffer"]
                v.mul_(group["momentum"]).add_(scaled_lr * g)
                update = v.mul(group["momentum"]).add_(scaled_lr * g) if group["nesterov"] else v
                w.sub_(update)
        return loss


# -- the learning-rate schedule -----------------------------------------------------------------------------
def scaled_learning_rate(base_learning_rate: float, batch_size: int, scaling: str = "linear") -> float:
    """The peak learning rate (official `learning_rate_schedule`; paper App. B.1): base × B / 256
    ("linear", e.g. 0.3 × 4096/256 = 4.8 for LARS on ImageNet) or base × √B ("sqrt")."""
    if scaling == "linear":
        return base_learning_rate * batch_size / 256
    if scaling == "sqrt":
        return base_learning_rate * math.sqrt(batch_size)
    raise ValueError(f"unknown learning-rate scaling {scaling!r}; valid: linear, sqrt")


def warmup_cosine_lr(step: int, total_steps: int, warmup_steps: int, peak_lr: float) -> float:
    """Linear warm-up from 0 to `peak_lr` over `warmup_steps`, then cosine decay to 0 at `total_steps`
    without restarts (official `learning_rate_schedule`: step / warmup × peak, then
    `tf.train.cosine_decay(peak, step − warmup, total − warmup)`; SimCLR uses 10 warm-up epochs)."""
    if not 0 <= warmup_steps <= total_steps or total_steps <= 0:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps > 0; got warmup_steps="
                         f"{warmup_steps}, total_steps={total_steps}")
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if total_steps == warmup_steps:
        return peak_lr
    progress = min(step - warmup_steps, total_steps - warmup_steps) / (total_steps - warmup_steps)
    return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))
