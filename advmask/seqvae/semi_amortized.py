"""Semi-amortised inference (Kim et al. 2018, "Semi-Amortized Variational Autoencoders").

The encoder's posterior parameters ``lambda_0 = (mean, logvar)`` are refined per sequence by
``K`` steps of gradient descent on that sequence's negative ELBO,
``lambda_{k+1} = lambda_k - lr * clip(grad_lambda f(lambda_k, theta, x))``, and the training
loss is ``f(lambda_K, theta, x)``. As in the paper's Algorithm 1, the generative model is
updated by the partial derivative ``df/dtheta`` at ``lambda_K`` and the encoder by
backpropagation through the ``K`` steps (``d f(lambda_K) / d lambda_0 * d lambda_0 / d phi``):
the steps see the decoder's parameters as constants (detached copies), and keep their graph
(``create_graph=True``) so that the final backward pass reaches the encoder through them.

Cost: each step is a decoder forward and backward pass that keeps its graph, and the final
backward pass differentiates each of them once more (Hessian-vector products); the
Double-LSTM decoder's fast recurrence is differentiable only once, so the steps run its
reference loop (:func:`~advmask.seqvae.models.double_lstm.double_lstm_reference`). Evaluation
stays amortised: :func:`~advmask.seqvae.evaluate` reads the encoder alone, as for every model.

Example:
    >>> from functools import partial
    >>> import torch
    >>> from advmask.seqvae import ModelSpec, build_sequence_vae
    >>> model = build_sequence_vae(ModelSpec(vocab_size=9, embedding_dim=4, hidden_size=8,
    ...                                      latent_dim=2, dropout="none"))
    >>> tokens, lengths = torch.tensor([[1, 5, 6, 2]]), torch.tensor([4])
    >>> refine = partial(refine_posterior, model, steps=3, lr=0.1)
    >>> model(tokens, lengths, refine=refine).kl.shape
    torch.Size([1])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call

from advmask.checks import check_int, check_positive
from advmask.row_draws import RowDraws
from advmask.seqvae.gaussian import gaussian_kl
from advmask.seqvae.models.double_lstm import DoubleLSTMDecoder, double_lstm_reference
from advmask.seqvae.vae import sequence_nll

__all__ = ["refine_posterior", "sequence_neg_elbo"]


def _decode_twice_differentiable(
    decoder: nn.Module, embedded: Tensor, z: Tensor, row_draws: RowDraws | None
) -> Tensor:
    """The decoder's logits through a path autograd can differentiate twice."""
    draws = {} if row_draws is None else {"row_draws": row_draws}
    if isinstance(decoder, DoubleLSTMDecoder):
        return double_lstm_reference(decoder, embedded, z, **draws)
    return decoder(embedded, z, **draws)


class _NegELBO(nn.Module):
    """:func:`sequence_neg_elbo` as a module, so that it can run on detached parameters."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, *inputs: Tensor, row_draws: RowDraws | None = None) -> Tensor:
        return sequence_neg_elbo(self.decoder, *inputs, row_draws=row_draws)


def sequence_neg_elbo(
    decoder: nn.Module, tokens: Tensor, lengths: Tensor, embedded: Tensor, mean: Tensor,
    logvar: Tensor, *, row_draws: RowDraws | None = None,
) -> Tensor:  # fmt: skip
    """One-sample ``-ELBO`` of each sequence, twice differentiable in ``mean`` and ``logvar``.

    Args:
        decoder: the model's decoder (called through a twice-differentiable path).
        tokens: (B, T) int64 ``[BOS, words, EOS, PAD..]``.
        lengths: (B,) int64 non-padding tokens per row.
        embedded: (B, T - 1, E) float decoder inputs (masked as in the training step).
        mean, logvar: (B, D) float posterior parameters.
        row_draws: the rows of a global batch these ``B`` rows are (torchrun): ``z``'s noise
            and the decoder's dropout are those rows of the global batch's draws.

    Returns:
        (B,) ``-log p(x_b | z_b) + KL(q_b || N(0, I))`` in nats, ``z_b ~ q_b`` drawn once.
    """
    noise = torch.randn_like(mean) if row_draws is None else row_draws.randn_like(mean)
    z = mean + torch.exp(0.5 * logvar) * noise
    logits = _decode_twice_differentiable(decoder, embedded, z, row_draws)
    nll = sequence_nll(logits, tokens[:, 1:], lengths, twice_differentiable=True)
    return nll + gaussian_kl(mean, logvar)


def refine_posterior(
    model: nn.Module,
    tokens: Tensor,
    lengths: Tensor,
    embedded: Tensor,
    mean: Tensor,
    logvar: Tensor,
    *,
    steps: int,
    lr: float,
    grad_clip: float = 5.0,
    create_graph: bool = True,
    row_draws: RowDraws | None = None,
) -> tuple[Tensor, Tensor]:
    """``lambda_K``: the posterior parameters after ``steps`` SVI steps on each sequence.

    A :data:`~advmask.seqvae.vae.PosteriorRefinement` once ``model`` and the keywords are
    bound (``partial(refine_posterior, model, steps=10, lr=1.0)``). Each step draws a fresh
    ``z`` per sequence; the gradient of each sequence's ``-ELBO`` (the batch's sum, so rows do
    not interact) is clipped to norm ``grad_clip`` per sequence (Kim et al.'s clipping).

    Args:
        model: a :class:`~advmask.seqvae.SequenceVAE`; its decoder's parameters are read as
            constants (no gradient reaches them through the steps).
        tokens: (B, T) int64 sequences.
        lengths: (B,) int64 non-padding tokens per row.
        embedded: (B, T - 1, E) float decoder inputs, masked as in the step; read as
            constants.
        mean, logvar: (B, D) float ``lambda_0``, the encoder's output.
        steps: ``K >= 0`` (0 returns ``lambda_0``).
        lr: step size (> 0).
        grad_clip: largest gradient norm per sequence (> 0).
        create_graph: keep each step's graph, so that gradients reach the encoder through the
            refinement (training); False refines detached parameters (analysis).
        row_draws: as in :func:`sequence_neg_elbo` (given by
            :meth:`~advmask.seqvae.vae.SequenceVAE.forward` when it is given one).

    Returns:
        ``(mean_K, logvar_K)``, each (B, D).
    """
    steps = check_int(steps, "steps", 0)
    lr, grad_clip = check_positive(lr, "lr"), check_positive(grad_clip, "grad_clip")
    # The decoder's parameters as constants: the steps move lambda only, and the final
    # backward pass reaches theta through f(lambda_K, theta) alone (Algorithm 1's d theta).
    objective = _NegELBO(model.decoder)
    constants = {name: p.detach() for name, p in objective.named_parameters()}
    constants |= dict(objective.named_buffers())
    embedded = embedded.detach()
    for _ in range(steps):
        if not (create_graph and mean.requires_grad):
            # A fresh leaf (the caller's tensor untouched): no graph back to the encoder.
            mean, logvar = mean.detach().requires_grad_(), logvar.detach().requires_grad_()
        with torch.enable_grad():
            neg_elbo = functional_call(
                objective,
                constants,
                (tokens, lengths, embedded, mean, logvar),
                {"row_draws": row_draws},
            )
            grad_mean, grad_logvar = torch.autograd.grad(
                neg_elbo.sum(), (mean, logvar), create_graph=create_graph
            )
        norm = torch.cat([grad_mean, grad_logvar], dim=1).norm(dim=1, keepdim=True)
        scale = (grad_clip / norm.clamp_min(1e-12)).clamp(max=1.0)
        mean, logvar = mean - lr * scale * grad_mean, logvar - lr * scale * grad_logvar
    return (mean, logvar) if create_graph else (mean.detach(), logvar.detach())
