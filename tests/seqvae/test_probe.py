"""Linear probe accuracy: recovers separable factors, is at chance on noise, validates input."""

from __future__ import annotations

import math

import pytest
import torch

from advmask.seqvae.probe import linear_probe_accuracy


def _clusters(
    n: int, num_classes: int, noise_dims: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes at the vertices of a regular polygon (radius 4) with unit-0.3 noise, plus
    ``noise_dims`` pure-noise columns: linearly separable by a wide margin."""
    labels = torch.randint(num_classes, (n,), generator=generator)
    angles = 2 * math.pi * labels.double() / num_classes
    centres = 4 * torch.stack([angles.cos(), angles.sin()], 1)
    signal = centres + 0.3 * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    noise = torch.randn(n, noise_dims, generator=generator, dtype=torch.float64)
    return torch.cat([noise[:, : noise_dims // 2], signal, noise[:, noise_dims // 2 :]], 1), labels


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_recovers_separable_clusters(num_classes: int) -> None:
    generator = torch.Generator().manual_seed(num_classes)
    x_train, y_train = _clusters(400, num_classes, 6, generator)
    x_test, y_test = _clusters(400, num_classes, 6, generator)
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test) >= 0.995


def test_recovers_hyperplane_factor_of_mixed_latent() -> None:
    # A binary factor defined by a random hyperplane in an 8-d Gaussian latent, with the points
    # closer than 0.5 to the plane removed (a margin), seen through a well-conditioned random
    # linear map (rotation times scales in [0.5, 2]).
    generator = torch.Generator().manual_seed(7)
    direction = torch.randn(8, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm()
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    mixing = rotation * torch.linspace(0.5, 2.0, 8, dtype=torch.float64)

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(n, 8, generator=generator, dtype=torch.float64)
        projection = z @ direction
        keep = projection.abs() > 0.5
        return (z @ mixing)[keep], (projection[keep] > 0).long()

    x_train, y_train = sample(1000)
    x_test, y_test = sample(1000)
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test) >= 0.995


@pytest.mark.parametrize(("num_classes", "seed"), [(2, 0), (4, 1), (10, 2)])
def test_chance_on_pure_noise(num_classes: int, seed: int) -> None:
    # Test labels are independent of the test features and of the fitted probe, so the number of
    # correct test predictions is exactly Binomial(M, 1/C) whatever the probe learned: accept
    # 4 standard errors, sqrt(p (1 - p) / M).
    generator = torch.Generator().manual_seed(seed)
    m = 2000
    x_train = torch.randn(300, 8, generator=generator)
    y_train = torch.randint(num_classes, (300,), generator=generator)
    x_test = torch.randn(m, 8, generator=generator)
    y_test = torch.randint(num_classes, (m,), generator=generator)
    accuracy = linear_probe_accuracy(x_train, y_train, x_test, y_test)
    p = 1 / num_classes
    assert abs(accuracy - p) <= 4 * math.sqrt(p * (1 - p) / m)


def test_deterministic_and_invariant_to_feature_scale() -> None:
    generator = torch.Generator().manual_seed(3)
    x_train, y_train = _clusters(200, 3, 4, generator)
    x_test, y_test = _clusters(200, 3, 4, generator)
    # Blur the signal columns so that the probe errs and the comparison below is informative.
    x_train[:, 2:4] += 3 * torch.randn(200, 2, generator=generator, dtype=torch.float64)
    x_test[:, 2:4] += 3 * torch.randn(200, 2, generator=generator, dtype=torch.float64)
    first = linear_probe_accuracy(x_train, y_train, x_test, y_test)
    assert first == linear_probe_accuracy(x_train, y_train, x_test, y_test)
    assert 0.5 < first < 1.0
    # Standardisation with the training statistics: per-column affine maps change nothing.
    scale = torch.logspace(-3, 3, x_train.shape[1], dtype=torch.float64)
    shift = torch.linspace(-50, 50, x_train.shape[1], dtype=torch.float64)
    moved = linear_probe_accuracy(x_train * scale + shift, y_train, x_test * scale + shift, y_test)
    assert moved == pytest.approx(first, abs=2 / len(y_test))


def test_dtypes_and_constant_column() -> None:
    generator = torch.Generator().manual_seed(4)
    x_train, y_train = _clusters(200, 3, 2, generator)
    x_test, y_test = _clusters(200, 3, 2, generator)
    x_train[:, 0] = 1.0  # zero variance: no division by zero
    reference = linear_probe_accuracy(x_train, y_train, x_test, y_test)
    assert reference >= 0.99
    for label_dtype in (torch.int32, torch.uint8):
        got = linear_probe_accuracy(
            x_train.float(), y_train.to(label_dtype), x_test.float(), y_test.to(label_dtype)
        )
        assert got == pytest.approx(reference, abs=1 / len(y_test))


def test_single_training_row_predicts_its_label() -> None:
    x_train, y_train = torch.tensor([[0.5, 1.0]]), torch.tensor([2])
    x_test, y_test = torch.randn(4, 2), torch.tensor([2, 0, 2, 1])
    assert linear_probe_accuracy(x_train, y_train, x_test, y_test) == 0.5


def test_classes_unseen_in_training_count_as_errors() -> None:
    x = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    y = torch.tensor([0, 0, 1, 1])
    assert linear_probe_accuracy(x, y, x, torch.tensor([0, 0, 1, 2])) == 0.75


X, Y = torch.zeros(4, 2), torch.tensor([0, 1, 0, 1])


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((torch.zeros(4), Y, X, Y), {}, ValueError, "train_features must have 2 dimensions"),
        ((X, Y, torch.zeros(4, 2, 1), Y), {}, ValueError, "test_features must have 2"),
        ((X, Y.view(4, 1), X, Y), {}, ValueError, "train_labels must have 1"),
        ((X, Y[:3], X, Y), {}, ValueError, "train_features has 4 rows but train_labels has 3"),
        ((X, Y, X, Y[:2]), {}, ValueError, "test_features has 4 rows but test_labels has 2"),
        ((X, Y, torch.zeros(4, 3), Y), {}, ValueError, "3 columns but train_features has 2"),
        ((X[:0], Y[:0], X, Y), {}, ValueError, "train_features must have at least one row"),
        ((X, Y, X[:0], Y[:0]), {}, ValueError, "test_features must have at least one row"),
        ((X, Y - 1, X, Y), {}, ValueError, "train_labels must be >= 0, got -1"),
        ((X, Y.float(), X, Y), {}, TypeError, "train_labels must have dtype"),
        ((X.long(), Y, X, Y), {}, TypeError, "train_features must have dtype"),
        ((X.numpy(), Y, X, Y), {}, TypeError, "train_features must be a torch.Tensor"),
        ((X, Y, X, Y), {"weight_decay": -1.0}, ValueError, "weight_decay"),
        ((X, Y, X, Y), {"max_iter": 0}, ValueError, "max_iter must be >= 1, got 0"),
        ((X, Y, X, Y), {"max_iter": 2.5}, TypeError, "max_iter"),
    ],
)
def test_validation(args: tuple, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        linear_probe_accuracy(*args, **kwargs)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_features_match_cpu() -> None:
    generator = torch.Generator().manual_seed(5)
    x_train, y_train = _clusters(200, 3, 4, generator)
    x_test, y_test = _clusters(200, 3, 4, generator)
    reference = linear_probe_accuracy(x_train, y_train, x_test, y_test)
    # Features on the GPU, labels left on the CPU (as the recipe's factors are).
    got = linear_probe_accuracy(x_train.cuda(), y_train, x_test.cuda(), y_test)
    assert got == pytest.approx(reference, abs=1 / len(y_test))
