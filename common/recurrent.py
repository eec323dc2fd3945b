"""The recurrent baselines the IRNN and uRNN papers share, each with a linear read-out:

  rnn_tanh   h_t = tanh(W x_t + U h_{t-1} + b), PyTorch's default uniform init
  rnn_relu   the same with ReLU, U ~ N(0, init_std²) (IRNN §4: the "small random" ReLU RNN)
  irnn       ReLU, U = identity_scale · I and b = 0 (IRNN §3; identity_scale < 1 is the paper's
             scaled-identity variant for long-range tasks)
  lstm       forget-gate bias 1 (Gers et al. 2000; both papers' LSTM baseline)

The recurrences are PyTorch's fused nn.RNN / nn.LSTM kernels. A model reads x (batch, steps, inputs)
and returns (batch, outputs) from the last step, or (batch, steps, outputs) when `per_step`.
"""
from __future__ import annotations

import torch
from torch import nn

KINDS = ("rnn_tanh", "rnn_relu", "irnn", "lstm")


class RecurrentBaseline(nn.Module):
    def __init__(self, kind: str, input_size: int, hidden: int, output_size: int, per_step: bool,
                 init_std: float = 0.001, identity_scale: float = 1.0):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown recurrent model {kind!r}; valid models: {', '.join(KINDS)}")
        self.kind, self.per_step = kind, per_step
        if kind == "lstm":
            self.rnn = nn.LSTM(input_size, hidden, batch_first=True)
            with torch.no_grad():  # gate order i, f, g, o: the forget gate's biases sum to 1
                self.rnn.bias_ih_l0[hidden:2 * hidden].fill_(1.0)
                self.rnn.bias_hh_l0[hidden:2 * hidden].zero_()
        else:
            self.rnn = nn.RNN(input_size, hidden, nonlinearity="tanh" if kind == "rnn_tanh" else "relu",
                              batch_first=True)
        if kind in ("rnn_relu", "irnn"):
            with torch.no_grad():
                nn.init.normal_(self.rnn.weight_ih_l0, std=init_std)
                self.rnn.bias_ih_l0.zero_()
                self.rnn.bias_hh_l0.zero_()
                if kind == "irnn":
                    self.rnn.weight_hh_l0.copy_(identity_scale * torch.eye(hidden))
                else:
                    nn.init.normal_(self.rnn.weight_hh_l0, std=init_std)
        self.readout = nn.Linear(hidden, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states, _ = self.rnn(x)
        return self.readout(states if self.per_step else states[:, -1])


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
