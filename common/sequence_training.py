"""Training one recurrent model on one sequence task: the loop both recurrent papers use.

Minibatches come fresh from the task's generator (synthetic tasks) or are drawn with replacement
(MNIST). The gradient's global norm is clipped when `clip` > 0 (both papers clip RNNs and LSTMs at 1;
the uRNN needs none, uRNN §5). The test loss is evaluated every `eval_every` steps and logged with the
task's memoryless baseline, so every curve can be drawn against it. A run that is killed resumes from
the model's last checkpoint with the same random streams.

A model whose training loss becomes NaN or inf stops there (`ctx.may_diverge`): it is recorded as
diverged (the step is kept as `diverged_at`) and its final metrics are those of its last finite
evaluation, so one unstable baseline does not end the other models' run.

Tasks draw their batches on the CPU from their seeded generators (the same streams on any device);
each batch then goes to the model's device.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from common.context import Diverged, RunContext

OPTIMIZERS = ("rmsprop", "sgd")


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    optimizer: str          # "rmsprop" (uRNN §5: lr 1e-3, decay 0.9) or "sgd" (IRNN §4)
    lr: float
    clip: float             # max global gradient norm; 0 = no clipping
    eval_every: int
    checkpoint_every: int
    rmsprop_decay: float = 0.9
    momentum: float = 0.0
    eval_batch: int = 500
    final_evals: int = 1    # the final metrics average this many last evaluations (smooths late spikes)


def make_optimizer(params, s: TrainSettings) -> torch.optim.Optimizer:
    if s.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.lr, alpha=s.rmsprop_decay, momentum=s.momentum)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; valid optimizers: {', '.join(OPTIMIZERS)}")


def on_model_device(model: nn.Module, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    device = next(model.parameters()).device
    return tuple(t.to(device) for t in tensors)


def training_step(model: nn.Module, task, optimizer: torch.optim.Optimizer, s: TrainSettings,
                  generator: torch.Generator) -> float | None:
    """One update on a fresh minibatch, clipped if `s.clip` > 0; returns its loss, or None (and no
    update) if the loss is NaN or inf."""
    x, y = on_model_device(model, *task.batch(s.batch_size, generator))
    loss = task.loss(model(x), y)
    if not math.isfinite(loss.item()):
        return None
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if s.clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), s.clip)
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, task, batch: int) -> dict[str, float]:
    """The task's metrics on its whole test set, weighted by batch size."""
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for x, y in task.test_batches(batch):
        x, y = on_model_device(model, x, y)
        for name, value in task.metrics(model(x), y).items():
            totals[name] = totals.get(name, 0.0) + value * len(x)
        count += len(x)
    model.train()
    return {name: total / count for name, total in totals.items()}


def train(model: nn.Module, task, s: TrainSettings, ctx: RunContext, label: str, seed: int) -> dict[str, float]:
    """Train `model` (already on ctx.device) on `task`; returns its final test metrics (the mean of its
    last `final_evals` evaluations) plus `diverged_at` (0 if it never did) and `steps_per_s`. Curves are
    logged with model=`label`, task=`task.name`. A caller that resumes runs should wrap it in a ctx.stage."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model.parameters(), s)
    key = f"{task.name}-{label}"
    step, diverged_at, window, recent = 0, 0, [], []
    state = ctx.restore(key)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step, diverged_at, last, recent = state["step"], state["diverged_at"], state["last"], state["recent"]
        window = state["window"]
    else:  # the untrained model's point, so every curve starts at step 0
        last = evaluate(model, task, s.eval_batch)
        ctx.log(0, model=label, task=task.name, baseline=task.baseline, **{f"test_{k}": v for k, v in last.items()})
    started, first_step = time.perf_counter(), step
    bar = ctx.progress(range(step, s.steps), desc=f"{task.name} {label}", total=s.steps)
    bar.update(step)
    with ctx.may_diverge(f"{task.name}-{label}") as outcome:
        for step in bar if not diverged_at else ():
            loss = training_step(model, task, optimizer, s, generator)
            if loss is None:
                raise Diverged(step + 1, "train_loss", math.nan)
            window.append(loss)
            done = step + 1
            if done % s.eval_every == 0 or done == s.steps:
                metrics = evaluate(model, task, s.eval_batch)
                if all(math.isfinite(v) for v in metrics.values()):
                    recent = (recent + [metrics])[-s.final_evals:]
                    last = {name: sum(m[name] for m in recent) / len(recent) for name in metrics}
                    ctx.log(done, model=label, task=task.name, train_loss=sum(window) / len(window),
                            baseline=task.baseline, **{f"test_{k}": v for k, v in metrics.items()})
                window = []
                bar.set_postfix(test_loss=f"{metrics['loss']:.4f}")
            if done % s.checkpoint_every == 0 and done < s.steps:
                ctx.checkpoint(key, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "generator": generator.get_state(), "step": done,
                                     "diverged_at": diverged_at, "last": last, "recent": recent,
                                     "window": window})
    if outcome.diverged:
        diverged_at = outcome.step
    elapsed = time.perf_counter() - started
    trained = (diverged_at - 1 if diverged_at else s.steps) - first_step
    return {**last, "diverged_at": float(diverged_at), "steps_per_s": trained / elapsed if elapsed > 0 else 0.0}
