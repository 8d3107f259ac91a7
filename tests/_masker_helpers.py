"""Small maskers, token batches and a constant score network shared by the masker tests."""

import torch
from torch import nn

from advmask.maskers import AdversarialMasker

VOCAB = 17


def adversarial(rate: float = 0.5, **kwargs) -> AdversarialMasker:
    torch.manual_seed(0)
    options = {"embedding_dim": 4, "hidden_size": 6, **kwargs}
    return AdversarialMasker(vocab_size=VOCAB, rate=rate, **options)


def random_tokens(lengths: torch.Tensor, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (lengths.shape[0], width), generator=generator)
    return torch.where(torch.arange(width) < lengths.unsqueeze(1), tokens, 0)


class ConstantScores(nn.Module):
    """A stand-in score network returning fixed (mean, std) for every row."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, tokens, lengths, *, embeddings=None):
        mean = torch.full(tokens.shape, self.mean) + self.dummy
        return mean, torch.full(tokens.shape, self.std)
