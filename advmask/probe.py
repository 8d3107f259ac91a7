"""Linear probes: how well a known factor can be read off the latent code."""

from __future__ import annotations

import torch
from torch import Tensor

from advmask._checks import check_non_negative


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
        train_labels: (N,) int64 class labels in ``[0, C)``.
        test_features: (M, D) float.
        test_labels: (M,) int64.
        weight_decay: L2 penalty on the weights (not the bias).
        max_iter: L-BFGS iterations.

    Returns:
        Fraction of test rows classified correctly, in [0, 1].

    Example:
        >>> x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> linear_probe_accuracy(x, y, x, y)
        1.0
    """
    check_non_negative(weight_decay, "weight_decay")
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError("features must be (N, D) matrices")
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"train_features has {train_features.shape[0]} rows but train_labels has "
            f"{train_labels.shape[0]}"
        )
    train_features = train_features.double()
    center = train_features.mean(0)
    scale = train_features.std(0).clamp_min(1e-8) if train_features.shape[0] > 1 else 1.0
    x_train = (train_features - center) / scale
    x_test = (test_features.double() - center) / scale
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    weight = torch.zeros(x_train.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
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
