"""Maskers: which decoder inputs to drop in a batch (1 = drop).

:class:`AdversarialMasker` is adversarial word dropout (AWD, Miladinović et al. 2022): a score
network proposes a Gaussian score per position, the ``K`` smallest sampled scores are dropped
(exactly ``K = round_half_up(rate * n)`` per row), and the mask carries a straight-through
gradient through a top-K relaxation, reversed, so that one loss trains both players:

.. code-block:: python

    out = masker(tokens, lengths)
    loss = decoder_loss(mask=out.mask) + out.regularizer   # one backward pass

The decoder minimises ``decoder_loss``; the score network, behind the gradient reversal on the
mask, maximises it, held near N(0, 1) scores by the KL regulariser (which is outside the
reversal). :class:`UniformMasker` is ordinary word dropout with the same call and output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from advmask.budget import eligible_positions, num_to_drop
from advmask.checks import (
    check_non_negative,
    check_rate,
    check_tensor,
    check_tokens_lengths,
    check_validate_args,
    checks_values,
)
from advmask.hard_selection import hard_bottom_k
from advmask.outputs import MaskerOutput
from advmask.regularizer import score_kl
from advmask.relaxations import Relaxation, get_relaxation
from advmask.reversal import GradientReversal
from advmask.row_draws import RowDraws
from advmask.scores import build_score_network
from advmask.selection import _unchecked_bottom_k

UNIFORM_MODES = ("exact", "bernoulli")


class AdversarialMasker(nn.Module):
    """Adversarial word dropout: drop the K positions with the smallest Gaussian scores.

    Training mode: ``scores = mean + std * eps`` with ``eps ~ N(0, I)``; the mask is the hard
    bottom-K of the scores, straight-through the relaxation ``relaxation``, behind a gradient
    reversal of scale ``grl_scale``. Eval mode: the identity, as ``nn.Dropout``'s: nothing is
    dropped (``mask`` all zero, ``k`` zero, ``regularizer`` zero; ``mean`` and ``std`` are the
    scores). :meth:`mean_mask` is what the scores' mean alone would drop, in either mode.

    Args:
        vocab_size: number of token ids (for a named score network's own embedding).
        rate: fraction ``rho`` of eligible positions dropped per row, in [0, 1].
        kl_weight: ``lambda >= 0``, weight of the KL of the scores to N(0, 1).
        relaxation: name of a registered top-K relaxation (see :mod:`advmask.relaxations`) or
            a relaxation function with the signature of
            :class:`~advmask.relaxations.Relaxation`.
        relaxation_options: keyword options of the relaxation (for example
            ``{"temperature": 0.5}``); checked at construction.
        score_network: a key of :data:`advmask.scores.SCORE_NETWORKS` (built here with
            ``score_network_options``; register more with
            :func:`advmask.scores.register_score_network`), or a built module with
            ``forward(tokens, lengths, *, embeddings=None) -> (mean, std)``, each (B, T).
        grl_scale: reversal scale ``alpha >= 0``, or a function of the training step (see
            :class:`advmask.GradientReversal`).
        validate_args: whether a call checks the values of its input and of the scores (one
            host read each); None follows :func:`advmask.set_value_checks`. A named score
            network trusts what the masker checked; a built module checks per its own
            ``validate_args``.
        **score_network_options: settings of a named score network, passed to its class:
            ``embedding_dim`` (default 128), ``hidden_size`` (256), ``std``
            (``"softplus"``, ``"logvar"`` or ``"fixed"``, see
            :data:`advmask.scores.STD_MODES`; default ``"softplus"``), ``padding_idx``
            (default None: every id is a real token), and the class's own (``max_length``
            of ``"transformer"``, ``bidirectional`` of ``"lstm"``, ...).

    Raises:
        ValueError: for settings given with a built ``score_network`` (they would be
            ignored), a setting the named network does not take, or an unknown name.

    Example:
        >>> masker = AdversarialMasker(vocab_size=50, rate=0.5, embedding_dim=8, hidden_size=8)
        >>> out = masker(torch.randint(1, 50, (2, 6)), torch.tensor([6, 3]))
        >>> out.mask.sum(1), out.k
        (tensor([3., 2.], grad_fn=<SumBackward1>), tensor([3, 2]))
    """

    def __init__(
        self,
        vocab_size: int,
        rate: float,
        kl_weight: float = 1.0,
        relaxation: str | Relaxation = "euclidean",
        *,
        relaxation_options: dict[str, Any] | None = None,
        score_network: str | nn.Module = "lstm",
        grl_scale: float | Callable[[int], float] = 1.0,
        validate_args: bool | None = None,
        **score_network_options: Any,
    ) -> None:
        super().__init__()
        self.rate = check_rate(rate)
        self.kl_weight = check_non_negative(kl_weight, "kl_weight")
        self.validate_args = check_validate_args(validate_args)
        relax = get_relaxation(relaxation)
        if relaxation_options is None:
            relaxation_options = {}
        if not isinstance(relaxation_options, dict):
            raise TypeError(f"relaxation_options must be a dict, got {relaxation_options!r}")
        _dry_run(relaxation, relax, relaxation_options)
        self.relaxation = relaxation
        self.relaxation_options = dict(relaxation_options)
        if isinstance(score_network, nn.Module):
            if score_network_options:
                name, value = next(iter(score_network_options.items()))
                raise ValueError(
                    f"{name}={value!r} is a setting of a named score network, but "
                    f"score_network is a built {type(score_network).__name__}: set it there"
                )
            self.score_network = score_network
        else:
            # The masker checks the values of its input once; the network it builds trusts it.
            self.score_network = build_score_network(
                score_network, vocab_size, validate_args=False, **score_network_options
            )
        self.reversal = GradientReversal(grl_scale)

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor,
        *,
        protected: Tensor | None = None,
        embeddings: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise: Tensor | None = None,
        row_draws: RowDraws | None = None,
    ) -> MaskerOutput:
        """Choose the positions to drop.

        Args:
            tokens: (B, T) integer ids.
            lengths: (B,) integer valid positions per row, in ``[0, T]``; positions
                ``t >= lengths[b]`` are never dropped.
            protected: optional (T,) or (B, T) bool, True where a position must never be
                dropped (for example BOS).
            embeddings: optional (B, T, E) inputs of the score network instead of its own
                embedding of ``tokens``.
            generator: random generator of the score noise (and of a stochastic relaxation),
                on the device of the scores.
            noise: optional pre-drawn (B, T) standard-normal ``eps`` (training mode only);
                overrides ``generator`` for the scores.
            row_draws: which rows of a global batch these ``B`` rows are (under
                ``torchrun``): the score noise (and a stochastic relaxation's) is then those
                rows of the global batch's draw (:class:`advmask.row_draws.RowDraws`). None:
                the plain draws of this batch.

        Returns:
            A :class:`advmask.MaskerOutput`; ``mask`` has exactly ``k[b]`` ones in row ``b``.

        Raises:
            TypeError: if ``tokens`` or ``lengths`` is not an integer tensor.
            ValueError: on wrong shapes, ``lengths`` out of range, or non-finite scores at
                eligible positions.
        """
        eligible, k, mean, std, regularizer = self._scores(tokens, lengths, protected, embeddings)
        if not self.training:
            return _nothing_dropped(mean, std, eligible)
        if noise is None:
            noise = _standard_normal(mean, generator, row_draws)
        else:
            noise = check_tensor("noise", noise, ndim=2, dtypes=(mean.dtype,))
            if noise.shape != mean.shape:
                raise ValueError(
                    f"noise must have shape {tuple(mean.shape)}, got {tuple(noise.shape)}"
                )
            if checks_values(self.validate_args) and not bool(
                (torch.isfinite(noise) | ~eligible).all()
            ):
                raise ValueError("noise must be finite at eligible positions")
        scores = mean + std * noise
        # k is in range by construction and the scores were checked in _scores: no check.
        relax = get_relaxation(self.relaxation)
        options = self.relaxation_options
        if row_draws is not None:  # only then: a relaxation of one process need not take it
            options = {**options, "row_draws": row_draws}
        mask = _unchecked_bottom_k(scores, k, eligible, relax, generator, options)
        # The reversal sits on the mask only: the regulariser must not be reversed.
        mask = self.reversal(mask)
        return MaskerOutput(mask, k, regularizer, mean, std, eligible)

    def mean_mask(
        self,
        tokens: Tensor,
        lengths: Tensor,
        *,
        protected: Tensor | None = None,
        embeddings: Tensor | None = None,
    ) -> MaskerOutput:
        """What the mean scores alone drop: the bottom-K of ``mean``, without noise.

        In either mode, with the training-mode ``K`` (for analyses: which words the adversary
        targets, and ``mean``, ``std``, ``k`` and ``eligible`` for drop probabilities). Draws
        no noise, does not advance the reversal's schedule; the mask carries no gradient.

        Args:
            tokens: (B, T) integer ids.
            lengths: (B,) integer valid positions per row, in ``[0, T]``.
            protected: optional (T,) or (B, T) bool, True where a position must never be
                dropped.
            embeddings: optional (B, T, E) inputs of the score network.

        Returns:
            A :class:`advmask.MaskerOutput`; ``mask`` (B, T) float has exactly ``k[b]`` ones
            in row ``b`` (1.0 = dropped), ``regularizer`` is the KL of the scores.
        """
        eligible, k, mean, std, regularizer = self._scores(tokens, lengths, protected, embeddings)
        mask = hard_bottom_k(mean.detach(), k, eligible)
        return MaskerOutput(mask, k, regularizer, mean, std, eligible)

    def resize_vocabulary(self, vocab_size: int) -> None:
        """Follow a resized vocabulary: the score network's embedding gets ``vocab_size``
        rows (new rows initialised as ``nn.Embedding`` does; existing ones kept).

        Called by :class:`advmask.MaskedEmbedding` when the model's embedding is resized
        (``resize_token_embeddings``). A custom score network without ``resize_vocabulary``
        and without a ``vocab_size`` (one fed ``embeddings=``) needs nothing.

        Raises:
            TypeError: if the score network has a ``vocab_size`` but no ``resize_vocabulary``.
        """
        resize = getattr(self.score_network, "resize_vocabulary", None)
        if resize is not None:
            resize(vocab_size)
        elif getattr(self.score_network, "vocab_size", None) is not None:
            raise TypeError(
                f"the score network ({type(self.score_network).__name__}) has a vocab_size but "
                f"no resize_vocabulary(vocab_size): it cannot follow a vocabulary resized to "
                f"{vocab_size}"
            )

    def _scores(
        self,
        tokens: Tensor,
        lengths: Tensor,
        protected: Tensor | None,
        embeddings: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(eligible, k, mean, std, regularizer)`` of a call (checked input)."""
        # Value checks run here, once; the score network and the selection trust what passed.
        vocab_size = getattr(self.score_network, "vocab_size", None)
        tokens, lengths = check_tokens_lengths(
            tokens,
            lengths,
            vocab_size=vocab_size if embeddings is None else None,
            validate_args=self.validate_args,
        )
        eligible = _eligible(tokens, lengths, protected)
        k = num_to_drop(self.rate, eligible.sum(1))
        mean, std = self.score_network(tokens, lengths, embeddings=embeddings)
        if checks_values(self.validate_args):
            _check_scores(mean, std, eligible)
        return eligible, k, mean, std, score_kl(mean, std, eligible, self.kl_weight)

    def extra_repr(self) -> str:
        return (
            f"rate={self.rate}, kl_weight={self.kl_weight}, relaxation={self.relaxation!r}, "
            f"relaxation_options={self.relaxation_options}"
        )


class UniformMasker(nn.Module):
    """Uniform word dropout with the call and output of :class:`AdversarialMasker`.

    * ``mode="exact"``: exactly ``K = round_half_up(rate * n)`` positions per row, a uniformly
      random K-subset of the eligible positions (the bottom-K of N(0, 1) noise). This
      is the ``kl_weight -> infinity`` limit of the adversarial masker.
    * ``mode="bernoulli"``: each eligible position independently with probability ``rate``
      (Bowman et al. 2016), per token, not one coin per time step shared by the
      batch as in the AWD authors' code. ``k`` reports the number actually dropped.

    Eval mode: the identity, as ``nn.Dropout``'s (nothing dropped, ``k`` zero).
    :meth:`mean_mask` gives the deterministic choice of the training-mode ``K``.

    The mask never carries a gradient, ``mean`` is 0, ``std`` is 1 and ``regularizer`` is 0.

    Args:
        rate: dropout rate ``rho`` in [0, 1].
        mode: ``"exact"`` or ``"bernoulli"``.
        validate_args: whether a call checks its ``lengths`` are in range (a host read);
            None follows :func:`advmask.set_value_checks`.

    Example:
        >>> masker = UniformMasker(rate=0.5)
        >>> out = masker(torch.ones(2, 4, dtype=torch.int64), torch.tensor([4, 1]))
        >>> out.k, out.mask.sum(1)
        (tensor([2, 1]), tensor([2., 1.]))
    """

    def __init__(
        self, rate: float, mode: str = "exact", *, validate_args: bool | None = None
    ) -> None:
        super().__init__()
        self.rate = check_rate(rate)
        self.validate_args = check_validate_args(validate_args)
        if mode not in UNIFORM_MODES:
            raise ValueError(f"mode must be one of {UNIFORM_MODES}, got {mode!r}")
        self.mode = mode

    def forward(
        self,
        tokens: Tensor,
        lengths: Tensor,
        *,
        protected: Tensor | None = None,
        embeddings: Tensor | None = None,
        generator: torch.Generator | None = None,
        row_draws: RowDraws | None = None,
    ) -> MaskerOutput:
        """Choose the positions to drop (arguments as :meth:`AdversarialMasker.forward`).

        ``embeddings`` is accepted for interchangeability and ignored.
        """
        eligible, k, mean, std, regularizer = self._scores(tokens, lengths, protected)
        dtype = mean.dtype
        if not self.training:
            return _nothing_dropped(mean, std, eligible)
        if self.mode == "exact":
            # Exchangeable, a.s. distinct scores: the K smallest are a uniform K-subset.
            mask = hard_bottom_k(_standard_normal(mean, generator, row_draws), k, eligible)
        else:
            draw = torch.rand if row_draws is None else row_draws.rand
            uniform = draw(mean.shape, generator=generator, device=mean.device, dtype=dtype)
            drop = (uniform < self.rate) & eligible
            mask = drop.to(dtype)
            k = drop.sum(1)
        return MaskerOutput(mask, k, regularizer, mean, std, eligible)

    def mean_mask(
        self,
        tokens: Tensor,
        lengths: Tensor,
        *,
        protected: Tensor | None = None,
        embeddings: Tensor | None = None,
    ) -> MaskerOutput:
        """The deterministic choice, in either mode: the first ``K`` eligible positions of each
        row (the bottom-K of the all-zero mean scores), ``K`` as in training (``round(rate *
        n)``, in Bernoulli mode too). Arguments and output as
        :meth:`AdversarialMasker.mean_mask`."""
        eligible, k, mean, std, regularizer = self._scores(tokens, lengths, protected)
        return MaskerOutput(hard_bottom_k(mean, k, eligible), k, regularizer, mean, std, eligible)

    def _scores(
        self, tokens: Tensor, lengths: Tensor, protected: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(eligible, k, mean 0, std 1, regularizer 0)`` of a call (checked input)."""
        tokens, lengths = check_tokens_lengths(tokens, lengths, validate_args=self.validate_args)
        eligible = _eligible(tokens, lengths, protected)
        k = num_to_drop(self.rate, eligible.sum(1))
        mean = torch.zeros(tokens.shape, dtype=torch.get_default_dtype(), device=tokens.device)
        return eligible, k, mean, torch.ones_like(mean), mean.new_zeros(())

    def extra_repr(self) -> str:
        return f"rate={self.rate}, mode={self.mode!r}"


@torch.no_grad()
def drop_probabilities(
    mean: Tensor,
    std: Tensor,
    k: Tensor,
    eligible: Tensor,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Monte-Carlo ``P(position dropped)`` under the Gaussian scores (for saliency plots).

    Draws ``num_samples`` score vectors ``mean + std * eps`` and averages their hard bottom-K
    masks. Each row of the result sums to ``k[b]`` (every sample drops exactly ``k[b]``).

    Args:
        mean: (B, T) float score means (for example ``MaskerOutput.mean``).
        std: (B, T) float score standard deviations, finite and > 0 where eligible.
        k: (B,) int64 number dropped per row, at most its eligible positions.
        eligible: (B, T) bool.
        num_samples: Monte-Carlo samples ``S`` (memory O(S * B * T)).
        generator: random generator of the noise.

    Returns:
        (B, T) float in [0, 1]; 0 off ``eligible``. Standard error per entry
        ``sqrt(p (1 - p) / num_samples)``.

    Raises:
        ValueError: a non-finite mean or std, or a std <= 0, at an eligible position; a ``k``
            below 0 or above its row's eligible positions (each named by row).

    Example:
        >>> p = drop_probabilities(torch.zeros(1, 4), torch.ones(1, 4), torch.tensor([1]),
        ...                        torch.ones(1, 4, dtype=torch.bool), num_samples=4000)
        >>> float(p.sum())
        1.0
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an int >= 1, got {num_samples!r}")
    mean = check_tensor("mean", mean, ndim=2, dtypes=(torch.float32, torch.float64))
    _check_scores(mean, std, eligible)  # a NaN std would drop the lowest means every time
    available = eligible.sum(1)
    if bool(((k < 0) | (k > available)).any()):
        row = int(torch.nonzero((k < 0) | (k > available))[0])
        raise ValueError(
            f"k must be in [0, eligible positions] per row; row {row} has k {int(k[row])} and "
            f"{int(available[row])} eligible positions"
        )
    batch, length = mean.shape
    noise = torch.randn(
        (num_samples, batch, length), generator=generator, device=mean.device, dtype=mean.dtype
    )
    scores = (mean + std * noise).reshape(num_samples * batch, length)
    masks = hard_bottom_k(scores, k.repeat(num_samples), eligible.repeat(num_samples, 1))
    return masks.reshape(num_samples, batch, length).mean(0)


def _nothing_dropped(mean: Tensor, std: Tensor, eligible: Tensor) -> MaskerOutput:
    """The eval-mode output: the identity (no mask, ``k`` 0, no regulariser)."""
    nothing = torch.zeros_like(mean.detach())
    k = torch.zeros(mean.shape[0], dtype=torch.int64, device=mean.device)
    return MaskerOutput(nothing, k, nothing.new_zeros(()), mean, std, eligible)


def _eligible(tokens: Tensor, lengths: Tensor, protected: Tensor | None) -> Tensor:
    batch, length = tokens.shape
    if protected is not None:
        if not isinstance(protected, Tensor) or protected.dtype != torch.bool:
            got = protected.dtype if isinstance(protected, Tensor) else type(protected).__name__
            raise TypeError(f"protected must be a bool tensor, got {got}")
        if tuple(protected.shape) not in ((length,), (batch, length)):
            raise ValueError(
                f"protected must have shape ({length},) or ({batch}, {length}), got "
                f"{tuple(protected.shape)}"
            )
        protected = protected.to(tokens.device)
    return eligible_positions(lengths.to(torch.int64), length, protected)


def _check_scores(mean: Tensor, std: Tensor, eligible: Tensor) -> None:
    """NaN/inf or non-positive std at an eligible position means a diverged score network."""
    bad = eligible & ~(torch.isfinite(mean) & torch.isfinite(std) & (std > 0))
    if bool(bad.any()):
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        value, scale = float(mean[row, col].detach()), float(std[row, col].detach())
        raise ValueError(
            f"scores must be finite (std > 0) at eligible positions; at [{row}, {col}] the "
            f"score mean is {value} and std {scale}"
        )


def _standard_normal(
    like: Tensor, generator: torch.Generator | None, row_draws: RowDraws | None
) -> Tensor:
    """N(0, 1) noise like ``like`` (B, T): this batch's plain draw, or ``row_draws``' rows."""
    draw = torch.randn if row_draws is None else row_draws.randn
    return draw(like.shape, generator=generator, device=like.device, dtype=like.dtype)


def _dry_run(name: object, relax: Callable[..., Tensor], options: dict[str, Any]) -> None:
    """Call the relaxation once on a tiny problem so that bad options fail at construction."""
    try:
        relax(
            torch.tensor([[0.0, 1.0]], dtype=torch.float64),
            torch.tensor([1]),
            torch.ones(1, 2, dtype=torch.bool),
            # a private generator: a stochastic relaxation must not advance the global one,
            # or the same seed would give other initial weights with "perturbed"
            generator=torch.Generator(),
            **options,
        )
    except TypeError as error:  # unknown keyword
        raise TypeError(
            f"relaxation_options {options!r} are not accepted by relaxation {name!r}: {error}"
        ) from error
