"""The tiny decoder, batches and adversary shared by the masked-embedding tests."""

import torch
from torch import nn

from advmask.embedding import MaskedEmbedding
from advmask.maskers import AdversarialMasker

VOCAB, DIM, HIDDEN, UNK = 13, 5, 7, 1


class Decoder(nn.Module):
    """A tiny autoregressive decoder: LSTM over (masked) embeddings, then logits."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(DIM, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, VOCAB)

    def forward(self, embedded: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(embedded)[0])


def setup(masker=None, fill="zero", seed=0):
    torch.manual_seed(seed)
    embedding = nn.Embedding(VOCAB, DIM, padding_idx=0)
    masked = MaskedEmbedding(embedding, masker, fill=fill, fill_id=UNK if fill == "token" else None)
    return masked.double(), Decoder().double()


def batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths) + 1
    tokens = torch.randint(2, VOCAB, (len(lengths), width), generator=generator)
    lengths_t = torch.tensor(lengths)
    return torch.where(torch.arange(width) < lengths_t.unsqueeze(1), tokens, 0), lengths_t


def adversary(rate=0.5, kl_weight=0.3, grl_scale=1.0, **kwargs):
    torch.manual_seed(10)
    return AdversarialMasker(
        vocab_size=VOCAB,
        rate=rate,
        kl_weight=kl_weight,
        grl_scale=grl_scale,
        embedding_dim=4,
        hidden_size=6,
        **kwargs,
    )
