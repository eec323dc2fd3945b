"""Implicit neural representations: SIREN and the baselines it is compared against.

Sitzmann et al. 2020, "Implicit Neural Representations with Periodic Activation Functions".

An implicit neural representation is an MLP Φ: coordinates x -> signal value Φ(x) (a pixel's grey
level, an audio sample). The paper's point (§3) is that with sine activations,

    Φ(x) = W_n (φ_{n-1} ∘ ... ∘ φ_0)(x) + b_n,   φ_i(x_i) = sin(ω0 · (W_i x_i + b_i)),     (Eq. 5)

and a matching initialization (§3.2), the network fits fine detail, and its derivatives (which are
SIRENs again, since sin' = cos = shifted sin) are well behaved. The baselines of the paper's Fig. 1
are the same MLP with ReLU, tanh, or ReLU after a NeRF positional encoding.

Everything here works on flat batches: coordinates (N, in_features) -> values (N, out_features).
"""
from __future__ import annotations

import math

import torch
from torch import nn


# -- coordinates ---------------------------------------------------------------------------------
def get_mgrid(side: int, dim: int = 2) -> torch.Tensor:
    """A (side**dim, dim) grid over [-1, 1]^dim, first coordinate = row, as the official get_mgrid."""
    axis = torch.linspace(-1.0, 1.0, side)
    grids = torch.meshgrid(*([axis] * dim), indexing="ij")
    return torch.stack(grids, dim=-1).reshape(-1, dim)


# -- SIREN (§3.1, §3.2) --------------------------------------------------------------------------
class Siren(nn.Module):
    """MLP with sin(ω0 · (Wx + b)) activations and a linear output layer.

    Initialization (§3.2; official `first_layer_sine_init` / `sine_init`):
      * first layer W ~ U(-1/n, 1/n): with ω0 = 30 the first layer's sines span several periods over
        [-1, 1], so the input to the second layer is arcsine distributed;
      * every later layer W ~ U(-√(6/n)/ω0, √(6/n)/ω0), so that ω0·Wx ~ N(0, 1) given arcsine inputs
        (supplement §1), which keeps the activation distribution the same at every depth;
      * biases keep PyTorch's default U(-1/√n, 1/√n), as in the official code.
    `first_omega` is the first layer's ω0 (30 for images, ~3000 for audio, §4.1); `hidden_omega`
    the ω0 of the other layers (30 everywhere in the paper).
    """

    def __init__(self, in_features: int, out_features: int, hidden: int, hidden_layers: int,
                 first_omega: float = 30.0, hidden_omega: float = 30.0, init: str = "paper"):
        super().__init__()
        self.first_omega, self.hidden_omega = float(first_omega), float(hidden_omega)
        sizes = [in_features] + [hidden] * (hidden_layers + 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden, out_features)
        if init == "paper":
            self.reset_parameters()
        elif init != "default":  # "default" keeps nn.Linear's U(-1/√n, 1/√n): the naive baseline
            raise ValueError(f"unknown init {init!r}")

    @torch.no_grad()
    def reset_parameters(self) -> None:
        first = self.hidden[0]
        n = first.weight.shape[1]
        first.weight.uniform_(-1.0 / n, 1.0 / n)
        for layer in list(self.hidden[1:]) + [self.out]:  # the official code applies sine_init to all
            n = layer.weight.shape[1]
            bound = math.sqrt(6.0 / n) / self.hidden_omega
            layer.weight.uniform_(-bound, bound)

    def omegas(self) -> list[float]:
        return [self.first_omega] + [self.hidden_omega] * (len(self.hidden) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, omega in zip(self.hidden, self.omegas()):
            x = torch.sin(omega * layer(x))
        return self.out(x)

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(pre-activation ω0·(Wx+b), post-activation sin(·)) per hidden layer, for §3.2's analysis."""
        result = []
        for layer, omega in zip(self.hidden, self.omegas()):
            pre = omega * layer(x)
            x = torch.sin(pre)
            result.append((pre, x))
        return result


# -- baselines (Fig. 1) --------------------------------------------------------------------------
class PosEncoding(nn.Module):
    """NeRF positional encoding γ(x) = (x, sin(2^k π x), cos(2^k π x))_{k<L} per coordinate.

    The official PosEncodingNeRF picks L by the Nyquist rule: with `samples` samples per side over a
    length-2 domain the highest representable frequency is samples/4 cycles per unit, so
    L = floor(log2(samples / 4)).
    """

    def __init__(self, in_features: int, samples: int):
        super().__init__()
        self.in_features = in_features
        self.num_frequencies = nyquist_frequencies(samples)
        self.out_dim = in_features * (1 + 2 * self.num_frequencies)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(self.num_frequencies), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phase = x[:, None, :] * self.freqs[None, :, None]                     # (N, L, in)
        enc = torch.stack((torch.sin(phase), torch.cos(phase)), dim=-1)      # (N, L, in, 2)
        return torch.cat((x, enc.reshape(x.shape[0], -1)), dim=-1)            # order: k, dim, (sin, cos)


def nyquist_frequencies(samples: int) -> int:
    nyquist_rate = samples / 4.0  # = 1 / (2 * (2 * 1 / samples)) in the official code
    return int(math.floor(math.log2(nyquist_rate)))


class MLP(nn.Module):
    """The baseline MLP: ReLU (Kaiming-normal init) or tanh (Xavier-normal init), as the official
    FCBlock, optionally behind a positional encoding (ReLU P.E.)."""

    def __init__(self, in_features: int, out_features: int, hidden: int, hidden_layers: int,
                 activation: str = "relu", encoding: PosEncoding | None = None):
        super().__init__()
        self.encoding = encoding
        width_in = encoding.out_dim if encoding is not None else in_features
        sizes = [width_in] + [hidden] * (hidden_layers + 1)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(hidden, out_features)
        self.act = {"relu": torch.relu, "tanh": torch.tanh}[activation]
        with torch.no_grad():
            for layer in list(self.hidden) + [self.out]:
                if activation == "relu":
                    nn.init.kaiming_normal_(layer.weight, a=0.0, nonlinearity="relu", mode="fan_in")
                else:
                    nn.init.xavier_normal_(layer.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoding is not None:
            x = self.encoding(x)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


MODELS = ("siren", "relu", "relu_pe", "tanh")


def make_model(kind: str, in_features: int, out_features: int, hidden: int, hidden_layers: int,
               samples: int = 0, first_omega: float = 30.0) -> nn.Module:
    """One of MODELS at a given width/depth; `samples` (per side) sets relu_pe's frequency count."""
    if kind == "siren":
        return Siren(in_features, out_features, hidden, hidden_layers, first_omega=first_omega)
    if kind in ("relu", "tanh"):
        return MLP(in_features, out_features, hidden, hidden_layers, activation=kind)
    if kind == "relu_pe":
        return MLP(in_features, out_features, hidden, hidden_layers, "relu", PosEncoding(in_features, samples))
    raise ValueError(f"unknown model {kind!r}; valid: {', '.join(MODELS)}")


# -- differential operators (§3: derivatives of Φ by autograd) -----------------------------------
def gradient(y: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """∇_x y for y of shape (N, 1), x of shape (N, d) with requires_grad: (N, d).

    The graph is retained so several derivatives can be taken of one forward pass. A y that does not
    depend on x differentiably (e.g. ∇ of a ReLU net, piecewise constant) has derivative 0.
    """
    if not y.requires_grad:
        return torch.zeros_like(x)
    (g,) = torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y), create_graph=create_graph,
                               retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def divergence(g: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """∇·g = Σ_i ∂g_i/∂x_i for a vector field g (N, d) of x (N, d): (N, 1)."""
    div = torch.zeros_like(g[:, :1])
    for i in range(g.shape[1]):  # d (= 2 for images) backward passes
        div = div + gradient(g[:, i:i + 1], x, create_graph)[:, i:i + 1]
    return div


def laplacian(y: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """Δy = ∇·∇y: (N, 1)."""
    return divergence(gradient(y, x, create_graph=True), x, create_graph)
