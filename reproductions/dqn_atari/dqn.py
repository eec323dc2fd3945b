"""The DQN agent of Mnih et al. 2013 (§4.1, §5), and the two additions of the 2015 Nature paper.

  nips2013    Q-learning on minibatches from replay; the target r + γ max_a' Q(s', a') uses the same
              network (no target network); squared TD error.
  nature2015  the target uses a copy of the network refreshed every `target_update` updates, and the
              TD error is clipped to [-1, 1] (the Huber loss, whose gradient is the clipped error).

Input frames stay uint8 until the network: the conversion to [0, 1] floats is its first step.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = ("nips2013", "nature2015")


class QNetwork(nn.Module):
    """§4.1: 84x84x4 -> 16 8x8 filters stride 4 -> 32 4x4 filters stride 2 -> 256 units -> one Q per action,
    ReLU between (the 2013 net; Nature's is 32-64-64 convs and 512 units)."""

    def __init__(self, num_actions: int, stack: int = 4):
        super().__init__()
        self.conv1 = nn.Conv2d(stack, 16, 8, stride=4)
        self.conv2 = nn.Conv2d(16, 32, 4, stride=2)
        self.fc = nn.Linear(32 * 9 * 9, 256)
        self.out = nn.Linear(256, num_actions)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float().mul_(1 / 255)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.fc(x.flatten(1)))
        return self.out(x)


def td_loss(variant: str, q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½(y - Q)², or its Huber form whose gradient is the TD error clipped to [-1, 1]; mean over the batch."""
    if variant == "nature2015":
        return F.smooth_l1_loss(q, target, beta=1.0)
    return 0.5 * F.mse_loss(q, target)


class Agent:
    """The network, its optimizer (RMSProp, §5) and, for nature2015, the target network."""

    def __init__(self, num_actions: int, cfg: dict, device: torch.device):
        self.variant, self.gamma, self.num_actions = cfg["variant"], cfg["gamma"], num_actions
        self.bf16, self.device = cfg["bf16"], device
        self.net = QNetwork(num_actions).to(device)
        self.target = copy.deepcopy(self.net).requires_grad_(False) if self.variant == "nature2015" else None
        self.target_update = cfg["target_update"]
        self.opt = torch.optim.RMSprop(self.net.parameters(), lr=cfg["lr"], alpha=cfg["rms_decay"],
                                       eps=cfg["rms_eps"], foreach=True)
        self.updates = 0
        self._loss, self._step = self.loss, self.opt.step
        if cfg["compile"]:
            self._loss, self._step = torch.compile(self.loss), torch.compile(self.opt.step)

    def _autocast(self):
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16)

    @torch.no_grad()
    def q_values(self, frames: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.net(frames.to(self.device)).float()

    def greedy(self, obs: np.ndarray) -> np.ndarray:
        """One batched forward pass for the whole vector of environments (the emulators' frames go to
        the device; the chosen actions come back to the CPU for the emulators)."""
        return self.q_values(torch.from_numpy(obs)).argmax(1).cpu().numpy()

    def loss(self, states, next_states, actions, rewards, terminal) -> torch.Tensor:
        with self._autocast():
            with torch.no_grad():
                bootstrap = (self.net if self.target is None else self.target)(next_states).float().max(1).values
            target = rewards + self.gamma * (1 - terminal) * bootstrap
            q = self.net(states).float().gather(1, actions[:, None]).squeeze(1)
        return td_loss(self.variant, q, target)

    def update(self, batch) -> torch.Tensor:
        loss = self._loss(*batch)  # a replay minibatch already on the device (FrameReplay.sample)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self._step()
        self.updates += 1
        if self.target is not None and self.updates % self.target_update == 0:
            self.target.load_state_dict(self.net.state_dict())
        return loss.detach()

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict(), "updates": self.updates,
                **({"target": self.target.state_dict()} if self.target is not None else {})}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.updates = state["updates"]
        if self.target is not None:
            self.target.load_state_dict(state["target"])
