"""Score networks of the adversary: tokens -> a Gaussian score per position.

A score network maps token ids ``tokens`` (B, T) and ``lengths`` (B,) to the mean and standard
deviation of an independent Gaussian per position; the adversary then drops the ``K`` positions
with the smallest sampled scores ``mean + std * eps``. A small score therefore means "drop".

Each network owns its embedding table. It MUST NOT share parameters with the VAE:
the adversary receives the reversed gradient, which would otherwise leak into the VAE's
parameters. To feed representations computed elsewhere, pass ``embeddings=`` (detach them first
if they belong to the VAE).

Scores at valid positions (``t < lengths[b]``) depend neither on the padding length nor on the
ids at padding positions: the unidirectional recurrent networks are causal, the
bidirectional LSTM packs its input, and the transformer masks padding keys.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from advmask.checks import (
    FLOAT_DTYPES,
    check_int,
    check_tensor,
    check_tokens_lengths,
    check_validate_args,
)
from advmask.precision import full_precision

#: How the standard deviation of the scores is parameterised.
#: ``"softplus"``: ``std = softplus(raw) + 1e-4``, learned per position.
#: ``"logvar"``: ``std = exp(raw / 2)``, learned per position.
#: ``"fixed"``: ``std = 1`` (the AWD authors' code); the head predicts the mean only.
STD_MODES = ("softplus", "logvar", "fixed")

_STD_FLOOR = 1e-4  # sigma_min: keeps log(std) finite in the KL


class ScoreNetwork(nn.Module):
    """Common part of every score network: embedding, validation and the Gaussian head.

    Subclasses implement :meth:`encode`, mapping embedded inputs (B, T, E) and lengths (B,) to
    hidden states (B, T, H) such that the states at valid positions do not depend on padding.

    Args:
        vocab_size: number of token ids.
        embedding_dim: size of the score network's own embedding.
        hidden_size: size ``H`` of the hidden states fed to the head.
        std: one of :data:`STD_MODES`.
        padding_idx: id whose embedding row is zero and receives no gradient, or None (the
            default: every id is a real token, as id 0 is in GPT-2's vocabulary).
        validate_args: whether a call checks the values of its input (lengths in range, ids
            in the vocabulary); None follows :func:`advmask.set_value_checks`.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        std: str = "softplus",
        padding_idx: int | None = None,
        *,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        self.validate_args = check_validate_args(validate_args)
        self.vocab_size = check_int(vocab_size, "vocab_size")
        self.embedding_dim = check_int(embedding_dim, "embedding_dim")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        if std not in STD_MODES:
            raise ValueError(f"std must be one of {STD_MODES}, got {std!r}")
        if padding_idx is not None and not (
            isinstance(padding_idx, int) and 0 <= padding_idx < vocab_size
        ):
            raise ValueError(f"padding_idx must be None or in [0, {vocab_size}), got {padding_idx}")
        self.std_mode = std
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        if std == "fixed":
            # The authors' head: the mean only, no bias.
            self.head = nn.Linear(hidden_size, 1, bias=False)
        else:
            self.head = nn.Linear(hidden_size, 2)
            with torch.no_grad():
                # Biases at the prior (mean 0, std 1): the regulariser starts near its minimum
                # instead of at a random offset shared by every position.
                self.head.bias[0] = 0.0
                self.head.bias[1] = _inverse_std(std)

    def encode(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """Hidden states (B, T, H) of embedded inputs (B, T, E); see the class docstring."""
        raise NotImplementedError

    @torch.no_grad()
    def resize_vocabulary(self, vocab_size: int) -> None:
        """Give the network's own embedding ``vocab_size`` rows, in place.

        The first ``min(old, new)`` rows are kept; new rows are drawn as ``nn.Embedding``
        draws them (N(0, 1)), the padding row stays zero, and a ``padding_idx`` beyond the new
        size is dropped. The weight stays the same ``Parameter`` object, as in
        ``transformers``' resize, so an optimiser built before still holds it.

        Args:
            vocab_size: the new number of token ids (> 0).
        """
        vocab_size = check_int(vocab_size, "vocab_size")
        weight = self.embedding.weight
        kept = min(vocab_size, weight.shape[0])
        resized = weight.new_empty(vocab_size, weight.shape[1]).normal_()
        resized[:kept] = weight[:kept]
        padding_idx = self.embedding.padding_idx
        if padding_idx is not None and padding_idx >= vocab_size:
            padding_idx = None
        if padding_idx is not None:
            resized[padding_idx] = 0.0
        weight.data = resized
        self.embedding.num_embeddings = vocab_size
        self.embedding.padding_idx = padding_idx
        self.vocab_size = vocab_size

    def forward(
        self, tokens: Tensor | None, lengths: Tensor, *, embeddings: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Mean and standard deviation of the score at every position.

        Args:
            tokens: (B, T) integer ids in ``[0, vocab_size)``; may be None when ``embeddings``
                is given.
            lengths: (B,) integer number of valid positions per row, in ``[0, T]``.
            embeddings: optional (B, T, embedding_dim) float inputs used instead of the
                network's own embedding of ``tokens``.

        Returns:
            ``(mean, std)``, each (B, T) float (float32 under bf16 autocast); ``std > 0``
            everywhere (``1`` for ``std="fixed"``). Values at padding positions are finite but
            meaningless.
        """
        embedded = self._embed(tokens, lengths, embeddings)
        lengths = lengths.to(torch.int64)
        if embedded.shape[0] == 0 or embedded.shape[1] == 0:
            empty = embedded.new_zeros(embedded.shape[:2])
            return empty, empty + 1.0
        # The head in float32 under bf16 autocast: the exactly-K selection sorts these scores,
        # and bfloat16's 8 bits would turn distinct scores into ties.
        out = full_precision(self.head, self.encode(embedded, lengths))
        mean = out[..., 0]
        if self.std_mode == "fixed":
            return mean, torch.ones_like(mean)
        raw = out[..., 1]
        if self.std_mode == "logvar":
            return mean, torch.exp(0.5 * raw)
        return mean, F.softplus(raw) + _STD_FLOOR

    def _embed(self, tokens: Tensor | None, lengths: Tensor, embeddings: Tensor | None) -> Tensor:
        if embeddings is None:
            tokens, lengths = check_tokens_lengths(
                tokens, lengths, vocab_size=self.vocab_size, validate_args=self.validate_args
            )
            return self.embedding(tokens)
        embeddings = check_tensor("embeddings", embeddings, ndim=3, dtypes=FLOAT_DTYPES)
        if embeddings.shape[2] != self.embedding_dim:
            raise ValueError(
                f"embeddings must have shape (B, T, {self.embedding_dim}), got "
                f"{tuple(embeddings.shape)}"
            )
        # Reuse the (B, T) checks on a stand-in for the token ids.
        stand_in = torch.zeros(embeddings.shape[:2], dtype=torch.int64, device=embeddings.device)
        if tokens is not None and tuple(tokens.shape) != tuple(embeddings.shape[:2]):
            raise ValueError(
                f"tokens and embeddings disagree: tokens has shape {tuple(tokens.shape)}, "
                f"embeddings {tuple(embeddings.shape)}"
            )
        check_tokens_lengths(stand_in, lengths, validate_args=self.validate_args)
        return embeddings


def _inverse_std(std: str) -> float:
    """Raw head output giving std = 1 under parameterisation ``std``."""
    if std == "logvar":
        return 0.0
    target = 1.0 - _STD_FLOOR
    return target + math.log(-math.expm1(-target))  # softplus^-1(target), stable form


class _RecurrentScoreNetwork(ScoreNetwork):
    """A one-layer LSTM or GRU over the embedded inputs, uni- or bidirectional."""

    _cell: type[nn.RNNBase] = nn.LSTM

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        std: str = "softplus",
        padding_idx: int | None = None,
        *,
        bidirectional: bool = False,
        num_layers: int = 1,
        validate_args: bool | None = None,
    ) -> None:
        if not isinstance(bidirectional, bool):
            raise TypeError(f"bidirectional must be a bool, got {bidirectional!r}")
        num_directions = 2 if bidirectional else 1
        if isinstance(hidden_size, int) and hidden_size % num_directions:
            raise ValueError(
                f"hidden_size must be even for a bidirectional network, got {hidden_size}"
            )
        super().__init__(
            vocab_size, embedding_dim, hidden_size, std, padding_idx, validate_args=validate_args
        )
        self.bidirectional = bidirectional
        self.rnn = self._cell(
            embedding_dim,
            hidden_size // num_directions,
            num_layers=check_int(num_layers, "num_layers"),
            batch_first=True,
            bidirectional=bidirectional,
        )

    def encode(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, E) -> (B, T, H); packs the input only when bidirectional."""
        if not self.bidirectional:
            # Causal: the state at t < lengths[b] never sees a padding position.
            return self.rnn(embedded)[0]
        # The backward direction must start at the last valid position, not at the padding:
        # packing is what makes the scores independent of the padding. Empty rows
        # are packed with length 1; nothing in them is ever eligible. Packing needs the
        # lengths on the CPU (one host-device copy).
        packed = pack_padded_sequence(
            embedded, lengths.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False
        )
        hidden, _ = pad_packed_sequence(
            self.rnn(packed)[0], batch_first=True, total_length=embedded.shape[1]
        )
        return hidden


class LSTMScoreNetwork(_RecurrentScoreNetwork):
    """The paper's adversary: own embedding, one LSTM layer, a linear Gaussian head.

    Unidirectional by default (the literal reading of the paper); with
    ``bidirectional=True`` each direction has ``hidden_size // 2`` units and the input is packed.

    Args:
        vocab_size: number of token ids.
        embedding_dim: size of the network's own embedding.
        hidden_size: LSTM output size ``H`` (both directions together).
        std: one of :data:`STD_MODES`.
        padding_idx: id whose embedding row is zero, or None (every id a real token).
        bidirectional: read the sequence in both directions.
        num_layers: stacked LSTM layers.
        validate_args: value checks of a call: True, False, or None to follow
            :func:`advmask.set_value_checks`.

    Example:
        >>> net = LSTMScoreNetwork(vocab_size=10, embedding_dim=4, hidden_size=6)
        >>> mean, std = net(torch.tensor([[3, 4, 5, 0]]), torch.tensor([3]))
        >>> mean.shape, bool((std > 0).all())
        (torch.Size([1, 4]), True)
    """

    _cell = nn.LSTM


class GRUScoreNetwork(_RecurrentScoreNetwork):
    """:class:`LSTMScoreNetwork` with a GRU instead of the LSTM (same arguments)."""

    _cell = nn.GRU


class TransformerScoreNetwork(ScoreNetwork):
    """A bidirectional transformer encoder with learned positions and a padding mask.

    Args:
        vocab_size: number of token ids.
        embedding_dim: size of the network's own embedding (projected to ``hidden_size``).
        hidden_size: model width ``H``; divisible by ``num_heads``.
        std: one of :data:`STD_MODES`.
        padding_idx: id whose embedding row is zero, or None (every id a real token).
        num_layers: encoder layers.
        num_heads: attention heads.
        max_length: largest padded length ``T`` accepted (size of the position table).
        dropout: dropout inside the encoder layers (0 keeps the scores deterministic).
        validate_args: value checks of a call: True, False, or None to follow
            :func:`advmask.set_value_checks`.

    Example:
        >>> net = TransformerScoreNetwork(vocab_size=10, embedding_dim=4, hidden_size=8)
        >>> net(torch.tensor([[3, 4, 0]]), torch.tensor([2]))[0].shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 128,
        hidden_size: int = 256,
        std: str = "softplus",
        padding_idx: int | None = None,
        *,
        num_layers: int = 2,
        num_heads: int = 4,
        max_length: int = 512,
        dropout: float = 0.0,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(
            vocab_size, embedding_dim, hidden_size, std, padding_idx, validate_args=validate_args
        )
        num_heads = check_int(num_heads, "num_heads")
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_heads={num_heads}, got {hidden_size}"
            )
        self.max_length = check_int(max_length, "max_length")
        self.input_projection = nn.Linear(embedding_dim, hidden_size)
        self.positions = nn.Embedding(max_length, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size,
            num_heads,
            dim_feedforward=2 * hidden_size,
            dropout=dropout,
            batch_first=True,
        )
        # No nested tensors: they would zero the outputs at padding positions in eval mode
        # only, making train and eval outputs differ in shape semantics.
        self.encoder = nn.TransformerEncoder(
            layer, check_int(num_layers, "num_layers"), enable_nested_tensor=False
        )

    def encode(self, embedded: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, E) -> (B, T, H); padding keys are masked out of every attention."""
        length = embedded.shape[1]
        if length > self.max_length:
            raise ValueError(f"tokens are longer than max_length={self.max_length}: got T={length}")
        steps = torch.arange(length, device=embedded.device)
        hidden = self.input_projection(embedded) + self.positions(steps)
        padding = steps.unsqueeze(0) >= lengths.unsqueeze(1)
        # A row with no valid key would give softmax over nothing = NaN; let such rows attend
        # to position 0 (nothing in them is eligible, so the value is never used).
        padding = padding & (lengths > 0).unsqueeze(1)
        return self.encoder(hidden, src_key_padding_mask=padding)


ScoreNetworkBuilder = Callable[..., nn.Module]
"""``builder(vocab_size, **settings) -> module``: a score network class, or a function."""

_SCORE_NETWORKS: dict[str, ScoreNetworkBuilder] = {}

#: Score networks by name, as accepted by ``AdversarialMasker(score_network=...)``: a
#: read-only view; add one with :func:`register_score_network`.
SCORE_NETWORKS: Mapping[str, ScoreNetworkBuilder] = MappingProxyType(_SCORE_NETWORKS)


def register_score_network(
    name: str, *, overwrite: bool = False
) -> Callable[[ScoreNetworkBuilder], ScoreNetworkBuilder]:
    """Decorator that registers a score network class (or builder) under ``name``.

    The builder is called as ``builder(vocab_size, **settings)`` and returns a module with
    ``forward(tokens, lengths, *, embeddings=None) -> (mean, std)``, each (B, T) float;
    ``settings`` are the keyword arguments :func:`build_score_network` (and
    :class:`~advmask.maskers.AdversarialMasker`) pass on, checked against its signature.

    Args:
        name: the name users pass as ``score_network=``.
        overwrite: replace an existing entry instead of raising.

    Raises:
        ValueError: if ``name`` is registered already and ``overwrite`` is False.
        TypeError: if ``name`` is not a str, or what is registered is not callable.

    Example:
        .. code-block:: python

            @register_score_network("cnn")
            class CNNScoreNetwork(ScoreNetwork):
                def encode(self, embedded, lengths): ...

            masker = AdversarialMasker(vocab_size, rate=0.3, score_network="cnn")
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")

    def decorator(builder: ScoreNetworkBuilder) -> ScoreNetworkBuilder:
        if not callable(builder):
            raise TypeError(f"a score network builder must be callable, got {builder!r}")
        if name in _SCORE_NETWORKS and not overwrite:
            raise ValueError(f"a score network named {name!r} is already registered")
        _SCORE_NETWORKS[name] = builder
        return builder

    return decorator


register_score_network("lstm")(LSTMScoreNetwork)
register_score_network("gru")(GRUScoreNetwork)
register_score_network("transformer")(TransformerScoreNetwork)


def build_score_network(name: str, vocab_size: int, **settings: Any) -> nn.Module:
    """The score network registered under ``name``, built with ``settings``.

    Args:
        name: a key of :data:`SCORE_NETWORKS`.
        vocab_size: number of token ids.
        **settings: keyword arguments of the registered class, for example
            ``embedding_dim``, ``hidden_size``, ``std``, ``padding_idx``, ``validate_args``
            and, for ``"transformer"``, ``max_length``.

    Raises:
        ValueError: for an unknown name (listing the known ones), or a setting the
            registered class does not take (naming it).

    Example:
        >>> net = build_score_network("transformer", 10, embedding_dim=4, hidden_size=8,
        ...                           max_length=1024)
        >>> net.max_length
        1024
    """
    if not isinstance(name, str) or name not in _SCORE_NETWORKS:
        known = ", ".join(repr(n) for n in _SCORE_NETWORKS)
        raise ValueError(f"score_network must be one of {known} or an nn.Module, got {name!r}")
    builder = _SCORE_NETWORKS[name]
    parameters = inspect.signature(builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(settings) - set(parameters)) if not takes_any else []
    if unknown:
        known = ", ".join(n for n in parameters if n not in ("self", "vocab_size"))
        raise ValueError(
            f"score network {name!r} takes no setting {unknown[0]!r}; its settings: {known}"
        )
    return builder(vocab_size, **settings)
