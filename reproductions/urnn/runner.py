"""uRNN (Arjovsky, Shah & Bengio 2016): the runner. One seed trains, for every task and length T, the
uRNN and the paper's baselines (§5) on the same generated data, then measures what a training step
costs and whether the trained recurrence is still unitary:

  copying   T in copying_lengths (§5.1, Fig. 1): uRNN 128, LSTM 40, RNN-tanh 80 (~6.5K parameters each)
  adding    T in adding_lengths (§5.2, Fig. 2): uRNN 512, LSTM 128, RNN-tanh 128
  mnist     pixel and permuted pixel MNIST (§5.3, Fig. 3): the adding sizes

RMSProp, lr 1e-3, decay 0.9 for every model; gradients clipped at 1 for the LSTM and RNN, never for
the uRNN (§5). The IRNN is left out by default as in the paper ("unstable", not plotted); add it with
--set models=urnn,lstm,rnn_tanh,irnn.
"""
from __future__ import annotations

import time

import torch

from common.context import RunContext
from common.recurrent import RecurrentBaseline, parameter_count
from common.sequence_tasks import make_task
from common.config import check_names, check_range
from common.papers import UsageError
from common.sequence_training import TrainSettings, train
from reproductions.urnn.urnn import URNN

# The paper tier (§5). Only these keys are --set-able; each is typed by its value.
CONFIG = {
    "copying_lengths": [100, 200, 300, 500],  # Fig. 1
    "adding_lengths": [100, 200, 400, 750],   # Fig. 2
    "mnist_tasks": ["pixel_mnist", "permuted_mnist"],  # Fig. 3
    "mnist_side": 28,                        # 784 steps
    "models": ["urnn", "lstm", "rnn_tanh"],
    "copying_hidden": {"urnn": 128, "lstm": 40, "rnn_tanh": 80, "irnn": 80},  # hidden units per model
    "hidden": {"urnn": 512, "lstm": 128, "rnn_tanh": 128, "irnn": 128},       # adding and MNIST
    "lr": 1e-3,
    "rmsprop_decay": 0.9,
    "clip": 1.0,                             # LSTM and RNNs; the uRNN is never clipped
    "batch_size": 20,                        # "20 or 50"; 20 for all tasks
    "copying_steps": 5_000,                  # Fig. 1's x-axis (our reading, confidence ?)
    "adding_steps": 20_000,                  # Fig. 2's x-axis (our reading, confidence ?)
    "mnist_steps": 100_000,                  # Fig. 3's x-axis (our reading, confidence ?)
    "mnist_train_size": 0,                   # 0: all 60,000 training images
    "test_size": 1000,                       # held-out sequences of the generated tasks
    "mnist_test_size": 0,                    # test images (0: all 10,000)
    "eval_every": 100,
    "final_evals": 5,                        # final losses average the last 5 evaluations (500 steps)
    "checkpoint_every": 500,
    "speed_repeats": 5,                      # timed training steps per model for the cost ratio (0: no timing)
}

TIERS = {
    "smoke": {"copying_lengths": [10], "adding_lengths": [10], "mnist_tasks": [], "models": ["urnn", "lstm"],
              "copying_hidden": {"urnn": 8, "lstm": 4}, "hidden": {"urnn": 8, "lstm": 4}, "copying_steps": 30,
              "adding_steps": 30, "test_size": 50, "eval_every": 10, "checkpoint_every": 10,
              "speed_repeats": 0},  # no timing: smoke metrics are bit-exact
    # both toy tasks at T = 100 and both MNIST orders at 14x14, with the paper's models and sizes
    # except a 128-unit uRNN outside copying (README, Deviations)
    "cpu": {"copying_lengths": [100], "adding_lengths": [100], "copying_steps": 3000, "adding_steps": 10_000,
            "mnist_side": 14, "mnist_steps": 1500, "mnist_test_size": 2000,
            "hidden": {"urnn": 128, "lstm": 128, "rnn_tanh": 128, "irnn": 128}},
}
FEW_STEPS = {"copying_lengths": [20], "adding_lengths": [20], "mnist_tasks": ["permuted_mnist"], "mnist_side": 7,
             "mnist_train_size": 64, "mnist_test_size": 20, "copying_steps": 2, "adding_steps": 2, "mnist_steps": 2, "test_size": 20,
             "eval_every": 1, "speed_repeats": 1}
LIBRARIES = ()
DATASETS = ("mnist",)


MODELS = ("urnn", "lstm", "rnn_tanh", "irnn")


def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    check_names("models", cfg["models"], MODELS)
    check_names("mnist_tasks", cfg["mnist_tasks"], ("pixel_mnist", "permuted_mnist"))
    check_range("copying_lengths", cfg["copying_lengths"], 1)
    check_range("adding_lengths", cfg["adding_lengths"], 2)
    for section in ("copying_hidden", "hidden"):
        check_names(f"{section} (its models)", list(cfg[section]), MODELS)
        check_range(section, list(cfg[section].values()), 1)
        missing = [m for m in cfg["models"] if m not in cfg[section]]
        if missing:
            raise UsageError(f"{section} gives no size for model(s) {', '.join(missing)}")
    check_names("mnist_side", [cfg["mnist_side"]], (7, 14, 28))
    for key in ("batch_size", "copying_steps", "adding_steps", "mnist_steps", "test_size", "eval_every",
                "final_evals", "checkpoint_every"):
        check_range(key, cfg[key], 1)
    check_range("mnist_train_size", cfg["mnist_train_size"], 0, 60_000, what=" (0: all)")
    check_range("mnist_test_size", cfg["mnist_test_size"], 0, 10_000, what=" (0: all)")
    check_range("speed_repeats", cfg["speed_repeats"], 0)
    check_range("rmsprop_decay", cfg["rmsprop_decay"], 0, 1)
    check_range("lr", cfg["lr"], 1e-30)
    check_range("clip", cfg["clip"], 0)


def build(kind: str, task, hidden: int) -> torch.nn.Module:
    if kind == "urnn":
        return URNN(task.input_size, hidden, task.output_size, task.per_step)
    return RecurrentBaseline(kind, task.input_size, hidden, task.output_size, task.per_step)


def settings(cfg: dict, kind: str, steps: int) -> TrainSettings:
    return TrainSettings(steps=steps, batch_size=cfg["batch_size"], optimizer="rmsprop", lr=cfg["lr"],
                         rmsprop_decay=cfg["rmsprop_decay"], clip=0.0 if kind == "urnn" else cfg["clip"],
                         eval_every=cfg["eval_every"], checkpoint_every=cfg["checkpoint_every"],
                         final_evals=cfg["final_evals"])


def step_seconds(step) -> float:
    """Seconds for one call of `step`, after an untimed warm-up call (caches, allocator)."""
    step()
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def step_cost(task, cfg: dict, sizes: dict[str, int], generator: torch.Generator,
              device: torch.device) -> dict[str, float]:
    """Seconds per training step (forward, backward, RMSProp update) at the task's T and batch, for
    the LSTM of the paper's size and for the uRNN in both implementations, timed side by side."""
    x, y = (t.to(device) for t in task.batch(cfg["batch_size"], generator))

    def trainer(model, **kwargs):
        model = model.to(device)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=cfg["lr"], alpha=cfg["rmsprop_decay"])

        def step():
            optimizer.zero_grad(set_to_none=True)
            task.loss(model(x, **kwargs), y).backward()
            optimizer.step()
        return step

    urnn, lstm = build("urnn", task, sizes["urnn"]), build("lstm", task, sizes["lstm"])
    steps = {"lstm": trainer(lstm), "urnn_fused": trainer(urnn, fused=True), "urnn_naive": trainer(urnn, fused=False)}
    seconds = {name: 0.0 for name in steps}
    for _ in range(cfg["speed_repeats"]):  # interleaved, so load on the machine hits all three alike
        for name, step in steps.items():
            seconds[name] += step_seconds(step)
    return {"urnn_fused_over_lstm": seconds["urnn_fused"] / seconds["lstm"],
            "urnn_naive_over_lstm": seconds["urnn_naive"] / seconds["lstm"],
            "lstm_step_ms": 1e3 * seconds["lstm"] / cfg["speed_repeats"]}


@torch.no_grad()
def unitarity_error(model: URNN, generator: torch.Generator) -> float:
    """max over 256 random complex h of | ‖W h‖ − ‖h‖ | / ‖h‖ for the trained W, in float32 (§4.1)."""
    h = torch.complex(torch.randn(256, model.hidden, generator=generator),
                      torch.randn(256, model.hidden, generator=generator)).to(model.theta.device)
    norm = torch.linalg.vector_norm(h, dim=1)
    return ((torch.linalg.vector_norm(model.unitary(h), dim=1) - norm).abs() / norm).max().item()


def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    torch.set_flush_denormal(True)  # tiny LSTM activations otherwise slow CPU steps ~20x (measured at T = 200)
    models = cfg["models"]
    jobs = [("copying", T, cfg["copying_steps"], cfg["copying_hidden"]) for T in cfg["copying_lengths"]]
    jobs += [("adding", T, cfg["adding_steps"], cfg["hidden"]) for T in cfg["adding_lengths"]]
    jobs += [(name, cfg["mnist_side"], cfg["mnist_steps"], cfg["hidden"]) for name in cfg["mnist_tasks"]]
    metrics: dict[str, float] = {}
    for name, T, steps, sizes in jobs:
        mnist = name.endswith("mnist")
        task = make_task(name, T, test_size=(cfg["mnist_test_size"] or None) if mnist else cfg["test_size"],
                         train_size=cfg["mnist_train_size"] or None)
        key = task.name
        metrics[f"{key}_baseline"] = task.baseline
        for index, kind in enumerate(models):  # each model is a stage: a resumed run skips the finished ones
            metrics.update(ctx.stage(f"{key}_{kind}", lambda: train_model(kind, index, task, steps, sizes, cfg, ctx)))
        if cfg["speed_repeats"] > 0:
            cost = step_cost(task, cfg, sizes, torch.Generator().manual_seed(ctx.seed), ctx.device)
            metrics.update({f"{key}_{metric}": value for metric, value in cost.items()})
    return metrics


def train_model(kind: str, index: int, task, steps: int, sizes: dict, cfg: dict, ctx: RunContext) -> dict[str, float]:
    key, metrics = task.name, {}
    torch.manual_seed(ctx.seed * 1000 + index)  # each model's init, independent of the others' training
    model = build(kind, task, sizes[kind]).to(ctx.device)  # built on the CPU's stream, then moved
    result = train(model, task, settings(cfg, kind, steps), ctx, kind, seed=ctx.seed)
    metrics[f"{key}_{kind}_parameters"] = float(parameter_count(model))
    for metric, value in result.items():
        if metric == "steps_per_s":
            ctx.record_throughput(f"{key}_{kind}_steps_per_s", value)
        else:
            metrics[f"{key}_{kind}_{'test_' + metric if metric != 'diverged_at' else metric}"] = value
    if kind == "urnn":
        metrics[f"{key}_urnn_unitarity_error"] = unitarity_error(model, torch.Generator().manual_seed(ctx.seed))
    return metrics
