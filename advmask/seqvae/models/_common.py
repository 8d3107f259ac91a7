"""What the encoder and the decoders share: their sizes, word embedding and initialisation."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advmask.checks import check_choice, check_dropout, check_int
from advmask.row_draws import RowDraws
from advmask.seqvae.data.vocab import PAD_ID

WEIGHT_INIT = 0.01
"""Half-width of the uniform initialisation of every weight and bias."""

EMBEDDING_INIT = 0.1
"""Half-width of the uniform initialisation of the word embeddings."""

INITS = ("authors", "pytorch")
"""Initialisations of the encoder and the LSTM decoders: ``"authors"`` (U(-0.01, 0.01) weights
and biases, U(-0.1, 0.1) embedding, as the paper's code) or ``"pytorch"`` (each layer's own
``reset_parameters``: N(0, 1) embedding, U(-1/sqrt(H), 1/sqrt(H)) recurrent weights,
Kaiming-uniform linear layers)."""


class SequenceModule(nn.Module):
    """Base of the encoder and the decoders: four checked sizes and a word embedding.

    The embedding (``vocab_size`` rows of ``embedding_dim``) is the module's first child, so its
    parameters come first: the order in which the initialisation draws and the optimiser
    states are kept. Its :data:`~advmask.seqvae.data.vocab.PAD_ID` row starts at zero.

    Args:
        vocab_size: number of token ids ``V``, specials included (>= 1).
        embedding_dim: word embedding size ``E`` (>= 1).
        hidden_size: hidden size ``H`` (>= 1).
        latent_dim: size ``D`` of ``z`` (>= 1).
        init: one of ``INITS``, used by :meth:`reset_parameters` (which subclasses call
            once their layers exist).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        latent_dim: int,
        init: str = "authors",
    ) -> None:
        super().__init__()
        self.vocab_size = check_int(vocab_size, "vocab_size")
        self.embedding_dim = check_int(embedding_dim, "embedding_dim")
        self.hidden_size = check_int(hidden_size, "hidden_size")
        self.latent_dim = check_int(latent_dim, "latent_dim")
        self.init = check_choice(init, "init", INITS)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD_ID)

    def reset_parameters(self) -> None:
        """Re-initialise every parameter as :attr:`init` says (see ``INITS``).

        ``"pytorch"`` resets the layers in the order they were registered (the embedding
        first), so the random draws do not depend on how the layers are stored.
        """
        if self.init == "authors":
            init_uniform(self, self.embedding)
            return
        for layer in self.children():
            if hasattr(layer, "reset_parameters"):  # nn.Dropout has no parameters
                layer.reset_parameters()


class SequenceDecoder(SequenceModule):
    """Base of the decoders: :class:`SequenceModule` with dropout on the inputs and outputs.

    Args:
        vocab_size, embedding_dim, hidden_size, latent_dim, init: as in
            :class:`SequenceModule`.
        dropout_in: dropout probability on the input embeddings, in [0, 1).
        dropout_out: dropout probability on the states before the output layer, in [0, 1).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        latent_dim: int,
        dropout_in: float,
        dropout_out: float,
        init: str = "authors",
    ) -> None:
        super().__init__(vocab_size, embedding_dim, hidden_size, latent_dim, init)
        self.dropout_in = nn.Dropout(check_dropout(dropout_in, "dropout_in"))
        self.dropout_out = nn.Dropout(check_dropout(dropout_out, "dropout_out"))


def row_dropout(dropout: nn.Dropout, x: Tensor, row_draws: RowDraws | None) -> Tensor:
    """``dropout(x)`` of ``x`` (B, ...); with ``row_draws`` (the rows of a global batch that
    ``x`` is, under torchrun) the mask is those rows of the global batch's mask."""
    if row_draws is None:
        return dropout(x)
    return row_draws.dropout(x, dropout.p, dropout.training)


@torch.no_grad()
def init_uniform(module: nn.Module, embedding: nn.Embedding | None) -> None:
    """The authors' initialisation: U(-0.01, 0.01) weights, U(-0.1, 0.1) embedding.

    The padding row of ``embedding`` is zeroed again afterwards, so that ``padding_idx`` keeps
    meaning "the zero vector" as it does after PyTorch's own initialisation.
    """
    for parameter in module.parameters():
        if embedding is None or parameter is not embedding.weight:
            parameter.uniform_(-WEIGHT_INIT, WEIGHT_INIT)
    if embedding is not None:
        embedding.weight.uniform_(-EMBEDDING_INIT, EMBEDDING_INIT)
        if embedding.padding_idx is not None:
            embedding.weight[embedding.padding_idx].zero_()
