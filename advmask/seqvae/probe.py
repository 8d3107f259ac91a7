"""Linear probes: how well a known factor can be read off the latent code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor

from advmask.checks import (
    FLOAT_DTYPES,
    INT_DTYPES,
    check_int,
    check_non_negative,
    check_tensor,
)

__all__ = ["linear_probe_accuracy", "probe_factors"]


def linear_probe_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    weight_decay: float = 1e-3,
    max_iter: int = 200,
) -> float:
    """Test accuracy of multinomial logistic regression fitted on the training features.

    Features are standardised with the training mean and standard deviation; the fit is
    deterministic (full-batch L-BFGS from zero weights).

    Args:
        train_features: (N, D) float features, e.g. posterior means.
        train_labels: (N,) integer class labels in ``[0, C)``.
        test_features: (M, D) float, same D.
        test_labels: (M,) integer; ``C`` is one more than the largest label of either split.
        weight_decay: L2 penalty on the weights (not the bias).
        max_iter: L-BFGS iterations.

    Returns:
        Fraction of test rows classified correctly, in [0, 1].

    Raises:
        TypeError: for a non-tensor or a wrong dtype.
        ValueError: for wrong ranks, empty or mismatched rows or columns, negative labels,
            ``weight_decay < 0`` or ``max_iter < 1``.

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe_accuracy(x, y, x, y)
        1.0
    """
    train_features = check_tensor("train_features", train_features, ndim=2, dtypes=FLOAT_DTYPES)
    test_features = check_tensor("test_features", test_features, ndim=2, dtypes=FLOAT_DTYPES)
    train_labels = check_tensor("train_labels", train_labels, ndim=1, dtypes=INT_DTYPES)
    test_labels = check_tensor("test_labels", test_labels, ndim=1, dtypes=INT_DTYPES)
    weight_decay = check_non_negative(weight_decay, "weight_decay")
    max_iter = check_int(max_iter, "max_iter")
    for name, features, labels in (
        ("train", train_features, train_labels),
        ("test", test_features, test_labels),
    ):
        if features.shape[0] == 0:
            raise ValueError(
                f"{name}_features must have at least one row, got shape {tuple(features.shape)}"
            )
        if features.shape[0] != labels.shape[0]:
            raise ValueError(
                f"{name}_features has {features.shape[0]} rows but {name}_labels has "
                f"{labels.shape[0]}"
            )
        if int(labels.min()) < 0:
            raise ValueError(f"{name}_labels must be >= 0, got {int(labels.min())}")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features has {test_features.shape[1]} columns but train_features has "
            f"{train_features.shape[1]}"
        )
    # Everything on the training features' device; cross_entropy needs int64 targets.
    device = train_features.device
    train_labels = train_labels.to(device=device, dtype=torch.int64)
    test_labels = test_labels.to(device=device, dtype=torch.int64)
    test_features = test_features.to(device)
    train_features = train_features.double()
    center = train_features.mean(0)
    scale = train_features.std(0).clamp_min(1e-8) if train_features.shape[0] > 1 else 1.0
    x_train = (train_features - center) / scale
    x_test = (test_features.double() - center) / scale
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(
        x_train.shape[1], num_classes, dtype=torch.float64, device=device, requires_grad=True
    )
    bias = torch.zeros(num_classes, dtype=torch.float64, device=device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        logits = x_train @ weight + bias
        loss = torch.nn.functional.cross_entropy(logits, train_labels)
        loss = loss + weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        predicted = (x_test @ weight + bias).argmax(1)
    return float((predicted == test_labels).double().mean())


class _Encodes(Protocol):
    def posterior(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]: ...


def _corpus_order_means(model: _Encodes, batches: Sequence) -> Tensor:
    """Posterior means of every sequence, put back in corpus order (batches are bucketed)."""
    order = torch.cat([b.indices for b in batches])
    means = torch.cat([model.posterior(b.tokens, b.lengths)[0].cpu() for b in batches])
    return torch.empty_like(means).index_copy_(0, order, means)


def probe_factors(
    model: _Encodes,
    train_batches: Sequence,
    test_batches: Sequence,
    train_factors: Mapping[str, Tensor],
    test_factors: Mapping[str, Tensor],
) -> dict[str, float]:
    """Test accuracy of a linear probe from the posterior means to each known factor.

    Args:
        model: anything with ``posterior(tokens, lengths) -> (mean, logvar)``, e.g. a
            :class:`~advmask.seqvae.SequenceVAE`.
        train_batches: batches (:class:`~advmask.seqvae.data.Batch` with ``indices``) covering
            the probe's training sequences, in any order.
        test_batches: the same for the held-out sequences.
        train_factors: factor name -> (N,) int labels in corpus order.
        test_factors: the same for the held-out sequences.

    Returns:
        factor name -> accuracy of :func:`linear_probe_accuracy`.
    """
    with torch.no_grad():
        train_means = _corpus_order_means(model, train_batches)
        test_means = _corpus_order_means(model, test_batches)
    return {
        name: linear_probe_accuracy(train_means, labels, test_means, test_factors[name])
        for name, labels in train_factors.items()
    }
