"""The unitary evolution RNN (Arjovsky, Shah & Bengio 2016), top to bottom.

Recurrence (§4, eq. 6 and §4.2):

    z_t = W h_{t-1} + V x_t,      W = D3 R2 F⁻¹ D2 Π R1 F D1        (complex, N × N, unitary)
    h_t = modReLU(z_t) = ReLU(|z_t| + b) · z_t / (|z_t| + ε)        (§4.3)
    o_t = U [Re h_t; Im h_t] + c                                     (§4.4: read-out from both parts)

D_j = diag(e^{iθ_j}) are diagonal phases, R_j = I − 2 v_j v_j* / ‖v_j‖² complex reflections, Π a fixed
random permutation and F the unitary DFT. Each factor is unitary, so ‖W h‖ = ‖h‖ for any h and any
parameters: the recurrence neither explodes nor vanishes the state's norm (§4.1).

Two ways to run the same model:

- `naive`: the paper's factored form applied at every step with autograd (the official Theano
  `scan`). Exact but slow on a CPU: about 20 small complex ops per step, each recorded for backward.
- `fused` (default): W is assembled once per forward pass by applying the factors to the identity
  (O(N² log N), with autograd, so the gradients still reach θ and v), and the whole recurrence runs in
  one autograd Function with a hand-written backward through time on real [Re; Im] pairs: per step
  one matrix product and a few element-wise ops, no graph. The two agree to rounding (tests/test_urnn.py
  checks outputs and gradients against each other and with `torch.autograd.gradcheck`).
"""
from __future__ import annotations

import math

import torch
from torch import nn

MODRELU_EPS = 1e-5  # the official code's ε in |z| + ε


def unitary_apply(h: torch.Tensor, theta: torch.Tensor, reflections: torch.Tensor,
                  permutation: torch.Tensor) -> torch.Tensor:
    """W h for each row h of a complex (batch, N) tensor: D3 R2 F⁻¹ D2 Π R1 F D1 (eq. 6), applied
    right to left. theta: (3, N) phases; reflections: (2, N) complex vectors v1, v2."""
    def diag(x, k):
        return x * torch.polar(torch.ones_like(theta[k]), theta[k])

    def reflect(x, v):  # (I − 2 v v*/‖v‖²) x, for each row x
        return x - (2 / v.abs().square().sum()) * (x @ v.conj()).unsqueeze(-1) * v

    h = diag(h, 0)
    h = torch.fft.fft(h, norm="ortho")
    h = reflect(h, reflections[0])
    h = h[:, permutation]
    h = diag(h, 1)
    h = torch.fft.ifft(h, norm="ortho")
    h = reflect(h, reflections[1])
    return diag(h, 2)


def modrelu_pairs(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """modReLU on real pairs: z is (..., 2N) = [Re; Im]."""
    n = bias.numel()
    pairs = z.unflatten(-1, (2, n))
    modulus = torch.hypot(z[..., :n], z[..., n:])
    scale = torch.relu(modulus + bias) / (modulus + MODRELU_EPS)
    return (pairs * scale.unsqueeze(-2)).flatten(-2)


class FusedModReLURecurrence(torch.autograd.Function):
    """H[:, t] = modReLU(H[:, t-1] @ Wr + VX[:, t]) for t = 0..T-1, with H[:, -1] = h0.

    Wr is the real (2N, 2N) form of Wᵀ acting on [Re; Im] rows. The backward pass is back-propagation
    through time written out: with q = Σ_pair g·z and s(m) = ReLU(m + b)/(m + ε),
        ∂L/∂z = g · s + q · s'(m) / m · z,     ∂L/∂h_{t-1} = ∂L/∂z_t Wrᵀ,
    and the gradients of Wr, b and h0 are summed over steps at the end in single matrix products.
    """

    @staticmethod
    def forward(ctx, vx: torch.Tensor, wr: torch.Tensor, bias: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
        batch, steps, width = vx.shape
        n = width // 2
        z_all = vx.new_empty(steps, batch, width)
        h_all = vx.new_empty(steps, batch, width)
        inputs = vx.transpose(0, 1)
        h = h0.expand(batch, width)
        for t in range(steps):
            z = torch.addmm(inputs[t], h, wr, out=z_all[t])
            pairs = z.view(batch, 2, n)
            modulus = torch.hypot(z[:, :n], z[:, n:])
            scale = (modulus + bias).clamp_(min=0).div_(modulus.add_(MODRELU_EPS))
            h = torch.mul(pairs, scale.unsqueeze(1), out=h_all[t].view(batch, 2, n)).view(batch, width)
        ctx.save_for_backward(z_all, h_all, wr, bias, h0)
        return h_all.transpose(0, 1)

    @staticmethod
    def backward(ctx, grad_h: torch.Tensor):
        z_all, h_all, wr, bias, h0 = ctx.saved_tensors
        steps, batch, width = z_all.shape
        n = width // 2
        pairs = z_all.view(steps, batch, 2, n)
        modulus = torch.hypot(z_all[..., :n], z_all[..., n:])
        active = (modulus + bias) > 0
        denom = modulus + MODRELU_EPS
        scale = torch.relu(modulus + bias) / denom
        # s'(m) / m, with m → 0 handled: z = 0 there, so the term vanishes whatever its factor
        slope = (active * denom - torch.relu(modulus + bias)) / denom.square() / modulus.clamp(min=1e-30)
        grad_h = grad_h.transpose(0, 1)
        grad_z = torch.empty_like(z_all)
        q_all = torch.empty_like(modulus)
        carried = torch.zeros(batch, width, dtype=z_all.dtype, device=z_all.device)
        wr_t = wr.t().contiguous()
        for t in range(steps - 1, -1, -1):
            g = (grad_h[t] + carried).view(batch, 2, n)
            q = torch.sum(g * pairs[t], 1, out=q_all[t])
            gz = grad_z[t].view(batch, 2, n)
            torch.mul(g, scale[t].unsqueeze(1), out=gz)
            gz.addcmul_((q * slope[t]).unsqueeze(1), pairs[t])
            carried = grad_z[t] @ wr_t
        previous = torch.cat([h0.expand(1, batch, width), h_all[:-1]])
        grad_wr = previous.reshape(-1, width).t() @ grad_z.reshape(-1, width)
        grad_bias = (q_all * active / denom).sum((0, 1))
        return grad_z.transpose(0, 1), grad_wr, grad_bias, carried.sum(0)


class URNN(nn.Module):
    """uRNN with N complex hidden units, initialized as the official `complex_RNN`
    (amarshah/complex_RNN models.py): Glorot-uniform V, U, θ and reflection vectors, modReLU biases
    U[−0.01, 0.01], a learned h0 ~ U[−√(3/N), √(3/N)], and a fixed random permutation Π."""

    def __init__(self, input_size: int, hidden: int, output_size: int, per_step: bool):
        super().__init__()
        self.hidden, self.per_step = hidden, per_step

        def glorot(*shape):
            bound = math.sqrt(6 / (shape[0] + shape[1]))
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.theta = glorot(3, hidden)
        self.reflection = glorot(2, 2 * hidden)                       # [Re v_j; Im v_j]
        self.register_buffer("permutation", torch.randperm(hidden))
        self.input_weight = glorot(input_size, 2 * hidden)            # [V_re V_im]
        self.bias = nn.Parameter(torch.empty(hidden).uniform_(-0.01, 0.01))
        bound = math.sqrt(3 / hidden)
        self.h0 = nn.Parameter(torch.empty(2 * hidden).uniform_(-bound, bound))
        self.readout = nn.Linear(2 * hidden, output_size)
        with torch.no_grad():
            self.readout.weight.copy_(glorot(output_size, 2 * hidden))
            self.readout.bias.zero_()

    def reflection_vectors(self) -> torch.Tensor:
        return torch.complex(self.reflection[:, :self.hidden], self.reflection[:, self.hidden:])

    def unitary(self, h: torch.Tensor) -> torch.Tensor:
        """W h for complex rows h (batch, N)."""
        return unitary_apply(h, self.theta, self.reflection_vectors(), self.permutation)

    def recurrence_matrix(self) -> torch.Tensor:
        """Wr, the real (2N, 2N) matrix with [Re; Im](W h)ᵀ = [Re; Im](h)ᵀ Wr: rows of Wᵀ = A + iB
        give Wr = [[A, B], [−B, A]]."""
        eye = torch.eye(self.hidden, dtype=self.theta.dtype, device=self.theta.device)
        w_t = self.unitary(torch.complex(eye, torch.zeros_like(eye)))
        a, b = w_t.real, w_t.imag
        return torch.cat([torch.cat([a, b], 1), torch.cat([-b, a], 1)], 0)

    def states(self, x: torch.Tensor, fused: bool = True) -> torch.Tensor:
        """Hidden states [Re; Im] for every step, (batch, steps, 2N)."""
        vx = x @ self.input_weight
        if fused:
            return FusedModReLURecurrence.apply(vx, self.recurrence_matrix(), self.bias, self.h0)
        reflections = self.reflection_vectors()
        h = torch.complex(self.h0[:self.hidden], self.h0[self.hidden:]).expand(len(x), self.hidden)
        states = []
        for vx_t in vx.unbind(1):  # unbind: one backward node for all steps, not a zero-filled copy per step
            z = unitary_apply(h, self.theta, reflections, self.permutation)
            z = torch.cat([z.real, z.imag], -1) + vx_t
            state = modrelu_pairs(z, self.bias)
            states.append(state)
            h = torch.complex(state[:, :self.hidden], state[:, self.hidden:])
        return torch.stack(states, 1)

    def forward(self, x: torch.Tensor, fused: bool = True) -> torch.Tensor:
        states = self.states(x, fused)
        return self.readout(states if self.per_step else states[:, -1])
