"""Unit tests of the multiplicative NMF rules (reproductions/nmf/nmf.py); no data files, no harness."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from reproductions.nmf import nmf
from reproductions.nmf.runner import as_images, preprocess_faces


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread is fastest, and robust when the machine is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def positive(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=torch.float64) + 0.1


# -- one step against the paper's formulas, entry by entry -----------------------------------------
def test_euclidean_step_matches_formula_by_hand():
    V, W, H = positive(4, 5, seed=1), positive(4, 3, seed=2), positive(3, 5, seed=3)
    n, m, r = 4, 5, 3
    Wn, Hn = W.clone(), H.clone()
    # H_aμ ← H_aμ (WᵀV)_aμ / (WᵀWH)_aμ
    for a in range(r):
        for mu in range(m):
            num = sum(W[i, a] * V[i, mu] for i in range(n))
            den = sum(W[i, a] * W[i, b] * H[b, mu] for i in range(n) for b in range(r))
            Hn[a, mu] = H[a, mu] * num / den
    # W_ia ← W_ia (VHᵀ)_ia / (WHHᵀ)_ia, with the new H
    for i in range(n):
        for a in range(r):
            num = sum(V[i, mu] * Hn[a, mu] for mu in range(m))
            den = sum(W[i, b] * Hn[b, mu] * Hn[a, mu] for b in range(r) for mu in range(m))
            Wn[i, a] = W[i, a] * num / den
    nmf.euclidean_update(V, W, H)
    torch.testing.assert_close(H, Hn, rtol=1e-12, atol=0)
    torch.testing.assert_close(W, Wn, rtol=1e-12, atol=0)


def test_kl_step_matches_formula_by_hand():
    V, W, H = positive(4, 5, seed=4), positive(4, 3, seed=5), positive(3, 5, seed=6)
    V[0, 0] = 0.0  # a zero in the data
    n, m, r = 4, 5, 3
    Wn, Hn = W.clone(), H.clone()
    WH = W @ H
    # H_aμ ← H_aμ Σ_i W_ia V_iμ/(WH)_iμ / Σ_k W_ka
    for a in range(r):
        for mu in range(m):
            Hn[a, mu] = H[a, mu] * sum(W[i, a] * V[i, mu] / WH[i, mu] for i in range(n)) / W[:, a].sum()
    WH = W @ Hn
    # W_ia ← W_ia Σ_μ H_aμ V_iμ/(WH)_iμ / Σ_ν H_aν
    for i in range(n):
        for a in range(r):
            Wn[i, a] = W[i, a] * sum(Hn[a, mu] * V[i, mu] / WH[i, mu] for mu in range(m)) / Hn[a, :].sum()
    nmf.kl_update(V, W, H)
    torch.testing.assert_close(H, Hn, rtol=1e-12, atol=0)
    torch.testing.assert_close(W, Wn, rtol=1e-12, atol=0)


def test_objectives_by_hand():
    V = torch.tensor([[1.0, 0.0], [2.0, 3.0]], dtype=torch.float64)
    W = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    H = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    WH = W @ H  # [[1, .5], [2, 1]]
    assert nmf.euclidean_objective(V, W, H) == pytest.approx(0 + 0.25 + 0 + 4)
    expected_kl = (0 - 1 + 1) + (0 - 0 + 0.5) + (2 * math.log(1) - 2 + 2) + (3 * math.log(3) - 3 + 1)
    assert nmf.kl_objective(V, W, H) == pytest.approx(expected_kl, rel=1e-14)
    assert nmf.kl_objective(V, W, H) >= 0 and float(WH.min()) > 0
    assert nmf.kl_objective(V, V[:, :1] * 0 + 1, V[:1] * 0 + 1) > 0
    # zero at an exact factorization, for both costs
    assert nmf.euclidean_objective(WH, W, H) == 0.0
    assert nmf.kl_objective(WH, W, H) == pytest.approx(0.0, abs=1e-15)


# -- Theorems 1 and 2 on random data ----------------------------------------------------------------
@pytest.mark.parametrize("rule", ["euclidean", "kl"])
def test_objective_never_increases_and_factors_stay_nonnegative(rule):
    g = torch.Generator().manual_seed(7)
    V = torch.rand(30, 40, generator=g, dtype=torch.float64)
    W, H = nmf.random_init(V, 5, g)
    update, objective = nmf.RULES[rule]
    losses = [objective(V, W, H)]
    for _ in range(300):
        update(V, W, H)
        losses.append(objective(V, W, H))
        assert float(W.min()) >= 0 and float(H.min()) >= 0
    assert nmf.max_relative_increase(losses) <= 1e-9
    assert losses[-1] < 0.5 * losses[0]  # and it actually goes down


def test_max_relative_increase_detects_an_increase():
    assert nmf.max_relative_increase([4.0, 2.0, 1.0]) == pytest.approx(-0.5)
    assert nmf.max_relative_increase([4.0, 2.0, 2.2]) == pytest.approx(0.1)


def test_kl_rule_with_zeros_in_the_data():
    g = torch.Generator().manual_seed(8)
    V = torch.rand(20, 25, generator=g, dtype=torch.float64)
    V[V < 0.4] = 0.0          # ~40 % zeros
    V[3, :] = 0.0             # an empty row
    V[:, 5] = 0.0             # an empty column
    W, H = nmf.random_init(V, 4, g)
    W, H, losses = nmf.factorize(V, W, H, "kl", 200)
    assert all(math.isfinite(x) for x in losses)
    assert torch.isfinite(W).all() and torch.isfinite(H).all()
    assert float(W.min()) >= 0 and float(H.min()) >= 0
    assert nmf.max_relative_increase(losses) <= 1e-9
    assert float((W @ H)[3].max()) < 1e-3 * float((W @ H).max())  # the empty row is fitted by ~0


# -- scikit-learn's 'mu' solver: same iterates --------------------------------------------------------
def sklearn_mu(V, W, H, iterations):
    """sklearn factors X = Vᵀ ≈ W_sk H_sk, so W_sk = Hᵀ and H_sk = Wᵀ."""
    est = NMF(n_components=W.shape[1], solver="mu", beta_loss="frobenius", init="custom",
              max_iter=iterations, tol=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        W_sk = est.fit_transform(V.T.numpy().copy(), W=H.T.numpy().copy(), H=W.T.numpy().copy())
    return torch.from_numpy(est.components_.T.copy()), torch.from_numpy(W_sk.T.copy()), est.reconstruction_err_ ** 2


def test_agrees_with_sklearn_mu():
    g = torch.Generator().manual_seed(9)
    V = torch.rand(25, 35, generator=g, dtype=torch.float64)
    W0, H0 = nmf.random_init(V, 6, g)
    W, H, losses = nmf.factorize(V, W0, H0, "euclidean", 10)
    for k in (1, 10):
        W_sk, H_sk, objective_sk = sklearn_mu(V, W0, H0, k)
        Wk, Hk, _ = nmf.factorize(V, W0, H0, "euclidean", k)
        torch.testing.assert_close(Wk, W_sk, rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(Hk, H_sk, rtol=1e-10, atol=1e-14)
        assert losses[k] == pytest.approx(objective_sk, rel=1e-10)


def test_zero_denominator_is_handled_like_sklearn():
    g = torch.Generator().manual_seed(10)
    V = torch.rand(8, 9, generator=g, dtype=torch.float64)
    W0, H0 = nmf.random_init(V, 3, g)
    W0[:, 1] = 0.0            # a dead basis vector: (WᵀWH)_1μ = 0 for every μ
    W, H, _ = nmf.factorize(V, W0, H0, "euclidean", 3)
    assert torch.isfinite(W).all() and torch.isfinite(H).all()
    assert float(H[1].abs().max()) == 0.0 and float(W[:, 1].abs().max()) == 0.0
    W_sk, H_sk, _ = sklearn_mu(V, W0, H0, 3)
    torch.testing.assert_close(W, W_sk, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(H, H_sk, rtol=1e-10, atol=1e-14)


# -- sparsity, PCA, KKT, matching ----------------------------------------------------------------------
def test_hoyer_sparsity_known_vectors():
    n = 361
    one_hot = torch.zeros(n, 1, dtype=torch.float64)
    one_hot[17] = 3.0
    constant = torch.full((n, 1), 0.7, dtype=torch.float64)
    signs = torch.tensor([[1.0], [-1.0]] * 8, dtype=torch.float64)  # |w| constant
    assert nmf.hoyer_sparsity(one_hot) == pytest.approx(1.0)
    assert nmf.hoyer_sparsity(constant) == pytest.approx(0.0, abs=1e-12)
    assert nmf.hoyer_sparsity(signs) == pytest.approx(0.0, abs=1e-12)
    half = torch.zeros(4, 1, dtype=torch.float64)
    half[:2] = 1.0            # ‖w‖₁/‖w‖₂ = √2: (2 − √2)/(2 − 1)
    assert nmf.hoyer_sparsity(half) == pytest.approx(2 - math.sqrt(2))
    both = torch.cat([one_hot, constant, torch.zeros(n, 1, dtype=torch.float64)], dim=1)  # zero column ignored
    assert nmf.hoyer_sparsity(both) == pytest.approx(0.5)


def test_near_zero_fraction_known_vectors():
    one_hot = torch.zeros(100, 1, dtype=torch.float64)
    one_hot[3] = 1.0
    assert nmf.near_zero_fraction(one_hot) == pytest.approx(0.99)
    assert nmf.near_zero_fraction(torch.ones(100, 2, dtype=torch.float64)) == 0.0
    ramp = torch.linspace(0, 1, 201, dtype=torch.float64)[:, None]  # 0, .005, ...: two below 0.01
    assert nmf.near_zero_fraction(ramp) == pytest.approx(2 / 201)


def test_pca_basis_is_orthonormal_and_optimal():
    g = torch.Generator().manual_seed(11)
    V = torch.rand(12, 50, generator=g, dtype=torch.float64)
    basis, mean = nmf.pca_basis(V, 4)
    torch.testing.assert_close(basis.T @ basis, torch.eye(4, dtype=torch.float64), rtol=0, atol=1e-12)
    s = torch.linalg.svdvals(V - V.mean(dim=1, keepdim=True))
    assert nmf.pca_objective(V, basis, mean) == pytest.approx(float((s[4:] ** 2).sum()), rel=1e-10)


def test_kkt_residual_zero_at_exact_factorization_and_positive_elsewhere():
    W, H = positive(6, 2, seed=12), positive(2, 7, seed=13)
    V = W @ H
    for rule in ("euclidean", "kl"):
        assert nmf.kkt_residual(V, W, H, rule) == pytest.approx(0.0, abs=1e-12)
        assert nmf.kkt_residual(V, 2 * W, H, rule) > 1e-3


def test_matched_cosine_finds_permuted_scaled_columns():
    true = positive(10, 4, seed=14)
    learned = true[:, [2, 0, 3, 1]] * torch.tensor([3.0, 0.5, 2.0, 7.0], dtype=torch.float64)
    assert nmf.matched_cosine(true, learned) == pytest.approx(1.0)
    other = positive(10, 4, seed=15)
    assert nmf.matched_cosine(true, other) < 0.999


# -- data helpers of the runner ---------------------------------------------------------------------
def test_preprocessing_sets_mean_and_std_to_quarter_then_clips():
    rng = np.random.default_rng(0)
    # 300 dark and 61 bright pixels per image: they map to 0.137 and 0.80, so nothing clips
    X = np.stack([rng.permutation(np.repeat([lo, lo + 40], [300, 61])) for lo in (20, 90, 200)], axis=1)
    V = preprocess_faces(X.astype(np.uint8))
    assert 0 < V.min() and V.max() < 1
    np.testing.assert_allclose(V.mean(axis=0), 0.25, rtol=1e-12)
    np.testing.assert_allclose(V.std(axis=0), 0.25, rtol=1e-12)
    # one outlying pixel is 19 standard deviations away: clipped to 1 (bright) or 0 (dark)
    X_outlier = np.full((361, 2), 100, dtype=np.uint8)
    X_outlier[5, 0], X_outlier[7, 1] = 255, 0
    V_outlier = preprocess_faces(X_outlier)
    assert V_outlier[5, 0] == 1.0 and V_outlier[7, 1] == 0.0
    assert 0 < V_outlier[0, 0] < 0.25 < V_outlier[0, 1] < 1


def test_images_are_column_major():
    B = torch.arange(361 * 2, dtype=torch.float64).reshape(2, 361).T  # column k = k*361 + 0..360
    images = as_images(B)
    assert images.shape == (2, 19, 19)
    np.testing.assert_array_equal(images[0], np.arange(361).reshape(19, 19, order="F"))


@pytest.mark.parametrize("item, key", [
    ("n_images=5000", "n_images"), ("rank=0", "rank"), ("synthetic_density_w=1.5", "synthetic_density_w"),
    ("iterations=many", "iterations"),
])
def test_bad_settings_are_usage_errors_before_anything_loads(item, key, tmp_path, monkeypatch, capsys):
    from tests.conftest import assert_usage_error
    line = assert_usage_error("nmf", item, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert key in line


def test_a_killed_run_resumes_with_the_same_metrics(tmp_path, monkeypatch):
    from reproductions.nmf import runner
    from tests.conftest import require_datasets
    from tests.resume import kill_then_resume
    require_datasets("cbcl-faces")
    fits, train = [], runner.train
    monkeypatch.setattr(runner, "train", lambda V, W, H, rule, data, *a: fits.append((data, rule)) or
                        train(V, W, H, rule, data, *a))
    cfg = {**runner.CONFIG, **runner.TIERS["smoke"]}
    # 21 log calls per faces rule (steps 0..20): the 30th is inside the KL fit, after the Euclidean stage
    reference, resumed, ctx, _ = kill_then_resume("nmf", runner.run, cfg, tmp_path, kill_at_log_call=30)
    every = [("faces", "euclidean"), ("faces", "kl"), ("synthetic", "euclidean"), ("synthetic", "kl")]
    assert fits == every + every[:2] + every[1:]  # the resumed run skipped the finished Euclidean stage
    assert resumed == reference  # bit for bit: every draw comes from seeded generators
    rows = [(r["data"], r["rule"], r["step"]) for r in ctx.curves]
    assert len(rows) == len(set(rows))  # the restored stage's curves are not logged twice
    assert set(ctx.stage_seconds) == {"faces_euclidean", "faces_kl", "synthetic_euclidean", "synthetic_kl", "sklearn"}
