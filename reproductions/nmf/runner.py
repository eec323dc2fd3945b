"""Lee & Seung (2001) multiplicative NMF rules, on CBCL faces (Nature 1999) and on a synthetic matrix.

One seed runs, in order (each phase is checkpointed when it finishes, so `--resume` skips it):

  faces/euclidean, faces/kl   CBCL faces (361 pixels × m images, preprocessed as in the Nature paper),
                              r = 49, both rules from the same random positive init; the objective is
                              evaluated (float64) after every iteration. Bases compared with PCA's.
  synthetic/euclidean, /kl    V = W₀H₀ + 5 % noise with known sparse non-negative W₀, H₀: reconstruction
                              error and how well the columns of W₀ are recovered.
  sklearn                     the Euclidean rule against sklearn.decomposition.NMF(solver="mu") from the
                              same init: objectives at every iteration, and time per iteration.
"""
from __future__ import annotations

import math
import time
import warnings

import numpy as np
import scipy.io
import torch

from common.config import check_range
from common.context import RunContext
from common.data import dataset_file
from reproductions.nmf import nmf

CONFIG = {
    # faces (Nature 1999): all 2,429 CBCL training faces, 49 basis images
    "n_images": 2429,
    "rank": 49,
    "iterations": 5000,             # per rule; the paper gives no count: what a GPU user would run
    "log_every": 10,                # curves: every step up to 100, then every `log_every` steps
    "near_zero_threshold": 0.01,    # sparsity: |w_i| < 1 % of the basis vector's max |w|
    # synthetic matrix with known factors (not in the paper; a check that the rules find parts)
    "synthetic_n": 100,
    "synthetic_m": 500,
    "synthetic_rank": 10,
    "synthetic_density_w": 0.25,    # fraction of non-zero entries of W₀ (sparse "parts")
    "synthetic_density_h": 0.3,     # fraction of non-zero entries of H₀
    "synthetic_noise": 0.05,        # V = W₀H₀ + U(0, noise · mean(W₀H₀)) per entry
    "synthetic_iterations": 20000,
    # scikit-learn comparison (Euclidean rule, float64, CPU)
    "sklearn_iterations": 1000,     # iterations compared objective by objective
    "timing_iterations": 200,       # iterations per timed fit
    "timing_repeats": 15,           # timed fits per implementation (interleaved; the fastest counts; 0: no timing)
}

TIERS = {
    "smoke": {"n_images": 200, "rank": 16, "iterations": 20, "synthetic_iterations": 50,
              "sklearn_iterations": 10, "timing_repeats": 0},   # no timing: smoke metrics are bit-exact
    "cpu": {"iterations": 1000, "synthetic_iterations": 5000, "sklearn_iterations": 200,
            "timing_iterations": 100, "timing_repeats": 15},
}

SEEDS = {"cpu": 5}  # a cpu seed takes under 2 minutes: 5 seeds (the default is 3)

FEW_STEPS = {"iterations": 2, "synthetic_iterations": 2, "sklearn_iterations": 2,
             "timing_iterations": 2, "timing_repeats": 1}

LIBRARIES = ("scikit-learn", "scipy")
DATASETS = ("cbcl-faces",)

SIDE = 19  # CBCL images are 19 × 19
CBCL_FACES = 2429  # training faces in the CBCL set


def validate(cfg: dict) -> None:
    """Everything --set can get wrong, before any data loads (harness contract)."""
    check_range("n_images", cfg["n_images"], 2, CBCL_FACES)
    check_range("rank", cfg["rank"], 1, min(SIDE * SIDE, cfg["n_images"]))
    check_range("synthetic_rank", cfg["synthetic_rank"], 1, min(cfg["synthetic_n"], cfg["synthetic_m"]))
    for key in ("iterations", "log_every", "synthetic_n", "synthetic_m", "synthetic_iterations",
                "sklearn_iterations", "timing_iterations"):
        check_range(key, cfg[key], 1)
    check_range("timing_repeats", cfg["timing_repeats"], 0, what=" (0: no timing)")
    for key in ("near_zero_threshold", "synthetic_density_w", "synthetic_density_h"):
        check_range(key, cfg[key], 1e-12, 1)
    check_range("synthetic_noise", cfg["synthetic_noise"], 0)


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def preprocess_faces(X: np.ndarray) -> np.ndarray:
    """Lee & Seung (1999): "the greyscale intensities of each image were first linearly scaled so
    that the pixel mean and standard deviation were equal to 0.25, and then clipped to the range
    [0,1]". One image per column; population standard deviation."""
    X = X.astype(np.float64)
    V = (X - X.mean(axis=0)) / X.std(axis=0) * 0.25 + 0.25
    return np.clip(V, 0.0, 1.0)


def load_faces(n_images: int) -> torch.Tensor:
    """The first `n_images` CBCL faces as V (361 × n_images, float64), preprocessed."""
    X = scipy.io.loadmat(dataset_file("cbcl-faces", "CBCL.mat"))["X"]  # (361, 2429) uint8, one face per column
    # MATLAB files load column-major; make V row-major like every n×m matrix the loops compute
    # (mixed layouts make element-wise ops such as V − WH several times slower).
    return torch.from_numpy(np.ascontiguousarray(preprocess_faces(X[:, :n_images])))


def as_images(B: torch.Tensor) -> np.ndarray:
    """Columns of B (361 × r) as r images of 19 × 19; the pixels are stored column-major."""
    return B.T.reshape(-1, SIDE, SIDE).transpose(1, 2).float().cpu().numpy()


def synthetic_problem(cfg: dict, generator: torch.Generator):
    """V = W₀H₀ + E with sparse non-negative W₀ (n × r), H₀ (r × m) and uniform noise E ≥ 0.

    The noise keeps the optimum away from an exact fit: at an exact fit the objective reaches the
    float64 rounding floor (~1e-28 here), where 'loss[t+1] ≤ loss[t]' compares rounding errors.
    """
    n, m, r = cfg["synthetic_n"], cfg["synthetic_m"], cfg["synthetic_rank"]
    rand = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    W0 = rand(n, r) * (rand(n, r) < cfg["synthetic_density_w"])
    H0 = rand(r, m) * (rand(r, m) < cfg["synthetic_density_h"])
    clean = W0 @ H0
    V = clean + cfg["synthetic_noise"] * float(clean.mean()) * rand(n, m)
    return V, W0


# ------------------------------------------------------------------------------------------------
# One factorization, logged
# ------------------------------------------------------------------------------------------------
def train(V, W, H, rule: str, data: str, cfg: dict, ctx: RunContext) -> dict:
    """Run `cfg[iterations]` updates of `rule` in place; return the per-phase metrics."""
    update, objective = nmf.RULES[rule]
    iterations = cfg["iterations"] if data == "faces" else cfg["synthetic_iterations"]
    work = nmf.workspace(V)
    losses = [objective(V, W, H, work)]
    min_entry = min(float(W.min()), float(H.min()))
    kkt_start = nmf.kkt_residual(V, W, H, rule)
    ctx.log(0, rule=rule, data=data, objective=losses[0], relative_objective=1.0)
    start = time.perf_counter()
    for t in ctx.progress(range(1, iterations + 1), f"{data}/{rule}", total=iterations):
        update(V, W, H, work)
        losses.append(objective(V, W, H, work))
        min_entry = min(min_entry, float(torch.minimum(W.min(), H.min())))
        if t <= 100 or t % cfg["log_every"] == 0 or t == iterations or not math.isfinite(losses[-1]):
            ctx.log(t, rule=rule, data=data, objective=losses[-1], relative_objective=losses[-1] / losses[0])
    seconds = time.perf_counter() - start
    prefix = f"{data}_{rule}"
    ctx.record_throughput(f"{prefix}_iterations_per_s", iterations / max(seconds, 1e-9))
    return {
        f"{prefix}_max_rel_increase": nmf.max_relative_increase(losses),
        f"{prefix}_min_entry": min_entry,
        f"{prefix}_final_objective": losses[-1],
        f"{prefix}_rel_error": math.sqrt(nmf.euclidean_objective(V, W, H, work) / float(torch.sum(V ** 2))),
        f"{prefix}_kkt_ratio": nmf.kkt_residual(V, W, H, rule) / kkt_start,
    }


# ------------------------------------------------------------------------------------------------
# scikit-learn: same rule, same init, same order (sklearn factors X = Vᵀ ≈ W_sk H_sk with
# W_sk = Hᵀ, H_sk = Wᵀ, and updates W_sk first, i.e. our H first).
# ------------------------------------------------------------------------------------------------
def _sklearn_fit(X: np.ndarray, W_sk: np.ndarray, H_sk: np.ndarray, rank: int, max_iter: int):
    """One public-API fit from a custom init (sklearn overwrites W_sk in place)."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning
    est = NMF(n_components=rank, solver="mu", beta_loss="frobenius", init="custom", max_iter=max_iter, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W_sk = est.fit_transform(X, W=W_sk, H=H_sk)
    return W_sk, est.components_, est.reconstruction_err_ ** 2   # reconstruction_err_ = ‖X − WH‖_F


def compare_sklearn(V: torch.Tensor, W0: torch.Tensor, H0: torch.Tensor, cfg: dict, ctx: RunContext) -> dict:
    from threadpoolctl import threadpool_limits

    V, W0, H0 = (x.detach().to("cpu", torch.float64) for x in (V, W0, H0))
    X, W_sk, H_sk = V.T.numpy().copy(), H0.T.numpy().copy(), W0.T.numpy().copy()   # C-contiguous
    rank = W0.shape[1]
    with threadpool_limits(limits=torch.get_num_threads()):   # sklearn's BLAS gets as many threads as torch
        # (1) objective after every iteration: sklearn refitted one iteration at a time from its last W, H
        ours, theirs = [], []
        W, H, work = W0.clone(), H0.clone(), nmf.workspace(V)
        for _ in ctx.progress(range(cfg["sklearn_iterations"]), "sklearn/agreement"):
            nmf.euclidean_update(V, W, H)
            ours.append(nmf.euclidean_objective(V, W, H, work))
            W_sk, H_sk, err = _sklearn_fit(X, W_sk.copy(), H_sk.copy(), rank, 1)
            theirs.append(err)
        ours, theirs = np.array(ours), np.array(theirs)
        metrics = {
            "sklearn_max_rel_objective_diff": float(np.max(np.abs(ours - theirs) / np.abs(theirs))),
            "sklearn_max_abs_factor_diff": max(float(np.max(np.abs(W.numpy() - H_sk.T))),
                                               float(np.max(np.abs(H.numpy() - W_sk.T)))),
        }
        if cfg["timing_repeats"] == 0:   # timings are the only metrics that differ between two runs
            return metrics

        # (2) time per iteration: one fit of N iterations each, interleaved (who goes first alternates),
        #     the fastest of the repeats (the least disturbed by whatever else the machine runs)
        n = cfg["timing_iterations"]

        def time_ours():
            W, H = W0.clone(), H0.clone()
            start = time.perf_counter()
            for _ in range(n):
                nmf.euclidean_update(V, W, H)
            return time.perf_counter() - start

        def time_sklearn():
            W_sk, H_sk = H0.T.numpy().copy(), W0.T.numpy().copy()
            start = time.perf_counter()
            _sklearn_fit(X, W_sk, H_sk, rank, n)   # includes sklearn's input checks and 2 objective evaluations
            return time.perf_counter() - start

        ours_s, theirs_s = [], []
        for repeat in range(cfg["timing_repeats"]):
            if repeat % 2:
                theirs_s.append(time_sklearn())
                ours_s.append(time_ours())
            else:
                ours_s.append(time_ours())
                theirs_s.append(time_sklearn())
    ours_iter, theirs_iter = min(ours_s) / n, min(theirs_s) / n
    ctx.record_throughput("sklearn_compare_ours_iterations_per_s", 1.0 / ours_iter)
    ctx.record_throughput("sklearn_compare_sklearn_iterations_per_s", 1.0 / theirs_iter)
    return {**metrics, "sklearn_time_ratio": ours_iter / theirs_iter,
            "ours_ms_per_iteration": ours_iter * 1e3, "sklearn_ms_per_iteration": theirs_iter * 1e3}


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------
def run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    # Multiplicative updates drive unused entries of W, H geometrically towards 0, through the
    # subnormal range where x86 float arithmetic is ~100× slower. Flushing subnormals to 0 changes
    # the objective by < 1e-300 and keeps iterations at full speed (restored on exit).
    torch.set_flush_denormal(True)
    try:
        return _run(cfg, ctx)
    finally:
        torch.set_flush_denormal(False)


def _run(cfg: dict, ctx: RunContext) -> dict[str, float]:
    # Everything in float64: Theorems 1 and 2 are checked to 1e-9 relative, below float32 resolution.
    # MPS has no float64; the factorization is small enough to stay on the CPU there.
    dtype = torch.float64
    device = torch.device("cpu") if ctx.device.type == "mps" else ctx.device
    metrics: dict[str, float] = {}
    bases: dict[str, torch.Tensor] = {}

    def phase(key: str, compute):
        """One stage of the run: computed once, its result checkpointed and reused on --resume."""
        state = ctx.stage(key, compute)
        metrics.update(state["metrics"])
        if "basis" in state:
            bases[key] = state["basis"].cpu()

    # -- faces ------------------------------------------------------------------------------------
    V = load_faces(cfg["n_images"]).to(device, dtype)
    rank = cfg["rank"]
    W0, H0 = nmf.random_init(V, rank, torch.Generator().manual_seed(1000 * ctx.seed + 1))

    for rule in ("euclidean", "kl"):
        def fit_faces(rule=rule):
            W, H = W0.clone(), H0.clone()
            phase_metrics = train(V, W, H, rule, "faces", cfg, ctx)
            phase_metrics[f"faces_{rule}_hoyer_sparsity"] = nmf.hoyer_sparsity(W)
            phase_metrics[f"faces_{rule}_near_zero_fraction"] = nmf.near_zero_fraction(W, cfg["near_zero_threshold"])
            return {"metrics": phase_metrics, "basis": W.float().cpu()}
        phase(f"faces_{rule}", fit_faces)

    pca, mean = nmf.pca_basis(V, rank)
    metrics["faces_pca_hoyer_sparsity"] = nmf.hoyer_sparsity(pca)
    metrics["faces_pca_near_zero_fraction"] = nmf.near_zero_fraction(pca, cfg["near_zero_threshold"])
    metrics["faces_pca_rel_error"] = math.sqrt(nmf.pca_objective(V, pca, mean) / float(torch.sum(V ** 2)))
    ctx.save_arrays("bases", nmf_euclidean=as_images(bases["faces_euclidean"]),
                    nmf_kl=as_images(bases["faces_kl"]), pca=as_images(pca))

    # -- synthetic ----------------------------------------------------------------------------
    Vs, W_true = synthetic_problem(cfg, torch.Generator().manual_seed(1000 * ctx.seed + 2))
    Vs, W_true = Vs.to(device, dtype), W_true.to(device, dtype)
    Ws0, Hs0 = nmf.random_init(Vs, cfg["synthetic_rank"], torch.Generator().manual_seed(1000 * ctx.seed + 3))
    for rule in ("euclidean", "kl"):
        def fit_synthetic(rule=rule):
            W, H = Ws0.clone(), Hs0.clone()
            phase_metrics = train(Vs, W, H, rule, "synthetic", cfg, ctx)
            phase_metrics[f"synthetic_{rule}_recovery"] = nmf.matched_cosine(W_true, W)
            return {"metrics": phase_metrics}
        phase(f"synthetic_{rule}", fit_synthetic)

    # -- scikit-learn ---------------------------------------------------------------------------
    phase("sklearn", lambda: {"metrics": compare_sklearn(V, W0, H0, cfg, ctx)})

    # -- claims' summary metrics (each the worst case over what it summarises) --------------------
    for rule in ("euclidean", "kl"):
        metrics[f"{rule}_max_rel_increase"] = max(metrics[f"faces_{rule}_max_rel_increase"],
                                                  metrics[f"synthetic_{rule}_max_rel_increase"])
    metrics["min_factor_entry"] = min(metrics[f"{d}_{r}_min_entry"] for d in ("faces", "synthetic")
                                      for r in ("euclidean", "kl"))
    metrics["faces_nmf_min_hoyer_sparsity"] = min(metrics["faces_euclidean_hoyer_sparsity"],
                                                  metrics["faces_kl_hoyer_sparsity"])
    metrics["faces_nmf_min_near_zero_fraction"] = min(metrics["faces_euclidean_near_zero_fraction"],
                                                      metrics["faces_kl_near_zero_fraction"])
    metrics["synthetic_min_recovery"] = min(metrics["synthetic_euclidean_recovery"],
                                            metrics["synthetic_kl_recovery"])
    metrics["synthetic_max_kkt_ratio"] = max(metrics["synthetic_euclidean_kkt_ratio"],
                                             metrics["synthetic_kl_kkt_ratio"])
    return {k: float(v) for k, v in metrics.items()}
