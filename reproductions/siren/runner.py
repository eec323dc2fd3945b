"""SIREN (Sitzmann et al. 2020): the runner. One seed = five experiments, run in order:

  1. image    fit camera.png with siren / relu / relu_pe / tanh, full batch, Adam 1e-4 (Fig. 1)
  2. derivs   the fitted SIREN's ∇Φ and ΔΦ vs the image's Sobel gradient / discrete Laplacian,
              and the ReLU net's Laplacian (zero almost everywhere) (Fig. 1, bottom rows)
  3. poisson  fit the image from its Sobel gradients only, loss on ∇Φ (§4.1, Table 1 left)
  4. audio    fit a Bach clip with first-layer ω0 = 3000 (§4.1 "Audio", Fig. 3)
  5. acts     activation statistics of a deep SIREN at init, paper init vs naive init (§3.2, supp. §1)

Follows the official vsitzmann/siren code (experiment_scripts/train_img.py,
train_poisson_grad_img.py, train_audio.py, dataio.py, utils.write_psnr) in data scaling, losses,
initializations and the PSNR definition; see README.md for what differs.
"""
from __future__ import annotations

import copy
import math
import time
import warnings

import numpy as np
import scipy.ndimage
import scipy.io.wavfile
import torch
from PIL import Image
from scipy import stats

from common.config import check_names, check_range
from common.context import RunContext
from common.data import dataset_file
from common.papers import UsageError
from reproductions.siren.siren import MODELS, Siren, divergence, get_mgrid, gradient, make_model

# Paper values (official scripts' defaults). Only these keys are --set-able; each is typed by its value.
CONFIG = {
    "hidden": 256,                 # SingleBVPNet: 256 wide,
    "hidden_layers": 3,            # 3 hidden layers (5 linear layers in all)
    "lr": 1e-4,                    # Adam, every task
    "image_size": 512,             # train_img.py: camera at 512x512
    "image_steps": 10000,          # num_epochs=10000, one full-batch step per epoch
    "image_models": ["siren", "relu", "relu_pe", "tanh"],
    "poisson_size": 256,           # train_poisson_grad_img.py: sidelength 256
    "poisson_steps": 10000,
    "poisson_models": ["siren", "tanh", "relu_pe", "relu"],
    "audio_file": "gt_bach.wav",   # train_audio.py default
    "audio_start_s": 0.0,          # crop start (seconds) ...
    "audio_seconds": 0.0,          # ... and length; 0 = the whole clip, as in the paper
    "audio_steps": 9001,           # num_epochs=9001
    "audio_first_omega": 3000.0,   # first-layer ω0 for audio over a [-1, 1] time axis (§4.1)
    "audio_models": ["siren", "relu", "relu_pe"],
    "act_depth": 10,               # activation statistics (§3.2): hidden layers of the deep SIREN,
    "act_width": 1024,             # their width,
    "act_points": 4096,            # and the number of 1-D inputs in [-1, 1] (not pinned by the paper)
    "log_every": 25,               # curve resolution (steps)
    "checkpoint_every": 500,       # periodic resume checkpoints inside a fit (steps)
    "compile": True,               # torch.compile the full-batch fits if a measurement says it is faster
}

TIERS = {
    # a few seconds, deterministic: tiny everything, no compile
    "smoke": {"hidden": 32, "image_size": 16, "image_steps": 20, "poisson_size": 16, "poisson_steps": 10,
              "audio_start_s": 2.0, "audio_seconds": 0.005, "audio_steps": 10, "act_width": 256,
              "act_points": 512, "log_every": 5, "checkpoint_every": 10, "compile": False},
    # ~15 min per seed on one CPU thread (measured, see README)
    "cpu": {"image_size": 128, "image_steps": 300, "poisson_size": 64, "poisson_steps": 400,
            "audio_start_s": 2.0, "audio_seconds": 0.25, "audio_steps": 300, "checkpoint_every": 100},
}
# Two steps per fit, compile off. The sizes shrink too: two steps of the paper tier at full size
# (512² images, 256² double backward, the 308k-sample clip) take ~280 s and 8 GB on one CPU thread.
FEW_STEPS = {"image_steps": 2, "poisson_steps": 2, "audio_steps": 2, "log_every": 1, "compile": False,
             "image_size": 64, "poisson_size": 32, "audio_start_s": 2.0, "audio_seconds": 0.05,
             "act_width": 256, "act_points": 512}
LIBRARIES = ("scipy", "pillow")
DATASETS = ("siren",)


# -- data -------------------------------------------------------------------------------------------
def load_image(size: int) -> np.ndarray:
    """camera.png (512x512 grey) box-averaged to size x size, scaled to [-1, 1] as the official
    Normalize(0.5, 0.5) after ToTensor."""
    img = np.asarray(Image.open(dataset_file("siren", "camera.png")).convert("L"), dtype=np.float64) / 255.0
    f = img.shape[0] // size
    img = img.reshape(size, f, size, f).mean(axis=(1, 3))  # area averaging
    return (2.0 * img - 1.0).astype(np.float32)


def sobel(img: np.ndarray) -> np.ndarray:
    """(H, W, 2) Sobel gradient, component 0 along rows = the first coordinate (official dataio)."""
    return np.stack([scipy.ndimage.sobel(img, axis=0), scipy.ndimage.sobel(img, axis=1)], axis=-1)


def load_audio(cfg: dict) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """The clip scaled by its max |amplitude| (official ImplicitAudioWrapper) on a [-1, 1] time axis
    spanning the WHOLE clip; a crop keeps those coordinates, so ω0 = 3000 means the same per sample."""
    rate, data = scipy.io.wavfile.read(dataset_file("siren", cfg["audio_file"]))
    data = data.astype(np.float32)
    if data.ndim > 1:
        data = data.mean(axis=1)
    data = data / np.abs(data).max()
    n_full = len(data)
    t = np.linspace(-1.0, 1.0, n_full, dtype=np.float32)
    if cfg["audio_seconds"] > 0:
        start = int(round(cfg["audio_start_s"] * rate))
        stop = min(n_full, start + max(2, int(round(cfg["audio_seconds"] * rate))))
        t, data = t[start:stop], data[start:stop]
    return torch.from_numpy(t)[:, None], torch.from_numpy(data.copy())[:, None], rate, n_full


# -- metrics ----------------------------------------------------------------------------------------
def psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """PSNR as utils.write_psnr: both mapped from [-1, 1] to [0, 1], prediction clipped, peak 1
    (= peak-to-peak 2 on the [-1, 1] scale)."""
    mse = ((pred.clamp(-1.0, 1.0) - gt) ** 2).mean().item() / 4.0
    return 10.0 * math.log10(1.0 / max(mse, 1e-20))


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-30))


def to_uint8(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """[-1, 1] image -> uint8 (the report only draws it)."""
    img = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else img
    return np.round((np.clip(img, -1, 1) + 1) * 127.5).astype(np.uint8)


# -- torch.compile, measured ------------------------------------------------------------------------
_warned: set[str] = set()


def warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=2)


def try_compile(model: torch.nn.Module):
    try:
        return torch.compile(model)
    except Exception as err:  # noqa: BLE001 - any failure means: run eagerly
        warn_once(f"torch.compile unavailable ({type(err).__name__}: {err}); running eagerly")
        return model


def mse_step(net, opt, coords, target):
    opt.zero_grad(set_to_none=True)
    out = net(coords)
    loss = ((out - target) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.detach(), out.detach()


def measure_compile(model, coords, target, lr, ctx: RunContext, rounds: int = 6) -> bool:
    """Time full-batch steps eager vs compiled on throw-away copies of `model`, alternating the two so
    that load from other processes hits both alike; True if the compiled median step is faster."""
    nets, opts = {}, {}
    for name in ("eager", "compiled"):
        m = copy.deepcopy(model)
        nets[name] = try_compile(m) if name == "compiled" else m
        opts[name] = torch.optim.Adam(m.parameters(), lr=lr)
    times = {"eager": [], "compiled": []}
    try:
        for r in range(rounds + 2):  # the first two rounds warm up (and compile)
            for name in ("eager", "compiled"):
                tic = time.perf_counter()
                mse_step(nets[name], opts[name], coords, target)
                if r >= 2:
                    times[name].append(time.perf_counter() - tic)
    except Exception as err:  # noqa: BLE001 - any compile failure means: run eagerly
        warn_once(f"torch.compile failed ({type(err).__name__}: {err}); running eagerly")
        return False
    rates = {name: 1.0 / float(np.median(t)) for name, t in times.items()}
    for name, rate in rates.items():
        ctx.record_throughput(f"compile_bench_{name}_steps_per_s", rate)
    return rates["compiled"] > rates["eager"]


# -- one fit, resumable -----------------------------------------------------------------------------
def fit(ctx: RunContext, cfg: dict, task: str, kind: str, model: torch.nn.Module, step_fn, steps: int,
        evaluate, use_compile: bool) -> float:
    """Train `model` in place for `steps` full-batch steps of `step_fn(net, opt) -> (loss, output)`.

    Logs loss and `evaluate(output)` (a dict of numbers) every `log_every` steps and checkpoints the
    model and Adam every `checkpoint_every` steps, so --resume continues inside an unfinished fit.
    Returns the steps per second (warm-up excluded).
    """
    key = f"{task}_{kind}"
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    state = ctx.restore(key)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"]
    net = try_compile(model) if use_compile else model
    timed_steps, timed = 0, 0.0
    for step in ctx.progress(range(start, steps), desc=key, total=steps - start):
        tic = time.perf_counter()
        try:
            loss, out = step_fn(net, opt)
        except Exception as err:  # noqa: BLE001 - a compiled graph that fails: fall back to eager
            if net is model:
                raise
            warn_once(f"compiled {key} failed ({type(err).__name__}: {err}); continuing eagerly")
            net = model
            loss, out = step_fn(net, opt)
        if step > start + 1:  # skip warm-up / compilation
            timed_steps, timed = timed_steps + 1, timed + time.perf_counter() - tic
        if step % cfg["log_every"] == 0:
            ctx.log(step, task=task, model=kind, loss=loss.item(), **evaluate(out))
        if (step + 1) % cfg["checkpoint_every"] == 0 and step + 1 < steps:
            ctx.checkpoint(key, {"step": step + 1, "model": model.state_dict(), "opt": opt.state_dict()})
    return timed_steps / timed if timed > 0 else 0.0


def fit_and_score(ctx: RunContext, cfg: dict, task: str, kind: str, model: torch.nn.Module, step_fn, steps: int,
                  evaluate, use_compile: bool, score) -> dict:
    """One model's fit, then `score(model) -> (metrics, arrays)` (which logs the fit's last curve row),
    as a `ctx.stage`: a resumed run gets a finished model's result back, and `model` its trained weights.

    A model whose logged values turn NaN or inf is a result, not the end of the run (`ctx.may_diverge`):
    its result then holds no metrics but `<task>_<kind>_diverged` = 1 with the step (always present, 0
    when it stayed finite). Returns {"model", "metrics", "arrays", "steps_per_s", "diverged"}.
    """
    def train() -> dict:
        with ctx.may_diverge(f"{task}_{kind}") as outcome:
            steps_per_s = fit(ctx, cfg, task, kind, model, step_fn, steps, evaluate, use_compile)
            metrics, arrays = score(model)
        if outcome.diverged:
            metrics, arrays, steps_per_s = {}, {}, 0.0
        return {"model": model.state_dict(), "metrics": {**metrics, **outcome.metrics()},
                "arrays": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
                "steps_per_s": steps_per_s, "diverged": outcome.diverged}

    result = ctx.stage(f"{task}_{kind}", train)
    model.load_state_dict(result["model"])  # a restored stage: the trained weights (else: a no-op)
    if not result["diverged"]:
        ctx.record_throughput(f"{task}_{kind}_steps_per_s", result["steps_per_s"])
    return result


CAMERA_SIDE = 512  # camera.png is 512 x 512
AUDIO_FILES = ("gt_bach.wav", "gt_counting.wav")


def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    for key in ("image_models", "poisson_models", "audio_models"):
        check_names(key, cfg[key], MODELS)
    for key in ("image_size", "poisson_size"):
        check_range(key, cfg[key], 2, CAMERA_SIDE)
        if CAMERA_SIDE % cfg[key]:
            raise UsageError(f"{key} must divide {CAMERA_SIDE} (camera.png's side), got {cfg[key]}")
    check_names("audio_file", cfg["audio_file"], AUDIO_FILES)
    for key in ("hidden", "hidden_layers", "image_steps", "poisson_steps", "audio_steps", "act_depth", "act_width",
                "act_points", "log_every", "checkpoint_every"):
        check_range(key, cfg[key], 1)
    for key in ("audio_start_s", "audio_seconds"):
        check_range(key, cfg[key], 0)
    check_range("lr", cfg["lr"], 1e-30)
    check_range("audio_first_omega", cfg["audio_first_omega"], 1e-30)


# -- 1. image fitting (Fig. 1) ----------------------------------------------------------------------
def image_task(cfg: dict, ctx: RunContext, use_compile: bool):
    dev = ctx.device
    size = cfg["image_size"]
    img = load_image(size)
    coords = get_mgrid(size).to(dev)
    target = torch.from_numpy(img).reshape(-1, 1).to(dev)
    metrics, fitted, recon = {}, {}, {"gt": to_uint8(img)}
    for kind in cfg["image_models"]:
        model = make_model(kind, 2, 1, cfg["hidden"], cfg["hidden_layers"], samples=size).to(dev)

        def step_fn(net, opt):
            return mse_step(net, opt, coords, target)

        def score(model, kind=kind):
            with torch.no_grad():
                out = model(coords)
            final = {f"image_psnr_{kind}": psnr(out, target)}
            ctx.log(cfg["image_steps"], task="image", model=kind, loss=((out - target) ** 2).mean().item(),
                    psnr=final[f"image_psnr_{kind}"])
            return final, {kind: to_uint8(out.reshape(size, size))}

        result = fit_and_score(ctx, cfg, "image", kind, model, step_fn, cfg["image_steps"],
                               lambda out: {"psnr": psnr(out, target)}, use_compile, score)
        metrics.update(result["metrics"])
        recon.update({k: v.cpu().numpy() for k, v in result["arrays"].items()})
        if not result["diverged"]:
            fitted[kind] = model
    ctx.save_arrays("image", **recon)
    return metrics, fitted, img


# -- 2. derivatives of the fitted image (Fig. 1, papers.md check 4) ----------------------------------
def derivative_task(fitted: dict, img: np.ndarray, ctx: RunContext) -> dict:
    size = img.shape[0]
    coords = get_mgrid(size).to(ctx.device).requires_grad_(True)
    sob = sobel(img)                                          # (H, W, 2), pixel units
    lap_gt = scipy.ndimage.laplace(img)
    metrics, arrays = {}, {"sobel": sob.transpose(2, 0, 1).astype(np.float16),
                           "laplace_gt": lap_gt.astype(np.float16)}
    for kind in ("siren", "relu"):
        if kind not in fitted:
            continue
        out = fitted[kind](coords)
        grad = gradient(out, coords)                               # keeps the graph for ΔΦ = ∇·∇Φ
        lap = divergence(grad, coords, create_graph=False)
        grad = grad.detach().cpu().numpy().reshape(size, size, 2)
        lap = lap.detach().cpu().numpy().reshape(size, size)
        metrics[f"image_grad_corr_{kind}"] = corr(grad, sob)
        metrics[f"image_lapl_corr_{kind}"] = corr(lap, lap_gt)
        metrics[f"image_lapl_abs_mean_{kind}"] = float(np.abs(lap).mean())
        # display scale: coordinate units -> per-pixel units, so maps are comparable to Sobel/laplace
        h = 2.0 / (size - 1)
        arrays[f"grad_{kind}"] = (grad * h * 8.0).transpose(2, 0, 1).astype(np.float16)  # Sobel ≈ 8·∂/∂pixel
        arrays[f"laplace_{kind}"] = (lap * h * h).astype(np.float16)
    ctx.save_arrays("derivs", **arrays)
    return metrics


# -- 3. Poisson: fitting from gradients only (§4.1, Table 1) -----------------------------------------
def poisson_task(cfg: dict, ctx: RunContext) -> dict:
    """Official train_poisson_grad_img.py: target ∇ = Sobel(10·img); loss mean_x |∇Φ(x) - target|².

    The gradient fixes Φ only up to an additive constant. For a smooth image, Sobel(10·img) =
    160/(S-1)·∂img/∂x on the [-1, 1] grid, so Φ ≈ 160/(S-1)·img + c: the reconstruction is
    Φ·(S-1)/160 shifted to the image's mean (the least-squares constant), then scored with the image
    PSNR. `poisson_psnr_affine_*` instead fits scale and offset by least squares (an upper bound).
    """
    dev = ctx.device
    size = cfg["poisson_size"]
    img = load_image(size)
    gt = torch.from_numpy(img).reshape(-1, 1).to(dev)
    target = torch.from_numpy(sobel(10.0 * img)).reshape(-1, 2).to(dev)
    scale = 160.0 / (size - 1)
    coords = get_mgrid(size).to(dev)

    def reconstruct(out: torch.Tensor) -> torch.Tensor:
        rec = out / scale
        return rec - rec.mean() + gt.mean()

    def reconstruct_affine(out: torch.Tensor) -> torch.Tensor:
        o = out - out.mean()
        a = (o * (gt - gt.mean())).sum() / (o * o).sum().clamp_min(1e-20)
        return a * o + gt.mean()

    metrics, arrays = {}, {"gt": to_uint8(img)}
    for kind in cfg["poisson_models"]:
        model = make_model(kind, 2, 1, cfg["hidden"], cfg["hidden_layers"], samples=size).to(dev)

        def step_fn(net, opt):
            opt.zero_grad(set_to_none=True)
            x = coords.clone().requires_grad_(True)
            out = net(x)
            loss = ((gradient(out, x) - target) ** 2).sum(-1).mean()
            loss.backward()
            opt.step()
            return loss.detach(), out.detach()

        def score(model, kind=kind):
            x = coords.clone().requires_grad_(True)
            out = model(x)
            loss = ((gradient(out, x, create_graph=False) - target) ** 2).sum(-1).mean().item()
            out = out.detach()
            final = {f"poisson_psnr_{kind}": psnr(reconstruct(out), gt),
                     f"poisson_psnr_affine_{kind}": psnr(reconstruct_affine(out), gt)}
            ctx.log(cfg["poisson_steps"], task="poisson", model=kind, loss=loss, psnr=final[f"poisson_psnr_{kind}"])
            return final, {kind: to_uint8(reconstruct(out).reshape(size, size))}

        # double backward: torch.compile (AOTAutograd) does not support it, so this fit runs eagerly
        result = fit_and_score(ctx, cfg, "poisson", kind, model, step_fn, cfg["poisson_steps"],
                               lambda out: {"psnr": psnr(reconstruct(out), gt)}, False, score)
        metrics.update(result["metrics"])
        arrays.update({k: v.cpu().numpy() for k, v in result["arrays"].items()})
    ctx.save_arrays("poisson", **arrays)
    return metrics


# -- 4. audio (§4.1, Fig. 3) ------------------------------------------------------------------------
def audio_task(cfg: dict, ctx: RunContext, use_compile: bool) -> dict:
    """Official train_audio.py: MSE on the max-normalized waveform. SIREN's first layer uses
    ω0 = audio_first_omega over the whole clip's [-1, 1] time axis. Scored by MSE and by SNR =
    10·log10(mean(y²) / MSE) (0 dB = predicting silence)."""
    dev = ctx.device
    t, y, rate, n_full = load_audio(cfg)
    t, y = t.to(dev), y.to(dev)
    power = (y ** 2).mean().item()

    def scores(out):
        mse = ((out - y) ** 2).mean().item()
        return {"mse": mse, "snr_db": 10.0 * math.log10(power / max(mse, 1e-20))}

    keep = min(len(y), 50_000)  # saved waveform window (float16)
    metrics, arrays = {}, {"gt": y[:keep, 0].cpu().numpy().astype(np.float16),
                           "t": t[:keep, 0].cpu().numpy().astype(np.float32),
                           "rate": np.array(rate)}
    for kind in cfg["audio_models"]:
        model = make_model(kind, 1, 1, cfg["hidden"], cfg["hidden_layers"], samples=n_full,
                           first_omega=cfg["audio_first_omega"]).to(dev)

        def step_fn(net, opt):
            return mse_step(net, opt, t, y)

        def score(model, kind=kind):
            with torch.no_grad():
                out = model(t)
            s = scores(out)
            ctx.log(cfg["audio_steps"], task="audio", model=kind, loss=s["mse"], **s)
            return ({f"audio_mse_{kind}": s["mse"], f"audio_snr_db_{kind}": s["snr_db"]},
                    {kind: out[:keep, 0].cpu().numpy().astype(np.float16)})

        result = fit_and_score(ctx, cfg, "audio", kind, model, step_fn, cfg["audio_steps"], scores, use_compile,
                               score)
        metrics.update(result["metrics"])
        arrays.update({k: v.cpu().numpy() for k, v in result["arrays"].items()})
    ctx.save_arrays("audio", **arrays)
    return metrics


# -- 5. activation statistics at init (§3.2, supplement §1) -----------------------------------------
def activation_task(cfg: dict, ctx: RunContext) -> dict:
    """A deep SIREN (act_depth hidden layers after the first) on act_points inputs in [-1, 1].

    Paper init: the pre-activations ω0·(Wx+b) of every layer after the first stay ≈ N(0, 1)-like
    with the same std at all depths, and every sine output is arcsine(-1, 1) distributed.
    Naive init (nn.Linear's default U(-1/√n, 1/√n)) with plain sin (ω0 = 1): the std shrinks by ~√3
    per layer and the outputs collapse to 0. Naive init with ω0 = 30: pre-activation std ≈ 12, far
    from the N(0, 1) the analysis needs (the network is high-frequency noise at init).
    """
    arcsine = stats.arcsine(loc=-1.0, scale=2.0)
    x = torch.linspace(-1.0, 1.0, cfg["act_points"], device=ctx.device)[:, None]
    gen = torch.Generator().manual_seed(0)
    result, arrays = {}, {}
    for name, init, omega in (("paper", "paper", 30.0), ("naive", "default", 1.0), ("naive30", "default", 30.0)):
        net = Siren(1, 1, cfg["act_width"], cfg["act_depth"], first_omega=omega, hidden_omega=omega,
                    init=init).to(ctx.device)
        pre_std, ks, hists = [], [], []
        for pre, post in net.activations(x):
            post = post.flatten().cpu()
            sample = post[torch.randint(0, post.numel(), (min(post.numel(), 100_000),), generator=gen)]
            pre_std.append(pre.std().item())
            ks.append(stats.kstest(sample.numpy(), arcsine.cdf).statistic)
            hists.append(np.histogram(post.numpy(), bins=50, range=(-1, 1), density=True)[0])
        result[name] = (np.array(pre_std), np.array(ks))
        arrays[f"{name}_pre_std"] = np.array(pre_std, dtype=np.float32)
        arrays[f"{name}_ks"] = np.array(ks, dtype=np.float32)
        arrays[f"{name}_hist"] = np.array(hists, dtype=np.float16)  # (layers, 50) densities on [-1, 1]
    ctx.save_arrays("acts", **arrays)
    paper_std, paper_ks = result["paper"]
    naive_std, naive_ks = result["naive"]
    return {
        # layer 0 sees the raw coordinates; the stationary regime starts at layer 1
        "act_preact_std_ratio_last_first": float(paper_std[-1] / paper_std[1]),
        "act_preact_std_mean": float(paper_std[1:].mean()),
        "act_ks_arcsine_max": float(paper_ks.max()),
        "act_naive_preact_std_ratio_last_first": float(naive_std[-1] / naive_std[1]),
        "act_naive_ks_arcsine_max": float(naive_ks.max()),
        "act_naive30_preact_std_mean": float(result["naive30"][0][1:].mean()),
    }


# -- the contract -----------------------------------------------------------------------------------
def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    metrics: dict[str, float] = {}
    metrics.update(activation_task(cfg, ctx))  # cheap, and depends on nothing

    use_compile = False
    if cfg["compile"]:
        size = cfg["image_size"]
        with torch.random.fork_rng(devices=[]):  # the probe must not shift the fits' random init
            probe = Siren(2, 1, cfg["hidden"], cfg["hidden_layers"]).to(ctx.device)
        target = torch.from_numpy(load_image(size)).reshape(-1, 1).to(ctx.device)
        use_compile = measure_compile(probe, get_mgrid(size).to(ctx.device), target, cfg["lr"], ctx)
        ctx.record_throughput("compile_used", float(use_compile))

    image_metrics, fitted, img = image_task(cfg, ctx, use_compile)
    metrics.update(image_metrics)
    metrics.update(derivative_task(fitted, img, ctx))
    del fitted
    metrics.update(poisson_task(cfg, ctx))
    metrics.update(audio_task(cfg, ctx, use_compile))
    return metrics
