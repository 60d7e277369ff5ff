"""Proxy scores: they rank informative features above noise, are bit-reproducible, and validate inputs."""

from __future__ import annotations

import pytest
import torch

from alsatian_hf.errors import ConfigurationError
from alsatian_hf.scoring import KNN, HeadProbe, HScore, LinearProbe, LogME, get_scorer, score_all


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(240) % 4
    good = torch.cat(
        [
            torch.nn.functional.one_hot(y, 4).float() * 3 + torch.randn(240, 4, generator=g),
            torch.randn(240, 12, generator=g),
        ],
        1,
    )
    noise = torch.randn(240, 16, generator=g)
    return y, good, noise


def _score(scorer, x, y):
    return scorer.score(train_features=x[:180], train_labels=y[:180], test_features=x[180:], test_labels=y[180:])


@pytest.mark.parametrize(
    "scorer",
    [LinearProbe(epochs=30), KNN(k=3), KNN(metric="euclidean"), LogME(), HScore(), HeadProbe()],
    ids=["linear", "knn-cos", "knn-l2", "logme", "hscore", "head"],
)
def test_informative_features_score_higher_and_bit_equal(scorer):
    y, good, noise = _data()
    assert _score(scorer, good, y) > _score(scorer, noise, y)
    assert _score(scorer, good, y) == _score(scorer, good.clone(), y.clone())


def test_linear_probe_defaults_follow_shift():
    p = LinearProbe()
    assert (p.lr, p.epochs, p.momentum) == (0.1, 100, 0.0)
    y, good, _ = _data()
    assert _score(p, good, y) > 0.8  # the one-hot signal sits under unit noise: ~0.9 is the ceiling


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (
            dict(
                train_features=torch.zeros(10),
                train_labels=torch.zeros(10),
                test_features=torch.zeros(3, 2),
                test_labels=torch.zeros(3),
            ),
            "train_features",
        ),
        (
            dict(
                train_features=torch.zeros(10, 2),
                train_labels=torch.zeros(9),
                test_features=torch.zeros(3, 2),
                test_labels=torch.zeros(3),
            ),
            "train_labels",
        ),
        (
            dict(
                train_features=torch.zeros(10, 2),
                train_labels=torch.zeros(10),
                test_features=torch.zeros(3, 5),
                test_labels=torch.zeros(3),
            ),
            "test_features",
        ),
        (
            dict(
                train_features=torch.zeros(10, 2),
                train_labels=torch.zeros(10),
                test_features=torch.zeros(3, 2),
                test_labels=torch.zeros(4),
            ),
            "test_labels",
        ),
    ],
)
def test_shape_errors_name_the_argument(kwargs, argument):
    with pytest.raises(ConfigurationError, match=f"`{argument}`"):
        LinearProbe(epochs=1).score(**kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("where", ["train_features", "test_features"])
def test_non_finite_features_are_rejected(bad, where):
    features = {"train_features": torch.zeros(4, 2), "test_features": torch.zeros(4, 2)}
    features[where][2, 1] = bad
    with pytest.raises(ConfigurationError, match="NaN or inf"):
        KNN().score(**features, train_labels=torch.tensor([0, 1, 0, 1]), test_labels=torch.zeros(4))


def test_extreme_finite_features_pass_validation_unchanged():
    from alsatian_hf.scoring._base import validate

    x = torch.tensor([[3.0e38, -3.0e38], [1.0, -1.0], [0.5, 0.0], [-2.0, 2.0]])
    xtr, _, xte, _ = validate(x, torch.tensor([0, 1, 0, 1]), x[:2], torch.tensor([0, 1]))
    assert torch.equal(xtr, x) and torch.equal(xte, x[:2])


def test_get_scorer_by_name_and_bad_kwargs():
    assert isinstance(get_scorer("knn", k=3), KNN)
    with pytest.raises(ConfigurationError, match="scorer"):
        get_scorer("svm")
    with pytest.raises(ConfigurationError, match="scorer_kwargs"):
        get_scorer("linear", nope=1)


def _autograd_probe(xtr, ytr, xte, yte, *, lr, epochs, batch_size, momentum, weight_decay, seed=0):
    """The reference: nn.Linear + CrossEntropyLoss + optim.SGD, with LinearProbe's seeded init and batch order."""
    mean, std = xtr.mean(0, keepdim=True), xtr.std(0, keepdim=True, unbiased=False).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    gen = torch.Generator().manual_seed(seed)
    num_classes = int(max(ytr.max(), yte.max())) + 1
    layer = torch.nn.Linear(xtr.shape[1], num_classes)
    bound = 1.0 / xtr.shape[1] ** 0.5
    with torch.no_grad():
        layer.weight.copy_(torch.empty(num_classes, xtr.shape[1]).uniform_(-bound, bound, generator=gen))
        layer.bias.copy_(torch.empty(num_classes).uniform_(-bound, bound, generator=gen))
    opt = torch.optim.SGD(layer.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    for _ in range(epochs):
        order = torch.randperm(len(xtr), generator=gen)
        for start in range(0, len(xtr), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(layer(xtr[idx]), ytr[idx]).backward()
            opt.step()
    with torch.no_grad():
        return layer(xte).argmax(1)


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 1e-3)])
def test_linear_probe_matches_autograd_sgd(momentum, weight_decay):
    """The closed-form, batched probe makes the same updates as torch's autograd and SGD."""
    y, good, _ = _data()
    x = good + 1.5 * torch.randn(good.shape, generator=torch.Generator().manual_seed(1))  # not separable
    kw = dict(lr=0.1, epochs=20, batch_size=32, momentum=momentum, weight_decay=weight_decay)
    reference = _autograd_probe(x[:180], y[:180], x[180:], y[180:], **kw)
    want = float((reference == y[180:]).float().mean())
    assert 0.3 < want < 1.0
    assert _score(LinearProbe(**kw), x, y) == pytest.approx(want, abs=1 / 60)  # at most one test item flips


def _plain_probe_confidence(xtr, ytr, xte, yte, *, lr, epochs, batch_size, seed=0):
    """LinearProbe's updates in their textbook order, with the mean gradient divided by every batch's size, on
    (models, items, width) stacks: its `tie_break` score (accuracy plus scaled true-class confidence) per model."""
    mean, std = xtr.mean(1, keepdim=True), xtr.std(1, keepdim=True, unbiased=False).clamp_min(1e-6)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    models, n, width = xtr.shape
    gen = torch.Generator().manual_seed(seed)
    classes = int(max(ytr.max(), yte.max())) + 1
    bound = 1.0 / width**0.5
    weight = torch.empty(classes, width).uniform_(-bound, bound, generator=gen).expand(models, -1, -1).clone()
    bias = torch.empty(classes).uniform_(-bound, bound, generator=gen).view(1, -1, 1).expand(models, -1, 1).clone()
    onehot = torch.nn.functional.one_hot(ytr, classes).float().t()
    items = xtr.transpose(0, 1).contiguous()  # the probe's layout: a batch's rows are read by the same kernels
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            xb = items.index_select(0, rows).transpose(0, 1)
            grad = (torch.softmax(torch.baddbmm(bias, weight, xb.transpose(1, 2)), 1) - onehot[:, rows]) / len(rows)
            weight.sub_(torch.bmm(grad, xb), alpha=lr)
            bias.sub_(grad.sum(2, keepdim=True), alpha=lr)
    logits = torch.baddbmm(bias.transpose(1, 2), xte, weight.transpose(1, 2))
    accuracy = (logits.argmax(2) == yte).float().mean(1)
    true = torch.softmax(logits.double(), 2).gather(2, yte.view(1, -1, 1).expand(models, -1, 1)).squeeze(2)
    return (accuracy.double() + true.mean(1) * (0.5 / len(yte))).tolist()


@pytest.mark.parametrize("batch_size", [32, 48], ids=["folded", "divided"])
def test_linear_probe_makes_the_textbook_updates_bit_for_bit(batch_size):
    """Plain SGD folds the division by a power-of-two batch into the step size, which is exact; any other batch
    divides. Either way the probe's confidences equal the textbook order's to the bit (180 items: 32 ends in a
    remainder batch of 20, which divides)."""
    y, good, noise = _data()
    sets = [good + 1.5 * torch.randn(good.shape, generator=torch.Generator().manual_seed(1)), noise]
    kw = dict(lr=0.1, epochs=15, batch_size=batch_size)
    want = _plain_probe_confidence(
        torch.stack([s[:180] for s in sets]), y[:180], torch.stack([s[180:] for s in sets]), y[180:], **kw
    )
    got = LinearProbe(**kw, tie_break=True).score_many(
        train_features=[s[:180] for s in sets], train_labels=y[:180],
        test_features=[s[180:] for s in sets], test_labels=y[180:],
    )  # fmt: skip
    assert got == want
    assert len(set(got)) == 2  # no degenerate probe: the two feature sets score apart


def test_score_many_equals_scoring_one_by_one():
    y, good, noise = _data()
    sets = [good, noise, good * 3 + 1, torch.cat([good, noise], 1)]  # two widths: two groups
    probe = LinearProbe(epochs=10, max_group_bytes=good[:180].numel() * 4)  # groups of one model each, too
    for p in (probe, LinearProbe(epochs=10)):
        many = score_all(
            p,
            train_features=[s[:180] for s in sets],
            train_labels=y[:180],
            test_features=[s[180:] for s in sets],
            test_labels=y[180:],
        )
        assert many == [_score(LinearProbe(epochs=10), s, y) for s in sets]
    knn = KNN(k=3)
    assert score_all(
        knn,
        train_features=[s[:180] for s in sets],
        train_labels=y[:180],
        test_features=[s[180:] for s in sets],
        test_labels=y[180:],
    ) == [_score(knn, s, y) for s in sets]


def _knn_reference(xtr, ytr, xte, yte, *, k, metric):
    """The per-model kNN vote the batched one replaced."""
    xtr, xte = xtr.double(), xte.double()
    if metric == "cosine":
        dist = -(torch.nn.functional.normalize(xte, dim=1) @ torch.nn.functional.normalize(xtr, dim=1).T)
    else:
        dist = torch.cdist(xte, xtr)
    k = min(k, len(xtr))
    labels = ytr[torch.sort(dist, dim=1, stable=True).indices[:, :k]]
    votes = torch.zeros(len(xte), int(max(ytr.max(), yte.max())) + 1, dtype=torch.float64)
    votes.scatter_add_(1, labels, torch.ones_like(labels, dtype=torch.float64) + 1e-6 * torch.linspace(1, 0.5, k))
    return float((votes.argmax(1) == yte).double().mean())


def _logme_reference(xtr, ytr, *, max_iter=11, tol=0.01):
    """The authors' per-class fixed-point loop (You et al., 2021), in float64, as LogME ran it before batching."""
    import math

    fh = xtr.double()
    f = fh.T
    d, n = f.shape
    v, s, vh = torch.linalg.svd(f @ fh, full_matrices=True)
    eps, scores = 1e-5, []
    for c in torch.unique(ytr):
        y = (ytr == c).double()
        alpha, beta = 1.0, 1.0
        lam = alpha / beta
        tmp = vh @ (f @ y)
        for _ in range(max_iter):
            gamma = float((s / (s + lam)).sum())
            m = v @ (tmp * beta / (alpha + beta * s))
            alpha_de = float((m * m).sum())
            alpha = gamma / (alpha_de + eps)
            beta_de = float(((y - fh @ m) ** 2).sum())
            beta = (n - gamma) / (beta_de + eps)
            new_lam = alpha / beta
            if abs(new_lam - lam) / lam < tol:
                break
            lam = new_lam
        evidence = (
            d / 2.0 * math.log(alpha)
            + n / 2.0 * math.log(beta)
            - 0.5 * float(torch.log(alpha + beta * s).sum())
            - beta / 2.0 * (beta_de + eps)
            - alpha / 2.0 * (alpha_de + eps)
            - n / 2.0 * math.log(2 * math.pi)
        )
        scores.append(evidence / n)
    return sum(scores) / len(scores)


def _hscore_reference(xtr, ytr):
    f = xtr.double()
    f = f - f.mean(0, keepdim=True)
    g = torch.zeros_like(f)
    for c in torch.unique(ytr):
        g[ytr == c] = f[ytr == c].mean(0)
    return float(torch.trace(torch.linalg.pinv(f.T @ f / len(f), hermitian=True) @ (g.T @ g / len(f))))


def test_batched_scorers_equal_the_per_model_references():
    """kNN, LogME and H-score score all feature sets of a width as one batched computation, within 1e-5 of the
    per-model code they replaced; groups of one model (a tiny `max_group_bytes`) agree too."""
    y, good, noise = _data()
    g = torch.Generator().manual_seed(3)
    sets = [good, noise, good * 3 + 1, good + 2 * torch.randn(good.shape, generator=g), torch.cat([good, noise], 1)]
    split = dict(
        train_features=[s[:180] for s in sets],
        train_labels=y[:180],
        test_features=[s[180:] for s in sets],
        test_labels=y[180:],
    )
    tiny = sets[0][:180].numel() * 4
    for knn in (KNN(k=3), KNN(k=5, metric="euclidean"), KNN(k=3, max_group_bytes=tiny)):
        want = [_knn_reference(s[:180], y[:180], s[180:], y[180:], k=knn.k, metric=knn.metric) for s in sets]
        assert knn.score_many(**split) == pytest.approx(want, abs=1e-5)
    for logme in (LogME(), LogME(max_iter=3, tol=1e-3), LogME(max_group_bytes=tiny)):
        want = [_logme_reference(s[:180], y[:180], max_iter=logme.max_iter, tol=logme.tol) for s in sets]
        assert logme.score_many(**split) == pytest.approx(want, abs=1e-5)
    for hscore in (HScore(shrinkage=None), HScore(shrinkage=None, max_group_bytes=tiny)):
        assert hscore.score_many(**split) == pytest.approx(
            [_hscore_reference(s[:180], y[:180]) for s in sets], abs=1e-5
        )
    for hscore in (HScore(), HScore(max_group_bytes=tiny)):
        assert hscore.score_many(**split) == pytest.approx(
            [_shrunk_hscore_reference(s[:180], y[:180]) for s in sets], rel=1e-6
        )


def _shrunk_hscore_reference(xtr, ytr):
    """Ibrahim et al.'s regularised H-score in numpy, with scikit-learn's Ledoit-Wolf weight."""
    import numpy as np
    from sklearn.covariance import ledoit_wolf_shrinkage

    f = xtr.double().numpy()
    f = f - f.mean(0)
    y = ytr.numpy()
    cov_f = f.T @ f / len(f)
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(0)
    a = ledoit_wolf_shrinkage(f, assume_centered=True)
    shrunk = (1 - a) * cov_f + a * np.trace(cov_f) / f.shape[1] * np.eye(f.shape[1])
    return float(np.trace(np.linalg.solve(shrunk, (1 - a) * g.T @ g / len(f))))


def _separable(n: int, d: int, classes: int, spread: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centers = torch.randn(classes, d, generator=g, dtype=torch.float64)
    return centers[y] * spread + torch.randn(n, d, generator=g, dtype=torch.float64), y


def test_shrunk_hscore_separates_feature_sets_with_fewer_items_than_dimensions():
    """N = 40 < D = 100, 4 classes: the pseudo-inverse H-score gives both sets C - 1 (a tie), the shrunk one
    ranks the more separable set first, on train and on held-out items alike."""
    good, y = _separable(40, 100, 4, spread=2.0, seed=0)
    bad, _ = _separable(40, 100, 4, spread=0.3, seed=1)
    split = dict(train_features=[good, bad], train_labels=y, test_features=[good, bad], test_labels=y)
    assert HScore(shrinkage=None).score_many(**split) == pytest.approx([3.0, 3.0], abs=1e-6)
    shrunk = HScore().score_many(**split)
    assert shrunk[0] > 2 * shrunk[1] > 0
    assert HScore(shrinkage=0.5).score_many(**split)[0] > HScore(shrinkage=0.5).score_many(**split)[1]
    with pytest.raises(ConfigurationError, match="shrinkage"):
        HScore(shrinkage=1.5)


def test_ledoit_wolf_weight_equals_scikit_learn():
    from sklearn.covariance import ledoit_wolf_shrinkage as reference

    from alsatian_hf.scoring.hscore import ledoit_wolf_shrinkage

    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 50, 80, generator=g, dtype=torch.float64) * torch.rand(
        3, 1, 80, generator=g, dtype=torch.float64
    )
    x = x - x.mean(1, keepdim=True)
    want = [reference(xi.numpy(), assume_centered=True) for xi in x]
    assert ledoit_wolf_shrinkage(x).tolist() == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("n, d", [(60, 20), (30, 50)], ids=["n>d", "n<d"])
def test_logme_is_the_maximised_log_evidence_of_bayesian_linear_regression(n, d):
    """LogME's definition, computed independently of its fixed-point algorithm: for each one-vs-rest target y,
    max over (alpha, beta) of log N(y | 0, I / beta + F F^T / alpha), over N, averaged over classes (float64,
    scipy's optimiser). Run to convergence without the authors' `eps`, LogME reaches the same maximum; with it,
    slightly less."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(7)
    y = torch.arange(n) % 3
    f = torch.randn(n, d, generator=g, dtype=torch.float64) + torch.randn(3, d, generator=g, dtype=torch.float64)[y]
    fn = f.numpy()

    def neg_log_evidence(log_ab, target):
        alpha, beta = np.exp(log_ab)
        cov = np.eye(n) / beta + fn @ fn.T / alpha
        return -multivariate_normal(mean=np.zeros(n), cov=cov).logpdf(target)

    want = []
    for c in range(3):
        target = (y.numpy() == c).astype(np.float64)
        best = min(
            (minimize(neg_log_evidence, x0, args=(target,), method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
             for x0 in ([0.0, 0.0], [3.0, 1.0], [-2.0, 2.0])),
            key=lambda r: r.fun,
        )  # fmt: skip
        want.append(-best.fun / n)
    split = dict(train_features=f, train_labels=y, test_features=f, test_labels=y)
    assert LogME(max_iter=500, tol=1e-12, eps=0.0).score(**split) == pytest.approx(float(np.mean(want)), abs=1e-7)
    assert float(np.mean(want)) - 1e-3 < LogME(max_iter=500, tol=1e-12).score(**split) < float(np.mean(want))


def test_pseudo_inverse_hscore_is_defined_where_the_symmetric_eigensolver_fails():
    """Sparse features (141 live dimensions of 1280, 27 items: what a tiny zoo's EfficientNet produced) make
    oneMKL's eigh fail to converge on cov(f); the pseudo-inverse then comes from the SVD instead."""
    g = torch.Generator().manual_seed(13)
    x = torch.zeros(27, 1280)
    live = torch.randperm(1280, generator=g)[:141]
    x[:, live] = torch.randn(27, 141, generator=g).relu() * torch.rand(141, generator=g)
    y = torch.arange(27) % 3
    f = x.double() - x.double().mean(0)
    cov_f = f.T @ f / 27
    means = torch.stack([f[y == c].mean(0) for c in range(3)])
    want = torch.trace(torch.linalg.pinv(cov_f) @ (means.T @ means / 3)).item()  # 9 items a class
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # where oneMKL's eigh fails on it, on this machine (on 2 threads it converges)
    try:
        got = HScore(shrinkage=None).score(train_features=x, train_labels=y, test_features=x, test_labels=y)
    finally:
        torch.set_num_threads(threads)
    assert got == pytest.approx(want, abs=1e-6) and 0 < got <= 2 + 1e-9  # at most C - 1


def test_batch_scorer_protocol_is_declared_and_batched_scores_equal_single_ones():
    from alsatian_hf.scoring import BatchScorer, Scorer

    y, good, noise = _data()
    assert all(isinstance(s, BatchScorer) for s in (LinearProbe(), KNN(), LogME(), HScore(), HeadProbe()))
    assert all(isinstance(s, Scorer) for s in (LinearProbe(), KNN(), LogME(), HScore(), HeadProbe()))
    probe = LinearProbe(epochs=10)
    many = score_all(
        probe,
        train_features=[good[:180], noise[:180]],
        train_labels=y[:180],
        test_features=[good[180:], noise[180:]],
        test_labels=y[180:],
        device="cpu",
    )
    assert many == [_score(probe, good, y), _score(probe, noise, y)]


def test_scorer_objects_are_checked_against_the_protocol():
    from alsatian_hf.scoring import check_scorer

    class Good:
        def score(self, *, train_features, train_labels, test_features, test_labels, device="cpu"):
            return 1.0

    class Kwargs:
        def score(self, **kwargs):
            return 1.0

    class NoDevice:
        def score(self, *, train_features, train_labels, test_features, test_labels):
            return 1.0

    assert (
        get_scorer(Good()).score(train_features=None, train_labels=None, test_features=None, test_labels=None) == 1.0
    )
    check_scorer(Kwargs())
    with pytest.raises(ConfigurationError, match="`device`"):
        check_scorer(NoDevice())
    with pytest.raises(ConfigurationError, match="scorer_kwargs"):
        get_scorer(Good(), k=3)


@pytest.mark.parametrize("make", [lambda **kw: LinearProbe(epochs=20, **kw), HeadProbe], ids=["linear", "head"])
def test_tie_break_orders_equal_accuracies_by_confidence_and_keeps_the_rest(make):
    y, good, noise = _data()
    # both separable: equal accuracy, but the centred one sits further from the boundary
    sharp = torch.nn.functional.one_hot(y, 4).float() * 10 + 0.1 * torch.randn(
        240, 4, generator=torch.Generator().manual_seed(1)
    )
    blunt = torch.nn.functional.one_hot(y, 4).float() * 10 + 1.0 * torch.randn(
        240, 4, generator=torch.Generator().manual_seed(1)
    )
    sets = [sharp, blunt, noise[:, :4]]
    split = dict(train_features=[s[:180] for s in sets], train_labels=y[:180],
                 test_features=[s[180:] for s in sets], test_labels=y[180:])  # fmt: skip
    plain = make().score_many(**split)
    broken = make(tie_break=True).score_many(**split)
    assert plain[0] == plain[1] == 1.0 and plain[2] < 1.0  # the tie, and a worse set
    assert broken[0] > broken[1]  # the confident probe first
    for p, b in zip(plain, broken):  # within half an accuracy step above the accuracy itself
        assert p <= b < p + 0.5 / 60 + 1e-7
    assert sorted(range(3), key=lambda i: -broken[i]) == [0, 1, 2]


@pytest.mark.gpu
def test_batched_scorers_on_cuda_equal_cpu():
    y, good, noise = _data()
    split = dict(
        train_features=[good[:180], noise[:180], good[:180] * 2],
        train_labels=y[:180],
        test_features=[good[180:], noise[180:], good[180:] * 2],
        test_labels=y[180:],
    )
    for scorer in (LinearProbe(epochs=20), KNN(k=3), LogME(), HScore(), HeadProbe()):
        cpu = scorer.score_many(**split, device="cpu")
        assert scorer.score_many(**split, device="cuda") == pytest.approx(cpu, abs=1e-4), type(scorer).__name__


def test_shrunk_hscore_is_equal_on_one_and_two_threads():
    """oneMKL's batched float64 LU solve failed on 2 threads for such stacks; the Cholesky solve must not."""
    g = torch.Generator().manual_seed(5)
    y = torch.arange(320) % 4
    sets = [torch.randn(320, 384, generator=g) * torch.rand(384, generator=g) + i for i in range(5)]
    split = dict(train_features=sets, train_labels=y, test_features=sets, test_labels=y)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = HScore().score_many(**split)
        torch.set_num_threads(2)
        two = HScore().score_many(**split)
    finally:
        torch.set_num_threads(threads)
    assert two == pytest.approx(one, rel=1e-9)


def test_head_probe_trains_each_head_as_if_alone_and_ignores_feature_scale():
    """The head probe: feature sets scored together get the scores each gets alone; a set scaled by 10
    scores the same (standardised features); better-separated features score higher."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(30)
    yte = torch.arange(4).repeat(10)

    def features(separation: float, labels: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(labels), 16, generator=gen) + separation * torch.eye(16)[labels]

    sets = [(features(k, y), features(k, yte)) for k in (0.3, 1.0, 3.0)]
    together = HeadProbe().score_many(train_features=[a for a, _ in sets], train_labels=y,
                                      test_features=[b for _, b in sets], test_labels=yte)  # fmt: skip
    alone = [HeadProbe().score(train_features=a, train_labels=y, test_features=b, test_labels=yte) for a, b in sets]
    assert together == alone
    assert together[0] < together[1] < together[2], together
    scaled = HeadProbe().score(train_features=sets[1][0] * 10, train_labels=y, test_features=sets[1][1] * 10,
                               test_labels=yte)  # fmt: skip
    assert scaled == pytest.approx(alone[1], abs=1 / len(yte))  # at most one test item apart (float rounding)


@pytest.mark.parametrize("total_steps", [1, 7, 250])
def test_head_probe_schedule_is_transformers_cosine_decay_bit_for_bit(total_steps):
    """`cosine_decay` restates transformers' cosine schedule (no warmup) so that scoring needs no transformers
    import: every step's lr equals the original's exactly, so the card's `head` rows still hold."""
    from transformers import get_cosine_schedule_with_warmup

    from alsatian_hf.scoring.head import cosine_decay

    def lrs(make) -> list[float]:
        opt = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=1e-2)
        sched, seen = make(opt), []
        for _ in range(total_steps + 1):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return seen

    ours = lrs(lambda opt: cosine_decay(opt, total_steps))
    assert ours == lrs(lambda opt: get_cosine_schedule_with_warmup(opt, 0, total_steps))
    assert ours[0] == 1e-2 and ours[-1] == 0.0


def test_head_probe_scores_without_importing_transformers():
    """A timm-only search that scores with `head` must not pay transformers' import (0.7-0.9 s) to score."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from alsatian_hf.scoring import HeadProbe\n"
        "y = torch.arange(2).repeat(8)\n"
        "HeadProbe().score(train_features=torch.randn(16, 4), train_labels=y, test_features=torch.randn(16, 4),"
        " test_labels=y)\n"
        "print('transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
