"""Non-negative matrix factorization by multiplicative updates.

Lee & Seung (2001), "Algorithms for non-negative matrix factorization", NIPS 13, and
Lee & Seung (1999), "Learning the parts of objects by non-negative matrix factorization", Nature 401.

Given a non-negative data matrix V (n × m: here one column per image, one row per pixel), find
non-negative W (n × r, the *basis images*) and H (r × m, the *encodings*) with V ≈ WH.
The 2001 paper measures the quality of WH with two costs and gives one multiplicative rule for each:

    Euclidean:       ‖V − WH‖² = Σ_iμ (V_iμ − (WH)_iμ)²
    KL divergence:   D(V‖WH)  = Σ_iμ (V_iμ log(V_iμ / (WH)_iμ) − V_iμ + (WH)_iμ)

Theorems 1 and 2 prove that each cost is non-increasing under its rule. A rule multiplies every
entry by a non-negative factor, so W and H that start positive stay non-negative: there is no
projection and no step size. Read this file top to bottom: costs, the two rules, a loop that runs
them, then the tools the experiments use to judge the result (PCA, sparsity, KKT residual, matching).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

# A denominator that is exactly 0 is replaced by this number, as scikit-learn's 'mu' solver does
# (`denominator[denominator == 0] = EPSILON`, the float32 machine epsilon), so that our iterates
# and sklearn's are the same numbers. It only matters when a whole row/column has collapsed to 0.
EPS = float(np.finfo(np.float32).eps)


def _nonzero(denominator: torch.Tensor) -> torch.Tensor:
    """Replace exact zeros by EPS, in place (sklearn's guard against 0/0).

    Denominators are sums of non-negative terms, so "any zero" is "min == 0": one cheap pass that
    skips the ~5× dearer masked write in the usual case where there is nothing to replace.
    """
    if denominator.min() == 0:
        denominator.masked_fill_(denominator == 0, EPS)
    return denominator


# Scratch space. The KL rule and both costs need n×m temporaries (WH, V/WH, V − WH): 7 MB each on
# the faces. Allocating them afresh at every iteration makes the C allocator hand pages back to the
# OS and fault them in again (~1,700 page faults per matrix, a third of an iteration's time on CPU),
# so a loop allocates two once and passes them in. Every function also works without (work=None).
def workspace(V: torch.Tensor) -> torch.Tensor:
    """Two n×m scratch matrices, work[0] and work[1], shaped and typed like V."""
    return torch.empty((2, *V.shape), dtype=V.dtype, device=V.device)


def _scratch(work: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if work is None else work[i]             # `out=None` makes torch allocate


# ------------------------------------------------------------------------------------------------
# 1. The two costs (Section 3 of the 2001 paper), in float64: the monotonicity check compares
#    consecutive values to ~1e-9 relative, far below float32 resolution.
# ------------------------------------------------------------------------------------------------
def euclidean_objective(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, work=None) -> float:
    """‖V − WH‖², the squared Frobenius distance (no ½)."""
    V, W, H = V.double(), W.double(), H.double()
    residual = torch.mm(W, H, out=_scratch(work, 0)).sub_(V)
    return float(residual.square_().sum())


def kl_objective(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, work=None) -> float:
    """D(V‖WH) = Σ V log(V/WH) − V + WH, with 0·log 0 = 0 (zeros in V are allowed)."""
    V, W, H = V.double(), W.double(), H.double()
    WH = torch.mm(W, H, out=_scratch(work, 0)).clamp_min_(torch.finfo(torch.float64).tiny)  # no 0/0
    # Summed per entry, not as Σ V log V − Σ V log WH − ...: those sums are large and nearly cancel
    # when WH ≈ V, and their rounding error would swamp the small per-iteration decrease.
    terms = torch.div(V, WH, out=_scratch(work, 1))
    torch.xlogy(V, terms, out=terms)                     # V log(V/WH), in place
    return float(terms.add_(WH).sub_(V).sum())


# ------------------------------------------------------------------------------------------------
# 2. The multiplicative rules. Both update H first, then W with the new H (the order the paper
#    writes them in; sklearn, which sees Vᵀ ≈ HᵀWᵀ, updates its "W" = our Hᵀ first too).
#    Everything is in place: the factors never leave their storage.
# ------------------------------------------------------------------------------------------------
def euclidean_update(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, work=None) -> None:
    """Theorem 1:  H ← H ∘ (WᵀV) / (WᵀWH),  then  W ← W ∘ (VHᵀ) / (WHHᵀ).

    Equivalent to gradient descent on ‖V − WH‖² with the per-entry step size H / (WᵀWH)
    (Section 5, "multiplicative versus additive update rules"). The products are grouped so that
    no n×m matrix is formed (so `work` is not needed): (WᵀW)H costs r²m, (HHᵀ)Wᵀ costs r²(m + n);
    the two n·m·r products WᵀV and VHᵀ are nearly the whole cost of an iteration.
    The W half is computed transposed, Wᵀ ← Wᵀ ∘ (HVᵀ) / ((HHᵀ)Wᵀ) (the same numbers): with W
    stored column-major (as `random_init` returns it) every product and every element-wise
    operation then reads contiguous memory, which measured fastest. Any layout gives the same result.
    """
    numerator = W.T @ V                                  # r × m
    denominator = _nonzero((W.T @ W) @ H)                # r × m
    H.mul_(numerator.div_(denominator))
    numerator = H @ V.T                                  # r × n = (VHᵀ)ᵀ
    denominator = _nonzero((H @ H.T) @ W.T)              # r × n = (WHHᵀ)ᵀ
    W.T.mul_(numerator.div_(denominator))


def kl_update(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, work=None) -> None:
    """Theorem 2:
        H_aμ ← H_aμ Σ_i W_ia V_iμ/(WH)_iμ / Σ_k W_ka
        W_ia ← W_ia Σ_μ H_aμ V_iμ/(WH)_iμ / Σ_ν H_aν
    In matrix form with R = V / (WH) (element-wise): H ← H ∘ (WᵀR) / (Wᵀ1), W ← W ∘ (RHᵀ) / (1Hᵀ).
    WH is recomputed between the two halves because H has changed. Where WH < EPS it is raised to
    EPS (as sklearn does), which keeps V/WH finite; where V = 0 the ratio is 0 whatever WH is.
    """
    R = torch.mm(W, H, out=_scratch(work, 0))            # n × m: WH, then V / WH in place
    torch.div(V, R.clamp_min_(EPS), out=R)
    H.mul_((W.T @ R).div_(_nonzero(W.sum(dim=0))[:, None]))
    torch.mm(W, H, out=R)
    torch.div(V, R.clamp_min_(EPS), out=R)
    W.mul_((R @ H.T).div_(_nonzero(H.sum(dim=1))[None, :]))


RULES = {
    "euclidean": (euclidean_update, euclidean_objective),
    "kl": (kl_update, kl_objective),
}


def random_init(V: torch.Tensor, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random *positive* W, H (the paper starts from random positive matrices).

    Entries are uniform on (0, s] with s chosen so that E[(WH)_iμ] = mean(V): r · (s/2)² = mean(V).
    `1 - rand` maps torch's [0, 1) to (0, 1], so no entry starts at exactly 0 (a zero never moves).
    W is drawn as Wᵀ (r × n) and returned transposed, i.e. stored column-major (see euclidean_update).
    """
    n, m = V.shape
    scale = 2.0 * math.sqrt(float(V.mean()) / rank)
    Wt = (1 - torch.rand(rank, n, generator=generator, dtype=torch.float64)) * scale
    H = (1 - torch.rand(rank, m, generator=generator, dtype=torch.float64)) * scale
    return Wt.to(V).T, H.to(V)


def factorize(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, rule: str, iterations: int):
    """Run `iterations` updates of `rule` on copies of W, H. Returns (W, H, objective per step).

    objectives[t] is the cost after t iterations (objectives[0] is the cost at the start).
    The experiments in runner.py run the same loop with logging; this is the bare algorithm.
    """
    update, objective = RULES[rule]
    W, H, work = W.clone(), H.clone(), workspace(V)
    objectives = [objective(V, W, H, work)]
    for _ in range(iterations):
        update(V, W, H, work)
        objectives.append(objective(V, W, H, work))
    return W, H, objectives


def max_relative_increase(objectives: list[float]) -> float:
    """max_t (loss[t+1] − loss[t]) / |loss[t]|: ≤ 0 when the cost never goes up (Theorems 1, 2)."""
    loss = np.asarray(objectives, dtype=np.float64)
    if len(loss) < 2:
        return 0.0
    return float(np.max((loss[1:] - loss[:-1]) / np.abs(loss[:-1])))


# ------------------------------------------------------------------------------------------------
# 3. What the learned factors are compared with: PCA (the Nature paper's Fig. 1 "eigenfaces").
# ------------------------------------------------------------------------------------------------
def pca_basis(V: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-`rank` principal directions of the columns of V (n × rank, orthonormal) and the mean.

    PCA bases are the left singular vectors of the centred data; they have both signs.
    """
    mean = V.mean(dim=1, keepdim=True)
    U, _, _ = torch.linalg.svd(V - mean, full_matrices=False)
    return U[:, :rank], mean


def pca_objective(V: torch.Tensor, basis: torch.Tensor, mean: torch.Tensor) -> float:
    """‖V − (mean + projection onto the basis)‖², the best any rank-r affine fit can do."""
    V, basis, mean = V.double(), basis.double(), mean.double()
    centred = V - mean
    return float(torch.sum((centred - basis @ (basis.T @ centred)) ** 2))


# ------------------------------------------------------------------------------------------------
# 4. Sparsity of basis vectors (columns). "Parts-based" = each basis image is mostly zero.
# ------------------------------------------------------------------------------------------------
def hoyer_sparsity(B: torch.Tensor) -> float:
    """Hoyer (2004): (√n − ‖w‖₁/‖w‖₂) / (√n − 1) per column w, averaged over non-zero columns.

    1 for a vector with a single non-zero entry, 0 for a vector whose entries all have the same
    magnitude. Uses |w|, so it applies to signed PCA bases too.
    """
    B = B.double()
    n = B.shape[0]
    l1, l2 = B.abs().sum(dim=0), torch.linalg.vector_norm(B, dim=0)
    keep = l2 > 0
    if not bool(keep.any()):
        return 0.0
    root_n = math.sqrt(n)
    return float(((root_n - l1[keep] / l2[keep]) / (root_n - 1)).mean())


def near_zero_fraction(B: torch.Tensor, threshold: float = 0.01) -> float:
    """Fraction of entries with |w_i| < threshold · max_i |w_i|, averaged over non-zero columns."""
    A = B.double().abs()
    peak = A.max(dim=0).values
    keep = peak > 0
    if not bool(keep.any()):
        return 0.0
    return float((A[:, keep] < threshold * peak[keep]).double().mean())


# ------------------------------------------------------------------------------------------------
# 5. Optimality (KKT) and recovery of known factors.
# ------------------------------------------------------------------------------------------------
def gradients(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, rule: str):
    """∂cost/∂W, ∂cost/∂H (up to a positive constant, which the KKT conditions do not see)."""
    V, W, H = V.double(), W.double(), H.double()
    WH = W @ H
    if rule == "euclidean":
        E = WH - V                                   # ∇ of ½‖V − WH‖²: (WH − V)Hᵀ, Wᵀ(WH − V)
    else:
        E = 1.0 - V / WH.clamp_min(EPS)              # ∇ of D(V‖WH): (1 − V/WH)Hᵀ, Wᵀ(1 − V/WH)
    return E @ H.T, W.T @ E


def kkt_residual(V: torch.Tensor, W: torch.Tensor, H: torch.Tensor, rule: str) -> float:
    """‖min(W, ∇_W)‖ + ‖min(H, ∇_H)‖ (Frobenius): zero iff W ≥ 0, ∇ ≥ 0 and W ∘ ∇ = 0 (KKT).

    The paper's fixed points (Theorems 1, 2: the cost is invariant iff at a stationary point)
    satisfy these conditions; the residual says how far an iterate is from one.
    """
    gW, gH = gradients(V, W, H, rule)
    return float(torch.linalg.norm(torch.minimum(W.double(), gW)) + torch.linalg.norm(torch.minimum(H.double(), gH)))


def matched_cosine(true: torch.Tensor, learned: torch.Tensor) -> float:
    """Mean cosine similarity between the columns of `true` and `learned` after the best
    one-to-one matching (Hungarian algorithm): 1 when every true factor is found up to scale."""
    a = true.double() / torch.linalg.vector_norm(true.double(), dim=0).clamp_min(1e-300)
    b = learned.double() / torch.linalg.vector_norm(learned.double(), dim=0).clamp_min(1e-300)
    similarity = (a.T @ b).cpu().numpy()
    rows, cols = linear_sum_assignment(-similarity)
    return float(similarity[rows, cols].mean())
