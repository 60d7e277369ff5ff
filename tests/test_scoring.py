"""Proxy scores: they rank informative features above noise, are bit-reproducible, and validate inputs."""

from __future__ import annotations

import pytest
import torch

from alsatian_hf.errors import ConfigurationError
from alsatian_hf.scoring import KNN, HScore, LinearProbe, LogME, get_scorer


def _data(seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(240) % 4
    good = torch.cat([torch.nn.functional.one_hot(y, 4).float() * 3 + torch.randn(240, 4, generator=g),
                      torch.randn(240, 12, generator=g)], 1)
    noise = torch.randn(240, 16, generator=g)
    return y, good, noise


def _score(scorer, x, y):
    return scorer.score(train_features=x[:180], train_labels=y[:180], test_features=x[180:], test_labels=y[180:])


@pytest.mark.parametrize("scorer", [LinearProbe(epochs=30), KNN(k=3), KNN(metric="euclidean"), LogME(), HScore()],
                         ids=["linear", "knn-cos", "knn-l2", "logme", "hscore"])
def test_informative_features_score_higher_and_bit_equal(scorer):
    y, good, noise = _data()
    assert _score(scorer, good, y) > _score(scorer, noise, y)
    assert _score(scorer, good, y) == _score(scorer, good.clone(), y.clone())


def test_linear_probe_defaults_follow_shift():
    p = LinearProbe()
    assert (p.lr, p.epochs, p.momentum) == (0.1, 100, 0.0)
    y, good, _ = _data()
    assert _score(p, good, y) > 0.8  # the one-hot signal sits under unit noise: ~0.9 is the ceiling


@pytest.mark.parametrize("kwargs, argument", [
    (dict(train_features=torch.zeros(10), train_labels=torch.zeros(10), test_features=torch.zeros(3, 2),
          test_labels=torch.zeros(3)), "train_features"),
    (dict(train_features=torch.zeros(10, 2), train_labels=torch.zeros(9), test_features=torch.zeros(3, 2),
          test_labels=torch.zeros(3)), "train_labels"),
    (dict(train_features=torch.zeros(10, 2), train_labels=torch.zeros(10), test_features=torch.zeros(3, 5),
          test_labels=torch.zeros(3)), "test_features"),
    (dict(train_features=torch.zeros(10, 2), train_labels=torch.zeros(10), test_features=torch.zeros(3, 2),
          test_labels=torch.zeros(4)), "test_labels"),
])
def test_shape_errors_name_the_argument(kwargs, argument):
    with pytest.raises(ConfigurationError, match=f"`{argument}`"):
        LinearProbe(epochs=1).score(**kwargs)


def test_non_finite_features_are_rejected():
    x = torch.zeros(4, 2)
    x[0, 0] = float("nan")
    with pytest.raises(ConfigurationError, match="NaN"):
        KNN().score(train_features=x, train_labels=torch.zeros(4), test_features=x, test_labels=torch.zeros(4))


def test_get_scorer_by_name_and_bad_kwargs():
    assert isinstance(get_scorer("knn", k=3), KNN)
    with pytest.raises(ConfigurationError, match="scorer"):
        get_scorer("svm")
    with pytest.raises(ConfigurationError, match="scorer_kwargs"):
        get_scorer("linear", nope=1)
