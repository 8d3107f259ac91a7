"""Text from latent codes: greedy and sampled decoding of a :class:`~advmask.seqvae.SequenceVAE`.

Decoding runs the decoder one step at a time from ``[BOS]``, batched over sequences, and stops
a row at EOS or after ``max_length`` words. The two built-in decoders
(:class:`~advmask.seqvae.models.LSTMDecoder`, :class:`~advmask.seqvae.models.DoubleLSTMDecoder`)
are stepped incrementally from their own parameters (a registry, :data:`STEPPERS`, maps the
decoder class to its stepper), so a step costs one cell update. Any other decoder that follows the
``forward(embedded, z) -> logits`` contract is decoded by re-running it on the growing prefix
(quadratic in the length; fine for sentences).

The decoder runs in eval mode (no dropout); a step reproduces ``decoder(embedded, z)[:, t]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advmask.checks import FLOAT_DTYPES, check_positive, check_tensor
from advmask.seqvae.data.vocab import BOS_ID, EOS_ID, PAD_ID, Vocabulary
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMDecoder
from advmask.seqvae.vae import SequenceVAE


@dataclass(frozen=True)
class Decoded:
    """Decoded sequences in the ``[BOS, w_1..w_L, EOS, PAD..]`` layout.

    Attributes:
        tokens: (B, T) int64 ``[BOS, w_1..w_L, EOS, PAD..]``; a row that reached
            ``max_length`` words without EOS ends without EOS.
        lengths: (B,) int64 non-padding tokens per row (BOS and EOS included).
        finished: (B,) bool, True where the row ended with EOS.
    """

    tokens: Tensor
    lengths: Tensor
    finished: Tensor

    def words(self) -> list[list[int]]:
        """Word ids of each row, without BOS, EOS and padding."""
        rows = []
        for row, length, finished in zip(
            self.tokens.tolist(), self.lengths.tolist(), self.finished.tolist(), strict=True
        ):
            rows.append(row[1 : length - 1] if finished else row[1:length])
        return rows

    def texts(self, vocab: Vocabulary) -> list[str]:
        """Each row as space-joined words (an unfinished row ends with ``…``)."""
        return [
            " ".join(vocab.decode(ids)) + ("" if done else " …")
            for ids, done in zip(self.words(), self.finished.tolist(), strict=True)
        ]


# A stepper: start(decoder, z) -> state; step(decoder, state, embedded (B, E), z) ->
# (logits (B, V), new state). States are tuples of tensors.
State = tuple[Tensor, ...]
Start = Callable[[nn.Module, Tensor], State]
Step = Callable[[nn.Module, State, Tensor, Tensor], tuple[Tensor, State]]


def _lstm_start(decoder: LSTMDecoder, z: Tensor) -> State:
    cell = decoder.latent_to_cell(z)
    return torch.tanh(cell), cell


def _lstm_step(decoder: LSTMDecoder, state: State, embedded: Tensor, z: Tensor) -> tuple:
    # nn.LSTM with one step; the state is (1, B, H) there and (B, H) here.
    hidden, cell = (s.unsqueeze(0) for s in state)
    inputs = torch.cat([embedded, z], dim=-1).unsqueeze(1)
    output, (hidden, cell) = decoder.lstm(inputs, (hidden, cell))
    return decoder.output(output[:, 0]), (hidden[0], cell[0])


def _double_lstm_start(decoder: DoubleLSTMDecoder, z: Tensor) -> State:
    hidden = decoder.latent_to_hidden(z)
    return hidden, torch.zeros_like(hidden)


def _double_lstm_step(
    decoder: DoubleLSTMDecoder, state: State, embedded: Tensor, z: Tensor
) -> tuple:
    hidden, cell = decoder.prior_cell(z, state)
    hidden, cell = decoder.word_cell(torch.cat([embedded, z], dim=-1), (hidden, cell))
    return decoder.output(hidden), (hidden, cell)


STEPPERS: dict[type[nn.Module], tuple[Start, Step]] = {
    LSTMDecoder: (_lstm_start, _lstm_step),
    DoubleLSTMDecoder: (_double_lstm_start, _double_lstm_step),
}
"""Incremental ``(start, step)`` pairs by decoder class (see the module docstring)."""


def _prefix_start(decoder: nn.Module, z: Tensor) -> State:
    return (z.new_zeros(z.shape[0], 0, decoder.embedding.embedding_dim),)


def _prefix_step(decoder: nn.Module, state: State, embedded: Tensor, z: Tensor) -> tuple:
    prefix = torch.cat([state[0], embedded.unsqueeze(1)], dim=1)
    return decoder(prefix, z)[:, -1], (prefix,)


def stepper(decoder: nn.Module) -> tuple[Start, Step]:
    """The ``(start, step)`` pair for ``decoder``: incremental if registered, else by prefix."""
    return STEPPERS.get(type(decoder), (_prefix_start, _prefix_step))


@torch.no_grad()
def decode(
    model: SequenceVAE,
    z: Tensor,
    *,
    max_length: int = 40,
    sample: bool = False,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Decoded:
    """Decode one sequence per latent code, greedily or by ancestral sampling.

    Args:
        model: the sequence VAE; its decoder runs in eval mode (restored afterwards).
        z: (B, D) float latent codes.
        max_length: most words per sequence (EOS not counted), >= 1.
        sample: False for greedy (arg-max) decoding, True to sample each word from
            ``softmax(logits / temperature)``.
        temperature: > 0; only used when ``sample`` is True.
        generator: random generator of the samples, on the device of ``z``.

    Returns:
        A :class:`Decoded`; PAD, BOS are never produced (their logits are excluded).

    Example:
        >>> from advmask.seqvae.factory import ModelSpec, build_sequence_vae
        >>> model = build_sequence_vae(ModelSpec(vocab_size=9, embedding_dim=4, hidden_size=4,
        ...                                      latent_dim=2)).eval()
        >>> out = decode(model, torch.zeros(3, 2), max_length=5)
        >>> out.tokens.shape[0], bool((out.tokens[:, 0] == 1).all())
        (3, True)
    """
    z = check_tensor("z", z, ndim=2, dtypes=FLOAT_DTYPES)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be an int >= 1, got {max_length!r}")
    check_positive(temperature, "temperature")
    decoder = model.decoder
    was_training = decoder.training
    decoder.eval()
    try:
        return _decode(decoder, z, max_length, sample, temperature, generator)
    finally:
        decoder.train(was_training)


def _decode(
    decoder: nn.Module,
    z: Tensor,
    max_length: int,
    sample: bool,
    temperature: float,
    generator: torch.Generator | None,
) -> Decoded:
    start, step = stepper(decoder)
    batch = z.shape[0]
    state = start(decoder, z)
    previous = torch.full((batch,), BOS_ID, dtype=torch.int64, device=z.device)
    columns = [previous]
    finished = torch.zeros(batch, dtype=torch.bool, device=z.device)
    for step_index in range(max_length + 1):
        logits, state = step(decoder, state, decoder.embedding(previous), z)
        # PAD and BOS are never outputs of a trained model's data; exclude them outright.
        logits = logits.float()
        logits[:, PAD_ID] = -torch.inf
        logits[:, BOS_ID] = -torch.inf
        if sample:
            probabilities = torch.softmax(logits / temperature, dim=-1)
            token = torch.multinomial(probabilities, 1, generator=generator)[:, 0]
        else:
            token = logits.argmax(-1)
        token = torch.where(finished, PAD_ID, token)
        if step_index == max_length:  # after max_length words only EOS may follow
            token = torch.where(token == EOS_ID, token, PAD_ID)
        columns.append(token)
        finished = finished | (token == EOS_ID)
        previous = torch.where(token == PAD_ID, EOS_ID, token)  # any valid id; output unused
        # One host sync per step to stop early: decoding is interactive, not a training step.
        if bool(finished.all()):
            break
    tokens = torch.stack(columns, dim=1)
    lengths = (tokens != PAD_ID).sum(1)
    tokens = tokens[:, : int(lengths.max())]  # drop a last column of padding only
    return Decoded(tokens=tokens, lengths=lengths, finished=finished)
