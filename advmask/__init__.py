"""advmask: adversarial masking of autoregressive decoder inputs.

``1`` in every mask of this library means "drop the decoder input at this position".

The maskers, their building blocks, the embedding wrapper and its adapter
(:func:`mask_input_embeddings`, for any decoder) are exported here; the sequence-VAE
parts live in subpackages (:mod:`advmask.seqvae.data`, :mod:`advmask.seqvae.models`,
:mod:`advmask.seqvae.metrics`, :mod:`advmask.seqvae.vae`, :mod:`advmask.seqvae.evaluation`).
"""

from advmask.adapters import mask_input_embeddings, unmask_input_embeddings
from advmask.budget import eligible_positions, num_to_drop
from advmask.checks import set_value_checks, value_checks_enabled
from advmask.embedding import MaskedEmbedding, mask_embeddings
from advmask.hard_selection import hard_bottom_k
from advmask.maskers import AdversarialMasker, UniformMasker, drop_probabilities
from advmask.outputs import MaskerOutput
from advmask.regularizer import gaussian_kl_to_standard, score_kl
from advmask.relaxations import RELAXATIONS, get_relaxation, register_relaxation
from advmask.reversal import GradientReversal, dann_schedule, grad_reverse
from advmask.scores import (
    SCORE_NETWORKS,
    GRUScoreNetwork,
    LSTMScoreNetwork,
    ScoreNetwork,
    TransformerScoreNetwork,
    build_score_network,
)
from advmask.selection import bottom_k, straight_through

__version__ = "0.1.0.dev0"

__all__ = [
    "RELAXATIONS",
    "SCORE_NETWORKS",
    "AdversarialMasker",
    "GRUScoreNetwork",
    "GradientReversal",
    "LSTMScoreNetwork",
    "MaskedEmbedding",
    "MaskerOutput",
    "ScoreNetwork",
    "TransformerScoreNetwork",
    "UniformMasker",
    "bottom_k",
    "build_score_network",
    "dann_schedule",
    "drop_probabilities",
    "eligible_positions",
    "gaussian_kl_to_standard",
    "get_relaxation",
    "grad_reverse",
    "hard_bottom_k",
    "mask_embeddings",
    "mask_input_embeddings",
    "num_to_drop",
    "register_relaxation",
    "score_kl",
    "set_value_checks",
    "straight_through",
    "unmask_input_embeddings",
    "value_checks_enabled",
]
